package sandbox

import (
	"errors"
	"fmt"
	"github.com/mesolite/mesolite/internal/safefile"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/mesolite/mesolite/errdefs"
)

// Defaults of --container_logger_max_size and --container_logger_max_files.
const (
	DefaultLogMaxSize  = 10 << 20
	DefaultLogMaxFiles = 5
)

// RotatingWriter is a task log (stdout, stderr) bounded in size: when a
// write would take the file past maxSize, the file is renamed to <name>.1
// (after <name>.1 became <name>.2, and so on) and a fresh file is opened. At
// most maxFiles files exist: the live one and maxFiles-1 rotated ones; older
// ones are deleted. A write larger than maxSize is split so that no file
// exceeds maxSize; other writes are never split, so a line written at once
// stays in one file. Safe for concurrent use.
//
// Rotation renames rather than truncates so that a reader that has the old
// file open (a /files/stream client) can read it to its end and then move to
// the new one.
type RotatingWriter struct {
	path     string
	maxSize  int64
	maxFiles int

	mu     sync.Mutex
	f      *os.File
	size   int64
	closed bool
}

// NewRotatingWriter opens (or creates) path for appending; an existing file's
// size counts towards maxSize, so an agent that restarts keeps the bound.
// maxSize <= 0 disables rotation; maxFiles < 1 counts as 1.
func NewRotatingWriter(path string, maxSize int64, maxFiles int) (*RotatingWriter, error) {
	w := &RotatingWriter{path: path, maxSize: maxSize, maxFiles: max(maxFiles, 1)}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

func (w *RotatingWriter) open() error {
	// The task owns the sandbox: what it planted under the log's name (a
	// symlink to a host file, a hard link, a FIFO) is replaced, never
	// written through, on the first open, on rotation and on recovery.
	f, err := safefile.OpenAppend(w.path, 0o644, nil)
	if err != nil {
		return fmt.Errorf("open log %s: %w", w.path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open log %s: %w", w.path, err)
	}
	w.f, w.size = f, fi.Size()
	return nil
}

// Write appends p, rotating first when p does not fit.
func (w *RotatingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, fs.ErrClosed
	}
	written := 0
	for len(p) > 0 {
		if w.f == nil {
			// An earlier rotation failed half-way; write on in a
			// reopened file rather than lose the log.
			if err := w.open(); err != nil {
				return written, err
			}
		}
		chunk := p
		if w.maxSize > 0 {
			if w.size > 0 && w.size+int64(len(p)) > w.maxSize {
				if err := w.rotate(); err != nil {
					return written, err
				}
			}
			if room := w.maxSize - w.size; int64(len(chunk)) > room {
				chunk = chunk[:room]
			}
		}
		n, err := w.f.Write(chunk)
		written += n
		w.size += int64(n)
		if err != nil {
			return written, fmt.Errorf("write log %s: %w", w.path, err)
		}
		p = p[n:]
	}
	return written, nil
}

// rotate shifts <path>.k to <path>.k+1, drops what falls beyond maxFiles,
// moves the live file to <path>.1 and opens a new one.
func (w *RotatingWriter) rotate() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("rotate log %s: %w", w.path, err)
	}
	w.f = nil
	keep := w.maxFiles - 1
	if keep == 0 {
		if err := os.Remove(w.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotate log %s: %w", w.path, err)
		}
		return w.open()
	}
	if err := os.Remove(rotatedName(w.path, keep)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("rotate log %s: %w", w.path, err)
	}
	for k := keep - 1; k >= 1; k-- {
		err := os.Rename(rotatedName(w.path, k), rotatedName(w.path, k+1))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotate log %s: %w", w.path, err)
		}
	}
	if err := os.Rename(w.path, rotatedName(w.path, 1)); err != nil {
		return fmt.Errorf("rotate log %s: %w", w.path, err)
	}
	return w.open()
}

func rotatedName(path string, k int) string { return path + "." + strconv.Itoa(k) }

// Close closes the live file. Later writes fail with fs.ErrClosed.
func (w *RotatingWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	if w.f == nil {
		return nil
	}
	return w.f.Close()
}

// Byte units of Mesos's byte syntax; Mesos means 1024, not 1000.
const (
	KB int64 = 1 << 10
	MB int64 = 1 << 20
	GB int64 = 1 << 30
	TB int64 = 1 << 40
)

// ParseBytes reads Mesos's byte syntax: a whole number followed by B, KB, MB,
// GB or TB (any case), powers of 1024: "10MB" is 10485760. Fractions and
// bare numbers are refused, as Mesos refuses them.
func ParseBytes(s string) (int64, error) {
	in := strings.TrimSpace(s)
	i := 0
	for i < len(in) && in[i] >= '0' && in[i] <= '9' {
		i++
	}
	if i < len(in) && in[i] == '.' {
		return 0, fmt.Errorf("fractional bytes %q: %w", s, errdefs.ErrInvalid)
	}
	if i == 0 || i == len(in) {
		return 0, fmt.Errorf("invalid bytes %q: want a number and a unit (B, KB, MB, GB, TB): %w", s, errdefs.ErrInvalid)
	}
	var unit int64
	switch strings.ToUpper(in[i:]) {
	case "B":
		unit = 1
	case "KB":
		unit = KB
	case "MB":
		unit = MB
	case "GB":
		unit = GB
	case "TB":
		unit = TB
	default:
		return 0, fmt.Errorf("unknown bytes unit %q in %q: %w", in[i:], s, errdefs.ErrInvalid)
	}
	n, err := strconv.ParseInt(in[:i], 10, 64)
	if err != nil || n > (1<<63-1)/unit {
		return 0, fmt.Errorf("bytes %q out of range: %w", s, errdefs.ErrInvalid)
	}
	return n * unit, nil
}

// FormatBytes writes n as Mesos does: in the largest unit that loses
// nothing ("10MB", "1536KB", "100B").
func FormatBytes(n int64) string {
	if n < 0 {
		return strconv.FormatInt(n, 10) + "B"
	}
	for _, u := range []struct {
		size int64
		name string
	}{{TB, "TB"}, {GB, "GB"}, {MB, "MB"}, {KB, "KB"}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
