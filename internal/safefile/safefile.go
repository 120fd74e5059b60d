package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
)

// ErrUnsafe is wrapped by errors for a name that holds something other than
// a regular file with one link and could not be replaced (a directory).
var ErrUnsafe = fmt.Errorf("not a regular file with a single link: %w", errdefs.ErrForbidden)

// OpenAppend opens path for appending, creating it with perm. A symlink,
// hard link, FIFO, socket or device found at path is removed and logged on
// log (nil: slog.Default()) and a new regular file created instead.
func OpenAppend(path string, perm fs.FileMode, log *slog.Logger) (*os.File, error) {
	return open(path, true, perm, log)
}

// Create opens path for writing, truncated, with the same guarantees as
// OpenAppend.
func Create(path string, perm fs.FileMode, log *slog.Logger) (*os.File, error) {
	return open(path, false, perm, log)
}

func open(path string, appendMode bool, perm fs.FileMode, log *slog.Logger) (*os.File, error) {
	// O_TRUNC is never passed to open: it would empty a hard-linked host
	// file before fstat could tell; truncation follows the checks.
	mode := unix.O_WRONLY
	if appendMode {
		mode |= unix.O_APPEND
	}
	// Two tries: the first may find something planted and remove it; the
	// second creates exclusively, so a link planted again in between makes
	// it fail rather than be followed.
	for attempt := 0; attempt < 2; attempt++ {
		flags := mode | unix.O_CLOEXEC | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CREAT
		if attempt > 0 {
			flags |= unix.O_EXCL
		}
		fd, err := unix.Open(path, flags, uint32(perm.Perm()))
		if err != nil {
			if attempt == 0 && (errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENXIO) || errors.Is(err, unix.EISDIR)) {
				// ELOOP: a symlink; ENXIO: a FIFO without reader or a
				// socket; EISDIR: a directory (removal fails below).
				what := map[error]string{unix.ELOOP: "a symlink", unix.ENXIO: "a FIFO or socket", unix.EISDIR: "a directory"}[err]
				if what == "" {
					what = err.Error()
				}
				if rerr := replace(path, what, log); rerr != nil {
					return nil, rerr
				}
				continue
			}
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink == 1 {
			// Back to blocking writes: a regular file ignores O_NONBLOCK,
			// but the flag must not surprise a later reader of the fd.
			if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err == nil {
				_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl&^unix.O_NONBLOCK)
			}
			if !appendMode {
				if err := unix.Ftruncate(fd, 0); err != nil {
					unix.Close(fd)
					return nil, &fs.PathError{Op: "truncate", Path: path, Err: err}
				}
			}
			return os.NewFile(uintptr(fd), path), nil
		}
		unix.Close(fd)
		if attempt > 0 {
			break
		}
		what := "a hard link"
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			what = "not a regular file"
		}
		if err := replace(path, what, log); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("open %s: %w", path, ErrUnsafe)
}

// replace unlinks what was planted at path. unlink never follows a link
// and only drops this name of a hard-linked file.
func replace(path, what string, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	if err := unix.Unlink(path); err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("open %s: found %s and could not remove it (%v): %w", path, what, err, ErrUnsafe)
	}
	log.Warn("removed a file planted in a sandbox instead of writing through it", "path", path, "found", what)
	return nil
}
