// Package idle starts processes at SCHED_IDLE priority and gives them
// normal scheduling back. The agent starts some processes ahead of need
// (container inits, fetch children): speculative work that spends tens of
// milliseconds of CPU on a runtime start, usually right after a launch took
// the previous one, while that launch's executor is subscribing and
// starting its task. At SCHED_IDLE such a process (and every thread it
// creates, which inherit the policy) only gets CPU nothing else wants;
// whoever takes it calls Leave before it does real work.
package idle

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Possible reports whether processes started idle can be given normal
// scheduling back: leaving SCHED_IDLE needs CAP_SYS_NICE (RLIMIT_NICE is 0
// by default), so an unprivileged agent starts them at normal priority.
func Possible() bool { return os.Geteuid() == 0 }

// Start runs start on an OS thread with SCHED_IDLE, so any process it
// forks inherits that policy, and reports whether the policy was set
// (start runs either way). The thread gets its own policy back afterwards;
// if that fails it is never unlocked, and Go ends a thread whose goroutine
// exits locked, so no other goroutine ever runs on it at idle priority.
func Start(start func()) bool {
	done := make(chan bool, 1)
	go func() {
		runtime.LockOSThread()
		own, err := unix.SchedGetAttr(0, 0)
		if err != nil {
			runtime.UnlockOSThread()
			start()
			done <- false
			return
		}
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
		if unix.SchedSetAttr(0, &attr, 0) != nil {
			runtime.UnlockOSThread()
			start()
			done <- false
			return
		}
		start()
		if unix.SchedSetAttr(0, own, 0) == nil {
			runtime.UnlockOSThread()
		}
		done <- true
	}()
	return <-done
}

// Leave moves every thread of pid to SCHED_OTHER with nice 0. A thread
// that exits meanwhile is no error; a thread created while Leave goes
// through the list may still be idle, so callers repeat it once the
// process runs.
func Leave(pid int) error {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		return fmt.Errorf("list threads of %d: %w", pid, err)
	}
	normal := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_NORMAL}
	for _, e := range ents {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetAttr(tid, &normal, 0); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("reset scheduling of thread %d: %w", tid, err)
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
