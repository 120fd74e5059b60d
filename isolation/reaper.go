package isolation

import (
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// An executor run in place by a pid namespace's init (RunInit with
// InProcess) is pid 1 and inherits its duty to reap orphans. Its own
// children are waited for by their owners (os/exec), and a reaper that took
// one would leave that owner with ECHILD; so children are started through
// StartChild, which records them before the reaper can see them exit.
var reaper struct {
	mu      sync.Mutex
	active  bool
	tracked map[int]bool
}

// StartChild runs start, which starts a process and returns its pid, such
// that the orphan reaper of an in-place init never reaps it. Call ChildDone
// once it was waited for. Elsewhere it only runs start.
func StartChild(start func() (pid int, err error)) error {
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	pid, err := start()
	if err == nil && reaper.active {
		reaper.tracked[pid] = true
	}
	return err
}

// ChildDone forgets a child StartChild recorded.
func ChildDone(pid int) {
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	delete(reaper.tracked, pid)
}

// startReaper reaps, on every SIGCHLD (and every second, for a signal lost
// to a full channel), each zombie child that StartChild did not record.
func startReaper() (stop func()) {
	reaper.mu.Lock()
	reaper.active = true
	reaper.tracked = map[int]bool{}
	reaper.mu.Unlock()
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, unix.SIGCHLD)
	done := make(chan struct{})
	go func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-sigs:
			case <-tick.C:
			}
			reapOrphans()
		}
	}()
	return func() {
		signal.Stop(sigs)
		close(done)
	}
}

func reapOrphans() {
	reaper.mu.Lock()
	defer reaper.mu.Unlock()
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || reaper.tracked[pid] {
			continue
		}
		if ppid, state, ok := parentAndState(pid); ok && ppid == self && state == 'Z' {
			var ws unix.WaitStatus
			_, _ = unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		}
	}
}

// parentAndState reads a process's parent pid and state from
// /proc/<pid>/stat.
func parentAndState(pid int) (ppid int, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	return ppid, f[0][0], err == nil
}
