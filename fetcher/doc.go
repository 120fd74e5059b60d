// Package fetcher downloads the URIs of a Mesos CommandInfo into a task's
// sandbox before the task starts, with the semantics Mesos users know
// (executable, extract, cache, output_file) and the safety Mesos lacked.
//
// The work happens in a child process: the agent calls RunChild, which
// re-executes the mesolite binary as the hidden `mesolite fetch` subcommand
// (ChildMain), hands it the Request as JSON on stdin and copies its log lines
// to the sandbox's stderr file. A hostile archive, a hung server or a crash
// in a download library therefore costs one child, never the agent.
//
// Inside the child:
//
//	URI ─► source (http/https, file, plain path under --frameworks_home,
//	       git through go-getter v2, hdfs/s3/s3a/gs/... through the Hadoop client)
//	    ─► download (minimum-rate stall watchdog, the request's byte
//	       budget, checksum=…)                                         [direct]
//	    or cache (flock-coordinated, LRU, revalidated with the origin,
//	       entries read-only and the agent's, written for a child that
//	       runs as a task user by the agent itself: broker.go)          [cache=true]
//	    ─► sandbox (rename, or from the cache a private copy of bytes
//	       known to match the entry's sha256: by the file's unchanged
//	       stamp, else hashed; mode 0755 when executable)
//	    ─► our own extractor (tar, tar.gz/bz2/xz, zip, gz) through os.Root,
//	       with limits on bytes, entries and xz dictionaries, into a
//	       staging directory moved into place once complete
//
// go-getter (v2, whose core module links no cloud SDKs) is used only to
// clone git sources, with no decompressors; http and local files are read
// with the standard library, so no X-Terraform-Get and no symlinked local
// file. Every start of the mesolite binary, not only fetches, pays for what
// this package links.
//
// Every request has a byte budget: the task's disk (Request.MaxBytes) or
// --fetcher_max_size, whichever is smaller, for downloads and extracted
// bytes together (limits.go).
//
// The cache lives in --fetcher_cache_dir, one directory per task user. Child
// processes coordinate through the filesystem only: an index file guarded
// by flock, and per-entry lock files whose holders the evictor skips. See
// cache.go for the protocol.
package fetcher
