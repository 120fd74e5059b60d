package fetcher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
)

// Fetcher fetches requests in the current process. The agent does not use
// it directly (see RunChild); ChildMain, tests and benchmarks do.
type Fetcher struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client

	hadoopOnce sync.Once
	hadoopBin  string
	hadoopErr  error
}

// New returns a Fetcher for cfg. A nil logger discards.
func New(cfg Config, log *slog.Logger) *Fetcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Fetcher{cfg: cfg, log: log.With("component", "fetcher"), client: newHTTPClient()}
}

// Fetch fetches every URI of req in order and stops at the first failure,
// which it returns as a *URIError. Results cover the URIs fetched so far.
func (f *Fetcher) Fetch(ctx context.Context, req Request) ([]Result, error) {
	return f.fetchAll(ctx, req, nil)
}

// event is what the child reports to its parent for each URI.
type event struct {
	Type   string  `json:"type"` // "ready" (waiting for the request), "start" or "done"
	URI    string  `json:"uri"`
	Result *Result `json:"result,omitempty"`
	Error  string  `json:"error,omitempty"`
	Class  string  `json:"class,omitempty"`
}

func (f *Fetcher) fetchAll(ctx context.Context, req Request, notify func(event)) ([]Result, error) {
	if notify == nil {
		notify = func(event) {}
	}
	if !filepath.IsAbs(req.SandboxDir) {
		return nil, fmt.Errorf("sandbox directory %q must be absolute: %w", req.SandboxDir, errdefs.ErrInvalid)
	}
	sb, err := os.OpenRoot(req.SandboxDir)
	if err != nil {
		return nil, fmt.Errorf("open sandbox: %v: %w", err, errdefs.ErrNotFound)
	}
	defer sb.Close()

	results := make([]Result, 0, len(req.URIs))
	for _, u := range req.URIs {
		shown := redactValue(u.Value)
		notify(event{Type: "start", URI: shown})
		f.log.Info("fetching URI", "uri", shown, "output_file", u.OutputFile,
			"executable", u.Executable, "extract", u.Extract, "cache", u.Cache)
		start := time.Now()
		res, err := f.fetchOne(ctx, sb, req.User, u)
		if err != nil {
			f.log.Error("failed to fetch URI", "uri", shown, "error", err.Error())
			notify(event{Type: "done", URI: shown, Error: err.Error(), Class: className(err)})
			return results, &URIError{URI: shown, Err: err}
		}
		f.log.Info("fetched URI", "uri", shown, "path", res.Path, "bytes", res.Bytes,
			"cache_hit", res.CacheHit, "extracted_entries", res.Extracted, "duration", time.Since(start).Round(time.Millisecond))
		notify(event{Type: "done", URI: shown, Result: &res})
		results = append(results, res)
	}
	f.log.Info("fetched all URIs", "sandbox", req.SandboxDir, "count", len(results))
	return results, nil
}

// redactValue hides credentials in a value that may not be a valid source,
// such as a refused s3:: form with its access keys in the query.
func redactValue(v string) string {
	if s, err := parseSource(v, "."); err == nil {
		return s.redacted
	}
	v = strings.TrimLeft(v, " \t\r\n")
	forced, rest := "", v
	if m := forcedGetter.FindStringSubmatch(v); m != nil {
		forced, rest = m[1]+"::", m[2]
	}
	if u, err := url.Parse(rest); err == nil && u.Scheme != "" {
		return forced + redactURL(u)
	}
	return v
}

// plan is what fetchOne decided about a URI before moving bytes.
type plan struct {
	uri  URI
	src  *source
	out  string
	kind archiveKind
	// sniff is true when the type may still come from magic bytes.
	sniff bool
	// gzName is what a single .gz decompresses to: the name it was
	// recognised by, without .gz (Mesos gunzips x.gz to x).
	gzName string
}

func (f *Fetcher) fetchOne(ctx context.Context, sb *os.Root, user string, u URI) (Result, error) {
	src, err := parseSource(u.Value, f.cfg.FrameworksHome)
	if err != nil {
		return Result{}, err
	}
	out, err := outputName(u, src)
	if err != nil {
		return Result{}, err
	}
	p := &plan{uri: u, src: src, out: out}
	if u.Extract && !u.Executable {
		named := out
		p.kind = kindFromName(out)
		if p.kind == kindNone && u.OutputFile != "" {
			named = src.name
			p.kind = kindFromName(src.name)
		}
		if p.kind == kindGz {
			base := filepath.Base(named)
			p.gzName = base[:len(base)-len(".gz")]
		}
		p.sniff = p.kind == kindNone && sniffable(out) && sniffable(src.name)
	}
	if u.Cache && f.cfg.cacheEnabled() && !src.dir {
		res, err := f.fetchCached(ctx, sb, user, p)
		if !errors.Is(err, errCacheUnusable) {
			return res, err
		}
		// Mesos falls back to fetching directly when the cache fails.
		f.log.Warn("fetcher cache unusable; fetching directly into the sandbox", "uri", src.redacted, "error", err.Error())
	}
	return f.fetchDirect(ctx, sb, p)
}

var errCacheUnusable = errors.New("fetcher cache unusable")

// stagingPrefix names the hidden directory a direct fetch downloads into.
const stagingPrefix = ".mesolite-fetch-"

// fetchDirect downloads into a staging directory inside the sandbox (one
// filesystem, so the final move is a rename), then places and extracts.
func (f *Fetcher) fetchDirect(ctx context.Context, sb *os.Root, p *plan) (Result, error) {
	stageName := stagingPrefix + randHex(6)
	if err := sb.Mkdir(stageName, 0o700); err != nil {
		return Result{}, fmt.Errorf("create staging directory: %w", classifyFS(err))
	}
	defer sb.RemoveAll(stageName)
	stageAbs := filepath.Join(sb.Name(), stageName)

	start := time.Now()
	d, err := f.download(ctx, p.src, stageAbs, nil)
	if err != nil {
		return Result{}, err
	}
	if !d.dir && p.src.sum != nil {
		if _, err := digestFile(d.path, p.src.sum); err != nil {
			return Result{}, err
		}
	}
	f.logDownload(p, d, start)

	stagedRel := filepath.Join(stageName, "data")
	if d.dir {
		if err := checkTreeSymlinks(d.path); err != nil {
			return Result{}, err
		}
	} else {
		mode, err := finalMode(sb, stagedRel, p.uri.Executable)
		if err != nil {
			return Result{}, err
		}
		if err := sb.Chmod(stagedRel, mode); err != nil {
			return Result{}, fmt.Errorf("chmod: %w", classifyFS(err))
		}
	}
	if err := f.place(sb, stagedRel, p.out); err != nil {
		return Result{}, err
	}
	res := Result{URI: p.src.redacted, Path: p.out, Bytes: d.size}
	if d.dir {
		return res, nil
	}
	kind := p.kind
	if kind == kindNone && p.sniff {
		kind = sniffIn(sb, p.out)
	}
	if kind == kindNone {
		if p.uri.Extract && !p.uri.Executable {
			f.log.Info("not an archive; kept as is", "path", p.out)
		}
		return res, nil
	}
	af, err := sb.Open(p.out)
	if err != nil {
		return Result{}, fmt.Errorf("open %q: %w", p.out, classifyFS(err))
	}
	defer af.Close()
	n, err := f.extract(ctx, af, kind, p, sb)
	res.Extracted = n
	return res, err
}

func (f *Fetcher) logDownload(p *plan, d *download, start time.Time) {
	f.log.Info("downloaded", "uri", p.src.redacted, "via", p.src.kind.String(), "bytes", d.size,
		"duration", time.Since(start).Round(time.Millisecond))
}

func (f *Fetcher) extract(ctx context.Context, af *os.File, kind archiveKind, p *plan, sb *os.Root) (int, error) {
	start := time.Now()
	st, err := extractArchive(ctx, af, kind, p.gzName, sb, f.cfg.extractLimits())
	if err != nil {
		return 0, fmt.Errorf("extract %s archive %q: %w", kind, p.out, err)
	}
	f.log.Info("extracted archive", "archive", p.out, "type", kind.String(), "into", sb.Name(),
		"entries", st.entries, "bytes", st.bytes, "duration", time.Since(start).Round(time.Millisecond))
	return st.entries, nil
}

func sniffIn(sb *os.Root, name string) archiveKind {
	af, err := sb.Open(name)
	if err != nil {
		return kindNone
	}
	defer af.Close()
	return sniffKind(af)
}

// finalMode is 0755 for executables (Mesos's chmod) and otherwise the
// downloaded permissions without setuid, setgid or sticky.
func finalMode(sb *os.Root, name string, executable bool) (fs.FileMode, error) {
	if executable {
		return 0o755, nil
	}
	fi, err := sb.Lstat(name)
	if err != nil {
		return 0, fmt.Errorf("stat %q: %w", name, classifyFS(err))
	}
	return fi.Mode().Perm(), nil
}

// prepareDest makes out's parent directories and unlinks a file or
// symlink already at out, so the new file never writes through either.
func prepareDest(sb *os.Root, out string) error {
	if dir := filepath.Dir(out); dir != "." {
		if err := sb.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create %q in the sandbox: %w", dir, classifyFS(err))
		}
	}
	fi, err := sb.Lstat(out)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%q: %w", out, classifyFS(err))
	case fi.IsDir():
		return fmt.Errorf("%q already exists in the sandbox as a directory: %w", out, errdefs.ErrConflict)
	}
	return sb.Remove(out)
}

// place renames a staged file (inside the sandbox) to out.
func (f *Fetcher) place(sb *os.Root, staged, out string) error {
	if err := prepareDest(sb, out); err != nil {
		return err
	}
	if err := sb.Rename(staged, out); err != nil {
		return fmt.Errorf("move into %q: %w", out, classifyFS(err))
	}
	return nil
}

// linkOrCopy puts an outside file (a cache entry) at out in the sandbox:
// a hard link when the mode already matches and the filesystem allows it,
// else a copy (copy_file_range, a reflink where the filesystem has them).
func linkOrCopy(sb *os.Root, src string, srcMode fs.FileMode, out string, mode fs.FileMode) (linked bool, err error) {
	if err := prepareDest(sb, out); err != nil {
		return false, err
	}
	if srcMode == mode {
		dir, err := sb.Open(filepath.Dir(out))
		if err != nil {
			return false, fmt.Errorf("open %q: %w", filepath.Dir(out), classifyFS(err))
		}
		// The parent was resolved through the root; the last element is a
		// plain name, and linkat never follows it.
		err = unix.Linkat(unix.AT_FDCWD, src, int(dir.Fd()), filepath.Base(out), 0)
		dir.Close()
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, syscall.EXDEV) && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EMLINK) && !errors.Is(err, syscall.EACCES) {
			return false, fmt.Errorf("link %q: %w", out, classifyFS(err))
		}
	}
	in, err := os.Open(src)
	if err != nil {
		return false, err
	}
	defer in.Close()
	w, err := sb.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return false, fmt.Errorf("create %q: %w", out, classifyFS(err))
	}
	_, err = io.Copy(w, in)
	if err == nil {
		err = w.Chmod(mode)
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = sb.Remove(out)
		return false, fmt.Errorf("copy into %q: %w", out, classifyFS(err))
	}
	return false, nil
}

// fetchCached serves a URI through the cache (see cache.go for the locking).
// Errors that concern the cache itself come back wrapping errCacheUnusable
// so the caller can fall back to a direct fetch.
func (f *Fetcher) fetchCached(ctx context.Context, sb *os.Root, user string, p *plan) (Result, error) {
	c, err := openCache(f.cfg, user, f.log)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
	}
	start := time.Now()
	key := cacheKey(p.uri.Value)
	lk, err := lockFile(ctx, c.lockPath(key), unix.LOCK_EX)
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, err
		}
		return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
	}
	locked := true
	defer func() {
		if locked {
			lk.Close()
		}
	}()

	e, err := c.get(ctx, key)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
	}
	hit, validated := false, false
	var d *download
	var stage *staging
	defer func() {
		if stage != nil {
			stage.close()
		}
	}()
	if e != nil {
		switch {
		case e.ValidatedAt >= start.UnixNano():
			// Validated after this fetch began (by the fetch we waited
			// for): as fresh as asking the origin again.
			hit = true
		case p.src.sum != nil:
			match, decided := p.src.sum.matchesSHA256(e.SHA256)
			if !decided {
				_, err := digestFile(c.entryPath(key), p.src.sum)
				match = err == nil
			}
			hit, validated = match, match
		case p.src.kind == srcHTTP && (e.ETag != "" || e.LastModified != ""):
			if stage, err = c.newStaging(); err != nil {
				return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
			}
			d, err = f.download(ctx, p.src, stage.dir, &conditional{etag: e.ETag, lastModified: e.LastModified})
			switch {
			case err != nil && errors.Is(err, errdefs.ErrUnavailable) && ctx.Err() == nil:
				// The origin is down, not saying the artifact changed:
				// serve what we have rather than fail the task.
				f.log.Warn("cannot revalidate cache entry; using the cached copy", "uri", p.src.redacted, "error", err.Error())
				hit, d = true, nil
			case err != nil:
				return Result{}, err
			default:
				hit, validated = d.notModified, d.notModified
				if hit {
					f.log.Info("cache entry revalidated: origin answered 304 Not Modified", "uri", p.src.redacted)
				}
			}
		case p.src.kind == srcLocalAbs || p.src.kind == srcLocalRel:
			hit = f.localUnchanged(p.src, e)
			validated = hit
		default:
			// No validator (hdfs, s3a, gs, or an http origin that sends
			// neither ETag nor Last-Modified): as in Mesos, a cached URI
			// is taken to be immutable.
			hit = true
		}
	}

	var entryPath string
	var entryMode fs.FileMode
	var size int64
	cached := true
	if hit {
		if err := c.touch(ctx, key, validated); err != nil {
			return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
		}
		entryPath, entryMode, size = c.entryPath(key), fs.FileMode(e.Mode), e.Size
		f.log.Info("cache hit", "uri", p.src.redacted, "bytes", size)
	} else {
		dlStart := time.Now()
		if d == nil || d.notModified {
			if stage == nil {
				if stage, err = c.newStaging(); err != nil {
					return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
				}
			}
			if d, err = f.download(ctx, p.src, stage.dir, nil); err != nil {
				return Result{}, err
			}
		}
		if d.dir {
			return Result{}, fmt.Errorf("%w: directories are not cached", errCacheUnusable)
		}
		sum, err := digestFile(d.path, p.src.sum)
		if err != nil {
			return Result{}, err
		}
		f.logDownload(p, d, dlStart)
		mode := fs.FileMode(0o644)
		if fi, err := os.Stat(d.path); err == nil {
			mode = fi.Mode().Perm()
		}
		if p.uri.Executable {
			mode = 0o755
		}
		if err := os.Chmod(d.path, mode); err != nil {
			return Result{}, err
		}
		ne := &cacheEntry{URI: p.src.redacted, Size: d.size, Mode: uint32(mode), SHA256: sum,
			ETag: d.etag, LastModified: d.lastModified, SrcSize: d.srcSize, SrcMtime: d.srcMtime}
		ok, err := c.insert(ctx, key, d.path, ne)
		if err != nil {
			return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
		}
		entryMode, size = mode, d.size
		if ok {
			entryPath = c.entryPath(key)
		} else {
			entryPath, cached = d.path, false
		}
	}

	// Mark the entry in use before letting go of its lock, so the evictor
	// cannot slip in between.
	if cached {
		use, err := lockFile(ctx, c.usePath(key), unix.LOCK_SH)
		if err != nil {
			return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
		}
		defer use.Close()
	}
	af, err := os.Open(entryPath)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
	}
	defer af.Close()
	lk.Close()
	locked = false

	res := Result{URI: p.src.redacted, Bytes: size, CacheHit: hit}
	kind := p.kind
	if kind == kindNone && p.sniff {
		kind = sniffKind(af)
	}
	if kind != kindNone {
		// As in Mesos, an archive from the cache is extracted into the
		// sandbox without a copy of the archive itself.
		n, err := f.extract(ctx, af, kind, p, sb)
		res.Extracted = n
		return res, err
	}
	want := entryMode
	if p.uri.Executable {
		want = 0o755
	}
	linked, err := linkOrCopy(sb, entryPath, entryMode, p.out, want)
	if err != nil {
		return Result{}, err
	}
	res.Path = p.out
	how := "copied"
	if linked {
		how = "hard-linked"
	}
	f.log.Info("placed from cache", "path", p.out, "how", how)
	return res, nil
}

// localUnchanged revalidates a local source by size and mtime.
func (f *Fetcher) localUnchanged(s *source, e *cacheEntry) bool {
	var fi fs.FileInfo
	var err error
	if s.kind == srcLocalRel {
		var root *os.Root
		if root, err = os.OpenRoot(f.cfg.FrameworksHome); err == nil {
			fi, err = root.Stat(s.path)
			root.Close()
		}
	} else {
		fi, err = os.Stat(s.path)
	}
	return err == nil && fi.Size() == e.SrcSize && fi.ModTime().UnixNano() == e.SrcMtime
}

// checkTreeSymlinks refuses a downloaded directory (a git checkout) that
// holds a symlink pointing outside itself, by the extractor's rule.
func checkTreeSymlinks(dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		target, err := root.Readlink(p)
		if err != nil {
			return err
		}
		if path.IsAbs(target) || !filepath.IsLocal(path.Join(path.Dir(p), target)) {
			return fmt.Errorf("downloaded tree has symlink %q -> %q pointing outside it: %w", p, target, errdefs.ErrForbidden)
		}
		return nil
	})
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
