package fetcher

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// benchDir is where BenchmarkCacheHit100MB puts its cache and sandboxes:
// $MESOLITE_BENCH_DIR (a tmpfs, a reflink-capable xfs or btrfs mount) or
// the test's temporary directory.
func benchDir(b *testing.B) string {
	if d := os.Getenv("MESOLITE_BENCH_DIR"); d != "" {
		dir, err := os.MkdirTemp(d, "cachehit-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	return b.TempDir()
}

// settle waits until a just stored entry's stamp can be trusted and makes
// the one hit that hashes it and records the stamp, as the first hit
// after ctimeSettle does on an agent.
func settle(b *testing.B, fetch func()) {
	b.Helper()
	time.Sleep(ctimeSettle + 100*time.Millisecond)
	fetch()
}

// BenchmarkCacheHit100MB is what a cache hit costs now that a hit is a
// private copy of bytes known to match the entry's sha256, not a hard
// link:
//
//	hit         the whole in-process fetch of a cached 100 MB artifact
//	            (lock, index, the entry's stamp, copy into a fresh sandbox)
//	            once the entry's stamp is trusted; a checksum= on the URI
//	            spares the origin and is settled by the recorded sha256
//	hit-rehash  the same while the stamp cannot be trusted (an entry
//	            stored or changed less than ctimeSettle ago): the copy is
//	            hashed as it is made, which every hit did before
//	copy        cloneFile alone: a reflink where the filesystem has them,
//	            else copy_file_range
//	sha256      hashing the entry alone
//
// entry-reads/op counts whole reads of the entry per fetch.
//
//	go test -run '^$' -bench CacheHit100MB -benchtime 20x ./fetcher/
//	MESOLITE_BENCH_DIR=/dev/shm go test -run '^$' -bench CacheHit100MB ./fetcher/
func BenchmarkCacheHit100MB(b *testing.B) {
	const size = 100 << 20
	dir := benchDir(b)
	src := filepath.Join(dir, "artifact.bin")
	f, err := os.Create(src)
	if err != nil {
		b.Fatal(err)
	}
	block := make([]byte, 1<<20)
	_, _ = rand.Read(block)
	for range size >> 20 {
		if _, err := f.Write(block); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	sum, err := digestFile(src, nil)
	if err != nil {
		b.Fatal(err)
	}
	cfg := Config{CacheDir: filepath.Join(dir, "cache"), CacheSize: DefaultCacheSize}
	u := URI{Value: "file://" + src + "?checksum=sha256:" + sum, Cache: true}
	fetcher := New(cfg, nil)
	n := 0
	fresh := func() string {
		n++
		d := filepath.Join(dir, "sb", strconv.Itoa(n))
		if err := os.MkdirAll(d, 0o755); err != nil {
			b.Fatal(err)
		}
		return d
	}
	clean := func(d string) {
		b.StopTimer()
		os.RemoveAll(d)
		b.StartTimer()
	}
	if _, err := fetcher.Fetch(context.Background(), Request{SandboxDir: fresh(), URIs: []URI{u}}); err != nil {
		b.Fatal(err)
	}
	entry := filepath.Join(cfg.CacheDir, "shared", "entries", cacheKey(u.Value))
	hit := func(b *testing.B) {
		b.SetBytes(size)
		reads := entryReads.Load()
		for b.Loop() {
			b.StopTimer()
			d := fresh()
			b.StartTimer()
			res, err := fetcher.Fetch(context.Background(), Request{SandboxDir: d, URIs: []URI{u}})
			if err != nil || !res[0].CacheHit {
				b.Fatalf("%v %+v", err, res)
			}
			clean(d)
		}
		b.ReportMetric(float64(entryReads.Load()-reads)/float64(b.N), "entry-reads/op")
	}
	settle(b, func() {
		if _, err := fetcher.Fetch(context.Background(), Request{SandboxDir: fresh(), URIs: []URI{u}}); err != nil {
			b.Fatal(err)
		}
	})

	b.Run("hit", hit)
	b.Run("hit-rehash", func(b *testing.B) {
		old := ctimeSettle
		ctimeSettle = 24 * time.Hour
		defer func() { ctimeSettle = old }()
		hit(b)
	})
	b.Run("copy", func(b *testing.B) {
		b.SetBytes(size)
		var how string
		for b.Loop() {
			b.StopTimer()
			d := fresh()
			in, err := os.Open(entry)
			if err != nil {
				b.Fatal(err)
			}
			out, err := os.Create(filepath.Join(d, "copy"))
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if how, err = cloneFile(out, in, size); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			in.Close()
			out.Close()
			b.StartTimer()
			clean(d)
		}
		b.ReportMetric(map[string]float64{"reflinked": 1, "copied": 0}[how], "reflinked")
	})
	b.Run("sha256", func(b *testing.B) {
		b.SetBytes(size)
		in, err := os.Open(entry)
		if err != nil {
			b.Fatal(err)
		}
		defer in.Close()
		for b.Loop() {
			if _, err := hashFile(in, size); err != nil {
				b.Fatal(err)
			}
		}
	})
}
