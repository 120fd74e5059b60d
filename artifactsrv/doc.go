// Package artifactsrv is the artifact HTTP server bundled with mesolite
// (`mesolite artifacts serve`) and its upload client (`mesolite artifacts
// push`). It serves a directory the way the fetcher wants to consume it:
//
//   - GET and HEAD with Range, ETag (the file's sha256), Last-Modified and
//     conditional requests, through http.ServeContent on an *os.File so the
//     kernel's sendfile moves the bytes;
//   - an X-Checksum-Sha256 header on every file, `GET /sha256/<path>`, and
//     directory indexes as JSON (Accept: application/json) or HTML; digests
//     are computed once per (path, size, mtime, inode) and kept in memory;
//   - PUT and DELETE only when started with an upload token, authenticated
//     with `Authorization: Bearer <token>`; uploads are written to an
//     unnamed (O_TMPFILE) or hidden temporary file in the target directory,
//     fsynced and renamed, so a crash or a dropped client never leaves a
//     partial file under the real name;
//   - every path resolved through os.Root, so `..`, encoded traversal and
//     symlinks out of the directory are neither served nor written;
//   - an slog access log and Prometheus metrics on /metrics from a registry
//     of its own.
//
// The names /metrics and /sha256/ are reserved: files at those paths are
// not served.
package artifactsrv
