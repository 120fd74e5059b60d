package fetcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
)

// The cache is shared by fetch child processes that know nothing of each
// other, so every decision is made under a file lock:
//
//	<cache_dir>/<user dir>/
//	  index.json        entries: key -> size, mode, sha256, ETag, Last-Modified, last use
//	  index.lock        flock(EX) around every read-modify-write of index.json
//	  entries/<key>        the cached file, read-only (0444, or 0555 when executable)
//	  entries/<key>.lock   flock(EX) while one fetch downloads, revalidates or stores the entry
//	  entries/<key>.use    flock(SH) while a fetch still reads the entry (copy, extraction)
//	  tmp/in-*             a copy being stored, renamed to entries/<key> when complete
//
// Downloads go to a staging directory in the fetching task's sandbox. Storing
// one copies it (a reflink where the filesystem has them) into tmp/, hashes
// the copy and renames it into entries/: the cache never shares an inode
// with a sandbox, so nothing a task does to its files reaches the cache. A
// hit hands out a copy the same way and checks the entry against its sha256
// as it copies.
//
// Ownership: the directories and files are the agent's (root's, on a real
// agent), directories 0755 and entries read-only. A fetch child that runs
// as a task user cannot write here; it asks the agent (broker.go) for every
// write and lock, and only reads entries itself.
//
// A fetch takes <key>.lock, so N concurrent fetches of one URI download it
// once: the first downloads, the others find a fresh entry when the lock
// comes to them. The evictor runs under index.lock and takes an entry's
// .lock and .use without blocking; an entry someone holds is skipped, so
// an entry in use is never evicted. Lock files are removed on eviction, and
// a locker checks that the file it locked is still the one at the path.
//
// Lock order: <key>.lock, then index.lock; the evictor only try-locks entry
// locks while holding index.lock, so no cycle can form.

// cacheStore is what a fetch needs from its user's cache directory. *cache
// works on the directory itself; *brokerClient asks the agent to.
type cacheStore interface {
	// lock takes key's entry lock, waiting until ctx ends.
	lock(ctx context.Context, key string) (unlock func(), err error)
	// get returns key's entry when its file is present and unchanged in
	// size and identity; the caller holds key's lock.
	get(ctx context.Context, key string) (*cacheEntry, error)
	// touch marks key used now, and validated now when validated is true.
	touch(ctx context.Context, key string, validated bool) error
	// use marks key's entry in use (its file is being read) until release.
	use(ctx context.Context, key string) (release func(), err error)
	// insert stores a copy of staged (a file in the sandbox sb) as key's
	// entry; false when it is larger than the whole cache. The store hashes
	// its own copy; e.SHA256 must match it. The caller holds key's lock.
	insert(ctx context.Context, key string, sb *os.Root, staged string, e *cacheEntry) (bool, error)
	// evictCorrupt drops key's entry when its recorded sha256 is still
	// sha, readers or not: its bytes are known bad.
	evictCorrupt(ctx context.Context, key, sha string) error
	// entryPath is where key's entry can be opened for reading.
	entryPath(key string) string
}

// cache is one user's cache directory.
type cache struct {
	dir      string
	capacity int64
	log      *slog.Logger
}

type cacheIndex struct {
	Version int                    `json:"version"`
	Entries map[string]*cacheEntry `json:"entries"`
}

type cacheEntry struct {
	// URI is the redacted value, for people reading the index.
	URI  string `json:"uri"`
	Size int64  `json:"size"`
	Mode uint32 `json:"mode"`
	// SHA256 settles checksum= revalidation without reading the file.
	SHA256       string `json:"sha256"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	// SrcSize and SrcMtime revalidate local sources.
	SrcSize  int64 `json:"src_size,omitempty"`
	SrcMtime int64 `json:"src_mtime,omitempty"`
	// ValidatedAt is when the entry last matched the origin (unix ns).
	ValidatedAt int64 `json:"validated_at"`
	// LastUsed orders eviction (unix ns).
	LastUsed int64 `json:"last_used"`
	// FileMtime and Inode detect a cached file changed behind our back,
	// for instance written through a hard link in a sandbox.
	FileMtime int64  `json:"file_mtime"`
	Inode     uint64 `json:"inode"`
}

// indexVersion 2: entries are private read-only copies checked by sha256.
// Version 1 entries were hard-linked into sandboxes and may have been
// written through; they are dropped, their files swept as orphans.
const indexVersion = 2

// userDirName keeps users apart: a task must never be handed a file another
// user's task could have written.
func userDirName(user string) (string, error) {
	if user == "" {
		return "shared", nil
	}
	if strings.ContainsAny(user, "/\x00") || user == "." || user == ".." {
		return "", fmt.Errorf("user %q cannot name a cache directory: %w", user, errdefs.ErrInvalid)
	}
	return filepath.Join("users", user), nil
}

func openCache(cfg Config, user string, log *slog.Logger) (*cache, error) {
	sub, err := userDirName(user)
	if err != nil {
		return nil, err
	}
	c := &cache{dir: filepath.Join(cfg.CacheDir, sub), capacity: cfg.CacheSize, log: log}
	if err := c.claim(); err != nil {
		return nil, err
	}
	for _, d := range []string{c.dir, filepath.Join(c.dir, "entries"), filepath.Join(c.dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("fetcher cache: %w", err)
		}
	}
	// Others may read entries but not write them; the temporary copies of
	// entries being stored are nobody's business.
	_ = os.Chmod(filepath.Join(c.dir, "tmp"), 0o700)
	return c, nil
}

// claim discards a user directory that the agent does not own: earlier
// versions handed each user's directory to that user, whose tasks could
// then have rewritten its entries. A cache is only a cache.
func (c *cache) claim() error {
	fi, err := os.Lstat(c.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("fetcher cache: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if fi.IsDir() && ok && int(st.Uid) == os.Geteuid() {
		return nil
	}
	c.log.Warn("fetcher cache directory not owned by the agent; discarding it", "dir", c.dir)
	// RemoveAll unlinks symlinks, never follows them.
	if err := os.RemoveAll(c.dir); err != nil {
		return fmt.Errorf("fetcher cache: discard a directory the agent does not own: %w", err)
	}
	return nil
}

func (c *cache) lock(ctx context.Context, key string) (func(), error) {
	f, err := lockFile(ctx, c.lockPath(key), unix.LOCK_EX)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

func (c *cache) use(ctx context.Context, key string) (func(), error) {
	f, err := lockFile(ctx, c.usePath(key), unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	return func() { f.Close() }, nil
}

func cacheKey(value string) string {
	s := sha256.Sum256([]byte(strings.TrimLeft(value, " \t\r\n")))
	return hex.EncodeToString(s[:16])
}

func (c *cache) entryPath(key string) string { return filepath.Join(c.dir, "entries", key) }
func (c *cache) lockPath(key string) string  { return c.entryPath(key) + ".lock" }
func (c *cache) usePath(key string) string   { return c.entryPath(key) + ".use" }
func (c *cache) indexPath() string           { return filepath.Join(c.dir, "index.json") }

// lockFile takes a flock on path, polling so that ctx can end the wait
// (flock itself cannot be interrupted). After locking it checks the path
// still names the locked file: the evictor may have removed it meanwhile.
func lockFile(ctx context.Context, path string, how int) (*os.File, error) {
	delay := time.Millisecond
	for {
		f, ok, err := tryLockFile(path, how)
		if err != nil || ok {
			return f, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for lock %s: %w", path, context.Cause(ctx))
		case <-time.After(delay):
		}
		delay = min(delay*2, 50*time.Millisecond)
	}
}

// tryLockFile takes a flock on path without waiting; ok is false when
// someone else holds a conflicting lock.
func tryLockFile(path string, how int) (f *os.File, ok bool, err error) {
	for {
		f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o444)
		if err != nil {
			return nil, false, err
		}
		for {
			err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
			if err != unix.EINTR {
				break
			}
		}
		if err == unix.EWOULDBLOCK {
			f.Close()
			return nil, false, nil
		}
		if err != nil {
			f.Close()
			return nil, false, fmt.Errorf("flock %s: %w", path, err)
		}
		if sameFile(f, path) {
			return f, true, nil
		}
		// Removed or replaced between open and lock: lock the new one.
		f.Close()
	}
}

func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Stat(path)
	return err == nil && os.SameFile(a, b)
}

// withIndex runs fn on the index under index.lock and writes it back when
// fn reports a change.
func (c *cache) withIndex(ctx context.Context, fn func(*cacheIndex) (bool, error)) error {
	lk, err := lockFile(ctx, filepath.Join(c.dir, "index.lock"), unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer lk.Close()
	idx := c.readIndex()
	changed, err := fn(idx)
	if err != nil || !changed {
		return err
	}
	return c.writeIndex(idx)
}

func (c *cache) readIndex() *cacheIndex {
	idx := &cacheIndex{Version: indexVersion, Entries: map[string]*cacheEntry{}}
	b, err := os.ReadFile(c.indexPath())
	if err != nil {
		return idx
	}
	var got cacheIndex
	if err := json.Unmarshal(b, &got); err != nil || got.Version != indexVersion {
		// Files left without an index entry are swept by the next eviction.
		c.log.Warn("fetcher cache index unreadable; starting empty", "path", c.indexPath(), "error", err)
		return idx
	}
	if got.Entries != nil {
		idx.Entries = got.Entries
	}
	return idx
}

// writeIndex replaces index.json atomically; callers hold index.lock.
func (c *cache) writeIndex(idx *cacheIndex) error {
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	tmp := c.indexPath() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write cache index: %w", err)
	}
	return os.Rename(tmp, c.indexPath())
}

func fileIdentity(fi fs.FileInfo) (mtime int64, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fi.ModTime().UnixNano(), ino
}

// get returns a copy of key's entry when its file is intact. An entry whose
// file is gone or changed is dropped. The caller holds key's lock.
func (c *cache) get(ctx context.Context, key string) (*cacheEntry, error) {
	var out *cacheEntry
	err := c.withIndex(ctx, func(idx *cacheIndex) (bool, error) {
		e := idx.Entries[key]
		if e == nil {
			return false, nil
		}
		p := c.entryPath(key)
		fi, err := os.Stat(p)
		if err == nil {
			mtime, ino := fileIdentity(fi)
			if fi.Mode().IsRegular() && fi.Size() == e.Size && mtime == e.FileMtime && ino == e.Inode {
				if want := entryPerm(e.Mode); fi.Mode().Perm() != want {
					_ = os.Chmod(p, want)
				}
				cp := *e
				out = &cp
				return false, nil
			}
			c.log.Warn("fetcher cache entry changed on disk; dropping it", "uri", e.URI)
			_ = os.Remove(p)
		}
		delete(idx.Entries, key)
		return true, nil
	})
	return out, err
}

// touch marks key used now, and validated now when validated is true.
func (c *cache) touch(ctx context.Context, key string, validated bool) error {
	return c.withIndex(ctx, func(idx *cacheIndex) (bool, error) {
		e := idx.Entries[key]
		if e == nil {
			return false, nil
		}
		now := time.Now().UnixNano()
		e.LastUsed = now
		if validated {
			e.ValidatedAt = now
		}
		return true, nil
	})
}

// entryPerm is an entry file's mode: read-only, executable when the
// fetched file was.
func entryPerm(mode uint32) fs.FileMode { return fs.FileMode(mode).Perm() &^ 0o222 }

// insert stores a private copy of the staged file as key's entry (see
// cacheStore). The staged file is opened through the sandbox's root, never
// through a link, and a FIFO cannot block the open.
func (c *cache) insert(ctx context.Context, key string, sb *os.Root, staged string, e *cacheEntry) (bool, error) {
	src, err := sb.OpenFile(staged, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return false, fmt.Errorf("open the download: %w", classifyFS(err))
	}
	defer src.Close()
	fi, err := src.Stat()
	if err != nil {
		return false, err
	}
	if !fi.Mode().IsRegular() {
		return false, fmt.Errorf("the download is not a regular file: %w", errdefs.ErrInvalid)
	}
	size := fi.Size()
	if size > c.capacity {
		c.log.Info("artifact larger than the fetcher cache; not caching it", "uri", e.URI, "bytes", size, "cache_size", c.capacity)
		return false, nil
	}
	c.sweepTmp()
	tmp, err := os.CreateTemp(filepath.Join(c.dir, "tmp"), "in-")
	if err != nil {
		return false, fmt.Errorf("fetcher cache: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := cloneFile(tmp, src, size); err != nil {
		return false, fmt.Errorf("fetcher cache: copy the download: %w", err)
	}
	// The sha256 recorded is that of our copy, whatever the staged file
	// holds by now.
	sum, err := hashFile(tmp, size)
	if err != nil {
		return false, err
	}
	if e.SHA256 != "" && e.SHA256 != sum {
		return false, fmt.Errorf("the download changed while it was stored (sha256 %s, then %s): %w", e.SHA256, sum, errdefs.ErrConflict)
	}
	if err := tmp.Chmod(entryPerm(e.Mode)); err != nil {
		return false, err
	}
	if err := tmp.Sync(); err != nil {
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	e.Size, e.SHA256 = size, sum
	err = c.withIndex(ctx, func(idx *cacheIndex) (bool, error) {
		p := c.entryPath(key)
		if err := os.Rename(tmp.Name(), p); err != nil {
			return false, fmt.Errorf("fetcher cache: %w", err)
		}
		done = true
		fi, err := os.Stat(p)
		if err != nil {
			return false, err
		}
		e.FileMtime, e.Inode = fileIdentity(fi)
		now := time.Now().UnixNano()
		e.LastUsed, e.ValidatedAt = now, now
		idx.Entries[key] = e
		c.evictLocked(idx, key)
		return true, nil
	})
	return err == nil, err
}

// hashFile is the sha256 of f's first size bytes, in hex.
func hashFile(f *os.File, size int64) (string, error) {
	s := sha256.New()
	if _, err := io.CopyBuffer(s, io.NewSectionReader(f, 0, size), make([]byte, 1<<20)); err != nil {
		return "", fmt.Errorf("fetcher cache: hash the copy: %w", err)
	}
	return hex.EncodeToString(s.Sum(nil)), nil
}

// sweepTmp removes copies left by a crash while storing: older than an
// hour, long past any copy in progress.
func (c *cache) sweepTmp() {
	tmp := filepath.Join(c.dir, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > time.Hour {
			_ = os.RemoveAll(filepath.Join(tmp, e.Name()))
		}
	}
}

// evictCorrupt drops key's entry if it still records sha (see cacheStore).
// Readers keep their open file; the next fetch downloads again.
func (c *cache) evictCorrupt(ctx context.Context, key, sha string) error {
	return c.withIndex(ctx, func(idx *cacheIndex) (bool, error) {
		e := idx.Entries[key]
		if e == nil || e.SHA256 != sha {
			return false, nil
		}
		delete(idx.Entries, key)
		_ = os.Remove(c.entryPath(key))
		c.log.Warn("evicted corrupt fetcher cache entry", "uri", e.URI, "sha256", sha)
		return true, nil
	})
}

// evictLocked drops least recently used entries until the budget holds,
// skipping keep and every entry someone has locked, and sweeps files that
// have no index entry. The caller holds index.lock.
func (c *cache) evictLocked(idx *cacheIndex, keep string) {
	c.sweepOrphans(idx)
	var total int64
	keys := make([]string, 0, len(idx.Entries))
	for k, e := range idx.Entries {
		total += e.Size
		keys = append(keys, k)
	}
	if total <= c.capacity {
		return
	}
	sort.Slice(keys, func(i, j int) bool { return idx.Entries[keys[i]].LastUsed < idx.Entries[keys[j]].LastUsed })
	for _, k := range keys {
		if total <= c.capacity {
			break
		}
		if k == keep {
			continue
		}
		if c.tryEvict(k) {
			e := idx.Entries[k]
			total -= e.Size
			delete(idx.Entries, k)
			c.log.Info("evicted from fetcher cache", "uri", e.URI, "bytes", e.Size)
		}
	}
	if total > c.capacity {
		c.log.Warn("fetcher cache over budget: remaining entries are in use", "bytes", total, "cache_size", c.capacity)
	}
}

func (c *cache) tryEvict(k string) bool {
	lk, ok, err := tryLockFile(c.lockPath(k), unix.LOCK_EX)
	if err != nil || !ok {
		return false
	}
	defer lk.Close()
	use, ok, err := tryLockFile(c.usePath(k), unix.LOCK_EX)
	if err != nil || !ok {
		return false
	}
	defer use.Close()
	_ = os.Remove(c.entryPath(k))
	_ = os.Remove(c.lockPath(k))
	_ = os.Remove(c.usePath(k))
	return true
}

// sweepOrphans removes cached files that no index entry names (a crash
// between rename and index write, or an unreadable index).
func (c *cache) sweepOrphans(idx *cacheIndex) {
	ents, err := os.ReadDir(filepath.Join(c.dir, "entries"))
	if err != nil {
		return
	}
	for _, e := range ents {
		name := e.Name()
		if strings.HasSuffix(name, ".lock") || strings.HasSuffix(name, ".use") {
			continue
		}
		if _, ok := idx.Entries[name]; ok {
			continue
		}
		if c.tryEvict(name) {
			c.log.Info("removed unindexed fetcher cache file", "file", name)
		}
	}
}

// CacheUsage is what the fetcher cache holds on disk.
type CacheUsage struct {
	Entries int
	Bytes   int64
}

// ReadCacheUsage sums the indexes under --fetcher_cache_dir (every user's
// directory). It takes no lock: index files are replaced atomically, so a
// reader sees one consistent version. A missing directory is an empty cache.
func ReadCacheUsage(cacheDir string) (CacheUsage, error) {
	var u CacheUsage
	var dirs []string
	dirs = append(dirs, filepath.Join(cacheDir, "shared"))
	users, err := os.ReadDir(filepath.Join(cacheDir, "users"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return u, err
	}
	for _, d := range users {
		dirs = append(dirs, filepath.Join(cacheDir, "users", d.Name()))
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "index.json"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return u, err
		}
		var idx cacheIndex
		if err := json.Unmarshal(b, &idx); err != nil {
			continue
		}
		for _, e := range idx.Entries {
			u.Entries++
			u.Bytes += e.Size
		}
	}
	return u, nil
}
