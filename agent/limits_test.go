package agent_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
)

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// dialFrom connects to addr from a given loopback source address, so one
// test can be several clients.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func get(t *testing.T, c net.Conn, path string) (int, *bufio.Reader) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
		return 0, nil
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, nil
	}
	_ = c.SetDeadline(time.Time{})
	return resp.StatusCode, br
}

// TestConnectionAndStreamFloodsAreBounded is the flood of one client that
// opens idle keep-alive connections and endless followed streams: past its
// share it is refused, the agent's descriptors stay bounded, and another
// client still gets /health and a new task still runs.
func TestConnectionAndStreamFloodsAreBounded(t *testing.T) {
	const streamsPerIP = 8
	agent.SetHTTPCapsForTest(t, 96, 48, 32, streamsPerIP)

	cl := newCluster(t, nil)
	a := cl.startAgent(t, t.TempDir(), 0, nil)
	fw := cl.subscribe(t, testFramework("test"))
	fw.launch(a, commandTask("talker", "while true; do echo hi; sleep 0.2; done"))
	fw.waitState("talker", mesos.TaskState_TASK_RUNNING, 15*time.Second)
	addr := a.Endpoint()
	fwID := fw.ID()
	before := openFDs(t)

	// Streams: the attacker's 9th follow of a file is refused with 429.
	stream := "/files/stream?path=/frameworks/" + fwID + "/executors/talker/runs/latest/stdout&offset=0&follow=true"
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < streamsPerIP; i++ {
		c := dialFrom(t, "127.0.0.1", addr)
		conns = append(conns, c)
		if code, _ := get(t, c, stream); code != http.StatusOK {
			t.Fatalf("stream %d answered %d", i, code)
		}
	}
	c := dialFrom(t, "127.0.0.1", addr)
	conns = append(conns, c)
	if code, _ := get(t, c, stream); code != http.StatusTooManyRequests {
		t.Fatalf("stream past the per-client cap answered %d, want 429", code)
	}
	// Another client may still follow.
	c = dialFrom(t, "127.0.0.2", addr)
	conns = append(conns, c)
	if code, _ := get(t, c, stream); code != http.StatusOK {
		t.Fatalf("another client's stream answered %d", code)
	}

	// Idle connections: past its 48 the attacker gets 503 and a close.
	refused := 0
	for i := 0; i < 80; i++ {
		c := dialFrom(t, "127.0.0.1", addr)
		conns = append(conns, c)
		_ = c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		line, _ := bufio.NewReader(c).ReadString('\n')
		if strings.Contains(line, " 503 ") {
			refused++
		}
	}
	if refused < 80-48 {
		t.Fatalf("%d of 80 idle connections refused, want at least %d", refused, 80-48)
	}
	// Another client is still served, and a new task still runs.
	h := dialFrom(t, "127.0.0.3", addr)
	defer h.Close()
	if code, _ := get(t, h, "/health"); code != http.StatusOK {
		t.Fatalf("/health from another client answered %d during the flood", code)
	}
	fw.launch(a, commandTask("after-flood", "true"))
	fw.waitState("after-flood", mesos.TaskState_TASK_FINISHED, 15*time.Second)
	// The agent holds no more than its caps: the attacker's connections
	// are refused and closed, not kept.
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() bool {
		// Both ends of every loopback connection live in this process:
		// the client's plus at most the caps on the server side.
		return openFDs(t)-before <= len(conns)+96+8
	}, "descriptors grew past the caps: %d more than before", openFDs(t)-before)
}
