package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

var shell = ExecCommand("", nil)

// fast is a health check that probes every 20 ms from the start.
func fast(typ mesos.HealthCheck_Type, failures uint32, grace float64) *mesos.HealthCheck {
	return &mesos.HealthCheck{Type: typ.Enum(), DelaySeconds: proto.Float64(0), IntervalSeconds: proto.Float64(0.02),
		TimeoutSeconds: proto.Float64(1), ConsecutiveFailures: proto.Uint32(failures), GracePeriodSeconds: proto.Float64(grace)}
}

type recorder struct {
	mu      sync.Mutex
	reports []Report
}

func (r *recorder) add(rep Report) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reports = append(r.reports, rep)
}

func (r *recorder) all() []Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Report(nil), r.reports...)
}

func run(t *testing.T, hc *mesos.HealthCheck, target Target) []Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := &recorder{}
	if err := Run(ctx, hc, target, time.Now(), rec.add); err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("the check never asked for a kill; reports %+v", rec.all())
	}
	return rec.all()
}

// TestCommandCheckTurnsUnhealthyAndKills: a command that succeeds twice,
// then fails: one healthy report, then every failure reported, the third
// asking for the kill.
func TestCommandCheckTurnsUnhealthyAndKills(t *testing.T) {
	dir := t.TempDir()
	counter := filepath.Join(dir, "n")
	hc := fast(mesos.HealthCheck_COMMAND, 3, 0)
	// Exit 0 the first two times, 1 after.
	hc.Command = &mesos.CommandInfo{Value: proto.String(`n=$(cat ` + counter + ` 2>/dev/null || echo 0); echo $((n+1)) > ` + counter + `; [ $n -lt 2 ]`)}
	got := run(t, hc, Target{Command: shell})
	want := []Report{{Healthy: true}, {Failures: 1}, {Failures: 2}, {Failures: 3, Kill: true}}
	if len(got) != len(want) {
		t.Fatalf("reports %+v", got)
	}
	for i := range want {
		if got[i].Healthy != want[i].Healthy || got[i].Failures != want[i].Failures || got[i].Kill != want[i].Kill {
			t.Fatalf("report %d = %+v, want %+v (all %+v)", i, got[i], want[i], got)
		}
	}
	if got[1].Message != "command health check exited with status 1" {
		t.Fatalf("message %q", got[1].Message)
	}
}

// TestGracePeriodIgnoresEarlyFailures: failures inside the grace period
// are neither counted nor reported; after it they are.
func TestGracePeriodIgnoresEarlyFailures(t *testing.T) {
	hc := fast(mesos.HealthCheck_TCP, 2, 0.3)
	hc.Tcp = &mesos.HealthCheck_TCPCheckInfo{Port: proto.Uint32(uint32(closedPort(t)))}
	start := time.Now()
	got := run(t, hc, Target{Host: "127.0.0.1"})
	if len(got) != 2 || !got[1].Kill || got[0].Failures != 1 {
		t.Fatalf("reports %+v", got)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Fatalf("killed after %s, inside the 300 ms grace period", took)
	}
}

// TestHTTPCheck: 2xx and 3xx are healthy, others not; recovering from a
// failure is reported once.
func TestHTTPCheck(t *testing.T) {
	var status atomic.Int32
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if s := int(status.Load()); s == http.StatusFound {
			http.Redirect(w, r, "/elsewhere", s)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, _ := strconv.Atoi(port)
	hc := fast(mesos.HealthCheck_HTTP, 2, 0)
	hc.Http = &mesos.HealthCheck_HTTPCheckInfo{Port: proto.Uint32(uint32(p)), Path: proto.String("health")}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec := &recorder{}
	done := make(chan error, 1)
	go func() { done <- Run(ctx, hc, Target{Host: "127.0.0.1"}, time.Now(), rec.add) }()
	waitFor := func(n int) {
		t.Helper()
		for len(rec.all()) < n {
			if ctx.Err() != nil {
				t.Fatalf("reports %+v", rec.all())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor(1)                     // healthy
	status.Store(http.StatusFound) // a redirect is a success: nothing new
	time.Sleep(100 * time.Millisecond)
	status.Store(http.StatusServiceUnavailable)
	waitFor(2) // one failure
	status.Store(http.StatusOK)
	waitFor(3) // healthy again
	status.Store(http.StatusInternalServerError)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := rec.all()
	if len(got) != 5 || !got[0].Healthy || got[1].Healthy || got[1].Message != "HTTP health check answered 503" ||
		!got[2].Healthy || got[3].Failures != 1 || !got[4].Kill {
		t.Fatalf("reports %+v", got)
	}
}

// TestTimeoutIsAFailure: a probe that outlives timeout_seconds failed.
func TestTimeoutIsAFailure(t *testing.T) {
	hc := fast(mesos.HealthCheck_COMMAND, 1, 0)
	hc.TimeoutSeconds = proto.Float64(0.1)
	hc.Command = &mesos.CommandInfo{Value: proto.String("sleep 5")}
	start := time.Now()
	got := run(t, hc, Target{Command: shell})
	if len(got) != 1 || !got[0].Kill || got[0].Message != "check timed out after 100ms" || time.Since(start) > 3*time.Second {
		t.Fatalf("reports %+v after %s", got, time.Since(start))
	}
}

func TestValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		hc   *mesos.HealthCheck
		ok   bool
	}{
		{"none", nil, true},
		{"no type", &mesos.HealthCheck{}, false},
		{"command without value", &mesos.HealthCheck{Type: mesos.HealthCheck_COMMAND.Enum()}, false},
		{"http without port", &mesos.HealthCheck{Type: mesos.HealthCheck_HTTP.Enum(), Http: &mesos.HealthCheck_HTTPCheckInfo{}}, false},
		{"http bad scheme", &mesos.HealthCheck{Type: mesos.HealthCheck_HTTP.Enum(), Http: &mesos.HealthCheck_HTTPCheckInfo{Port: proto.Uint32(80), Scheme: proto.String("ftp")}}, false},
		{"tcp port too big", &mesos.HealthCheck{Type: mesos.HealthCheck_TCP.Enum(), Tcp: &mesos.HealthCheck_TCPCheckInfo{Port: proto.Uint32(70000)}}, false},
		{"negative interval", &mesos.HealthCheck{Type: mesos.HealthCheck_TCP.Enum(), Tcp: &mesos.HealthCheck_TCPCheckInfo{Port: proto.Uint32(80)}, IntervalSeconds: proto.Float64(-1)}, false},
		{"tcp", &mesos.HealthCheck{Type: mesos.HealthCheck_TCP.Enum(), Tcp: &mesos.HealthCheck_TCPCheckInfo{Port: proto.Uint32(80)}}, true},
	} {
		err := Validate(tt.hc)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, errdefs.ErrInvalid)) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// TestCheckReportsChanges: a general check reports its first result and
// each change, never asks for a kill.
func TestCheckReportsChanges(t *testing.T) {
	dir := t.TempDir()
	code := filepath.Join(dir, "code")
	if err := os.WriteFile(code, []byte("0"), 0o644); err != nil {
		t.Fatal(err)
	}
	ci := &mesos.CheckInfo{Type: mesos.CheckInfo_COMMAND.Enum(), DelaySeconds: proto.Float64(0), IntervalSeconds: proto.Float64(0.02),
		TimeoutSeconds: proto.Float64(1), Command: &mesos.CheckInfo_Command{Command: &mesos.CommandInfo{Value: proto.String("exit $(cat " + code + ")")}}}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var got []int32
	go func() {
		_ = RunCheck(ctx, ci, Target{Command: shell}, func(st *mesos.CheckStatusInfo) {
			mu.Lock()
			got = append(got, st.GetCommand().GetExitCode())
			mu.Unlock()
		})
	}()
	wait := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			l := len(got)
			mu.Unlock()
			if l >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("check results %v", got)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait(1)
	time.Sleep(100 * time.Millisecond) // unchanged: no report
	if err := os.WriteFile(code, []byte("3"), 0o644); err != nil {
		t.Fatal(err)
	}
	wait(2)
	cancel()
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0] != 0 || got[1] != 3 {
		t.Fatalf("check results %v, want [0 3]", got)
	}
}

func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}
