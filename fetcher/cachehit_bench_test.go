package fetcher

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"
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

// BenchmarkCacheHit100MB is what a cache hit costs now that a hit is a
// private copy checked against the entry's sha256, not a hard link:
//
//	hit        the whole in-process fetch of a cached 100 MB artifact (lock,
//	           index, copy into a fresh sandbox, sha256 of the entry at
//	           the same time); a checksum= on the URI spares the origin
//	copy       cloneFile alone: a reflink where the filesystem has them,
//	           else copy_file_range
//	sha256     hashing the entry alone
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

	b.Run("hit", func(b *testing.B) {
		b.SetBytes(size)
		how := ""
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
		_ = how
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
