package isolation

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
)

// Attach re-attaches to an executor launched by an earlier agent process,
// from the Handle that agent checkpointed. The process is no child of ours,
// so its exit is seen through a pidfd (polling /proc on kernels before 5.3)
// and its status comes from the Handle's StatusPath, which a supervising
// init writes; without one the status is not Known. A pid that is gone, or
// now belongs to another process (start time differs), is a Process that
// has already exited.
func Attach(h Handle) (Process, error) {
	if h.Pid <= 0 {
		return nil, fmt.Errorf("attach pid %d: %w", h.Pid, errdefs.ErrInvalid)
	}
	a := &attached{handle: h, done: make(chan struct{})}
	fd, err := unix.PidfdOpen(h.Pid, 0)
	switch {
	case err == nil:
		// Checked after opening: from here on the pidfd pins this process.
		if !a.same() {
			unix.Close(fd)
			a.finish()
			return a, nil
		}
		if err := unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("attach pid %d: %w", h.Pid, err)
		}
		a.pidfd = os.NewFile(uintptr(fd), "pidfd")
		go a.waitPidfd()
	case errors.Is(err, unix.ESRCH):
		a.finish()
	default:
		if !a.same() {
			a.finish()
			return a, nil
		}
		go a.poll()
	}
	return a, nil
}

type attached struct {
	handle Handle
	mu     sync.Mutex
	pidfd  *os.File
	done   chan struct{}
	status ExitStatus
}

// same reports whether the pid still names the process of the handle, alive.
func (a *attached) same() bool {
	st, state, ok := procStat(a.handle.Pid)
	return ok && st == a.handle.StartTime && state != 'Z' && state != 'X'
}

func (a *attached) waitPidfd() {
	rc, err := a.pidfd.SyscallConn()
	if err == nil {
		err = rc.Read(func(fd uintptr) bool {
			n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 0)
			return n > 0
		})
	}
	if err != nil {
		// Not pollable through the runtime: fall back to polling.
		a.poll()
		return
	}
	a.finish()
}

func (a *attached) poll() {
	for a.same() {
		time.Sleep(100 * time.Millisecond)
	}
	a.finish()
}

func (a *attached) finish() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pidfd != nil {
		a.pidfd.Close()
		a.pidfd = nil
	}
	a.status = readStatusFile(a.handle.StatusPath)
	close(a.done)
}

func (a *attached) Pid() int       { return a.handle.Pid }
func (a *attached) Handle() Handle { return a.handle }

func (a *attached) Wait(ctx context.Context) (ExitStatus, error) {
	select {
	case <-a.done:
		return a.status, nil
	case <-ctx.Done():
		return ExitStatus{}, ctx.Err()
	}
}

func (a *attached) Signal(sig syscall.Signal) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-a.done:
		return fmt.Errorf("signal pid %d: %w", a.handle.Pid, os.ErrProcessDone)
	default:
	}
	if a.handle.Supervised && a.pidfd != nil {
		if err := unix.PidfdSendSignal(int(a.pidfd.Fd()), sig, nil, 0); err != nil {
			return fmt.Errorf("signal pid %d: %w", a.handle.Pid, err)
		}
		return nil
	}
	if !a.same() {
		return fmt.Errorf("signal pid %d: %w", a.handle.Pid, os.ErrProcessDone)
	}
	target := a.handle.Pid
	if !a.handle.Supervised {
		target = -target
	}
	if err := unix.Kill(target, sig); err != nil {
		return fmt.Errorf("signal pid %d: %w", target, err)
	}
	return nil
}

// writeStatusFile records a wait status where a re-attached agent finds it;
// rename makes it appear whole or not at all.
func writeStatusFile(path string, ws unix.WaitStatus) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(int(ws))+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func readStatusFile(path string) ExitStatus {
	if path == "" {
		return ExitStatus{}
	}
	s, err := readTrimmed(path)
	if err != nil {
		return ExitStatus{}
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return ExitStatus{}
	}
	return exitStatusFromWait(unix.WaitStatus(v))
}

// procStat reads a process's start time (clock ticks after boot) and state
// from /proc/<pid>/stat.
func procStat(pid int) (start uint64, state byte, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); starttime is field 22.
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return start, f[0][0], true
}

func startTime(pid int) uint64 {
	st, _, _ := procStat(pid)
	return st
}
