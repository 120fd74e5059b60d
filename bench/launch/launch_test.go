// Package launch benchmarks the command-task path end to end over loopback:
// a real master and agent (in this process, talking HTTP), the built-in
// command executor (a real child process: mesolite-executor, as the agent
// runs it when installed beside mesolite), and a framework using the
// scheduler client library.
//
//	go test -run '^$' -bench . -benchtime 200x ./bench/launch/
package launch

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	"github.com/mesolite/mesolite/isolation"
	"github.com/mesolite/mesolite/master"
	"github.com/mesolite/mesolite/resources"
	"github.com/mesolite/mesolite/scheduler"
	"google.golang.org/protobuf/proto"
)

// binary is mesolite, helper mesolite-executor, both built for the run.
var binary, helper string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mesolite-bench")
	if err != nil {
		panic(err)
	}
	binary, helper = filepath.Join(dir, "mesolite"), filepath.Join(dir, "mesolite-executor")
	for bin, pkg := range map[string]string{binary: "../../cmd/mesolite", helper: "../../cmd/mesolite-executor"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// containerizerFactory lets a benchmark pick the isolation under test.
// Its containers' inits and the built-in executors are runs of init.
type containerizerFactory func(b *testing.B, log *slog.Logger, init string) containerizer.Containerizer

// posix is the agent's default: no isolation, the launcher and prestarted
// inits configured as `mesolite agent` configures them.
func posix(b *testing.B, log *slog.Logger, init string) containerizer.Containerizer {
	cz, err := mesoscz.New(mesoscz.Options{
		Logger:     log,
		Launcher:   isolation.LauncherOptions{InitPath: init, InitArgs: []string{"launch"}, Prestart: 2},
		RuntimeDir: filepath.Join(b.TempDir(), "containers"),
	})
	if err != nil {
		b.Fatal(err)
	}
	return cz
}

// cluster starts a master and one agent and returns the master's address.
// The agent runs its inits and built-in executors from init (helper, as
// `mesolite agent` does when mesolite-executor is installed, or binary).
func cluster(b *testing.B, cz containerizerFactory, init string) string {
	b.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	masterDir, agentDir := b.TempDir(), b.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Registered after the temp dirs, so it runs before they are removed:
	// stop both and let the agent's last bookkeeping finish.
	b.Cleanup(func() {
		cancel()
		wg.Wait()
		time.Sleep(200 * time.Millisecond)
	})
	mcfg := master.DefaultConfig()
	mcfg.IP, mcfg.WorkDir, mcfg.Logger = "127.0.0.1", masterDir, log
	mcfg.AllocationInterval = 5 * time.Millisecond
	ml, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	mcfg.Port = ml.Addr().(*net.TCPAddr).Port
	m, err := master.New(mcfg)
	if err != nil {
		b.Fatal(err)
	}
	wg.Add(2)
	go func() { defer wg.Done(); _ = m.Run(ctx, ml) }()
	al, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	res, _ := resources.Parse("cpus:64;mem:65536;disk:65536;ports:[31000-32000]")
	a, err := agent.New(agent.Config{
		Master: ml.Addr().String(), IP: "127.0.0.1", Port: al.Addr().(*net.TCPAddr).Port,
		WorkDir: agentDir, Self: init, Resources: res, Logger: log,
		RegistrationBackoffFactor: 10 * time.Millisecond,
	}, cz(b, log, init))
	if err != nil {
		b.Fatal(err)
	}
	go func() { defer wg.Done(); _ = a.Run(ctx, al) }()
	for i := 0; i < 500 && !a.Connected(); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !a.Connected() {
		b.Fatal("agent did not register")
	}
	return ml.Addr().String()
}

type framework struct {
	c       *scheduler.Client
	mu      sync.Mutex
	waiters map[string]chan mesos.TaskState // task id -> states
	offers  chan *mesos.Offer
}

func subscribe(b *testing.B, addr string) *framework {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	c, err := scheduler.Subscribe(ctx, scheduler.Config{
		Master:    addr,
		Framework: &mesos.FrameworkInfo{User: proto.String("root"), Name: proto.String("bench")},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	fw := &framework{c: c, waiters: map[string]chan mesos.TaskState{}, offers: make(chan *mesos.Offer, 1024)}
	go func() {
		for ev := range c.Events() {
			switch ev.GetType() {
			case schedv1.Event_OFFERS:
				for _, o := range ev.GetOffers().GetOffers() {
					fw.offers <- o
				}
			case schedv1.Event_UPDATE:
				st := ev.GetUpdate().GetStatus()
				fw.mu.Lock()
				ch := fw.waiters[st.GetTaskId().GetValue()]
				fw.mu.Unlock()
				if ch != nil {
					ch <- st.GetState()
				}
			}
		}
	}()
	return fw
}

func task(id, cmd string, agentID *mesos.AgentID) *mesos.TaskInfo {
	return &mesos.TaskInfo{
		Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)}, AgentId: agentID,
		Command: &mesos.CommandInfo{Value: proto.String(cmd)},
		Resources: []*mesos.Resource{
			{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(0.01)}},
			{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(1)}},
		},
	}
}

// launch accepts offer with tasks, asking for the rest back at once (no
// refuse filter) so the next offer does not wait for the default 5 s.
func (fw *framework) launch(ctx context.Context, offer *mesos.Offer, tasks ...*mesos.TaskInfo) error {
	return fw.c.Accept(ctx, []*mesos.OfferID{offer.GetId()}, []*mesos.Offer_Operation{scheduler.LaunchOperation(tasks...)}, scheduler.RefuseFor(0))
}

func (fw *framework) watch(id string) chan mesos.TaskState {
	ch := make(chan mesos.TaskState, 16)
	fw.mu.Lock()
	fw.waiters[id] = ch
	fw.mu.Unlock()
	return ch
}

func waitFor(b *testing.B, ch chan mesos.TaskState, want mesos.TaskState) {
	timeout := time.After(30 * time.Second)
	for {
		select {
		case s := <-ch:
			if s == want {
				return
			}
			if s == mesos.TaskState_TASK_FAILED || s == mesos.TaskState_TASK_ERROR || s == mesos.TaskState_TASK_LOST {
				b.Fatalf("task ended %v", s)
			}
		case <-timeout:
			b.Fatalf("no %v within 30s", want)
		}
	}
}

// acceptToRunning measures, for one task at a time, the time from sending
// ACCEPT to receiving its TASK_RUNNING.
//
// Back to back (rest == 0), each launch follows the previous one's
// TASK_RUNNING at once, and the tasks (`sleep 1`) end while later ones
// launch: on two cores the agent, its executors and the inits it starts
// ahead then compete for the CPU, and the figure includes that queueing.
// At rest, each task runs `sleep 600` and is killed (and its TASK_KILLED
// awaited) outside the timed part, followed by a pause of rest in which the
// agent refills what a launch used: the figure is the launch path alone.
func acceptToRunning(b *testing.B, cz containerizerFactory, rest time.Duration) {
	fw := subscribe(b, cluster(b, cz, helper))
	ctx := context.Background()
	lat := make([]time.Duration, 0, b.N)
	starting := make([]time.Duration, 0, b.N)
	cmd := "sleep 1"
	if rest > 0 {
		cmd = "sleep 600"
		time.Sleep(rest) // the new agent's own start: its prestarted processes come up
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		offer := <-fw.offers
		id := "lat-" + strconv.Itoa(i)
		ch := fw.watch(id)
		start := time.Now()

		if err := fw.launch(ctx, offer, task(id, cmd, offer.GetAgentId())); err != nil {
			b.Fatal(err)
		}
		waitFor(b, ch, mesos.TaskState_TASK_STARTING)
		starting = append(starting, time.Since(start))
		waitFor(b, ch, mesos.TaskState_TASK_RUNNING)
		lat = append(lat, time.Since(start))
		if rest > 0 {
			b.StopTimer()
			if err := fw.c.Kill(ctx, &mesos.TaskID{Value: proto.String(id)}, offer.GetAgentId()); err != nil {
				b.Fatal(err)
			}
			waitFor(b, ch, mesos.TaskState_TASK_KILLED)
			time.Sleep(rest)
			b.StartTimer()
		}
	}
	b.StopTimer()
	slices.Sort(starting)
	b.ReportMetric(ms(starting[len(starting)/2]), "starting-p50-ms")
	slices.Sort(lat)
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[(len(lat)*99)/100]), "p99-ms")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func BenchmarkAcceptToRunning(b *testing.B) {
	b.Run("posix", func(b *testing.B) { acceptToRunning(b, posix, 0) })
	for name, f := range extraIsolations {
		b.Run(name, func(b *testing.B) { acceptToRunning(b, f, 0) })
	}
}

// BenchmarkAcceptToRunningAtRest is the same one launch at a time on an
// agent that has settled between launches (see acceptToRunning).
func BenchmarkAcceptToRunningAtRest(b *testing.B) {
	const rest = 300 * time.Millisecond
	b.Run("posix", func(b *testing.B) { acceptToRunning(b, posix, rest) })
	for name, f := range extraIsolations {
		b.Run(name, func(b *testing.B) { acceptToRunning(b, f, rest) })
	}
}

// BenchmarkThroughput launches b.N tasks running `true` as fast as offers
// allow, many per offer, and reports tasks launched and finished per second
// and the CPU a task costs (see cpuSplit), with the inits and executors
// run from mesolite-executor (helper) and from mesolite itself (mesolite,
// what an agent without the helper beside it does).
func BenchmarkThroughput(b *testing.B) {
	b.Run("helper", func(b *testing.B) { throughput(b, helper) })
	b.Run("mesolite", func(b *testing.B) { throughput(b, binary) })
}

func throughput(b *testing.B, init string) {
	execCPU := execCost(b, 50, "/bin/sh", "-c", "true")
	fw := subscribe(b, cluster(b, posix, init))
	ctx := context.Background()
	done := make(chan struct{}, b.N)
	before := children() // earlier runs' idle inits, this agent's prestarted ones
	b.ResetTimer()
	cpu0 := readCPU(b)
	start := time.Now()
	launched := 0
	for launched < b.N {
		offer := <-fw.offers
		n := min(100, b.N-launched)
		tasks := make([]*mesos.TaskInfo, 0, n)
		for j := 0; j < n; j++ {
			id := "tp-" + strconv.Itoa(launched+j)
			ch := fw.watch(id)
			go func() { waitFor(b, ch, mesos.TaskState_TASK_FINISHED); done <- struct{}{} }()
			tasks = append(tasks, task(id, "true", offer.GetAgentId()))
		}
		if err := fw.launch(ctx, offer, tasks...); err != nil {
			b.Fatal(err)
		}
		launched += n
	}
	for i := 0; i < b.N; i++ {
		<-done
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
	// The last executors have sent TASK_FINISHED but may not have exited
	// and been reaped: their CPU reaches RUSAGE_CHILDREN only then.
	awaitChildren(b, before, 2)
	cpu := readCPU(b).sub(cpu0)
	n := float64(b.N)
	b.ReportMetric(ms(cpu.self)/n, "cpu-self-ms/task")
	b.ReportMetric(ms(cpu.children)/n, "cpu-children-ms/task")
	b.ReportMetric(ms(cpu.self+cpu.children)/n, "cpu-ms/task")
	b.ReportMetric(ms(execCPU), "cpu-exec-ms")
	b.ReportMetric(float64(cpu.self+cpu.children)/n/float64(execCPU), "x-exec")
}

// cpuSplit is the CPU (user + system) of this process, where master, agent
// and framework run, and of its children once reaped: the executors (a
// built-in one runs inside the init that became it) and what they started,
// the task's `sh -c` included, and the inits the agent prestarted.
type cpuSplit struct{ self, children time.Duration }

func (c cpuSplit) sub(o cpuSplit) cpuSplit {
	return cpuSplit{c.self - o.self, c.children - o.children}
}

func readCPU(b *testing.B) cpuSplit {
	b.Helper()
	var self, kids syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &self); err != nil {
		b.Fatal(err)
	}
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids); err != nil {
		b.Fatal(err)
	}
	tv := func(r *syscall.Rusage) time.Duration {
		return time.Duration(r.Utime.Nano() + r.Stime.Nano())
	}
	return cpuSplit{self: tv(&self), children: tv(&kids)}
}

// awaitChildren waits (up to 10 s) until this process has at most keep
// children besides those in before: the inits the agent started again to
// keep prestarted.
func awaitChildren(b *testing.B, before []string, keep int) {
	b.Helper()
	var left []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		left = slices.DeleteFunc(children(), func(pid string) bool { return slices.Contains(before, pid) })
		if len(left) <= keep {
			return
		}
	}
	b.Logf("children still running after 10 s: %v", left)
}

func children() []string {
	var pids []string
	tasks, _ := filepath.Glob("/proc/self/task/*/children")
	for _, t := range tasks {
		data, _ := os.ReadFile(t)
		pids = append(pids, strings.Fields(string(data))...)
	}
	return pids
}

// execCost is the CPU one run of argv costs (user + system of the reaped
// child, averaged over n runs): the floor a task running argv costs.
func execCost(b *testing.B, n int, argv ...string) time.Duration {
	b.Helper()
	var total time.Duration
	for range n {
		cmd := exec.Command(argv[0], argv[1:]...)
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		total += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	return total / time.Duration(n)
}
