//go:build !linux

package sandbox

import (
	"errors"
	"os"
)

// Without inotify, streams poll.
type watcher struct{}

type subscription struct{}

func newWatcher() (*watcher, error) { return nil, errors.New("inotify is Linux only") }

func (w *watcher) subscribe(ch chan struct{}, file, dir *os.File) (*subscription, error) {
	return nil, errors.New("inotify is Linux only")
}

func (w *watcher) unsubscribe(s *subscription) {}

func (w *watcher) close() error { return nil }

func wake(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
