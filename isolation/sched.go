package isolation

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Prestarting is speculative work: an init started ahead spends tens of
// milliseconds of CPU on its runtime start, usually right after a launch
// took the previous one, while that launch's executor is subscribing and
// starting its task. Started with SCHED_IDLE, the init (and every thread it
// creates, which inherit the policy) only gets CPU nothing else wants; the
// launcher gives it normal scheduling back before it hands it a container.
//
// Leaving SCHED_IDLE needs CAP_SYS_NICE (RLIMIT_NICE is 0 by default), so
// an unprivileged agent prestarts at normal priority instead.
var idlePrestart = os.Geteuid() == 0

// startIdle runs start on an OS thread of its own with SCHED_IDLE, so the
// process it forks inherits that policy. The thread is never unlocked: Go
// ends a thread whose goroutine exits locked, so the policy dies with it
// and no other goroutine ever runs at idle priority.
func startIdle(start func() (*initProc, error)) (*initProc, error) {
	type result struct {
		ip  *initProc
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		idle := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
		if err := unix.SchedSetAttr(0, &idle, 0); err != nil {
			// Not fatal: the init merely starts at normal priority.
			ip, err := start()
			done <- result{ip, err}
			return
		}
		ip, err := start()
		if ip != nil {
			ip.idle = true
		}
		done <- result{ip, err}
	}()
	r := <-done
	return r.ip, r.err
}

// setNormalScheduling moves every thread of pid back to SCHED_OTHER with
// nice 0. A thread that exits meanwhile is no error.
func setNormalScheduling(pid int) error {
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
		if err := unix.SchedSetAttr(tid, &normal, 0); err != nil && err != unix.ESRCH {
			return fmt.Errorf("reset scheduling of thread %d: %w", tid, err)
		}
	}
	return nil
}

// childPids lists the children of pid. /proc/<pid>/task/<tid>/children
// names those of each thread (a child belongs to the thread that forked
// it); without CONFIG_PROC_CHILDREN it scans every process's parent.
func childPids(pid int) ([]int, error) {
	taskDir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(taskDir)
	if err != nil {
		return nil, fmt.Errorf("list threads of %d: %w", pid, err)
	}
	var kids []int
	for _, t := range tasks {
		b, err := os.ReadFile(taskDir + "/" + t.Name() + "/children")
		if errors.Is(err, fs.ErrNotExist) {
			if _, statErr := os.Stat(taskDir + "/" + t.Name()); statErr == nil {
				return childPidsByScan(pid)
			}
			continue // the thread exited
		}
		if err != nil {
			return nil, fmt.Errorf("children of %d: %w", pid, err)
		}
		for _, f := range strings.Fields(string(b)) {
			if k, err := strconv.Atoi(f); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids, nil
}

func childPidsByScan(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, err := parentPid(p); err == nil && ppid == pid {
			kids = append(kids, p)
		}
	}
	return kids, nil
}

// parentPid reads the ppid field of /proc/<pid>/stat, which follows the
// command name in parentheses and the state.
func parentPid(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat of %d", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, fmt.Errorf("malformed stat of %d", pid)
	}
	return strconv.Atoi(f[1])
}
