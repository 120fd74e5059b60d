package cli

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/containerizer"
	mesoscz "github.com/mesolite/mesolite/containerizer/mesos"
	commandexec "github.com/mesolite/mesolite/executor/command"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/isolation"
	"github.com/mesolite/mesolite/master"
	"github.com/mesolite/mesolite/resources"
)

// The test binary doubles as the agent binary of the in-process cluster:
// `<test> executor command` runs the built-in command executor and
// `<test> launch` the container init, as `mesolite ...` does.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "executor" && os.Args[2] == "command" {
		os.Exit(commandexec.Main(context.Background(), os.Args[3:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "launch" {
		os.Exit(isolation.InitMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testCluster is a real master run in this process, with the agents a
// test adds: `mesolite run` against it gets real offers, and its task a
// real outcome, from the command executor (posix containerizer) or from
// the scriptable fake containerizer (an OOM, a container that ends).
type testCluster struct {
	addr string // the master's host:port
}

func newTestCluster(t *testing.T) *testCluster {
	t.Helper()
	cfg := master.DefaultConfig()
	cfg.IP, cfg.WorkDir, cfg.Logger = "127.0.0.1", t.TempDir(), testLogger()
	cfg.AllocationInterval = 10 * time.Millisecond
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Port = l.Addr().(*net.TCPAddr).Port
	m, err := master.New(cfg)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	tl := &trackingListener{Listener: l, conns: map[*trackedConn]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, tl) }()
	// Registered before the agents': they stop first.
	t.Cleanup(func() {
		cancel()
		// A client may leave a connection dialled and never used (an
		// http.Transport finishes the dial of a cancelled request and
		// keeps the connection): the master's shutdown would wait 5 s for
		// its first request. The test's clients are gone: cut them.
		tl.closeAll()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the master did not stop")
		}
	})
	return &testCluster{addr: l.Addr().String()}
}

// trackingListener remembers the connections it accepted until they close.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[*trackedConn]bool
}

func (l *trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.mu.Lock()
	l.conns[tc] = true
	l.mu.Unlock()
	return tc, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Conn.Close()
	}
}

type trackedConn struct {
	net.Conn
	l *trackingListener
}

func (c *trackedConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.Conn.Close()
}

// addAgent starts an agent on host hostname offering res, registered with
// the master, on cz (nil: the posix containerizer, whose tasks are real
// processes); it stops when the test ends.
func (c *testCluster) addAgent(t *testing.T, hostname, res string, cz containerizer.Containerizer) *agent.Agent {
	t.Helper()
	if cz == nil {
		var err error
		if cz, err = mesoscz.New(mesoscz.Options{Logger: testLogger()}); err != nil {
			t.Fatal(err)
		}
	}
	rs, err := resources.Parse(res)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	port := testutil.FreePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	workDir := t.TempDir()
	a, err := agent.New(agent.Config{
		Master: c.addr, IP: "127.0.0.1", Port: port, Hostname: hostname, WorkDir: workDir, Self: self, Resources: rs,
		RegistrationBackoffFactor: 50 * time.Millisecond, Logger: testLogger(),
	}, cz)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the agent did not stop")
		}
		// Executors outlive a stopped agent by design; not the test.
		for _, pid := range isolation.FindByEnv(func(kv string) bool {
			dir, ok := strings.CutPrefix(kv, "MESOS_DIRECTORY=")
			return ok && strings.HasPrefix(dir, workDir+"/")
		}) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { return a.Connected() && a.ID() != "" }, "agent %s registered", hostname)
	return a
}

// clusterFramework is what the tests read of a framework in the master's
// /master/state.
type clusterFramework struct {
	ID              string   `json:"id"`
	Name            string   `json:"name"`
	User            string   `json:"user"`
	Active          bool     `json:"active"`
	Capabilities    []string `json:"capabilities"`
	SuppressedRoles []string `json:"suppressed_roles"`
	Tasks           []struct {
		ID, State string
	} `json:"tasks"`
	CompletedTasks []struct {
		ID, State string
	} `json:"completed_tasks"`
}

// framework returns the master's framework id (done: among the completed
// frameworks), nil if it has none.
func (c *testCluster) framework(t *testing.T, id string, done bool) *clusterFramework {
	t.Helper()
	resp, err := http.Get("http://" + c.addr + "/master/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Frameworks          []clusterFramework `json:"frameworks"`
		CompletedFrameworks []clusterFramework `json:"completed_frameworks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	fws := st.Frameworks
	if done {
		fws = st.CompletedFrameworks
	}
	for i := range fws {
		if fws[i].ID == id {
			return &fws[i]
		}
	}
	return nil
}

// run is `mesolite run` going on in the background.
type run struct {
	out, errOut testutil.SyncBuffer
	code        chan int
}

func startRun(ctx context.Context, args ...string) *run {
	r := &run{code: make(chan int, 1)}
	go func() { r.code <- Run(ctx, args, &r.out, &r.errOut) }()
	return r
}

// waitOutput waits for the run to print s.
func (r *run) waitOutput(t *testing.T, s string) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, 10*time.Millisecond, func() bool { return strings.Contains(r.out.String(), s) },
		"output with %q:\n%s", s, &r.out)
}

// wait waits for the run to end and returns its exit status and output.
func (r *run) wait(t *testing.T) (int, string, string) {
	t.Helper()
	select {
	case code := <-r.code:
		return code, r.out.String(), r.errOut.String()
	case <-time.After(30 * time.Second):
		t.Fatalf("run did not end\nstdout:\n%s\nstderr:\n%s", r.out.String(), r.errOut.String())
		return 0, "", ""
	}
}

// frameworkID is the id the run printed it subscribed as.
func (r *run) frameworkID(t *testing.T) string {
	t.Helper()
	_, rest, ok := strings.Cut(r.out.String(), " as framework ")
	id, _, ok2 := strings.Cut(rest, "\n")
	if !ok || !ok2 || id == "" {
		t.Fatalf("no framework id in the output:\n%s", r.out.String())
	}
	return id
}
