package fetcher

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/internal/idle"
	"github.com/mesolite/mesolite/internal/testutil"
)

// idleChild waits until the pool has a child waiting and returns its pid.
func idleChild(t *testing.T, p *ChildPool) int {
	t.Helper()
	pid := 0
	testutil.Eventually(t, 10*time.Second, 5*time.Millisecond, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		if len(p.idle) == 0 {
			return false
		}
		pid = p.idle[0].cmd.Process.Pid
		return true
	}, "a fetch child prestarted")
	return pid
}

func TestChildPool(t *testing.T) {
	src := filepath.Join(t.TempDir(), "artifact.txt")
	if err := os.WriteFile(src, []byte("payload\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		// spoil damages the waiting child before the fetch.
		spoil func(t *testing.T, pid int)
	}{
		{"waiting child is used", nil},
		{"dead waiting child is replaced", func(t *testing.T, pid int) {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// Let it die before the request is written to it.
			testutil.Eventually(t, 5*time.Second, 5*time.Millisecond, func() bool {
				b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
				return err != nil || strings.Contains(string(b), ") Z ")
			}, "child %d dead", pid)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := childOptions(t, Config{})
			pool := NewChildPool(opts, 1)
			t.Cleanup(func() { pool.Close() })
			opts.Pool = pool
			pool.Fill()
			pid := idleChild(t, pool)
			// It waits at SCHED_IDLE (where it can leave it): CPU only when nothing else wants it.
			if idle.Possible() {
				policies, err := idle.Policies(pid)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.ContainsFunc(policies, func(p int) bool { return p == unix.SCHED_IDLE }) || slices.ContainsFunc(policies, func(p int) bool { return p != unix.SCHED_IDLE }) {
					t.Errorf("waiting child's thread policies %v, want all SCHED_IDLE", policies)
				}
			}
			if tt.spoil != nil {
				tt.spoil(t, pid)
			}
			sandbox := t.TempDir()
			if log, err := runFetch(t, opts, Request{SandboxDir: sandbox, URIs: []URI{NewURI(src)}}); err != nil {
				t.Fatalf("fetch: %v\n%s", err, log)
			}
			if b, err := os.ReadFile(filepath.Join(sandbox, "artifact.txt")); err != nil || string(b) != "payload\n" {
				t.Fatalf("fetched file: %q %v", b, err)
			}
			// The pool refills for the next fetch, with a new child.
			if next := idleChild(t, pool); next == pid {
				t.Errorf("pool still offers child %d after it was used", pid)
			}
		})
	}
}

// A child taken from the pool gets normal scheduling, every thread of it,
// before it is sent its request.
func TestPooledChildWakes(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Require(t, idle.Possible(), "CAP_SYS_NICE in the initial user namespace, to move children to SCHED_IDLE and back")
	opts := childOptions(t, Config{})
	pool := NewChildPool(opts, 1)
	t.Cleanup(func() { pool.Close() })
	pool.Fill()
	idleChild(t, pool)
	c := pool.take()
	defer c.discard()
	if !c.idle {
		t.Fatal("pooled child not started idle as root")
	}
	again, err := c.wake()
	if err != nil {
		t.Fatal(err)
	}
	again()
	policies, err := idle.Policies(c.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(policies, unix.SCHED_IDLE) {
		t.Errorf("thread policies after wake %v, want none SCHED_IDLE", policies)
	}
}
