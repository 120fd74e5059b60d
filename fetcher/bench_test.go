package fetcher

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mesolite/mesolite/artifactsrv"
)

// benchServer serves one file of size bytes from artifactsrv.
func benchServer(b *testing.B, size int64) string {
	b.Helper()
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "artifact.bin"))
	if err != nil {
		b.Fatal(err)
	}
	block := make([]byte, 1<<20)
	_, _ = rand.Read(block)
	for n := int64(0); n < size; n += int64(len(block)) {
		if _, err := f.Write(block[:min(int64(len(block)), size-n)]); err != nil {
			b.Fatal(err)
		}
	}
	f.Close()
	srv, err := artifactsrv.New(artifactsrv.Options{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	b.Cleanup(func() {
		ts.Close()
		srv.Close()
	})
	return ts.URL + "/artifact.bin"
}

func benchSize(b *testing.B, def int64) int64 {
	if v := os.Getenv("MESOLITE_BENCH_FETCH_MB"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		return n << 20
	}
	return def
}

// BenchmarkFetchVsCurl downloads the same file over loopback with the
// fetcher (child process, as the agent runs it) and with `curl -o`.
//
//	go test -run '^$' -bench FetchVsCurl -benchtime 10x ./fetcher/
func BenchmarkFetchVsCurl(b *testing.B) {
	size := benchSize(b, 256<<20)
	url := benchServer(b, size)
	work := b.TempDir()
	fresh := func(i int) string {
		d := filepath.Join(work, strconv.Itoa(i))
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		return d
	}
	clean := func(d string) {
		b.StopTimer()
		os.RemoveAll(d)
		b.StartTimer()
	}
	b.Run("fetcher", func(b *testing.B) {
		opts := childOptions(b, Config{})
		b.SetBytes(size)
		for i := 0; b.Loop(); i++ {
			d := fresh(i)
			if _, err := runFetch(b, opts, Request{SandboxDir: d, URIs: []URI{NewURI(url)}}); err != nil {
				b.Fatal(err)
			}
			clean(d)
		}
	})
	curl, err := exec.LookPath("curl")
	if err != nil {
		b.Log("curl not installed; only the fetcher is measured")
		return
	}
	b.Run("curl", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; b.Loop(); i++ {
			d := fresh(1_000_000 + i)
			if out, err := exec.Command(curl, "-sSf", "-o", filepath.Join(d, "artifact.bin"), url).CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
			clean(d)
		}
	})
	// Alternating the two in one loop puts the same machine noise on
	// both; the ratio metric is the figure to compare.
	b.Run("interleaved", func(b *testing.B) {
		opts := childOptions(b, Config{})
		var tf, tc time.Duration
		for i := 0; b.Loop(); i++ {
			d := fresh(2_000_000 + i)
			start := time.Now()
			if _, err := runFetch(b, opts, Request{SandboxDir: d, URIs: []URI{NewURI(url)}}); err != nil {
				b.Fatal(err)
			}
			tf += time.Since(start)
			clean(d)
			d = fresh(3_000_000 + i)
			start = time.Now()
			if out, err := exec.Command(curl, "-sSf", "-o", filepath.Join(d, "artifact.bin"), url).CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
			tc += time.Since(start)
			clean(d)
		}
		n := float64(b.N) * float64(size) / 1e6
		b.ReportMetric(n/tf.Seconds(), "fetcher-MB/s")
		b.ReportMetric(n/tc.Seconds(), "curl-MB/s")
		b.ReportMetric(tc.Seconds()/tf.Seconds(), "fetcher/curl")
	})
}

// BenchmarkCacheHit measures a cache hit of a 100 MB artifact: lock,
// index, revalidation with the origin (a 304 from artifactsrv), a private
// copy into a fresh sandbox, trusted by the entry's settled stamp (see
// BenchmarkCacheHit100MB for the copy's and the hash's costs).
// "inprocess" is the fetch itself; "child" adds the fetch process the
// agent starts.
//
//	go test -run '^$' -bench CacheHit ./fetcher/
func BenchmarkCacheHit(b *testing.B) {
	size := benchSize(b, 100<<20)
	url := benchServer(b, size)
	cfg := Config{CacheDir: b.TempDir(), CacheSize: DefaultCacheSize}
	work := b.TempDir()
	n := 0
	fresh := func() string {
		n++
		d := filepath.Join(work, strconv.Itoa(n))
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		return d
	}
	u := URI{Value: url, Extract: true, Cache: true}
	f := New(cfg, nil)
	fetch := func() {
		if _, err := f.Fetch(context.Background(), Request{SandboxDir: fresh(), URIs: []URI{u}}); err != nil {
			b.Fatal(err)
		}
	}
	fetch()
	settle(b, fetch)
	b.Run(fmt.Sprintf("inprocess/%dMB", size>>20), func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			d := fresh()
			b.StartTimer()
			res, err := f.Fetch(context.Background(), Request{SandboxDir: d, URIs: []URI{u}})
			if err != nil || !res[0].CacheHit {
				b.Fatalf("%v %+v", err, res)
			}
		}
	})
	b.Run(fmt.Sprintf("child/%dMB", size>>20), func(b *testing.B) {
		opts := childOptions(b, cfg)
		for b.Loop() {
			b.StopTimer()
			d := fresh()
			b.StartTimer()
			if _, err := runFetch(b, opts, Request{SandboxDir: d, URIs: []URI{u}}); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The agent's setting: a child started ahead waits for the request.
	b.Run(fmt.Sprintf("child-prestarted/%dMB", size>>20), func(b *testing.B) {
		opts := childOptions(b, cfg)
		opts.Pool = NewChildPool(opts, 1)
		b.Cleanup(func() { opts.Pool.Close() })
		opts.Pool.Fill()
		for b.Loop() {
			b.StopTimer()
			d := fresh()
			waitIdle(b, opts.Pool)
			b.StartTimer()
			if _, err := runFetch(b, opts, Request{SandboxDir: d, URIs: []URI{u}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkChildOverhead is the floor under every fetch the agent runs:
// starting a process at all (/bin/true) and running the fetch child on a
// one-byte local file. It explains the gap between the in-process and
// child cache hits above.
//
//	go test -run '^$' -bench ChildOverhead ./fetcher/
func BenchmarkChildOverhead(b *testing.B) {
	b.Run("bin-true", func(b *testing.B) {
		for b.Loop() {
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fetch-1-byte-local-file", func(b *testing.B) {
		src := filepath.Join(b.TempDir(), "one")
		if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
		opts := childOptions(b, Config{})
		sandbox := b.TempDir()
		for b.Loop() {
			if _, err := runFetch(b, opts, Request{SandboxDir: sandbox, URIs: []URI{NewURI(src)}}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// waitIdle waits, off the clock, for the pool to have a child ready: the
// agent's fetches are seconds apart, not back to back.
func waitIdle(b *testing.B, p *ChildPool) {
	for i := 0; i < 2000; i++ {
		p.mu.Lock()
		n := len(p.idle)
		p.mu.Unlock()
		if n > 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
	b.Fatal("no prestarted fetch child within 2s")
}
