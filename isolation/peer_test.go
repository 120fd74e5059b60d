package isolation

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
)

func TestParseProcAddr(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"0100007F:13BB", "127.0.0.1:5051"},
		{"00000000000000000000000001000000:0050", "[::1]:80"},
		{"0000000000000000FFFF00000100007F:13BB", "127.0.0.1:5051"},
	}
	for _, tt := range tests {
		got, err := parseProcAddr(tt.in)
		if err != nil || got.String() != tt.want {
			t.Errorf("parseProcAddr(%q) = %v, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "zz:1", "0100007F", "0100007F:XYZ", "01:0050"} {
		if _, err := parseProcAddr(bad); err == nil {
			t.Errorf("parseProcAddr(%q) accepted", bad)
		}
	}
}

// TestSocketOwnerIn connects to a listener from a child process (a
// stand-in for an executor's container) and from this process (a stranger
// on the same machine): only the child's connection is proved to come from
// the child's tree.
func TestSocketOwnerIn(t *testing.T) {
	_, statErr := os.Stat("/proc/self/net/tcp")
	testutil.Require(t, statErr == nil, "/proc/<pid>/net/tcp is needed to find a socket's owner")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	// bash opens the connection through /dev/tcp and hands it to a
	// grandchild (sleep), so the owner is found below the root.
	_, err = exec.LookPath("bash")
	testutil.Require(t, err == nil, "bash is needed to open a connection from a child process")
	cmd := exec.Command("bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/"+strconv.Itoa(port)+"; sleep 30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	peer, _ := AddrPortOf(conn.RemoteAddr())
	local, _ := AddrPortOf(conn.LocalAddr())
	pid, err := SocketOwnerIn(cmd.Process.Pid, peer, local)
	if err != nil || pid <= 0 {
		t.Fatalf("the child's own connection: pid %d, %v; want one of %d's tree", pid, err, cmd.Process.Pid)
	}

	// A connection from this process, a stranger to the child's tree.
	c2, err := net.DialTimeout("tcp", l.Addr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	s2, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	peer2, _ := AddrPortOf(s2.RemoteAddr())
	if _, err := SocketOwnerIn(cmd.Process.Pid, peer2, local); !errors.Is(err, ErrNotInContainer) {
		t.Fatalf("a stranger's connection: %v, want ErrNotInContainer", err)
	}
	// And the stranger is found in its own tree.
	if pid, err := SocketOwnerIn(os.Getpid(), peer2, local); err != nil || pid != os.Getpid() {
		t.Fatalf("own connection: %d %v", pid, err)
	}
	if _, err := SocketOwnerIn(0, peer, local); err == nil {
		t.Fatal("pid 0 accepted")
	}
}

// TestDescendantsAgree: the children-list walk and the parent scan find
// the same tree.
func TestDescendantsAgree(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & sleep 30 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	root := cmd.Process.Pid
	var a, b []int
	for i := 0; i < 100; i++ {
		a, b = descendants(root), descendantsByParent(root)
		slices.Sort(a)
		slices.Sort(b)
		if len(a) == 3 && slices.Equal(a, b) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("children walk %v, parent scan %v", a, b)
}
