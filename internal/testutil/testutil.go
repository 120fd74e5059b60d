// Package testutil holds the helpers every mesolite test shares: requirement
// checks that skip outside CI and fail inside it, and polling with a deadline.
package testutil

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// InCI reports whether the tests run under CI, where every requirement must be met.
func InCI() bool {
	v := strings.ToLower(os.Getenv("CI"))
	return v == "true" || v == "1"
}

// Require skips the test with reason when ok is false, or fails it under CI,
// because CI promises root, dockerd and cgroups and a skip there hides a regression.
func Require(t testing.TB, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("requirement missing in CI: %s", reason)
	}
	t.Skipf("skipping: %s", reason)
}

// RequireRoot needs euid 0 (cgroups, namespaces, mounts).
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "test needs root")
}

// CgroupV2 reports whether /sys/fs/cgroup is the unified (v2) hierarchy.
func CgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// RequireCgroupV2 needs a unified cgroup hierarchy.
func RequireCgroupV2(t testing.TB) {
	t.Helper()
	Require(t, CgroupV2(), "test needs cgroup v2 (unified hierarchy)")
}

// RequireCgroupV1 needs a legacy or hybrid cgroup hierarchy.
func RequireCgroupV1(t testing.TB) {
	t.Helper()
	_, err := os.Stat("/sys/fs/cgroup/memory")
	Require(t, err == nil && !CgroupV2(), "test needs cgroup v1 (legacy or hybrid hierarchy)")
}

// RequireDocker needs a dockerd that answers a ping, not just a docker binary.
func RequireDocker(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "version", "--format", "{{.Server.Version}}").CombinedOutput()
	Require(t, err == nil, fmt.Sprintf("test needs a running dockerd (docker version: %v: %s)", err, strings.TrimSpace(string(out))))
}

// Eventually polls cond every interval until it returns true or timeout passes.
func Eventually(t testing.TB, timeout, interval time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(interval)
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// RemoveCgroupTree removes the cgroup name (a relative path, such as a
// test's --cgroups_root) and everything below it, in every hierarchy it
// exists in (each v1 controller, or the v2 unified one), deepest first. A
// cgroup that still holds processes stays (rmdir refuses it): the test
// that left them is the one to fix. It returns what it could not remove.
func RemoveCgroupTree(name string) []string {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "..") {
		return []string{name}
	}
	var roots []string
	if CgroupV2() {
		roots = []string{filepath.Join("/sys/fs/cgroup", name)}
	} else if ents, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				roots = append(roots, filepath.Join("/sys/fs/cgroup", e.Name(), name))
			}
		}
	}
	var left []string
	for _, root := range roots {
		if _, err := os.Stat(root); err != nil {
			continue
		}
		var dirs []string
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				left = append(left, dirs[i])
			}
		}
	}
	return left
}

// SyncBuffer is a bytes.Buffer that a process's output (os/exec copies it
// in a goroutine of its own) may be written to while a test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
