package ha

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// standbyOf is an instance that takes leader (host:port) for the elected
// leader, without an election: the proxy's own behaviour is under test
// (the apps tests run it on a real ZooKeeper).
func standbyOf(t *testing.T, leader string) *HA {
	t.Helper()
	h, err := New(Config{ZK: "zk://127.0.0.1:1/x", Hostname: "127.0.0.1", Port: 7001})
	if err != nil {
		t.Fatal(err)
	}
	h.leader = leader
	return h
}

func hostPort(u string) string { return strings.TrimPrefix(u, "http://") }

// serveProxy serves the standby's proxy, as the service's server would.
func serveProxy(t *testing.T, h *HA, cfg ProxyConfig) string {
	t.Helper()
	if cfg.Via == "" {
		cfg.Via = "X-Test-Via"
	}
	p := h.Proxy(cfg)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Leader", "set by the standby")
		w.Header().Set("X-Standby", "yes")
		p.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestProxyPassesRequestAndAnswer(t *testing.T) {
	var got *http.Request
	var gotBody string
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		w.Header().Set("X-Leader", "set by the leader")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":"/web"}`)
	}))
	defer leader.Close()
	h := standbyOf(t, hostPort(leader.URL))
	url := serveProxy(t, h, ProxyConfig{})

	req, _ := http.NewRequest("PUT", url+"/v2/apps/web?force=true&x=%2F", strings.NewReader(`{"instances":2}`))
	req.Header.Set("Authorization", "Basic dTpw")
	req.Header.Set("X-Forwarded-For", "10.0.0.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || string(body) != `{"id":"/web"}` {
		t.Fatalf("answer %d %s", resp.StatusCode, body)
	}
	if got.Method != "PUT" || got.URL.RequestURI() != "/v2/apps/web?force=true&x=%2F" || gotBody != `{"instances":2}` {
		t.Fatalf("the leader got %s %s %q", got.Method, got.URL.RequestURI(), gotBody)
	}
	if got.Header.Get("Authorization") != "Basic dTpw" || got.Header.Get("X-Test-Via") != "1.1 127.0.0.1:7001" {
		t.Fatalf("the leader got headers %v", got.Header)
	}
	if xff := got.Header.Get("X-Forwarded-For"); xff != "10.0.0.9, 127.0.0.1" {
		t.Fatalf("X-Forwarded-For %q", xff)
	}
	// The leader's headers replace the standby's of the same name.
	if v := resp.Header.Values("X-Leader"); len(v) != 1 || v[0] != "set by the leader" {
		t.Fatalf("X-Leader %q", v)
	}
	if resp.Header.Get("X-Standby") != "yes" || resp.Header.Get("X-Test-Via") != "1.1 127.0.0.1:7001" {
		t.Fatalf("answer headers %v", resp.Header)
	}
}

// TestProxyRefusesProxiedRequest: a request that already went through a
// standby is not passed on again.
func TestProxyRefusesProxiedRequest(t *testing.T) {
	called := false
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called = true }))
	defer leader.Close()
	url := serveProxy(t, standbyOf(t, hostPort(leader.URL)), ProxyConfig{})
	req, _ := http.NewRequest("GET", url+"/v2/apps", nil)
	req.Header.Set("X-Test-Via", "1.1 other:8080")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "Detected proxying loop.") || called {
		t.Fatalf("proxied request: %d %s, leader called %v", resp.StatusCode, body, called)
	}
}

func TestProxyFailures(t *testing.T) {
	// A leader that answers too late, one that stalls in its body, and
	// an address nobody listens on.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer slow.Close()
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer stall.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) }))
	defer echo.Close()

	for _, tc := range []struct {
		name, leader string
		body         string
		want         int
		msg          string
	}{
		{"slow", hostPort(slow.URL), "", http.StatusGatewayTimeout, "Connection to leader timed out."},
		{"refused", closed, "", http.StatusBadGateway, "Connection to leader refused."},
		{"too large", hostPort(echo.URL), strings.Repeat("x", 2000), http.StatusRequestEntityTooLarge, ""},
		{"none", "", "", http.StatusServiceUnavailable, "Could not determine the current leader"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := serveProxy(t, standbyOf(t, tc.leader), ProxyConfig{ReadTimeout: 200 * time.Millisecond, MaxBody: 1000})
			// A chunked body: no Content-Length to refuse it by.
			var rd io.Reader
			if tc.body != "" {
				rd = io.MultiReader(strings.NewReader(tc.body))
			}
			start := time.Now()
			resp, err := http.Post(url+"/v2/apps", "application/json", rd)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || !strings.Contains(string(body), tc.msg) {
				t.Fatalf("%d %s, want %d %s", resp.StatusCode, body, tc.want, tc.msg)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Fatalf("answered after %s", d)
			}
		})
	}

	t.Run("stalled body", func(t *testing.T) {
		url := serveProxy(t, standbyOf(t, hostPort(stall.URL)), ProxyConfig{ReadTimeout: 200 * time.Millisecond})
		start := time.Now()
		// The status may have gone out or not (it waits in the server's
		// buffer with the first bytes): either way the answer ends.
		resp, err := http.Get(url + "/v2/apps")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil || time.Since(start) > 3*time.Second {
			t.Fatalf("a stalled answer: %v after %s, want it cut short", err, time.Since(start))
		}
	})
}

// TestProxyStreamsEvents: server-sent events pass as they come, not when
// the stream ends.
func TestProxyStreamsEvents(t *testing.T) {
	release := make(chan struct{})
	leader := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		io.WriteString(w, "event: one\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		// Quiet for longer than the read timeout: a stream may be.
		time.Sleep(400 * time.Millisecond)
		io.WriteString(w, "event: two\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		<-release
	}))
	defer leader.Close()
	defer close(release)
	url := serveProxy(t, standbyOf(t, hostPort(leader.URL)), ProxyConfig{ReadTimeout: 200 * time.Millisecond})
	resp, err := http.Get(url + "/v2/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for _, want := range []string{"event: one", "data: {}", "", "event: two"} {
		if !sc.Scan() || sc.Text() != want {
			t.Fatalf("stream: %q (%v), want %q", sc.Text(), sc.Err(), want)
		}
	}
}

// TestProxyToHTTPSLeader: instances serving https are reached over TLS,
// verified with the configuration given.
func TestProxyToHTTPSLeader(t *testing.T) {
	leader := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "over "+r.Header.Get("X-Forwarded-Proto")+" to tls")
	}))
	defer leader.Close()
	h, err := New(Config{ZK: "zk://127.0.0.1:1/x", Hostname: "127.0.0.1", Port: 7001, Scheme: "https"})
	if err != nil {
		t.Fatal(err)
	}
	h.leader = strings.TrimPrefix(leader.URL, "https://")
	for _, tc := range []struct {
		name    string
		trusted bool
		want    int
	}{{"trusted", true, http.StatusOK}, {"untrusted", false, http.StatusBadGateway}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ProxyConfig{}
			if tc.trusted {
				cfg.TLS = leader.Client().Transport.(*http.Transport).TLSClientConfig
			}
			resp, err := http.Get(serveProxy(t, h, cfg) + "/v2/apps")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || tc.trusted && string(body) != "over http to tls" {
				t.Fatalf("%d %s, want %d", resp.StatusCode, body, tc.want)
			}
		})
	}
}
