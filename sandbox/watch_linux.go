package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// watcher multiplexes one inotify instance over every stream of a handler:
// the kernel's default limit is 128 instances per user, far fewer than the
// streams an agent may have open. Subscribers are woken, not told what
// happened; each stream then looks at its file itself, so a missed or merged
// event costs nothing but the wait for the next one (or the safety poll).
type watcher struct {
	// f is the inotify descriptor inside Go's poller, so that Close ends a
	// blocked Read; fd is the same descriptor for the watch calls (f.Fd()
	// would switch it to blocking mode and defeat that).
	f  *os.File
	fd int

	mu      sync.Mutex
	closed  bool
	watches map[int32]*watchEntry
	done    chan struct{}
}

type watchEntry struct {
	wd   int32
	subs map[*subscription]struct{}
}

// subscription is one stream's interest in a few inodes.
type subscription struct {
	ch      chan struct{}
	entries []*watchEntry
}

const (
	fileEvents = unix.IN_MODIFY | unix.IN_ATTRIB | unix.IN_MOVE_SELF | unix.IN_DELETE_SELF | unix.IN_CLOSE_WRITE
	dirEvents  = unix.IN_CREATE | unix.IN_MOVED_TO | unix.IN_MOVED_FROM | unix.IN_DELETE | unix.IN_DELETE_SELF | unix.IN_MOVE_SELF
)

func newWatcher() (*watcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	w := &watcher{
		f:       os.NewFile(uintptr(fd), "inotify"),
		fd:      fd,
		watches: make(map[int32]*watchEntry),
		done:    make(chan struct{}),
	}
	go w.loop()
	return w, nil
}

// subscribe wakes ch (non-blocking, buffered) whenever the inode behind file
// or behind dir changes. The inodes are named through /proc/self/fd, so no
// path is resolved again and a file renamed or unlinked meanwhile is still the
// one watched. dir may be nil.
func (w *watcher) subscribe(ch chan struct{}, file, dir *os.File) (*subscription, error) {
	s := &subscription{ch: ch}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, os.ErrClosed
	}
	for _, t := range []struct {
		f    *os.File
		mask uint32
	}{{file, fileEvents}, {dir, dirEvents}} {
		if t.f == nil {
			continue
		}
		wd, err := w.addWatch(t.f, t.mask)
		if err != nil {
			w.unsubscribeLocked(s)
			return nil, fmt.Errorf("inotify add watch: %w", err)
		}
		e := w.watches[int32(wd)]
		if e == nil {
			e = &watchEntry{wd: int32(wd), subs: make(map[*subscription]struct{})}
			w.watches[int32(wd)] = e
		}
		e.subs[s] = struct{}{}
		s.entries = append(s.entries, e)
	}
	return s, nil
}

// addWatch watches the inode behind f, reached through its descriptor.
func (w *watcher) addWatch(f *os.File, mask uint32) (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	wd := -1
	cerr := rc.Control(func(fd uintptr) {
		wd, err = unix.InotifyAddWatch(w.fd, "/proc/self/fd/"+strconv.Itoa(int(fd)), mask)
	})
	if cerr != nil {
		return 0, cerr
	}
	return wd, err
}

func (w *watcher) unsubscribe(s *subscription) {
	if s == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.unsubscribeLocked(s)
}

func (w *watcher) unsubscribeLocked(s *subscription) {
	for _, e := range s.entries {
		delete(e.subs, s)
		// The entry may be gone already (IN_IGNORED) or its wd reused for
		// another inode; only remove the kernel watch that is still ours.
		if len(e.subs) == 0 && w.watches[e.wd] == e {
			delete(w.watches, e.wd)
			if !w.closed {
				_, _ = unix.InotifyRmWatch(w.fd, uint32(e.wd))
			}
		}
	}
	s.entries = nil
}

func (w *watcher) loop() {
	defer close(w.done)
	buf := make([]byte, 64<<10)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			// Anything else (EINTR is retried by the poller) leaves the
			// streams to their safety poll.
			w.wakeAll()
			return
		}
		w.dispatch(buf[:n])
	}
}

func (w *watcher) dispatch(b []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for len(b) >= unix.SizeofInotifyEvent {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		size := unix.SizeofInotifyEvent + int(ev.Len)
		if size > len(b) {
			break
		}
		b = b[size:]
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			w.wakeAllLocked()
			continue
		}
		e := w.watches[ev.Wd]
		if e == nil {
			continue
		}
		for s := range e.subs {
			wake(s.ch)
		}
		if ev.Mask&unix.IN_IGNORED != 0 {
			// The kernel dropped the watch (inode gone); its wd may be
			// handed out again.
			delete(w.watches, ev.Wd)
		}
	}
}

func (w *watcher) wakeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.wakeAllLocked()
}

func (w *watcher) wakeAllLocked() {
	for _, e := range w.watches {
		for s := range e.subs {
			wake(s.ch)
		}
	}
}

func (w *watcher) close() error {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	err := w.f.Close()
	<-w.done
	return err
}

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
