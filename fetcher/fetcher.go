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

	// onSpawn, when set, is told the pid (and process group) of every
	// helper process started in a group of its own.
	onSpawn func(pid int)
	// onBytes, when set, is told every progressInterval how many bytes of
	// how many (-1: unknown) a download has received.
	onBytes func(done, total int64)
	// broker, when set, does the cache's writes: the agent, as root, for a
	// child that runs as the task user (see broker.go).
	broker *brokerClient
}

// New returns a Fetcher for cfg. A nil logger discards.
func New(cfg Config, log *slog.Logger) *Fetcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Fetcher{cfg: cfg, log: log.With("component", "fetcher"), client: newHTTPClient(cfg.CAFile)}
}

// Fetch fetches every URI of req in order and stops at the first failure,
// which it returns as a *URIError. Results cover the URIs fetched so far.
func (f *Fetcher) Fetch(ctx context.Context, req Request) ([]Result, error) {
	return f.fetchAll(ctx, req, nil)
}

// event is what the child reports to its parent for each URI.
type event struct {
	Type   string  `json:"type"` // "ready" (waiting for the request), "start", "spawn", "progress" or "done"
	URI    string  `json:"uri"`
	Result *Result `json:"result,omitempty"`
	Error  string  `json:"error,omitempty"`
	Class  string  `json:"class,omitempty"`
	// Pid is a helper's process group, for "spawn" events.
	Pid int `json:"pid,omitempty"`
	// Bytes received of Total (-1: unknown), for "progress" events.
	Bytes int64 `json:"bytes,omitempty"`
	Total int64 `json:"total,omitempty"`
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
		// The error names the host path; the status the task gets does not.
		f.log.Error("cannot open the sandbox", "sandbox", req.SandboxDir, "error", err.Error())
		return nil, fmt.Errorf("cannot open the sandbox: %w", errdefs.ErrNotFound)
	}
	defer sb.Close()

	bud := newBudget(f.cfg, req)
	results := make([]Result, 0, len(req.URIs))
	for _, u := range req.URIs {
		shown := redactValue(u.Value)
		notify(event{Type: "start", URI: shown})
		f.log.Info("fetching URI", "uri", shown, "output_file", u.OutputFile,
			"executable", u.Executable, "extract", u.Extract, "cache", u.Cache)
		start := time.Now()
		res, err := f.fetchOne(ctx, sb, req.User, u, bud)
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

func (f *Fetcher) fetchOne(ctx context.Context, sb *os.Root, user string, u URI, bud *budget) (Result, error) {
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
		res, err := f.fetchCached(ctx, sb, user, p, bud)
		if !errors.Is(err, errCacheUnusable) {
			return res, err
		}
		// Mesos falls back to fetching directly when the cache fails.
		f.log.Warn("fetcher cache unusable; fetching directly into the sandbox", "uri", src.redacted, "error", err.Error())
	}
	return f.fetchDirect(ctx, sb, p, bud)
}

var errCacheUnusable = errors.New("fetcher cache unusable")

// stagingPrefix names the hidden directory a fetch downloads into.
const stagingPrefix = ".mesolite-fetch-"

// stage is a staging directory inside the sandbox: one filesystem with the
// sandbox, so the final move is a rename, and removed by the agent if the
// child is killed before it can remove it itself.
type stage struct {
	sb  *os.Root
	rel string // the directory, relative to the sandbox
	abs string
}

func newStage(sb *os.Root) (*stage, error) {
	rel := stagingPrefix + randHex(6)
	if err := sb.Mkdir(rel, 0o700); err != nil {
		return nil, fmt.Errorf("create staging directory: %w", classifyFS(err))
	}
	return &stage{sb: sb, rel: rel, abs: filepath.Join(sb.Name(), rel)}, nil
}

func (s *stage) data() string { return filepath.Join(s.rel, "data") }

func (s *stage) remove() {
	if s != nil {
		_ = s.sb.RemoveAll(s.rel)
	}
}

// fetchDirect downloads into a staging directory, then places and extracts.
func (f *Fetcher) fetchDirect(ctx context.Context, sb *os.Root, p *plan, bud *budget) (Result, error) {
	st, err := newStage(sb)
	if err != nil {
		return Result{}, err
	}
	defer st.remove()

	start := time.Now()
	d, err := f.download(ctx, p.src, st.abs, nil, bud)
	if err != nil {
		return Result{}, err
	}
	if !d.dir && p.src.sum != nil {
		if _, err := digestFile(d.path, p.src.sum); err != nil {
			return Result{}, err
		}
	}
	f.logDownload(p, d, start)
	return f.finishStaged(ctx, sb, p, st, d, bud, false)
}

// finishStaged moves a verified download from its stage into the sandbox
// and extracts it. keepArchiveOut, for downloads that went to the cache,
// extracts an archive without placing the archive itself, as Mesos does
// for archives it extracts from its cache.
func (f *Fetcher) finishStaged(ctx context.Context, sb *os.Root, p *plan, st *stage, d *download, bud *budget, keepArchiveOut bool) (Result, error) {
	res := Result{URI: p.src.redacted, Bytes: d.size}
	staged := st.data()
	if d.dir {
		if err := checkTreeSymlinks(d.path); err != nil {
			return Result{}, err
		}
		if err := f.place(sb, staged, p.out); err != nil {
			return Result{}, err
		}
		bud.charge(d.size)
		res.Path = p.out
		return res, nil
	}
	mode, err := finalMode(sb, staged, p.uri.Executable)
	if err != nil {
		return Result{}, err
	}
	if err := sb.Chmod(staged, mode); err != nil {
		return Result{}, fmt.Errorf("chmod: %w", classifyFS(err))
	}
	kind := p.kind
	if kind == kindNone && p.sniff {
		kind = sniffIn(sb, staged)
	}
	if kind == kindNone {
		if err := f.place(sb, staged, p.out); err != nil {
			return Result{}, err
		}
		bud.charge(d.size)
		res.Path = p.out
		if p.uri.Extract && !p.uri.Executable {
			f.log.Info("not an archive; kept as is", "path", p.out)
		}
		return res, nil
	}
	af, err := sb.OpenFile(staged, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return Result{}, fmt.Errorf("open %q: %w", p.out, classifyFS(err))
	}
	defer af.Close()
	// The archive joins the sandbox with what it extracts to, just before
	// it (an entry of the same name still wins, as when Mesos extracts in
	// place): a fetch killed while extracting leaves neither.
	var placeArchive func() error
	if !keepArchiveOut {
		bud.charge(d.size)
		res.Path = p.out
		placeArchive = func() error { return f.place(sb, staged, p.out) }
	}
	n, err := f.extract(ctx, af, kind, p, sb, bud, placeArchive)
	res.Extracted = n
	return res, err
}

func (f *Fetcher) logDownload(p *plan, d *download, start time.Time) {
	f.log.Info("downloaded", "uri", p.src.redacted, "via", p.src.kind.String(), "bytes", d.size,
		"duration", time.Since(start).Round(time.Millisecond))
}

// extract unpacks af into the sandbox within what the request's budget has
// left, and charges what it wrote.
// beforeCommit, when not nil, runs once the archive is extracted into its
// staging directory and before anything is moved into the sandbox; an
// error from it fails the extraction.
func (f *Fetcher) extract(ctx context.Context, af *os.File, kind archiveKind, p *plan, sb *os.Root, bud *budget, beforeCommit func() error) (int, error) {
	start := time.Now()
	lim := f.cfg.extractLimits()
	if rem := bud.remaining(); rem < lim.maxBytes {
		lim.maxBytes, lim.over = rem, bud.exceeded
	}
	st, err := extractArchive(ctx, af, kind, p.gzName, sb, lim, beforeCommit)
	if err != nil {
		return 0, fmt.Errorf("extract %s archive %q: %w", kind, p.out, err)
	}
	bud.charge(st.bytes)
	f.log.Info("extracted archive", "archive", p.out, "type", kind.String(),
		"entries", st.entries, "bytes", st.bytes, "duration", time.Since(start).Round(time.Millisecond))
	return st.entries, nil
}

func sniffIn(sb *os.Root, name string) archiveKind {
	af, err := sb.OpenFile(name, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
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

// errEntryCorrupt marks a cache entry whose bytes no longer match the
// sha256 recorded when it was stored; it has been evicted.
var errEntryCorrupt = errors.New("fetcher cache entry does not match its recorded sha256")

// fetchCached serves a URI through the cache (see cache.go for the locking).
// A hit is a private copy of the entry, verified against the entry's
// sha256 as it is made: nothing a task does to its copy reaches the cache
// or another task. An entry found corrupt is evicted and fetched again
// once. Errors that concern the cache itself come back wrapping
// errCacheUnusable so the caller can fall back to a direct fetch.
func (f *Fetcher) fetchCached(ctx context.Context, sb *os.Root, user string, p *plan, bud *budget) (Result, error) {
	st, err := f.openStore(user)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
	}
	res, err := f.fetchCachedOnce(ctx, sb, st, p, bud, false)
	if errors.Is(err, errEntryCorrupt) {
		res, err = f.fetchCachedOnce(ctx, sb, st, p, bud, true)
	}
	return res, err
}

func (f *Fetcher) fetchCachedOnce(ctx context.Context, sb *os.Root, c cacheStore, p *plan, bud *budget, refetch bool) (Result, error) {
	start := time.Now()
	key := cacheKey(p.uri.Value)
	unlock, err := c.lock(ctx, key)
	if err != nil {
		if ctx.Err() != nil {
			return Result{}, err
		}
		return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
	}
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()

	var e *cacheEntry
	if !refetch {
		if e, err = c.get(ctx, key); err != nil {
			return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
		}
	}
	var stg *stage
	defer func() { stg.remove() }()
	hit, validated := false, false
	// unchecked is the checksum= a hit still has to check.
	unchecked := p.src.sum
	var d *download
	if e != nil {
		switch {
		case e.ValidatedAt >= start.UnixNano():
			// Validated after this fetch began (by the fetch we waited
			// for): as fresh as asking the origin again.
			hit = true
		case p.src.sum != nil:
			match, decided := p.src.sum.matchesSHA256(e.SHA256)
			if !decided {
				match = f.entryMatches(c.entryPath(key), e, p.src.sum)
			}
			hit, validated, unchecked = match, match, nil
		case p.src.kind == srcHTTP && (e.ETag != "" || e.LastModified != ""):
			if stg, err = newStage(sb); err != nil {
				return Result{}, err
			}
			d, err = f.download(ctx, p.src, stg.abs, &conditional{etag: e.ETag, lastModified: e.LastModified}, bud)
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

	if hit {
		if err := c.touch(ctx, key, validated); err != nil {
			return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
		}
		// Mark the entry in use before letting go of its lock, so the
		// evictor cannot slip in between.
		release, err := c.use(ctx, key)
		if err != nil {
			return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
		}
		defer release()
		af, err := openEntry(c.entryPath(key))
		if err != nil {
			return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
		}
		defer af.Close()
		unlock()
		locked = false
		res, err := f.placeFromCache(ctx, sb, af, e, p, unchecked, bud)
		if errors.Is(err, errEntryCorrupt) {
			f.log.Error("fetcher cache entry corrupt; evicting it and fetching again", "uri", p.src.redacted, "error", err.Error())
			var ino uint64
			if st, err := statStamp(af); err == nil {
				ino = st.Ino
			}
			if eerr := c.evictCorrupt(ctx, key, e.SHA256, ino); eerr != nil {
				return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, eerr)
			}
		}
		return res, err
	}

	dlStart := time.Now()
	if d == nil || d.notModified {
		stg.remove()
		if stg, err = newStage(sb); err != nil {
			return Result{}, err
		}
		if d, err = f.download(ctx, p.src, stg.abs, nil, bud); err != nil {
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
	mode, err := finalMode(sb, stg.data(), p.uri.Executable)
	if err != nil {
		return Result{}, err
	}
	ne := &cacheEntry{URI: p.src.redacted, Size: d.size, Mode: uint32(mode), SHA256: sum,
		ETag: d.etag, LastModified: d.lastModified, SrcSize: d.srcSize, SrcMtime: d.srcMtime}
	if _, err := c.insert(ctx, key, sb, stg.data(), ne); err != nil {
		// The download itself is good: the task gets it, the cache does not.
		f.log.Warn("cannot store the download in the fetcher cache", "uri", p.src.redacted, "error", err.Error())
	}
	unlock()
	locked = false
	return f.finishStaged(ctx, sb, p, stg, d, bud, true)
}

// entryMatches reports whether the entry at path matches c, a checksum
// that the recorded sha256 cannot settle. Whether the bytes are still
// the entry's is placeFromCache's to check.
func (f *Fetcher) entryMatches(path string, e *cacheEntry, c *checksum) bool {
	af, err := openEntry(path)
	if err != nil {
		return false
	}
	defer af.Close()
	return verifyEntry(af, e, c, false) == nil
}

// openEntry opens a cache entry for reading; never through a link, and a
// FIFO put in its place cannot block the open.
func openEntry(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("fetcher cache entry is not a regular file: %w", errdefs.ErrInvalid)
	}
	return f, nil
}

// placeFromCache gives the sandbox its own copy of an entry (a reflink
// where the filesystem has them, else copy_file_range), or extracts the
// entry when it is an archive. The bytes handed out are the entry's as
// last hashed: when the open file's stamp is the entry's trusted one (see
// "Trusting a stamp" in cache.go) they are not read again, otherwise they
// are hashed in the same pass as the copy (before an extraction). sum is
// the URI's checksum= still to check. A stamp that changes while the
// entry is read fails the hit as corrupt.
func (f *Fetcher) placeFromCache(ctx context.Context, sb *os.Root, af *os.File, e *cacheEntry, p *plan, sum *checksum, bud *budget) (Result, error) {
	res := Result{URI: p.src.redacted, Bytes: e.Size, CacheHit: true}
	if e.Size > bud.remaining() {
		return Result{}, bud.exceeded(fmt.Sprintf("cached artifact %s is %d bytes", p.src.redacted, e.Size))
	}
	st, err := statStamp(af)
	if err != nil {
		return Result{}, fmt.Errorf("%w: %v", errCacheUnusable, err)
	}
	full := !e.trusts(st)
	check := "stamp"
	if full {
		check = "sha256"
	}
	f.log.Info("cache hit", "uri", p.src.redacted, "bytes", e.Size, "checked_by", check)
	unchanged := func() error {
		after, err := statStamp(af)
		if err == nil && after != st {
			err = fmt.Errorf("%w: it changed while it was read", errEntryCorrupt)
		}
		return err
	}
	kind := p.kind
	if kind == kindNone && p.sniff {
		kind = sniffKind(af)
	}
	if kind != kindNone {
		// Checked first, so what is extracted is what was checked.
		if err := verifyEntry(af, e, sum, full); err != nil {
			return Result{}, err
		}
		n, err := f.extract(ctx, af, kind, p, sb, bud, unchanged)
		res.Extracted = n
		return res, err
	}
	mode := fs.FileMode(e.Mode).Perm()
	if p.uri.Executable {
		mode = 0o755
	}
	if err := prepareDest(sb, p.out); err != nil {
		return Result{}, err
	}
	w, err := sb.OpenFile(p.out, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return Result{}, fmt.Errorf("create %q: %w", p.out, classifyFS(err))
	}
	verified := make(chan error, 1)
	go func() { verified <- verifyEntry(af, e, sum, full) }()
	how, err := cloneFile(w, af, e.Size)
	verr := <-verified
	if verr == nil {
		if verr = unchanged(); errors.Is(verr, errEntryCorrupt) {
			// Changed, replaced or evicted (an unlink moves ctime too)
			// while it was copied: the copy stands if its own bytes are
			// the entry's.
			f.log.Warn("cache entry changed while it was copied; checking the copy", "uri", p.src.redacted)
			verr = verifyCopy(sb, p.out, e, sum)
		}
	}
	if err == nil {
		err = w.Chmod(mode)
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = verr
	}
	if err != nil {
		_ = sb.Remove(p.out)
		if errors.Is(err, errEntryCorrupt) {
			return Result{}, err
		}
		return Result{}, fmt.Errorf("copy into %q: %w", p.out, classifyFS(err))
	}
	bud.charge(e.Size)
	res.Path = p.out
	f.log.Info("placed from cache", "path", p.out, "how", how)
	return res, nil
}

// verifyCopy checks the copy of an entry at out against the entry's
// sha256 and sum.
func verifyCopy(sb *os.Root, out string, e *cacheEntry, sum *checksum) error {
	cf, err := sb.OpenFile(out, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer cf.Close()
	return verifyEntry(cf, e, sum, true)
}

// cloneFile copies src's first size bytes into the empty file dst: a
// reflink (FICLONE) where the filesystem shares extents, else
// copy_file_range (io.Copy from an *os.File, or a LimitedReader of one,
// uses it), else plain reads and writes. All are private copies: writes
// to dst never reach src. src must be at offset 0; readers running beside
// it use pread.
func cloneFile(dst, src *os.File, size int64) (string, error) {
	if err := unix.IoctlFileClone(int(dst.Fd()), int(src.Fd())); err == nil {
		return "reflinked", nil
	}
	n, err := io.Copy(dst, io.LimitReader(src, size))
	if err == nil && n != size {
		err = fmt.Errorf("copied %d of %d bytes: %w", n, size, io.ErrUnexpectedEOF)
	}
	return "copied", err
}

// openStore is the cache of user's fetches: through the agent when the
// agent brokers this child's cache writes, else the directory itself.
func (f *Fetcher) openStore(user string) (cacheStore, error) {
	if f.broker != nil {
		return f.broker, nil
	}
	return openCache(f.cfg, user, f.log)
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
