package fetcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
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
//	  entries/<key>        the cached file
//	  entries/<key>.lock   flock(EX) while one fetch downloads, revalidates or links the entry
//	  entries/<key>.use    flock(SH) while a fetch still reads the entry (extraction)
//	  tmp/dl-*/            downloads in progress, each with a `lock` held by its owner
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

const indexVersion = 1

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
	for _, d := range []string{c.dir, filepath.Join(c.dir, "entries"), filepath.Join(c.dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("fetcher cache: %w", err)
		}
	}
	return c, nil
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
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
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
			if fi.Size() == e.Size && mtime == e.FileMtime && ino == e.Inode {
				if uint32(fi.Mode().Perm()) != e.Mode {
					// chmod through a sandbox hard link; put it back.
					_ = os.Chmod(p, fs.FileMode(e.Mode))
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

// staging is a download directory under tmp/ whose lock tells the sweeper
// its owner is alive.
type staging struct {
	dir  string
	lock *os.File
}

func (s *staging) close() {
	_ = os.RemoveAll(s.dir)
	s.lock.Close()
}

func (c *cache) newStaging() (*staging, error) {
	c.sweepStaging()
	dir, err := os.MkdirTemp(filepath.Join(c.dir, "tmp"), "dl-")
	if err != nil {
		return nil, fmt.Errorf("fetcher cache: %w", err)
	}
	lk, ok, err := tryLockFile(filepath.Join(dir, "lock"), unix.LOCK_EX)
	if err != nil || !ok {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("fetcher cache: lock staging dir: %v", err)
	}
	return &staging{dir: dir, lock: lk}, nil
}

// sweepStaging removes downloads left by crashed fetches: directories older
// than a minute (younger ones may not have taken their lock yet) whose lock
// nobody holds.
func (c *cache) sweepStaging() {
	tmp := filepath.Join(c.dir, "tmp")
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil || time.Since(fi.ModTime()) < time.Minute {
			continue
		}
		d := filepath.Join(tmp, e.Name())
		lk, ok, err := tryLockFile(filepath.Join(d, "lock"), unix.LOCK_EX)
		if err != nil || !ok {
			continue
		}
		_ = os.RemoveAll(d)
		lk.Close()
	}
}

// insert moves a finished download into the cache and evicts what the
// budget requires. It returns false, leaving file alone, when the file
// alone is larger than the whole cache. The caller holds key's lock.
func (c *cache) insert(ctx context.Context, key, file string, e *cacheEntry) (bool, error) {
	if e.Size > c.capacity {
		c.log.Info("artifact larger than the fetcher cache; not caching it", "uri", e.URI, "bytes", e.Size, "cache_size", c.capacity)
		return false, nil
	}
	if f, err := os.Open(file); err == nil {
		_ = f.Sync()
		f.Close()
	}
	err := c.withIndex(ctx, func(idx *cacheIndex) (bool, error) {
		p := c.entryPath(key)
		if err := os.Rename(file, p); err != nil {
			return false, fmt.Errorf("fetcher cache: %w", err)
		}
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
