package idle

import (
	"os/exec"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/internal/testutil"
)

func TestStartAndLeave(t *testing.T) {
	testutil.RequireRoot(t)
	var cmd *exec.Cmd
	var err error
	ok := Start(func() {
		cmd = exec.Command("sleep", "30")
		err = cmd.Start()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if !ok {
		t.Fatal("Start could not set SCHED_IDLE as root")
	}
	check := func(want int) {
		t.Helper()
		ps, err := Policies(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) == 0 {
			t.Fatal("no threads")
		}
		for _, p := range ps {
			if p != want {
				t.Fatalf("thread policies %v, want all %d", ps, want)
			}
		}
	}
	check(unix.SCHED_IDLE)
	// The caller's own threads are untouched: the idle thread died with
	// its goroutine.
	self, err := Policies(unix.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range self {
		if p == unix.SCHED_IDLE {
			t.Fatalf("a thread of the test process is left at SCHED_IDLE: %v", self)
		}
	}
	if err := Leave(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	check(unix.SCHED_NORMAL)
}

func TestStatField(t *testing.T) {
	for _, tc := range []struct {
		line string
		n    int
		want int
		bad  bool
	}{
		{"12 (sleep) S 1 12 12", 4, 1, false},
		{"12 (a) b) c) S 7 12", 4, 7, false}, // a command name with ") " in it
		{"12 (sleep) S", 4, 0, true},
		{"garbage", 4, 0, true},
	} {
		got, err := statField([]byte(tc.line), tc.n)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("statField(%q, %d) = %d, %v; want %d, error %v", tc.line, tc.n, got, err, tc.want, tc.bad)
		}
	}
}
