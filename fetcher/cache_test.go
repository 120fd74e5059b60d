package fetcher

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func cachedURI(v string) URI { return URI{Value: v, Extract: true, Cache: true} }

func TestCacheConcurrentFetchesDownloadOnce(t *testing.T) {
	o := newOrigin(t)
	content := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	o.put("big.bin", content)
	// Hold the body back so the eight fetches really overlap.
	o.delay = 300 * time.Millisecond
	cfg := Config{CacheDir: t.TempDir(), CacheSize: DefaultCacheSize}

	const n = 8
	var wg sync.WaitGroup
	errs := make([]error, n)
	sandboxes := make([]string, n)
	for i := range n {
		l := newLayout(t)
		sandboxes[i] = l.sandbox
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = runFetch(t, childOptions(t, cfg), Request{SandboxDir: l.sandbox, URIs: []URI{cachedURI(o.url("big.bin"))}})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("fetch %d: %v", i, err)
		}
		if got := readFile(t, filepath.Join(sandboxes[i], "big.bin")); got != string(content) {
			t.Fatalf("sandbox %d has wrong bytes", i)
		}
	}
	if got := o.full.Load(); got != 1 {
		t.Fatalf("origin served %d full downloads for %d concurrent fetches, want 1", got, n)
	}
	u, err := ReadCacheUsage(cfg.CacheDir)
	if err != nil || u.Entries != 1 || u.Bytes != int64(len(content)) {
		t.Fatalf("usage %+v, %v", u, err)
	}
}

func TestCacheHitCopiesAndRevalidates(t *testing.T) {
	o := newOrigin(t)
	o.put("tool", []byte("tool v1"))
	cfg := Config{CacheDir: t.TempDir(), CacheSize: DefaultCacheSize}
	f := New(cfg, nil)
	fetch := func(u URI) (string, []Result) {
		t.Helper()
		l := newLayout(t)
		res, err := f.Fetch(context.Background(), Request{SandboxDir: l.sandbox, URIs: []URI{u}})
		if err != nil {
			t.Fatal(err)
		}
		return l.sandbox, res
	}

	sb, res := fetch(cachedURI(o.url("tool")))
	if res[0].CacheHit || o.full.Load() != 1 {
		t.Fatalf("first fetch: %+v, %d downloads", res[0], o.full.Load())
	}
	sb, res = fetch(cachedURI(o.url("tool")))
	if !res[0].CacheHit || o.full.Load() != 1 || o.notMod.Load() != 1 {
		t.Fatalf("second fetch: %+v, %d downloads, %d 304s", res[0], o.full.Load(), o.notMod.Load())
	}
	c, _ := openCache(cfg, "", f.log)
	entry := c.entryPath(cacheKey(o.url("tool")))
	a, _ := os.Stat(entry)
	b, _ := os.Stat(filepath.Join(sb, "tool"))
	if os.SameFile(a, b) {
		t.Fatal("cache hit shares the entry's inode with the sandbox")
	}
	if m := b.Mode().Perm(); m != 0o644 {
		t.Fatalf("placed copy mode %o, want the download's 0644", m)
	}
	if m := a.Mode().Perm(); m != 0o444 {
		t.Fatalf("cache entry mode %o, want read-only 0444", m)
	}

	// Executable from the same entry: a copy with mode 0755, the entry keeps its mode.
	sb, _ = fetch(URI{Value: o.url("tool"), Executable: true, Cache: true})
	if m := modeOf(t, filepath.Join(sb, "tool")).Perm(); m != 0o755 {
		t.Fatalf("executable from cache: mode %o", m)
	}
	if m := modeOf(t, entry).Perm(); m != 0o444 {
		t.Fatalf("cache entry mode changed to %o", m)
	}

	// The origin changes: new ETag, the cache downloads the new bytes.
	o.put("tool", []byte("tool v2!"))
	sb, res = fetch(cachedURI(o.url("tool")))
	if res[0].CacheHit || readFile(t, filepath.Join(sb, "tool")) != "tool v2!" || o.full.Load() != 2 {
		t.Fatalf("after change: %+v %q, %d downloads", res[0], readFile(t, filepath.Join(sb, "tool")), o.full.Load())
	}

	// A task writing through its hard link does not poison the cache.
	if err := os.WriteFile(filepath.Join(sb, "tool"), []byte("tampered"), 0o644); err != nil {
		t.Fatal(err)
	}
	sb, _ = fetch(cachedURI(o.url("tool")))
	if got := readFile(t, filepath.Join(sb, "tool")); got != "tool v2!" {
		t.Fatalf("tampered cache entry served: %q", got)
	}
}

func TestCacheChecksumHitSkipsOrigin(t *testing.T) {
	o := newOrigin(t)
	o.put("a.bin", []byte("immutable"))
	sum := sha256.Sum256([]byte("immutable"))
	u := cachedURI(o.url("a.bin") + "?checksum=sha256:" + hex.EncodeToString(sum[:]))
	f := New(Config{CacheDir: t.TempDir(), CacheSize: DefaultCacheSize}, nil)
	for range 3 {
		l := newLayout(t)
		if _, err := f.Fetch(context.Background(), Request{SandboxDir: l.sandbox, URIs: []URI{u}}); err != nil {
			t.Fatal(err)
		}
	}
	if got := o.requests.Load(); got != 1 {
		t.Fatalf("origin saw %d requests; a checksum hit should not ask it", got)
	}
}

func TestCacheExtractsFromCacheWithoutArchiveCopy(t *testing.T) {
	o := newOrigin(t)
	o.put("pkg.tgz", gz(t, makeTar(t, []tarEntry{{name: "pkg/bin", body: "x", mode: 0o755}, {name: "pkg/", typ: tar.TypeDir}})))
	f := New(Config{CacheDir: t.TempDir(), CacheSize: DefaultCacheSize}, nil)
	for i := range 2 {
		l := newLayout(t)
		res, err := f.Fetch(context.Background(), Request{SandboxDir: l.sandbox, URIs: []URI{cachedURI(o.url("pkg.tgz") + "?op=OPEN")}})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Extracted != 2 || res[0].CacheHit != (i == 1) {
			t.Fatalf("fetch %d: %+v", i, res[0])
		}
		files := l.sandboxFiles(t)
		if strings.Join(files, ",") != "pkg,pkg/bin" {
			t.Fatalf("sandbox holds %v; Mesos extracts cached archives without copying them", files)
		}
	}
}

func TestCacheEvictionLRU(t *testing.T) {
	o := newOrigin(t)
	for _, n := range []string{"a", "b", "c"} {
		o.put(n, bytes.Repeat([]byte(n), 100))
	}
	cfg := Config{CacheDir: t.TempDir(), CacheSize: 250}
	f := New(cfg, nil)
	fetch := func(name string) Result {
		t.Helper()
		l := newLayout(t)
		res, err := f.Fetch(context.Background(), Request{SandboxDir: l.sandbox, URIs: []URI{cachedURI(o.url(name))}})
		if err != nil {
			t.Fatal(err)
		}
		return res[0]
	}
	fetch("a")
	time.Sleep(2 * time.Millisecond)
	fetch("b")
	time.Sleep(2 * time.Millisecond)
	if !fetch("a").CacheHit { // a is now the most recently used
		t.Fatal("a should be cached")
	}
	time.Sleep(2 * time.Millisecond)
	fetch("c") // 300 > 250: evicts b, the least recently used

	c, _ := openCache(cfg, "", f.log)
	for name, want := range map[string]bool{"a": true, "b": false, "c": true} {
		_, err := os.Stat(c.entryPath(cacheKey(o.url(name))))
		if (err == nil) != want {
			t.Errorf("%s cached = %v, want %v", name, err == nil, want)
		}
	}
	u, _ := ReadCacheUsage(cfg.CacheDir)
	if u.Entries != 2 || u.Bytes != 200 {
		t.Fatalf("usage %+v", u)
	}
	before := o.full.Load()
	if fetch("b").CacheHit || o.full.Load() != before+1 {
		t.Fatal("b should have been downloaded again")
	}
}

func TestCacheNeverEvictsEntryInUse(t *testing.T) {
	o := newOrigin(t)
	for _, n := range []string{"a", "b", "c"} {
		o.put(n, bytes.Repeat([]byte(n), 100))
	}
	cfg := Config{CacheDir: t.TempDir(), CacheSize: 250}
	f := New(cfg, nil)
	fetch := func(name string) {
		t.Helper()
		l := newLayout(t)
		if _, err := f.Fetch(context.Background(), Request{SandboxDir: l.sandbox, URIs: []URI{cachedURI(o.url(name))}}); err != nil {
			t.Fatal(err)
		}
	}
	fetch("a")
	time.Sleep(2 * time.Millisecond)
	fetch("b")
	c, _ := openCache(cfg, "", f.log)
	// Another fetch is still extracting a (holds its use lock).
	use, ok, err := tryLockFile(c.usePath(cacheKey(o.url("a"))), unix.LOCK_SH)
	if err != nil || !ok {
		t.Fatalf("lock: %v %v", ok, err)
	}
	fetch("c")
	_, errA := os.Stat(c.entryPath(cacheKey(o.url("a"))))
	_, errB := os.Stat(c.entryPath(cacheKey(o.url("b"))))
	if errA != nil || errB == nil {
		t.Fatalf("a (in use) evicted = %v, b evicted = %v; want false, true", errA != nil, errB != nil)
	}
	use.Close()
}

func TestCacheSurvivesRestart(t *testing.T) {
	o := newOrigin(t)
	o.put("lib.tar", makeTar(t, []tarEntry{{name: "lib/x", body: "x"}}))
	cfg := Config{CacheDir: t.TempDir(), CacheSize: DefaultCacheSize}
	// Each fetch is a new child process: nothing survives but the disk.
	for i := range 3 {
		l := newLayout(t)
		log, err := runFetch(t, childOptions(t, cfg), Request{SandboxDir: l.sandbox, URIs: []URI{cachedURI(o.url("lib.tar"))}})
		if err != nil {
			t.Fatalf("%v\n%s", err, log)
		}
		if got := readFile(t, filepath.Join(l.sandbox, "lib/x")); got != "x" {
			t.Fatalf("fetch %d: %q", i, got)
		}
	}
	if o.full.Load() != 1 || o.notMod.Load() != 2 {
		t.Fatalf("origin: %d downloads, %d 304s; want 1 and 2", o.full.Load(), o.notMod.Load())
	}
}

func TestCacheWithoutValidatorsAndLocalFiles(t *testing.T) {
	o := newOrigin(t)
	o.noValidators = true
	o.put("plain", []byte("plain"))
	dir := t.TempDir()
	local := filepath.Join(dir, "local.bin")
	if err := os.WriteFile(local, []byte("v1"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := New(Config{CacheDir: t.TempDir(), CacheSize: DefaultCacheSize}, nil)
	fetch := func(v string) (string, Result) {
		t.Helper()
		l := newLayout(t)
		res, err := f.Fetch(context.Background(), Request{SandboxDir: l.sandbox, URIs: []URI{cachedURI(v)}})
		if err != nil {
			t.Fatal(err)
		}
		return l.sandbox, res[0]
	}
	fetch(o.url("plain"))
	if _, res := fetch(o.url("plain")); !res.CacheHit || o.requests.Load() != 1 {
		t.Fatalf("no validators: hit=%v requests=%d; Mesos treats cached URIs as immutable", res.CacheHit, o.requests.Load())
	}
	fetch(local)
	if _, res := fetch(local); !res.CacheHit {
		t.Fatal("unchanged local file not served from cache")
	}
	if err := os.WriteFile(local, []byte("v2 longer"), 0o644); err != nil {
		t.Fatal(err)
	}
	if sb, res := fetch(local); res.CacheHit || readFile(t, filepath.Join(sb, "local.bin")) != "v2 longer" {
		t.Fatal("changed local file served stale from cache")
	}
}

func TestCachePerUserDirectories(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{CacheDir: dir, CacheSize: 1000}
	for _, user := range []string{"", "alice"} {
		c, err := openCache(cfg, user, New(cfg, nil).log)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.withIndex(context.Background(), func(idx *cacheIndex) (bool, error) {
			idx.Entries["k"] = &cacheEntry{Size: 10}
			return true, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"../x", "a/b", ".."} {
		if _, err := openCache(cfg, bad, New(cfg, nil).log); err == nil {
			t.Errorf("user %q accepted", bad)
		}
	}
	u, err := ReadCacheUsage(dir)
	if err != nil || u.Entries != 2 || u.Bytes != 20 {
		t.Fatalf("usage %+v %v", u, err)
	}
	if u, err := ReadCacheUsage(filepath.Join(dir, "none")); err != nil || u.Entries != 0 {
		t.Fatalf("missing dir: %+v %v", u, err)
	}
}

func TestLockFileSurvivesRemoval(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.lock")
	a, ok, err := tryLockFile(p, unix.LOCK_EX)
	if err != nil || !ok {
		t.Fatal(err)
	}
	if _, ok, _ := tryLockFile(p, unix.LOCK_EX); ok {
		t.Fatal("second exclusive lock granted")
	}
	// The evictor removes a lock file it holds; the next locker must get
	// a fresh file, not the orphaned inode.
	_ = os.Remove(p)
	a.Close()
	b, ok, err := tryLockFile(p, unix.LOCK_EX)
	if err != nil || !ok {
		t.Fatal(err)
	}
	defer b.Close()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatalf("lock file not recreated: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, p, unix.LOCK_EX); err == nil {
		t.Fatal("lock granted while held")
	}
}
