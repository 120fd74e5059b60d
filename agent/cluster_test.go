package agent_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/containerizer"
	mesoscz "github.com/mesolite/mesolite/containerizer/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/isolation"
	"github.com/mesolite/mesolite/master"
	"github.com/mesolite/mesolite/resources"
	"github.com/mesolite/mesolite/scheduler"
	"google.golang.org/protobuf/proto"
)

// The tests of this external package run the agent in a real cluster: the
// real master in this process, the agents a test starts registered with
// it, and frameworks subscribed through the scheduler client. A task goes
// master → agent → executor → agent → master → framework, acknowledged
// back the same way, as in production. (layercheck keeps the agent package
// itself, and its internal tests, from importing the master; tests that
// need a master to misbehave use fakeMaster in agent_test.go.)
//
// The test binary is shared with the internal tests: their TestMain makes
// `<test> executor command` the command executor and `<test> launch` the
// container init, so agents here use os.Executable() as their Self.

// testLogger discards, or with -v logs at debug level to stderr.
func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// cluster is one real master run in-process.
type cluster struct {
	t    *testing.T
	addr string      // host:port
	tls  *tls.Config // how frameworks verify a TLS master; nil: plain http

	closers []func() // of the frameworks, run when the test ends
}

// newCluster starts a master on 127.0.0.1 (at port cfg.Port when mutate
// sets one, else a free port) and stops it when the test ends.
func newCluster(t *testing.T, mutate func(*master.Config)) *cluster {
	t.Helper()
	cfg := clusterConfig(t)
	if mutate != nil {
		mutate(&cfg)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(cfg.IP, strconv.Itoa(cfg.Port)))
	if err != nil {
		t.Fatal(err)
	}
	return newClusterOn(t, l, cfg)
}

// clusterConfig is the configuration of a test's master.
func clusterConfig(t *testing.T) master.Config {
	cfg := master.DefaultConfig()
	cfg.IP, cfg.Port, cfg.WorkDir, cfg.Logger = "127.0.0.1", 0, t.TempDir(), testLogger()
	// Offers follow a launch, an ended task or a new agent within
	// milliseconds, so a test never waits for the default second.
	cfg.AllocationInterval = 10 * time.Millisecond
	return cfg
}

// newClusterOn is newCluster's master, configured as cfg, serving on l
// (which the test held until then).
func newClusterOn(t *testing.T, l net.Listener, cfg master.Config) *cluster {
	t.Helper()
	cfg.Port = l.Addr().(*net.TCPAddr).Port
	tl := &trackingListener{Listener: l, conns: map[net.Conn]bool{}}
	m, err := master.New(cfg)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, tl) }()
	c := &cluster{t: t, addr: l.Addr().String()}
	// Registered before the test starts its agents: they stop first (the
	// frameworks still acknowledging what they report as they go), then
	// the frameworks, then the master.
	t.Cleanup(func() {
		for i := len(c.closers) - 1; i >= 0; i-- {
			c.closers[i]()
		}
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
	return c
}

// trackingListener remembers the connections it accepted until they close.
type trackingListener struct {
	net.Listener
	mu    sync.Mutex
	conns map[net.Conn]bool
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
		c.(*trackedConn).Conn.Close()
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

// agentResources is what every test agent offers: plenty for the tasks of
// one test.
const agentResources = "cpus:8;mem:4096;disk:4096;ports:[31000-31100]"

// testAgent is an agent of the cluster, run until the test ends.
type testAgent struct {
	*agent.Agent
	t       *testing.T
	workDir string
	port    int
	client  *http.Client // speaks to the agent (https for a TLS agent)
	scheme  string
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// startAgent starts an agent registered with the cluster's master, on
// the posix containerizer (the command executor and tasks are real child
// processes), and stops it when the test ends.
func (c *cluster) startAgent(t *testing.T, workDir string, port int, mutate func(*agent.Config)) *testAgent {
	t.Helper()
	cz, err := mesoscz.New(mesoscz.Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return c.startAgentOn(t, workDir, port, mutate, cz)
}

// startAgentOn is startAgent on a containerizer of the test's. Port 0
// picks a free one; an agent restarted on a work dir reuses its port.
func (c *cluster) startAgentOn(t *testing.T, workDir string, port int, mutate func(*agent.Config), cz containerizer.Containerizer) *testAgent {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if port == 0 {
		port = testutil.FreePort(t)
	}
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	res, err := resources.Parse(agentResources)
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.Config{
		Master: c.addr, IP: "127.0.0.1", Port: port, WorkDir: workDir, Self: self, Resources: res,
		RegistrationBackoffFactor: 50 * time.Millisecond,
		Logger:                    testLogger(),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	a, err := agent.New(cfg, cz)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ta := &testAgent{Agent: a, t: t, workDir: workDir, port: port, client: &http.Client{Timeout: 10 * time.Second},
		scheme: "http", cancel: cancel, done: make(chan error, 1)}
	if cfg.TLS != nil {
		ta.scheme = "https"
		// The agent's certificate is of the cluster's CA.
		ta.client.Transport = &http.Transport{TLSClientConfig: c.tls}
	}
	t.Cleanup(func() { killExecutorsUnder(workDir) })
	go func() { ta.done <- a.Run(ctx, l) }()
	t.Cleanup(ta.stop)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { return a.Connected() && a.ID() != "" }, "agent registered with the master")
	return ta
}

// killExecutorsUnder kills, when a test ends, the executors (and their
// process groups) whose sandbox is under workDir: they outlive a stopped
// agent by design, waiting to be recovered, and must not outlive the test.
func killExecutorsUnder(workDir string) {
	for _, pid := range isolation.FindByEnv(func(kv string) bool {
		dir, ok := strings.CutPrefix(kv, "MESOS_DIRECTORY=")
		return ok && strings.HasPrefix(dir, workDir+"/")
	}) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// stop stops the agent; its executors keep running, as after a crash.
func (ta *testAgent) stop() {
	if ta.stopped {
		return
	}
	ta.stopped = true
	// Let executors that are ending finish their bookkeeping first, so the
	// work directory is quiet when the test removes it.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		st, err := ta.fetchState()
		if err != nil {
			break
		}
		busy := 0
		for _, fw := range st.Frameworks {
			for _, es := range fw.Executors {
				if es.Phase == "TERMINATED" || len(es.Tasks)+len(es.QueuedTasks) == 0 {
					busy++
				}
			}
		}
		if busy == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	ta.cancel()
	select {
	case <-ta.done:
	case <-time.After(5 * time.Second):
	}
}

// url is the agent's address for path.
func (ta *testAgent) url(path string) string {
	return ta.scheme + "://" + ta.Endpoint() + path
}

// agentState is what the tests read of the agent's /state.
type agentState struct {
	ID                  string           `json:"id"`
	Frameworks          []frameworkState `json:"frameworks"`
	CompletedFrameworks []frameworkState `json:"completed_frameworks"`
}

type frameworkState struct {
	ID                 string          `json:"id"`
	Executors          []executorState `json:"executors"`
	CompletedExecutors []executorState `json:"completed_executors"`
}

type executorState struct {
	ID             string      `json:"id"`
	Phase          string      `json:"phase"`
	Subscribed     bool        `json:"subscribed"`
	Directory      string      `json:"directory"`
	Tasks          []taskState `json:"tasks"`
	QueuedTasks    []taskState `json:"queued_tasks"`
	CompletedTasks []taskState `json:"completed_tasks"`
}

type taskState struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

func (ta *testAgent) fetchState() (*agentState, error) {
	resp, err := ta.client.Get(ta.url("/state"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	st := &agentState{}
	return st, json.NewDecoder(resp.Body).Decode(st)
}

// state is the agent's /state.
func (ta *testAgent) state(t *testing.T) *agentState {
	t.Helper()
	st, err := ta.fetchState()
	if err != nil {
		t.Fatalf("agent /state: %v", err)
	}
	return st
}

// framework returns the framework fwID of the agent's state, nil if the
// agent has none (live) of that id.
func (st *agentState) framework(fwID string) *frameworkState {
	for i := range st.Frameworks {
		if st.Frameworks[i].ID == fwID {
			return &st.Frameworks[i]
		}
	}
	return nil
}

// executor returns the agent's live (not completed) executor exID of
// framework fwID, nil if there is none.
func (st *agentState) executor(fwID, exID string) *executorState {
	fw := st.framework(fwID)
	if fw == nil {
		return nil
	}
	for i := range fw.Executors {
		if fw.Executors[i].ID == exID {
			return &fw.Executors[i]
		}
	}
	return nil
}

// taskState is the state the agent has of a launched task ("" if none).
func (st *agentState) taskState(fwID, taskID string) string {
	if fw := st.framework(fwID); fw != nil {
		for _, es := range fw.Executors {
			for _, ts := range append(es.Tasks, es.QueuedTasks...) {
				if ts.ID == taskID {
					return ts.State
				}
			}
		}
	}
	return ""
}

// sandboxFile waits for the file name in the latest run of executor ex to
// have content, and returns it.
func (ta *testAgent) sandboxFile(t *testing.T, fw, ex, name string) string {
	t.Helper()
	dir := filepath.Join(ta.workDir, "slaves", ta.ID(), "frameworks", fw, "executors", ex, "runs", "latest")
	var b []byte
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
		var err error
		b, err = os.ReadFile(filepath.Join(dir, name))
		return err == nil && len(b) > 0
	}, "sandbox %s of %s", name, ex)
	return string(b)
}

// testFramework is what the tests subscribe as: it understands
// TASK_KILLING, as Mesos's own command scheduler does, and checkpoints, so
// its tasks outlive an agent restart.
func testFramework(name string) *mesos.FrameworkInfo {
	return &mesos.FrameworkInfo{
		Name: proto.String(name), User: proto.String("root"), Checkpoint: proto.Bool(true),
		Capabilities: []*mesos.FrameworkInfo_Capability{{Type: mesos.FrameworkInfo_Capability_TASK_KILLING_STATE.Enum()}},
	}
}

// framework is a framework subscribed to the cluster's master with the
// scheduler client (which acknowledges every update). It keeps the offers
// it is made, to launch on, and every update of every task.
type framework struct {
	*scheduler.Client
	t *testing.T

	mu      sync.Mutex
	offers  []*mesos.Offer
	updates map[string][]*mesos.TaskStatus // by task id, in order
	read    map[string]int                 // how many of them waitState consumed
	changed chan struct{}                  // closed (and replaced) at each offer or update
}

// subscribe subscribes a framework and unsubscribes it when the test ends.
func (c *cluster) subscribe(t *testing.T, info *mesos.FrameworkInfo) *framework {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	client, err := scheduler.Subscribe(ctx, scheduler.Config{
		Master: c.addr, Framework: info, TLS: c.tls, Logger: testLogger(),
	})
	if err != nil {
		cancel()
		t.Fatalf("subscribe: %v", err)
	}
	fw := &framework{Client: client, t: t, updates: map[string][]*mesos.TaskStatus{}, read: map[string]int{}, changed: make(chan struct{})}
	loop, subscribed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(loop)
		var once sync.Once
		for ev := range client.Events() {
			if ev.GetType() == schedv1.Event_SUBSCRIBED {
				once.Do(func() { close(subscribed) })
			}
			fw.event(ev)
		}
	}()
	c.closers = append(c.closers, func() {
		cancel()
		<-loop
	})
	// The client takes its stream (and the framework id) as it delivers
	// SUBSCRIBED; calls made before then fail as "not subscribed".
	select {
	case <-subscribed:
	case <-loop:
		t.Fatalf("subscription ended: %v", client.Err())
	case <-time.After(10 * time.Second):
		t.Fatal("no SUBSCRIBED event")
	}
	return fw
}

func (fw *framework) event(ev *schedv1.Event) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	switch ev.GetType() {
	case schedv1.Event_OFFERS:
		fw.offers = append(fw.offers, ev.GetOffers().GetOffers()...)
	case schedv1.Event_RESCIND:
		id := ev.GetRescind().GetOfferId().GetValue()
		for i, o := range fw.offers {
			if o.GetId().GetValue() == id {
				fw.offers = append(fw.offers[:i], fw.offers[i+1:]...)
				break
			}
		}
	case schedv1.Event_UPDATE:
		st := ev.GetUpdate().GetStatus()
		fw.updates[st.GetTaskId().GetValue()] = append(fw.updates[st.GetTaskId().GetValue()], st)
	default:
		return
	}
	close(fw.changed)
	fw.changed = make(chan struct{})
}

// ID is the framework id the master gave.
func (fw *framework) ID() string { return fw.FrameworkID() }

// launch launches tasks on an offer of agent a, asking for the rest of the
// agent's resources back at once, and returns the offer.
func (fw *framework) launch(a *testAgent, tasks ...*mesos.TaskInfo) *mesos.Offer {
	fw.t.Helper()
	agentID := a.ID()
	var offer *mesos.Offer
	deadline := time.After(10 * time.Second)
	for offer == nil {
		fw.mu.Lock()
		for i, o := range fw.offers {
			if o.GetAgentId().GetValue() == agentID {
				offer = o
				fw.offers = append(fw.offers[:i], fw.offers[i+1:]...)
				break
			}
		}
		changed := fw.changed
		fw.mu.Unlock()
		if offer != nil {
			break
		}
		select {
		case <-changed:
		case <-deadline:
			fw.t.Fatalf("no offer from agent %s", agentID)
		}
	}
	for _, task := range tasks {
		task.AgentId = offer.GetAgentId()
	}
	if err := fw.Accept(context.Background(), []*mesos.OfferID{offer.GetId()},
		[]*mesos.Offer_Operation{scheduler.LaunchOperation(tasks...)}, scheduler.RefuseFor(0)); err != nil {
		fw.t.Fatalf("launch: %v", err)
	}
	return offer
}

// kill asks the master to kill a task of agent a.
func (fw *framework) kill(a *testAgent, task string) {
	fw.t.Helper()
	if err := fw.Kill(context.Background(), &mesos.TaskID{Value: proto.String(task)}, &mesos.AgentID{Value: proto.String(a.ID())}); err != nil {
		fw.t.Fatalf("kill %s: %v", task, err)
	}
}

// waitState returns the first update of task reaching state, among those
// not returned yet; the ones before it are consumed too.
func (fw *framework) waitState(task string, state mesos.TaskState, timeout time.Duration) *mesos.TaskStatus {
	fw.t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		fw.mu.Lock()
		sts := fw.updates[task]
		for fw.read[task] < len(sts) {
			st := sts[fw.read[task]]
			fw.read[task]++
			seen = append(seen, st.GetState().String()+"("+st.GetMessage()+")")
			if st.GetState() == state {
				fw.mu.Unlock()
				return st
			}
		}
		changed := fw.changed
		fw.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			fw.t.Fatalf("task %s did not reach %s in %s; saw %v", task, state, timeout, seen)
			return nil
		}
	}
}

// commandTask is a command task; launch places it on an agent.
func commandTask(id, cmd string) *mesos.TaskInfo {
	return &mesos.TaskInfo{
		Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
		Command:   &mesos.CommandInfo{Value: proto.String(cmd)},
		Resources: taskResources(),
	}
}

func taskResources() []*mesos.Resource {
	return []*mesos.Resource{
		{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(0.1)}},
		{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(32)}},
	}
}
