package ha

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/detector/zktest"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/internal/testutil"
)

// fakeTerm is a term that answers 200 and records whether it runs. The
// framework is what apps and jobs test with real processes; here the
// election's own behaviour is under test.
type fakeTerm struct {
	mu      sync.Mutex
	running bool
}

func (f *fakeTerm) ServeHTTP(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }

func (f *fakeTerm) Run(ctx context.Context) error {
	f.set(true)
	<-ctx.Done()
	f.set(false)
	return nil
}

func (f *fakeTerm) set(v bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = v
}

func (f *fakeTerm) isRunning() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.running
}

type instance struct {
	h    *HA
	term *fakeTerm
	done chan struct{} // closed when Run returned, with err
	err  error
	stop context.CancelFunc
}

func start(t *testing.T, url string, port int) *instance {
	t.Helper()
	h, err := New(Config{ZK: url, Hostname: "127.0.0.1", Port: port, SessionTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{h: h, term: &fakeTerm{}, done: make(chan struct{}), stop: cancel}
	go func() {
		defer close(in.done)
		in.err = h.Run(ctx, func(ctx context.Context, st frameworks.Store) (Term, error) {
			// The term's store is the shared one, and fenced.
			if err := st.Apply(ctx, frameworks.Put("terms", "last", []byte(h.Self()))); err != nil {
				return nil, err
			}
			return in.term, nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-in.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return in
}

func answer(h http.Handler, target string) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", target, nil))
	return rec
}

func TestElectionRedirectAbdicate(t *testing.T) {
	zk := zktest.Start(t)
	url := zk.URL("/fw")
	a := start(t, url, 1001)
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, a.h.Leading, "a leads")
	b := start(t, url, 1002)
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool { return b.h.Leader() == "127.0.0.1:1001" }, "b knows a leads")

	if rec := answer(a.h, "/v2/apps"); rec.Code != 200 || !a.term.isRunning() {
		t.Fatalf("leader: %d, running %v", rec.Code, a.term.isRunning())
	}
	rec := answer(b.h, "/scheduler/jobs?x=1&y=%2F")
	if rec.Code != http.StatusTemporaryRedirect || rec.Header().Get("Location") != "http://127.0.0.1:1001/scheduler/jobs?x=1&y=%2F" {
		t.Fatalf("standby: %d %s", rec.Code, rec.Header().Get("Location"))
	}

	a.h.Abdicate()
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool { return b.h.Leading() && b.term.isRunning() }, "b leads after a abdicated")
	if a.term.isRunning() {
		t.Fatal("a's term still runs after abdicating")
	}
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		rec := answer(a.h, "/v2/apps")
		return rec.Code == http.StatusTemporaryRedirect && rec.Header().Get("Location") == "http://127.0.0.1:1002/v2/apps"
	}, "a redirects to b")
	b.h.Abdicate() // a has joined again: it leads once more
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool { return a.h.Leading() && a.term.isRunning() }, "a leads again")
}

// TestNoLeaderIs503: a standby that knows no leader says so rather than
// redirecting nowhere.
func TestNoLeaderIs503(t *testing.T) {
	h, err := New(Config{ZK: "zk://127.0.0.1:1/x", Hostname: "h", Port: 1})
	if err != nil {
		t.Fatal(err)
	}
	if rec := answer(h, "/v2/apps"); rec.Code != http.StatusServiceUnavailable || h.Leader() != "" {
		t.Fatalf("no leader: %d, leader %q", rec.Code, h.Leader())
	}
}

// TestLeaderStopsWhenZooKeeperGoes: a leader cut off from ZooKeeper stops
// its term well within the session timeout and Run reports the loss, so
// that it never leads beside a successor.
func TestLeaderStopsWhenZooKeeperGoes(t *testing.T) {
	zk := zktest.Start(t)
	a := start(t, zk.URL("/fw"), 1001)
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool { return a.h.Leading() && a.term.isRunning() }, "a leads")
	zk.Stop()
	stopped := time.Now()
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { return !a.term.isRunning() && !a.h.Leading() }, "the term stops")
	if d := time.Since(stopped); d > 1500*time.Millisecond {
		t.Fatalf("stopped %s after ZooKeeper went; the session timeout is 2s", d)
	}
	if rec := answer(a.h, "/v2/apps"); rec.Code == http.StatusOK {
		t.Fatal("a former leader still serves the API")
	}
	select {
	case <-a.done:
		if !errors.Is(a.err, ErrLeadershipLost) {
			t.Fatalf("Run: %v, want ErrLeadershipLost", a.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}
