package fetcher

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A slow download reports how far it is, about once a second, to the
// request's Progress and to the sandbox's stderr, with its size when the
// server announced one.
func TestSlowDownloadReportsProgress(t *testing.T) {
	const chunk, chunks = 64 << 10, 4
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(chunk*chunks))
		buf := make([]byte, chunk)
		for i := range chunks {
			if i > 0 {
				time.Sleep(700 * time.Millisecond)
			}
			_, _ = w.Write(buf)
			w.(http.Flusher).Flush()
		}
	}))
	t.Cleanup(srv.Close)
	l := newLayout(t)
	var mu sync.Mutex
	var got []Progress
	req := Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(srv.URL + "/slow.bin")},
		Progress: func(p Progress) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, p)
		}}
	log, err := runFetch(t, childOptions(t, Config{}), req)
	if err != nil {
		t.Fatalf("fetch: %v\n%s", err, log)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) == 0 {
		t.Fatalf("no progress reported for a download of about 2 s; log:\n%s", log)
	}
	for _, p := range got {
		if p.URI != srv.URL+"/slow.bin" || p.Total != chunk*chunks || p.Bytes < 0 || p.Bytes > p.Total {
			t.Errorf("progress %+v, want the URI and bytes of %d", p, chunk*chunks)
		}
	}
	if !strings.Contains(log, "Fetching '"+srv.URL+"/slow.bin': ") || !strings.Contains(log, "of 256.0 KiB") {
		t.Errorf("sandbox stderr without the progress lines:\n%s", log)
	}
}

func TestProgressString(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var r progressRate
	first := r.next("http://a/x", 512, -1, t0)
	second := r.next("http://a/x", 3<<20, 10<<20, t0.Add(2*time.Second))
	other := r.next("http://a/y", 100, 200, t0.Add(3*time.Second))
	tests := []struct {
		p    Progress
		want string
	}{
		{first, "Fetching 'http://a/x': 512 B, 0 B/s"},
		{second, "Fetching 'http://a/x': 3.0 MiB of 10.0 MiB (30%), 1.5 MiB/s"},
		{other, "Fetching 'http://a/y': 100 B of 200 B (50%), 0 B/s"},
		{Progress{URI: "u", Bytes: 0, Total: 0}, "Fetching 'u': 0 B of 0 B, 0 B/s"},
	}
	for _, tt := range tests {
		if got := tt.p.String(); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.p, got, tt.want)
		}
	}
}
