package artifactsrv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
)

// authorize answers 405 when uploads are off, 401 without a bearer token
// and 403 with a wrong one. The comparison is constant-time over digests
// of equal length, so neither content nor length of the token leaks.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.UploadToken == "" {
		w.Header().Set("Allow", s.allowed())
		errdefs.HTTPError(w, errdefs.Statusf(http.StatusMethodNotAllowed, "uploads are disabled on this server (no --upload_token)"))
		return false
	}
	auth := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mesolite-artifacts"`)
		errdefs.HTTPError(w, fmt.Errorf("missing bearer token: %w", errdefs.ErrUnauthorized))
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	if subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) != 1 {
		errdefs.HTTPError(w, fmt.Errorf("wrong upload token: %w", errdefs.ErrForbidden))
		return false
	}
	return true
}

// UploadResult is the JSON body answering a successful PUT.
type UploadResult struct {
	Path   string `json:"path"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	rel, err := relPath(r.URL.Path)
	if err != nil {
		s.httpError(w, err)
		return
	}
	if rel == "." || strings.HasSuffix(r.URL.Path, "/") {
		s.httpError(w, fmt.Errorf("PUT needs a file path, not a directory: %w", errdefs.ErrInvalid))
		return
	}
	var want []byte
	if h := r.Header.Get("X-Checksum-Sha256"); h != "" {
		if want, err = hex.DecodeString(strings.TrimSpace(h)); err != nil || len(want) != sha256.Size {
			s.httpError(w, fmt.Errorf("X-Checksum-Sha256 is not a sha256 in hex: %w", errdefs.ErrInvalid))
			return
		}
	}
	body := io.Reader(r.Body)
	if s.opts.MaxUploadBytes > 0 {
		body = http.MaxBytesReader(w, r.Body, s.opts.MaxUploadBytes)
	}
	res, created, err := s.store(r.Context(), rel, body, r.ContentLength, want)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			errdefs.HTTPError(w, errdefs.Statusf(http.StatusRequestEntityTooLarge, "upload larger than %d bytes", mbe.Limit))
			return
		}
		s.log.Warn("upload failed", "path", r.URL.Path, "error", err.Error())
		s.httpError(w, err)
		return
	}
	s.received.Add(float64(res.Size))
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Checksum-Sha256", res.SHA256)
	if created {
		w.Header().Set("Location", "/"+rel)
		w.WriteHeader(http.StatusCreated)
	}
	_ = json.NewEncoder(w).Encode(res)
}

// store writes body to rel atomically. The bytes go to an unnamed
// O_TMPFILE inode in the target directory (a crash leaves nothing at all),
// or where the filesystem lacks O_TMPFILE to a hidden temporary name; after
// fsync it is linked under a temporary name and renamed over rel. The
// directory is resolved through the root and only single names are used
// relative to its descriptor, so no symlink is followed on the way.
func (s *Server) store(ctx context.Context, rel string, body io.Reader, length int64, want []byte) (UploadResult, bool, error) {
	dirRel, base := path.Split(rel)
	dirRel = strings.TrimSuffix(dirRel, "/")
	if dirRel == "" {
		dirRel = "."
	} else if err := s.root.MkdirAll(dirRel, 0o755); err != nil {
		return UploadResult{}, false, openErr(dirRel, err)
	}
	dir, err := s.root.Open(dirRel)
	if err != nil {
		return UploadResult{}, false, openErr(dirRel, err)
	}
	defer dir.Close()
	dfd := int(dir.Fd())

	tmpName := uploadTempPrefix + randHex(8)
	named := false
	fd, err := -1, unix.EOPNOTSUPP
	if !noTmpfile {
		fd, err = unix.Openat(dfd, ".", unix.O_TMPFILE|unix.O_WRONLY|unix.O_CLOEXEC, 0o644)
	}
	if err != nil {
		// No O_TMPFILE here (some filesystems): a hidden name instead.
		fd, err = unix.Openat(dfd, tmpName, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o644)
		if err != nil {
			return UploadResult{}, false, fmt.Errorf("create temporary file: %w", err)
		}
		named = true
	}
	f := os.NewFile(uintptr(fd), tmpName)
	linked := named
	defer func() {
		f.Close()
		if linked {
			_ = unix.Unlinkat(dfd, tmpName, 0)
		}
	}()
	_ = f.Chmod(0o644)

	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), body)
	if err != nil {
		return UploadResult{}, false, fmt.Errorf("upload interrupted after %d bytes: %w", n, err)
	}
	if length >= 0 && n != length {
		return UploadResult{}, false, fmt.Errorf("upload ended after %d of %d bytes: %w", n, length, errdefs.ErrInvalid)
	}
	if ctx.Err() != nil {
		return UploadResult{}, false, ctx.Err()
	}
	sum := h.Sum(nil)
	if want != nil && subtle.ConstantTimeCompare(sum, want) != 1 {
		return UploadResult{}, false, fmt.Errorf("X-Checksum-Sha256 mismatch: body is %x: %w", sum, errdefs.ErrInvalid)
	}
	if err := f.Sync(); err != nil {
		return UploadResult{}, false, fmt.Errorf("fsync: %w", err)
	}
	if !named {
		// Give the unnamed inode a (hidden) name; /proc/self/fd with
		// AT_SYMLINK_FOLLOW needs no privilege, unlike AT_EMPTY_PATH.
		if err := unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), dfd, tmpName, unix.AT_SYMLINK_FOLLOW); err != nil {
			return UploadResult{}, false, fmt.Errorf("link upload: %w", err)
		}
		linked = true
	}
	var st unix.Stat_t
	created := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) != nil
	if !created && st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return UploadResult{}, false, errdefs.Classf(errdefs.ErrConflict, "%s is a directory: PUT to a file under it (%s/NAME)", rel, rel)
	}
	if err := unix.Renameat(dfd, tmpName, dfd, base); err != nil {
		return UploadResult{}, false, fmt.Errorf("rename upload into place: %w", err)
	}
	linked = false
	_ = dir.Sync()

	sumHex := hex.EncodeToString(sum)
	s.digests.forget(rel)
	if fi, err := f.Stat(); err == nil {
		s.digests.put(rel, fi, sumHex)
	}
	return UploadResult{Path: "/" + rel, Size: n, SHA256: sumHex}, created, nil
}

func (s *Server) serveDelete(w http.ResponseWriter, r *http.Request) {
	if !s.authorize(w, r) {
		return
	}
	rel, err := relPath(r.URL.Path)
	if err != nil {
		s.httpError(w, err)
		return
	}
	if rel == "." {
		s.httpError(w, fmt.Errorf("cannot delete the artifact directory: %w", errdefs.ErrInvalid))
		return
	}
	if _, err := s.root.Lstat(rel); err != nil {
		s.httpError(w, openErr(r.URL.Path, err))
		return
	}
	if err := s.root.Remove(rel); err != nil {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			s.httpError(w, fmt.Errorf("%s is a directory that is not empty: %w", r.URL.Path, errdefs.ErrConflict))
			return
		}
		s.httpError(w, openErr(r.URL.Path, err))
		return
	}
	s.digests.forget(rel)
	w.WriteHeader(http.StatusNoContent)
}

// sweepUploadTemps removes hidden temporary files that a crash left behind
// on filesystems without O_TMPFILE; only those older than an hour, so live
// uploads of another server on the same directory are safe.
func (s *Server) sweepUploadTemps(ctx context.Context) {
	_ = fs.WalkDir(s.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return fs.SkipAll
		}
		if err != nil || d.IsDir() || !strings.HasPrefix(d.Name(), uploadTempPrefix) {
			return nil
		}
		if fi, err := d.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
			if s.root.Remove(p) == nil {
				s.log.Info("removed stale upload temporary file", "path", p)
			}
		}
		return nil
	})
}

// noTmpfile forces the named-temporary-file path (tests).
var noTmpfile = false

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
