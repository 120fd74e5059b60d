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
// hit hands out a copy the same way, of bytes known to match the entry's
// sha256: by its stamp, or by hashing them again (see "Trusting a stamp").
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
// locks while holding index.lock, so no cycle can form. Nothing reads a
// whole entry under index.lock.
//
// Trusting a stamp. A hit must never hand out bytes that differ from the
// sha256 recorded for them, but hashing 100 MB costs ~100 ms where the
// reflinked copy costs ~0.1 ms. The bytes need hashing only when they may
// have changed since they were last hashed, and every change to a file's
// bytes (write, truncate, fallocate, a clone or copy_file_range onto it,
// the first write to a clean page of a writable mapping) sets the inode's
// ctime to the current time, as do chmod, chown, link, unlink and utimes.
// No system call sets ctime to a chosen value: utimensat, which puts an
// mtime back, moves ctime to now. So whenever the agent hashes an entry it
// records the file's stamp (device, inode, size, ctime in ns, mode,
// owner), taken before the hash began, and a hit whose open file shows the
// same stamp trusts the recorded sha256 (and compares a sha256 checksum=
// with it); any difference means a rehash. A new file at the same inode
// number has a new ctime too. Two details keep this sound:
//
//   - ctime moves in ticks: the kernel's coarse clock (1-10 ms) and the
//     filesystem's granularity (1 ns on xfs, btrfs, tmpfs and ext4 with
//     256-byte inodes, 1 s with 128-byte ones). A change within the tick
//     of the previous one leaves ctime where it was. A stamp is therefore
//     trusted only when its ctime is at least ctimeSettle older than the
//     start of the hash that recorded it: any change after that start
//     lands on a later tick and a later second, so it shows. An entry
//     stored or changed less than ctimeSettle ago is hashed by each reader
//     as it copies (the per-hit check of before), and the first check
//     after that records a stamp that can be trusted.
//   - Some changes escape ctime: a disk or controller corrupting a block,
//     writes to the block device, the filesystem edited while unmounted,
//     the clock set back to the nanosecond, later writes to an already
//     dirty page of a writable mapping. All need root (entries are root's,
//     read-only, and made in a directory only root can enter) or the
//     hardware. Against them an entry is also rehashed in full when its
//     last hash is older than fullCheckEvery.
//
// The stamp is read with fstat on the descriptor that is copied, and again
// after the copy or extraction: bytes changed while they were read fail
// the hit like a corrupt entry.

// cacheStore is what a fetch needs from its user's cache directory. *cache
// works on the directory itself; *brokerClient asks the agent to.
type cacheStore interface {
	// lock takes key's entry lock, waiting until ctx ends.
	lock(ctx context.Context, key string) (unlock func(), err error)
	// get returns key's entry, checked as cache.check describes: nil when
	// its file is gone, changed size or owner, or was found not to match
	// its sha256 (then evicted). The caller holds key's lock.
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
	// sha and its file the inode ino that was found bad (0: any), readers
	// or not: its bytes are known bad, a replacement's are not.
	evictCorrupt(ctx context.Context, key, sha string, ino uint64) error
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
	// Stamp is the entry's file as it was when a hash of its bytes that
	// began at CheckedAt (unix ns) matched SHA256; see "Trusting a
	// stamp" above.
	Stamp     fileStamp `json:"stamp"`
	CheckedAt int64     `json:"checked_at"`
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

// fileStamp is what fstat says of an entry's file; see "Trusting a stamp".
type fileStamp struct {
	Dev   uint64 `json:"dev"`
	Ino   uint64 `json:"ino"`
	Size  int64  `json:"size"`
	Ctime int64  `json:"ctime_ns"`
	Mode  uint32 `json:"mode"` // st_mode: type and permission bits
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
}

func stampOf(fi fs.FileInfo) fileStamp {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileStamp{}
	}
	return fileStamp{Dev: st.Dev, Ino: st.Ino, Size: st.Size, Ctime: st.Ctim.Nano(),
		Mode: st.Mode, UID: st.Uid, GID: st.Gid}
}

func statStamp(f *os.File) (fileStamp, error) {
	fi, err := f.Stat()
	if err != nil {
		return fileStamp{}, err
	}
	return stampOf(fi), nil
}

var (
	// ctimeSettle is how much older than the hash that recorded it a
	// stamp's ctime must be for the stamp to be trusted: past a tick of
	// the coarse clock and a second of a filesystem with 1 s timestamps,
	// with room for both. A variable so that tests need not wait 2 s.
	ctimeSettle = 2 * time.Second
	// fullCheckEvery bounds how long a change that ctime does not show
	// can be served. One full pass over a full 2 GB cache is ~2 s of one
	// core at ~1 GB/s, 0.01% of a core every 6 hours; the hit that takes
	// an entry's turn pays what every hit paid before (~100 ms per
	// 100 MB), a few times a day.
	fullCheckEvery = 6 * time.Hour
)

// trusts reports whether e's recorded sha256 holds, without reading the
// file, for a file whose fstat shows st (see "Trusting a stamp").
func (e *cacheEntry) trusts(st fileStamp) bool {
	return e.Stamp.Ino != 0 && st == e.Stamp && e.Stamp.Ctime+ctimeSettle.Nanoseconds() < e.CheckedAt
}

// get returns a copy of key's entry when its file is intact (see
// cacheStore). The entry is checked outside index.lock: the caller's entry
// lock keeps the evictor and other fetches of key away meanwhile.
func (c *cache) get(ctx context.Context, key string) (*cacheEntry, error) {
	var e *cacheEntry
	err := c.withIndex(ctx, func(idx *cacheIndex) (bool, error) {
		if got := idx.Entries[key]; got != nil {
			cp := *got
			e = &cp
		}
		return false, nil
	})
	if err != nil || e == nil {
		return nil, err
	}
	return c.check(ctx, key, e)
}

// check decides what a hit on e may rely on. An entry whose file is gone,
// is no longer a regular file of the agent's, or changed size is dropped.
// One whose stamp is trusted and whose last hash is recent is returned as
// it is: the reader copies it without hashing. Otherwise the entry is
// hashed now if its ctime has settled: a mismatch evicts it (nil, a miss:
// the caller fetches again), a match records the stamp the hash began
// with. An entry changed too recently for that is returned with the stamp
// it had, which the reader's file will not match: the reader hashes it as
// it copies.
func (c *cache) check(ctx context.Context, key string, e *cacheEntry) (*cacheEntry, error) {
	p := c.entryPath(key)
	f, err := openEntry(p)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("fetcher cache entry is not a regular file; dropping it", "uri", e.URI)
			_ = os.Remove(p)
		}
		return nil, c.drop(ctx, key, e.SHA256)
	}
	defer f.Close()
	st, err := statStamp(f)
	if err != nil {
		return nil, err
	}
	if st.Size != e.Size || int(st.UID) != os.Geteuid() {
		c.log.Warn("fetcher cache entry changed size or owner on disk; dropping it", "uri", e.URI)
		_ = os.Remove(p)
		return nil, c.drop(ctx, key, e.SHA256)
	}
	if want := entryPerm(e.Mode); fs.FileMode(st.Mode).Perm() != want {
		// Someone made it writable, or changed its mode otherwise: put it
		// back. The chmod moves ctime, so the bytes are hashed below or
		// by the reader.
		if err := f.Chmod(want); err != nil {
			return nil, err
		}
		if st, err = statStamp(f); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	if e.trusts(st) && start.UnixNano()-e.CheckedAt < fullCheckEvery.Nanoseconds() {
		return e, nil
	}
	if st.Ctime+ctimeSettle.Nanoseconds() >= start.UnixNano() {
		return e, nil
	}
	sum, err := hashFile(f, e.Size)
	if err != nil {
		return nil, err
	}
	if sum != e.SHA256 {
		c.log.Error("fetcher cache entry does not match its recorded sha256", "uri", e.URI,
			"recorded", e.SHA256, "read", sum)
		return nil, c.evictCorrupt(ctx, key, e.SHA256, st.Ino)
	}
	if after, err := statStamp(f); err != nil || after != st {
		// Changed while it was read: record nothing; the reader hashes.
		return e, err
	}
	e.Stamp, e.CheckedAt = st, start.UnixNano()
	err = c.withIndex(ctx, func(idx *cacheIndex) (bool, error) {
		ie := idx.Entries[key]
		if ie == nil || ie.SHA256 != sum {
			return false, nil
		}
		ie.Stamp, ie.CheckedAt = e.Stamp, e.CheckedAt
		return true, nil
	})
	return e, err
}

// drop removes key's index entry when it still records sha.
func (c *cache) drop(ctx context.Context, key, sha string) error {
	return c.withIndex(ctx, func(idx *cacheIndex) (bool, error) {
		if e := idx.Entries[key]; e == nil || e.SHA256 != sha {
			return false, nil
		}
		delete(idx.Entries, key)
		return true, nil
	})
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
	hashed := time.Now()
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
	e.Size, e.SHA256 = size, sum
	err = c.withIndex(ctx, func(idx *cacheIndex) (bool, error) {
		p := c.entryPath(key)
		if err := os.Rename(tmp.Name(), p); err != nil {
			return false, fmt.Errorf("fetcher cache: %w", err)
		}
		done = true
		defer tmp.Close()
		// The chmod and the rename moved ctime past the hash's start, so
		// this stamp is not trusted yet: the first check once it has
		// settled hashes the entry again and records one that is.
		st, err := statStamp(tmp)
		if err != nil {
			return false, err
		}
		e.Stamp, e.CheckedAt = st, hashed.UnixNano()
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
	entryReads.Add(1)
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

// evictCorrupt drops key's entry if it still records sha and the inode
// ino (see cacheStore). Readers keep their open file; the next fetch
// downloads again.
func (c *cache) evictCorrupt(ctx context.Context, key, sha string, ino uint64) error {
	return c.withIndex(ctx, func(idx *cacheIndex) (bool, error) {
		e := idx.Entries[key]
		if e == nil || e.SHA256 != sha || ino != 0 && e.Stamp.Ino != 0 && e.Stamp.Ino != ino {
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
