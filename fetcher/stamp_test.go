package fetcher

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/internal/testutil"
)

// shortSettle lowers ctimeSettle to d for this test, and returns the
// environment line that does the same in a fetch child. A short settle is
// still sound where ctime has nanoseconds and the clock ticks faster than
// d, as on the machines these tests run on.
func shortSettle(t *testing.T, d time.Duration) string {
	t.Helper()
	old := ctimeSettle
	ctimeSettle = d
	t.Cleanup(func() { ctimeSettle = old })
	return settleEnv + "=" + d.String()
}

// waitSettled waits until path's ctime is more than ctimeSettle old, when
// a check may record a stamp that can be trusted.
func waitSettled(t *testing.T, path string) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, 5*time.Millisecond, func() bool {
		var st unix.Stat_t
		if err := unix.Stat(path, &st); err != nil {
			return false
		}
		return time.Since(time.Unix(st.Ctim.Unix())) > ctimeSettle
	}, "the ctime of %s did not settle", path)
}

// indexEntry reads key's entry from the cache's index.
func indexEntry(t *testing.T, c *cache, key string) *cacheEntry {
	t.Helper()
	e := c.readIndex().Entries[key]
	if e == nil {
		t.Fatalf("no index entry for %s", key)
	}
	return e
}

func stampAt(t *testing.T, path string) fileStamp {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return stampOf(fi)
}

// stampFetcher fetches one URI in process through a cache and counts the
// whole reads of cache entries each fetch made.
type stampFetcher struct {
	t     *testing.T
	f     *Fetcher
	c     *cache
	log   *testutil.SyncBuffer
	entry string
	key   string
}

func newStampFetcher(t *testing.T, uri string) *stampFetcher {
	t.Helper()
	cfg := Config{CacheDir: t.TempDir(), CacheSize: DefaultCacheSize}
	log := &testutil.SyncBuffer{}
	f := New(cfg, slog.New(slog.NewTextHandler(log, nil)))
	c, err := openCache(cfg, "", f.log)
	if err != nil {
		t.Fatal(err)
	}
	key := cacheKey(uri)
	return &stampFetcher{t: t, f: f, c: c, log: log, key: key, entry: c.entryPath(key)}
}

// fetch returns what the sandbox got, whether it was a hit, how many
// entry reads it made and how the hit was checked.
func (s *stampFetcher) fetch(u URI) (got string, hit bool, reads int64, checkedBy string) {
	s.t.Helper()
	l := newLayout(s.t)
	before, logged := entryReads.Load(), len(s.log.String())
	res, err := s.f.Fetch(context.Background(), Request{SandboxDir: l.sandbox, URIs: []URI{u}})
	if err != nil {
		s.t.Fatalf("%v\n%s", err, s.log.String())
	}
	reads = entryReads.Load() - before
	for _, by := range []string{"stamp", "sha256"} {
		if strings.Contains(s.log.String()[logged:], "checked_by="+by) {
			checkedBy = by
		}
	}
	return readFile(s.t, filepath.Join(l.sandbox, res[0].Path)), res[0].CacheHit, reads, checkedBy
}

// TestCacheHitTrustsSettledStamp: once an entry's stamp is recorded by a
// hash that began after its ctime settled, hits read none of its bytes;
// a sha256 checksum= is settled by the recorded sum, another type costs
// one read.
func TestCacheHitTrustsSettledStamp(t *testing.T) {
	shortSettle(t, 20*time.Millisecond)
	body := bytes.Repeat([]byte("artifact "), 100_000)
	sha := sha256.Sum256(body)
	md := md5.Sum(body)
	tests := []struct {
		name  string
		query string
		// extra is the reads a hit makes on top of the copy's: a checksum
		// the recorded sha256 cannot settle is hashed.
		extra int64
	}{
		{name: "revalidated by ETag"},
		{name: "checksum sha256", query: "?checksum=sha256:" + hex.EncodeToString(sha[:])},
		{name: "checksum md5", query: "?checksum=md5:" + hex.EncodeToString(md[:]), extra: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t)
			o.put("a.bin", body)
			u := cachedURI(o.url("a.bin") + tt.query)
			s := newStampFetcher(t, u.Value)
			if _, hit, _, _ := s.fetch(u); hit {
				t.Fatal("first fetch was a hit")
			}
			// Stored: the stamp is recorded but not trusted, since the
			// rename moved ctime past the hash's start.
			if e := indexEntry(t, s.c, s.key); e.trusts(stampAt(t, s.entry)) {
				t.Fatalf("a stamp recorded at store is trusted: %+v", e)
			}
			waitSettled(t, s.entry)
			got, hit, reads, _ := s.fetch(u)
			if !hit || got != string(body) || reads != 1+tt.extra {
				t.Fatalf("first settled hit: hit=%v, %d reads, want %d (the entry hashed once)", hit, reads, 1+tt.extra)
			}
			if e := indexEntry(t, s.c, s.key); !e.trusts(stampAt(t, s.entry)) {
				t.Fatalf("stamp not trusted after a settled check: %+v", e)
			}
			for i := range 3 {
				got, hit, reads, by := s.fetch(u)
				if !hit || got != string(body) || reads != tt.extra || by != "stamp" {
					t.Fatalf("hit %d: hit=%v, %d reads (want %d), checked by %q", i, hit, reads, tt.extra, by)
				}
			}
			if o.full.Load() != 1 {
				t.Fatalf("origin served %d downloads", o.full.Load())
			}
		})
	}
}

// TestCacheRehashesWhatTheStampCannotVouchFor: an entry whose ctime moved
// (its mtime put back, its mode changed and restored), whose last hash is
// older than fullCheckEvery, or whose ctime has not settled is hashed on
// the next hit; only a check after the ctime settled records a trusted
// stamp again.
func TestCacheRehashesWhatTheStampCannotVouchFor(t *testing.T) {
	// The fetch "right after the change" must come before the ctime
	// settles: on a loaded machine 20 ms between two statements is not
	// assured (it failed so in CI), half a second is.
	shortSettle(t, 500*time.Millisecond)
	body := []byte("an artifact, unchanged all along")
	tests := []struct {
		name   string
		change func(t *testing.T, entry string)
	}{
		{name: "mtime put back", change: func(t *testing.T, entry string) {
			fi, _ := os.Stat(entry)
			if err := os.Chtimes(entry, fi.ModTime(), fi.ModTime()); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "mode changed and restored", change: func(t *testing.T, entry string) {
			for _, m := range []os.FileMode{0o644, 0o444} {
				if err := os.Chmod(entry, m); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{name: "last hash too old", change: func(t *testing.T, entry string) {
			old := fullCheckEvery
			fullCheckEvery = 500 * time.Millisecond
			t.Cleanup(func() { fullCheckEvery = old })
			checked := time.Now()
			testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() bool {
				return time.Since(checked) > fullCheckEvery
			}, "time stood still")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t)
			o.put("a.bin", body)
			u := cachedURI(o.url("a.bin"))
			s := newStampFetcher(t, u.Value)
			s.fetch(u)
			waitSettled(t, s.entry)
			s.fetch(u)
			if _, _, reads, by := s.fetch(u); reads != 0 || by != "stamp" {
				t.Fatalf("settled hit: %d reads, checked by %q", reads, by)
			}
			tt.change(t, s.entry)
			if tt.name != "last hash too old" {
				// Right after the change the check cannot record a stamp
				// worth trusting: the reader hashes as it copies.
				if got, hit, reads, by := s.fetch(u); !hit || got != string(body) || reads != 1 || by != "sha256" {
					t.Fatalf("hit right after the change: hit=%v, %d reads, checked by %q", hit, reads, by)
				}
				waitSettled(t, s.entry)
			}
			if got, hit, reads, by := s.fetch(u); !hit || got != string(body) || reads != 1 || by != "stamp" {
				t.Fatalf("settled hit after the change: hit=%v, %d reads (want the check's 1), checked by %q", hit, reads, by)
			}
			if _, _, reads, by := s.fetch(u); reads != 0 || by != "stamp" {
				t.Fatalf("next hit: %d reads, checked by %q", reads, by)
			}
			if o.full.Load() != 1 {
				t.Fatalf("origin served %d downloads; nothing was corrupt", o.full.Load())
			}
		})
	}

	t.Run("ctime never settles", func(t *testing.T) {
		shortSettle(t, time.Hour)
		o := newOrigin(t)
		o.put("a.bin", body)
		u := cachedURI(o.url("a.bin"))
		s := newStampFetcher(t, u.Value)
		s.fetch(u)
		for i := range 3 {
			if got, hit, reads, by := s.fetch(u); !hit || got != string(body) || reads != 1 || by != "sha256" {
				t.Fatalf("hit %d: hit=%v, %d reads, checked by %q; want the reader's hash", i, hit, reads, by)
			}
		}
	})
}

// TestEvictCorruptSparesReplacement: a reader that found the entry it read
// bad evicts that inode only; an entry stored in its place meanwhile, with
// the same sha256, stays.
func TestEvictCorruptSparesReplacement(t *testing.T) {
	o := newOrigin(t)
	o.put("a.bin", []byte("payload"))
	u := cachedURI(o.url("a.bin"))
	s := newStampFetcher(t, u.Value)
	s.fetch(u)
	e := indexEntry(t, s.c, s.key)
	ctx := context.Background()
	if err := s.c.evictCorrupt(ctx, s.key, e.SHA256, e.Stamp.Ino+1); err != nil {
		t.Fatal(err)
	}
	if s.c.readIndex().Entries[s.key] == nil {
		t.Fatal("evicted the entry that replaced the bad one")
	}
	if err := s.c.evictCorrupt(ctx, s.key, e.SHA256, e.Stamp.Ino); err != nil {
		t.Fatal(err)
	}
	if s.c.readIndex().Entries[s.key] != nil {
		t.Fatal("the bad entry stayed")
	}
	if _, err := os.Stat(s.entry); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("its file stayed: %v", err)
	}
}
