package isolation

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/mesolite/mesolite/errdefs"
)

// ErrNotInContainer is wrapped by SocketOwnerIn's error when no process of
// the container holds the connection's other end.
var ErrNotInContainer = fmt.Errorf("the connection does not come from the container: %w", errdefs.ErrForbidden)

// SocketOwnerIn proves that the process at the other end of a TCP
// connection the agent accepted (remote address peer, the agent's own end
// local) is root or one of its descendants: the executor's container. It
// looks the socket up in root's network namespace (/proc/<root>/net/tcp and
// tcp6), so a container with its own network works as well as one on the
// host's, then finds which process of root's tree holds it. It returns that
// process's pid.
//
// This is how an executor that sends no token is told from any other
// process on the machine that claims to be it.
func SocketOwnerIn(root int, peer, local netip.AddrPort) (int, error) {
	if root <= 0 {
		return 0, fmt.Errorf("no process for the container: %w", ErrNotInContainer)
	}
	inode, err := socketInode(root, peer, local)
	if err != nil {
		return 0, err
	}
	want := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	for _, pid := range descendants(root) {
		dir := "/proc/" + strconv.Itoa(pid) + "/fd"
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if l, err := os.Readlink(dir + "/" + e.Name()); err == nil && l == want {
				return pid, nil
			}
		}
	}
	return 0, ErrNotInContainer
}

// socketInode finds the inode of the socket whose local end is peer and
// remote end is local in root's network namespace.
func socketInode(root int, peer, local netip.AddrPort) (uint64, error) {
	peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	for _, name := range []string{"tcp", "tcp6"} {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(root) + "/net/" + name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return 0, fmt.Errorf("read socket table of pid %d: %w", root, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // header
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) < 10 {
				continue
			}
			l, err1 := parseProcAddr(f[1])
			r, err2 := parseProcAddr(f[2])
			if err1 != nil || err2 != nil || l != peer || r != local {
				continue
			}
			inode, err := strconv.ParseUint(f[9], 10, 64)
			if err != nil || inode == 0 {
				continue
			}
			return inode, nil
		}
	}
	return 0, fmt.Errorf("no socket %s -> %s in the network namespace of pid %d: %w", peer, local, root, ErrNotInContainer)
}

// parseProcAddr reads the kernel's "ADDR:PORT" hex form: the address in
// 32-bit words of host byte order (little-endian here), the port in
// network order.
func parseProcAddr(s string) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(host)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(raw[i:], binary.LittleEndian.Uint32(raw[i:]))
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", s)
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a.Unmap(), uint16(p)), nil
}

// descendants lists root and every process below it: from the kernel's
// children lists (/proc/<pid>/task/<tid>/children), which cost only the
// container's own processes, else from every process's parent.
func descendants(root int) []int {
	if _, err := os.Stat("/proc/" + strconv.Itoa(root) + "/task/" + strconv.Itoa(root) + "/children"); err == nil {
		out := []int{root}
		for i := 0; i < len(out); i++ {
			tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(out[i]) + "/task")
			for _, t := range tasks {
				b, err := os.ReadFile("/proc/" + strconv.Itoa(out[i]) + "/task/" + t.Name() + "/children")
				if err != nil {
					continue
				}
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						out = append(out, pid)
					}
				}
			}
		}
		return out
	}
	return descendantsByParent(root)
}

func descendantsByParent(root int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The command name is in parentheses and may hold spaces: the
		// fields after the last ')' are state, ppid, ...
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// AddrPortOf converts a net.Addr of a TCP connection.
func AddrPortOf(a net.Addr) (netip.AddrPort, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, false
	}
	ap := ta.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// KillTagged kills, with their process groups, the processes whose
// environment holds key=value: the executor of a container whose launch an
// agent crash interrupted before it could record the container's handle.
// It returns the pids it killed. Processes that exit meanwhile are skipped.
func KillTagged(key, value string) []int {
	want := key + "=" + value
	pids := FindByEnv(func(kv string) bool { return kv == want })
	for _, pid := range pids {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return pids
}

// FindByEnv lists the processes (other than this one) with an environment
// entry ("KEY=value") that match accepts.
func FindByEnv(match func(kv string) bool) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		for _, kv := range bytes.Split(b, []byte{0}) {
			if match(string(kv)) {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}
