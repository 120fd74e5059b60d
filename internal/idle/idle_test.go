package idle

import (
	"os/exec"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/internal/testutil"
)

func TestParkAndLeave(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Require(t, Possible(), "CAP_SYS_NICE in the initial user namespace, to leave SCHED_IDLE")
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	check := func(want int) {
		t.Helper()
		ps, err := Policies(cmd.Process.Pid)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) == 0 || slices.ContainsFunc(ps, func(p int) bool { return p != want }) {
			t.Fatalf("thread policies %v, want all %d", ps, want)
		}
	}
	if !Park(cmd.Process.Pid) {
		t.Fatal("Park did not move the process to SCHED_IDLE")
	}
	check(unix.SCHED_IDLE)
	// Enter touched only the child.
	if self, err := Policies(unix.Getpid()); err != nil || slices.Contains(self, unix.SCHED_IDLE) {
		t.Fatalf("this process's thread policies %v %v: none may be SCHED_IDLE", self, err)
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
