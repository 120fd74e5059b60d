package safefile

import (
	"errors"
	"github.com/mesolite/mesolite/internal/testutil"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestOpenAppendRefusesPlanted plants, in a sandbox-like directory, each
// thing a task could put where its log goes, and checks the victim file
// outside is never written and the name ends up a fresh regular file.
func TestOpenAppendRefusesPlanted(t *testing.T) {
	tests := []struct {
		name  string
		plant func(t *testing.T, path, victim string)
	}{
		{"symlink to a host file", func(t *testing.T, path, victim string) {
			if err := os.Symlink(victim, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"dangling symlink to a new host file", func(t *testing.T, path, victim string) {
			if err := os.Symlink(victim+".new", path); err != nil {
				t.Fatal(err)
			}
		}},
		{"hard link to a host file", func(t *testing.T, path, victim string) {
			if err := os.Link(victim, path); err != nil {
				t.Fatal(err)
			}
		}},
		{"fifo", func(t *testing.T, path, victim string) {
			if err := unix.Mkfifo(path, 0o666); err != nil {
				t.Fatal(err)
			}
		}},
		// A device node a root container made with mknod: opening it at
		// all could act on the host (a watchdog arms on open). /dev/null's
		// numbers stand in, and an inotify watch proves it is never
		// opened.
		{"device node", func(t *testing.T, path, victim string) {
			testutil.RequireRoot(t) // mknod of a device
			if err := unix.Mknod(path, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		for _, opener := range []struct {
			name string
			open func(string) (*os.File, error)
		}{
			{"append", func(p string) (*os.File, error) { return OpenAppend(p, 0o644, nil) }},
			{"create", func(p string) (*os.File, error) { return Create(p, 0o644, nil) }},
		} {
			t.Run(tt.name+"/"+opener.name, func(t *testing.T) {
				host := t.TempDir()
				victim := filepath.Join(host, "shadow")
				if err := os.WriteFile(victim, []byte("secret\n"), 0o600); err != nil {
					t.Fatal(err)
				}
				sandbox := t.TempDir()
				path := filepath.Join(sandbox, "stdout")
				tt.plant(t, path, victim)
				ino, _ := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
				defer unix.Close(ino)
				_, _ = unix.InotifyAddWatch(ino, path, unix.IN_OPEN|unix.IN_DONT_FOLLOW)
				f, err := opener.open(path)
				buf := make([]byte, 4096)
				if n, _ := unix.Read(ino, buf); n > 0 {
					ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[0]))
					if ev.Mask&unix.IN_OPEN != 0 {
						t.Fatalf("what the task planted was opened before it was refused")
					}
				}
				if err != nil {
					t.Fatalf("open: %v", err)
				}
				if _, err := f.WriteString("task output\n"); err != nil {
					t.Fatal(err)
				}
				f.Close()
				if b, _ := os.ReadFile(victim); string(b) != "secret\n" {
					t.Fatalf("host file written through: %q", b)
				}
				if _, err := os.Lstat(victim + ".new"); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("host file created through a dangling link: %v", err)
				}
				fi, err := os.Lstat(path)
				if err != nil || !fi.Mode().IsRegular() {
					t.Fatalf("log is not a regular file: %v %v", fi, err)
				}
				if b, _ := os.ReadFile(path); string(b) != "task output\n" {
					t.Fatalf("log holds %q", b)
				}
			})
		}
	}
}

func TestOpenAppendKeepsExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stdout")
	if err := os.WriteFile(path, []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := OpenAppend(path, 0o644, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("b\n")
	f.Close()
	if b, _ := os.ReadFile(path); string(b) != "a\nb\n" {
		t.Fatalf("got %q", b)
	}
}

func TestOpenAppendRefusesDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stdout")
	if err := os.MkdirAll(filepath.Join(path, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenAppend(path, 0o644, nil); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("got %v, want ErrUnsafe", err)
	}
}
