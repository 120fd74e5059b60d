package apps

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestProbeBoundaries: a probe reads at most maxProbeBody bytes, follows
// no redirect, and goes to no port the task was not given.
func TestProbeBoundaries(t *testing.T) {
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("Content-Type", "text/plain")
			w.Write([]byte(strings.Repeat("x", 1<<20)))
		case "/away":
			http.Redirect(w, r, other.URL+"/", http.StatusFound)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	host, portStr, _ := net.SplitHostPort(srv.Listener.Addr().String())
	port, _ := strconv.ParseUint(portStr, 10, 64)
	p := newProber(nil, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addr := net.JoinHostPort(host, portStr)

	res := p.readiness(ctx, &probe{kind: probeReadiness, protocol: ProtoHTTP, host: host, port: port, path: "/big", codes: []int{200}, preserve: true}, addr)
	if !res.Ready || res.LastResponse == nil || len(res.LastResponse.Body) != maxProbeBody || res.LastResponse.ContentType != "text/plain" {
		t.Fatalf("readiness of /big: ready %v, %d bytes kept", res.Ready, len(res.LastResponse.Body))
	}
	res = p.readiness(ctx, &probe{kind: probeReadiness, protocol: ProtoHTTP, path: "/away", codes: []int{200}, preserve: true}, addr)
	if res.Ready || res.LastResponse.Status != http.StatusFound {
		t.Fatalf("readiness of a redirect: %+v", res.LastResponse)
	}
	if err := p.health(ctx, &probe{protocol: ProtoHTTP, path: "/away"}, addr); err != nil {
		t.Fatalf("health of a redirect (3xx is healthy, as in Marathon): %v", err)
	}
	if err := p.health(ctx, &probe{protocol: ProtoHTTP, path: "/nope"}, addr); err == nil {
		t.Fatal("a 404 was healthy")
	}
	if elsewhere.Load() != 0 {
		t.Fatal("a probe followed a redirect")
	}

	a := &App{PortDefinitions: []PortDefinition{{Name: "http"}, {Name: "admin"}}}
	seven := 7
	if _, ok := a.checkPort(HealthCheck{Port: &seven}, []uint64{31000, 31001}); ok {
		t.Fatal("a health check probes a port the task was not given")
	}
	if p, ok := a.checkPort(HealthCheck{PortIndex: new(int)}, []uint64{31000, 31001}); !ok || p != 31000 {
		t.Fatalf("portIndex 0: %d %v", p, ok)
	}
	if p, ok := a.namedPort("admin", []uint64{31000, 31001}); !ok || p != 31001 {
		t.Fatalf("port named admin: %d %v", p, ok)
	}
}
