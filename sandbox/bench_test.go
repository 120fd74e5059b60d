package sandbox

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const benchChunk = 64 << 10

// benchServer serves the fixture over a real loopback HTTP server with a
// 64 MiB log file at .../runs/c1/big.log.
func benchServer(b *testing.B, opts FilesOptions) (*httptest.Server, *fixture, int64) {
	b.Helper()
	fx := newFixture(b)
	p := filepath.Join(fx.layout.RunDir(fx.c1), "big.log")
	f, err := os.Create(p)
	must(b, err)
	w := bufio.NewWriterSize(f, 1<<20)
	var size int64
	for i := 0; size < 64<<20; i++ {
		n, _ := fmt.Fprintf(w, "2030-01-01T00:00:00.000Z INFO task %08d: something happened, status=ok latency=%dms\n", i, i%997)
		size += int64(n)
	}
	must(b, w.Flush())
	must(b, f.Close())
	opts.Layout, opts.AgentID = fx.layout, fx.agent
	h := NewFilesHandler(opts)
	srv := httptest.NewServer(h)
	b.Cleanup(func() { srv.Close(); h.Close() })
	return srv, fx, size
}

// BenchmarkFilesRead measures /files/read throughput in 64 KiB chunks (the
// read cap) over loopback HTTP: resolve, open, pread, JSON-encode, send.
// Target: >= 500 MB/s.
func BenchmarkFilesRead(b *testing.B) {
	srv, _, size := benchServer(b, FilesOptions{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	base := srv.URL + "/files/read?path=" + url.QueryEscape("/frameworks/fw1/executors/exec1/runs/c1/big.log") + "&length=65536&offset="

	// Check the answer once, outside the timing.
	resp, err := client.Get(base + "0")
	must(b, err)
	var got struct {
		Data   json.RawMessage `json:"data"`
		Offset int64           `json:"offset"`
	}
	must(b, json.NewDecoder(resp.Body).Decode(&got))
	resp.Body.Close()
	if data, err := DecodeJSONString(got.Data); err != nil || len(data) != benchChunk {
		b.Fatalf("read %d bytes, %v", len(data), err)
	}

	chunks := size/benchChunk - 1
	b.Run("serial", func(b *testing.B) {
		buf := make([]byte, 2*benchChunk)
		b.SetBytes(benchChunk)
		i := int64(0)
		for b.Loop() {
			readChunk(b, client, base, (i%chunks)*benchChunk, buf)
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.SetBytes(benchChunk)
		b.RunParallel(func(pb *testing.PB) {
			buf := make([]byte, 2*benchChunk)
			i := int64(0)
			for pb.Next() {
				readChunk(b, client, base, (i%chunks)*benchChunk, buf)
				i += 7
			}
		})
	})
}

func readChunk(b *testing.B, client *http.Client, base string, off int64, buf []byte) {
	resp, err := client.Get(base + strconv.FormatInt(off, 10))
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for {
		m, err := resp.Body.Read(buf[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		if n == len(buf) {
			b.Fatal("answer larger than expected")
		}
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || n < benchChunk {
		b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
	}
}

// BenchmarkStreamLatency measures the time from a write to the log file to
// the data event arriving at a /files/stream client over loopback HTTP.
// Target: <= 100 ms. One op is one write and its event; p50/p99/max are
// reported alongside ns/op.
func BenchmarkStreamLatency(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts FilesOptions
	}{
		{"inotify", FilesOptions{}},
		{"polling-50ms", FilesOptions{DisableInotify: true}},
	} {
		b.Run(mode.name, func(b *testing.B) {
			srv, fx, _ := benchServer(b, mode.opts)
			p := filepath.Join(fx.layout.RunDir(fx.c1), "stdout")
			q := url.Values{"path": {"/frameworks/fw1/executors/exec1/runs/c1/stdout"}, "offset": {"-1"}, "follow": {"true"}}
			resp, err := http.Get(srv.URL + "/files/stream?" + q.Encode())
			must(b, err)
			defer resp.Body.Close()
			br := bufio.NewReader(resp.Body)
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND, 0)
			must(b, err)
			defer f.Close()

			var lat []time.Duration
			line := []byte("a line of task output\n")
			for b.Loop() {
				t0 := time.Now()
				if _, err := f.Write(line); err != nil {
					b.Fatal(err)
				}
				waitData(b, br)
				lat = append(lat, time.Since(t0))
			}
			slices.Sort(lat)
			pct := func(q float64) float64 {
				return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))]) / 1e6
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(lat[len(lat)-1])/1e6, "max-ms")
		})
	}
}

// waitData reads events until a data event has arrived whole.
func waitData(b *testing.B, br *bufio.Reader) {
	isData := false
	for {
		l, err := br.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		switch {
		case bytes.HasPrefix(l, []byte("event: data")):
			isData = true
		case len(l) == 1 && isData:
			return
		case strings.HasPrefix(string(l), "event: "):
			isData = false
		}
	}
}

// BenchmarkAppendJSONString is the JSON encoding step of /files/read alone.
func BenchmarkAppendJSONString(b *testing.B) {
	var sb strings.Builder
	for i := 0; sb.Len() < benchChunk; i++ {
		fmt.Fprintf(&sb, "2030-01-01T00:00:00.000Z INFO task %08d: something happened, status=ok latency=%dms\n", i, i%997)
	}
	src := []byte(sb.String()[:benchChunk])
	dst := make([]byte, 0, 2*len(src))
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		dst = appendJSONString(dst[:0], src, false)
	}
}

// discardWriter is an http.ResponseWriter that drops the body.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkFilesReadHandler is the server's share of /files/read alone (no
// HTTP, no client): what one core can serve when the network is not the
// limit.
func BenchmarkFilesReadHandler(b *testing.B) {
	srv, _, size := benchServer(b, FilesOptions{})
	h := srv.Config.Handler
	chunks := size/benchChunk - 1
	reqs := make([]*http.Request, 64)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, "/files/read?length=65536&offset="+strconv.FormatInt((int64(i)%chunks)*benchChunk, 10)+
			"&path="+url.QueryEscape("/frameworks/fw1/executors/exec1/runs/c1/big.log"), nil)
	}
	w := &discardWriter{h: http.Header{}}
	b.SetBytes(benchChunk)
	i := 0
	for b.Loop() {
		h.ServeHTTP(w, reqs[i%len(reqs)])
		i++
	}
}
