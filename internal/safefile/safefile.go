package safefile

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
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

// open never opens for writing anything it has not first seen to be a
// regular file with one link: what is there is looked at through an
// O_PATH handle (which opens no device, FIFO or socket: a driver's open,
// which could act as root on the host, never runs) and only that same
// inode is then opened for writing, through the handle. A name that holds
// anything else is unlinked and created anew with O_EXCL.
func open(path string, appendMode bool, perm fs.FileMode, log *slog.Logger) (*os.File, error) {
	mode := unix.O_WRONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW
	if appendMode {
		mode |= unix.O_APPEND
	}
	for attempt := 0; attempt < 2; attempt++ {
		pfd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if errors.Is(err, unix.ENOENT) {
			// Nothing there: create it, exclusively, so nothing planted
			// meanwhile is followed.
			fd, err := unix.Open(path, mode|unix.O_CREAT|unix.O_EXCL, uint32(perm.Perm()))
			if errors.Is(err, unix.EEXIST) && attempt == 0 {
				continue
			}
			if err != nil {
				return nil, &fs.PathError{Op: "create", Path: path, Err: err}
			}
			return os.NewFile(uintptr(fd), path), nil
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		var st unix.Stat_t
		if err := unix.Fstat(pfd, &st); err != nil {
			unix.Close(pfd)
			return nil, &fs.PathError{Op: "fstat", Path: path, Err: err}
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG && st.Nlink == 1 {
			// Reopen the very inode just checked, through its handle (a
			// magic link: O_NOFOLLOW would refuse it).
			fd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(pfd), mode&^unix.O_NOFOLLOW, 0)
			unix.Close(pfd)
			if err != nil {
				return nil, &fs.PathError{Op: "open", Path: path, Err: err}
			}
			var st2 unix.Stat_t
			if err := unix.Fstat(fd, &st2); err != nil || st2.Dev != st.Dev || st2.Ino != st.Ino {
				unix.Close(fd)
				return nil, fmt.Errorf("open %s: the file changed while it was opened: %w", path, ErrUnsafe)
			}
			if !appendMode {
				if err := unix.Ftruncate(fd, 0); err != nil {
					unix.Close(fd)
					return nil, &fs.PathError{Op: "truncate", Path: path, Err: err}
				}
			}
			return os.NewFile(uintptr(fd), path), nil
		}
		unix.Close(pfd)
		if attempt > 0 {
			break
		}
		if err := replace(path, describe(st), log); err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("open %s: %w", path, ErrUnsafe)
}

func describe(st unix.Stat_t) string {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return "a symlink"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFREG:
		return "a hard link"
	}
	return "not a regular file"
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
