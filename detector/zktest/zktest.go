// Package zktest starts a real, throwaway ZooKeeper server for tests: a
// standalone instance on a free loopback port with its data in a temporary
// directory, stopped when the test ends. It uses Debian's zookeeper package
// (jars under /usr/share/java) and java; where they are missing the test is
// skipped with the reason, or fails under CI, where they are promised.
package zktest

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
)

// Jar is where Debian's zookeeper package puts the server; its manifest
// names the jars it needs.
var Jar = "/usr/share/java/zookeeper.jar"

// Server is a running ZooKeeper.
type Server struct {
	// Addr is host:port of the client port.
	Addr string
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer
	done chan struct{}
	once sync.Once
}

// Start runs a ZooKeeper server for the test and returns it once it accepts
// clients.
func Start(t testing.TB) *Server {
	t.Helper()
	java, err := exec.LookPath("java")
	testutil.Require(t, err == nil, "ZooKeeper tests need java (apt-get install default-jre-headless zookeeper)")
	_, err = os.Stat(Jar)
	testutil.Require(t, err == nil, "ZooKeeper tests need "+Jar+" (apt-get install zookeeper)")

	// The port is free when picked but another process (a parallel test
	// package starting its own ZooKeeper) may take it before the JVM
	// binds; then this server exits or someone else answers, and the start
	// is retried on a new port.
	var last string
	for attempt := 0; attempt < 3; attempt++ {
		s, out, ok := start(t, java)
		if ok {
			return s
		}
		last = out
	}
	t.Fatalf("ZooKeeper did not start:\n%s", last)
	return nil
}

func start(t testing.TB, java string) (*Server, string, bool) {
	t.Helper()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	port := testutil.FreePort(t)
	cfg := filepath.Join(dir, "zoo.cfg")
	conf := fmt.Sprintf(`tickTime=500
initLimit=10
syncLimit=5
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
maxSessionTimeout=60000
minSessionTimeout=1000
admin.enableServer=false
4lw.commands.whitelist=ruok,conf
`, dataDir, port)
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), out: &testutil.SyncBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(java, "-Xmx256m", "-Dzookeeper.admin.enableServer=false", "-cp", Jar,
		"org.apache.zookeeper.server.ZooKeeperServerMain", cfg)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start ZooKeeper: %v", err)
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(s.Stop)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		// Ours answers, and it is ours: its configuration names our data
		// directory.
		if ruok(s.Addr) && strings.Contains(fourLetter(s.Addr, "conf"), dataDir) {
			return s, "", true
		}
		select {
		case <-s.done:
			return nil, s.out.String(), false
		case <-ctx.Done():
			s.Stop()
			return nil, fmt.Sprintf("no answer on %s within 60s:\n%s", s.Addr, s.out.String()), false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ruok asks the four-letter health question.
func ruok(addr string) bool {
	return strings.HasPrefix(fourLetter(addr, "ruok"), "imok")
}

// fourLetter sends a four-letter command and returns the answer.
func fourLetter(addr, cmd string) string {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(cmd)); err != nil {
		return ""
	}
	data, _ := io.ReadAll(c)
	return string(data)
}

// URL returns a zk:// URL for path on this server.
func (s *Server) URL(path string) string { return "zk://" + s.Addr + path }

// Stop kills the server; it is called when the test ends.
func (s *Server) Stop() {
	s.once.Do(func() {
		if s.cmd.Process != nil {
			_ = s.cmd.Process.Kill()
		}
		<-s.done
	})
}
