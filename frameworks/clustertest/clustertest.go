package clustertest

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/composing"
	"github.com/mesolite/mesolite/containerizer/docker"
	mesoscz "github.com/mesolite/mesolite/containerizer/mesos"
	commandexec "github.com/mesolite/mesolite/executor/command"
	dockerexec "github.com/mesolite/mesolite/executor/docker"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/isolation"
	"github.com/mesolite/mesolite/master"
	"github.com/mesolite/mesolite/resources"
	"github.com/mesolite/mesolite/webui"
)

// Main is the TestMain of a package using Cluster: the agent starts the
// test binary as `<test> executor command|docker ...` for command and
// Docker tasks and as `<test> launch ...` for the container init, as it
// starts `mesolite`.
func Main(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "executor" && os.Args[2] == "command" {
		os.Exit(commandexec.Main(context.Background(), os.Args[3:]))
	}
	if len(os.Args) > 2 && os.Args[1] == "executor" && os.Args[2] == "docker" {
		os.Exit(dockerexec.Main(context.Background(), os.Args[3:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "launch" {
		os.Exit(isolation.InitMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// Logger logs to stderr under -v, nowhere otherwise.
func Logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Cluster is a master in this process with the agents a test adds. All
// of it stops when the test ends.
type Cluster struct {
	// Addr is the master's host:port.
	Addr string
}

// New starts a master making offers every 10 ms; tune, when given,
// changes its configuration first (agent timeouts, say).
func New(t testing.TB, tune ...func(*master.Config)) *Cluster {
	t.Helper()
	cfg := master.DefaultConfig()
	cfg.IP, cfg.Hostname, cfg.WorkDir, cfg.Logger = "127.0.0.1", "127.0.0.1", t.TempDir(), Logger().With("process", "master")
	cfg.AllocationInterval = 10 * time.Millisecond
	for _, f := range tune {
		f(&cfg)
	}
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
	tl := &trackingListener{Listener: l, conns: map[net.Conn]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, tl) }()
	// Registered before the agents' cleanups: it runs after them.
	t.Cleanup(func() {
		cancel()
		// A client may leave a dialled connection never used, which the
		// master's shutdown would wait for: the test's clients are gone.
		tl.closeAll()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the master did not stop")
		}
	})
	return &Cluster{Addr: l.Addr().String()}
}

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
	l.mu.Lock()
	l.conns[c] = true
	l.mu.Unlock()
	return c, nil
}

func (l *trackingListener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		c.Close()
	}
}

// AgentOptions describe an agent to add.
type AgentOptions struct {
	Hostname string
	// Resources in --resources form; default cpus:4;mem:4096;disk:1000;ports:[31000-31999].
	Resources string
	// Attributes in --attributes form.
	Attributes string
	// Containerizer; nil is the posix one, whose tasks are real processes.
	Containerizer containerizer.Containerizer
	// Docker adds the Docker containerizer beside the posix one (the
	// caller checked that dockerd answers); its containers are removed
	// when the test ends.
	Docker bool
	// UI serves the agent's web pages at "/" as `mesolite agent` does (the
	// sandbox browser and log viewer the master's pages link to).
	UI bool
}

// Agent is an agent of the cluster.
type Agent struct {
	*agent.Agent
	WorkDir string
	stop    func()
}

// Stop stops the agent (its executors and tasks are killed too, as a
// test wants: a node gone).
func (a *Agent) Stop() { a.stop() }

// AddAgent starts an agent and waits until it is registered.
func (c *Cluster) AddAgent(t testing.TB, opts AgentOptions) *Agent {
	t.Helper()
	if opts.Hostname == "" {
		opts.Hostname = "localhost"
	}
	if opts.Resources == "" {
		opts.Resources = "cpus:4;mem:4096;disk:1000;ports:[31000-31999]"
	}
	cz := opts.Containerizer
	if cz == nil {
		var err error
		if cz, err = mesoscz.New(mesoscz.Options{Logger: Logger()}); err != nil {
			t.Fatal(err)
		}
	}
	workDir := t.TempDir()
	if opts.Docker {
		cz = withDocker(t, cz, workDir)
	}
	rs, err := resources.Parse(opts.Resources)
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := resources.ParseAttributes(opts.Attributes)
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
	acfg := agent.Config{
		Master: c.Addr, IP: "127.0.0.1", Port: port, Hostname: opts.Hostname, WorkDir: workDir, Self: self,
		Resources: rs, Attributes: attrs, RegistrationBackoffFactor: 50 * time.Millisecond,
		Logger: Logger().With("process", "agent", "hostname", opts.Hostname),
	}
	if opts.UI {
		acfg.ExtraHandlers = map[string]http.Handler{"/": webui.Agent(webui.Options{})}
	}
	a, err := agent.New(acfg, cz)
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, l) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
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
	}
	t.Cleanup(stop)
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { return a.Connected() && a.ID() != "" }, "agent %s registered", opts.Hostname)
	return &Agent{Agent: a, WorkDir: workDir, stop: stop}
}

// Framework is what tests read of a framework in the master's
// /master/state.
type Framework struct {
	ID              string   `json:"id"`
	Name            string   `json:"name"`
	Active          bool     `json:"active"`
	WebUIURL        string   `json:"webui_url"`
	FailoverTimeout float64  `json:"failover_timeout"`
	Checkpoint      bool     `json:"checkpoint"`
	SuppressedRoles []string `json:"suppressed_roles"`
	Tasks           []Task   `json:"tasks"`
	CompletedTasks  []Task   `json:"completed_tasks"`
}

// Task is a task in /master/state.
type Task struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

// Framework returns the master's framework id, nil if it has none (among
// the active and inactive ones).
func (c *Cluster) Framework(t testing.TB, id string) *Framework {
	t.Helper()
	resp, err := http.Get("http://" + c.Addr + "/master/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st struct {
		Frameworks []Framework `json:"frameworks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	for i := range st.Frameworks {
		if st.Frameworks[i].ID == id {
			return &st.Frameworks[i]
		}
	}
	return nil
}

// RunningTasks is the ids of the framework's tasks the master holds for
// TASK_RUNNING.
func (c *Cluster) RunningTasks(t testing.TB, frameworkID string) []string {
	t.Helper()
	f := c.Framework(t, frameworkID)
	if f == nil {
		return nil
	}
	var out []string
	for _, task := range f.Tasks {
		if task.State == "TASK_RUNNING" {
			out = append(out, task.ID)
		}
	}
	return out
}

// withDocker composes the Docker containerizer, labelling its containers
// with workDir as their owner, with cz.
func withDocker(t testing.TB, cz containerizer.Containerizer, workDir string) containerizer.Containerizer {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	o := docker.DefaultOptions()
	o.Owner = workDir
	o.PublishIP = "127.0.0.1"
	o.ExecutorCommand = []string{self, "executor", "docker"}
	o.Logger = Logger().With("containerizer", "docker")
	d, err := docker.New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		out, _ := exec.Command("docker", "ps", "-aq", "--filter", "label=org.mesolite.owner="+workDir).Output()
		if ids := strings.Fields(string(out)); len(ids) > 0 {
			_ = exec.Command("docker", append([]string{"rm", "-f"}, ids...)...).Run()
		}
	})
	return composing.New(composing.Named{Name: docker.Name, Containerizer: d}, composing.Named{Name: mesoscz.Name, Containerizer: cz})
}
