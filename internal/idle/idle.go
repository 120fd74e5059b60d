// Package idle moves processes to SCHED_IDLE priority and back. The agent
// starts some processes ahead of need (container inits, fetch children):
// speculative work that spends tens of milliseconds of CPU on a runtime
// start, usually right after a launch took the previous one, while that
// launch's executor is subscribing and starting its task. At SCHED_IDLE
// such a process (and every thread it creates, which inherit the policy)
// only gets CPU nothing else wants; whoever takes it calls Leave before it
// does real work.
//
// The agent never runs any thread of its own at SCHED_IDLE: a thread that
// forks keeps its P, unpreemptible, until the child has exec'ed, so an idle
// forking thread on busy CPUs would hold up every stop-the-world of the
// agent's garbage collector. Processes are started at normal priority and
// moved with Enter at once.
package idle

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Possible reports whether a process moved to SCHED_IDLE can be given
// normal scheduling back. Going idle needs no privilege, leaving it needs
// CAP_SYS_NICE in the initial user namespace (RLIMIT_NICE is 0 by
// default): root under Docker's default capabilities or in a user namespace
// lacks it, and prestarted processes then stay at normal priority.
var Possible = sync.OnceValue(func() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil || data[0].Effective&(1<<unix.CAP_SYS_NICE) == 0 {
		return false
	}
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"
})

// normal is what Leave restores: the policy and nice value of this
// process's main thread (an agent started with Nice=5 gives its executors
// nice 5, as a cold start would), never SCHED_IDLE itself.
var normal = sync.OnceValue(func() unix.SchedAttr {
	a := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
	if own, err := unix.SchedGetAttr(os.Getpid(), 0); err == nil && own.Policy != unix.SCHED_IDLE {
		a = *own
		a.Size = unix.SizeofSchedAttr
	}
	return a
})

// Enter moves every thread of pid to SCHED_IDLE. A thread created while
// it goes through the list inherits its creator's policy, so callers
// repeat it once the process has settled.
func Enter(pid int) error {
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
	return setAll(pid, &attr)
}

// Park moves a process started ahead of need to SCHED_IDLE where it can be
// woken again (Possible), and reports whether it is idle now; a partial
// move is undone, so a process Park reports as not idle has no idle thread.
func Park(pid int) bool {
	if !Possible() {
		return false
	}
	if Enter(pid) == nil {
		return true
	}
	_ = Leave(pid)
	return false
}

// Leave gives every thread of pid this process's own scheduling (see
// normal). It needs Possible.
func Leave(pid int) error {
	attr := normal()
	return setAll(pid, &attr)
}

// setAll applies attr to every thread of pid; a thread that exits
// meanwhile is no error.
func setAll(pid int, attr *unix.SchedAttr) error {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return fmt.Errorf("list threads of %d: %w", pid, err)
	}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetAttr(tid, attr, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("set scheduling of thread %d: %w", tid, err)
		}
	}
	return nil
}

// Policies returns the scheduling policy of every thread of pid, as
// /proc/<pid>/task/<tid>/stat gives it (field 41).
func Policies(pid int) ([]int, error) {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/stat")
		if err != nil {
			continue // exited
		}
		p, err := statField(b, 41)
		if err != nil {
			return nil, fmt.Errorf("thread %s: %w", e.Name(), err)
		}
		out = append(out, p)
	}
	return out, nil
}

// statField parses field n (1-based) of a /proc stat line; fields after
// the command name in parentheses start at 3.
func statField(b []byte, n int) (int, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || n < 3 {
		return 0, errors.New("malformed stat")
	}
	fields := strings.Fields(string(b[i+1:]))
	if len(fields) < n-2 {
		return 0, errors.New("short stat")
	}
	return strconv.Atoi(fields[n-3])
}
