// Package failover measures master failover with the real binaries and a
// real ZooKeeper: three masters sharing their registry in ZooKeeper, a few
// agents, a `mesolite run --master=zk://` task and a framework of the
// scheduler library with tasks. Each iteration SIGKILLs the leader and
// measures, from the kill, when a new master leads, when every agent has
// re-registered with it, and when every framework has re-subscribed; the
// killed master is restarted as a follower. It also measures registry
// writes and reads on ZooKeeper (package zkstore).
//
//	go test -run '^$' -bench . -benchtime 5x ./bench/failover/
//	FAILOVER_ZK_SESSION=4secs go test -run '^$' -bench Failover -benchtime 5x ./bench/failover/
package failover

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/detector/zktest"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/master/store"
	"github.com/mesolite/mesolite/master/store/zkstore"
	"github.com/mesolite/mesolite/scheduler"
	"google.golang.org/protobuf/proto"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "mesolite-bench-failover")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "mesolite")
	if out, err := exec.Command("go", "build", "-o", binary, "../../cmd/mesolite").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	cmd  *exec.Cmd
	out  testutil.SyncBuffer
	done chan struct{}
}

// procs are every process a benchmark started, for its failure report.
var procs []*proc

func start(b *testing.B, args ...string) *proc {
	b.Helper()
	p := &proc{cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	procs = append(procs, p)
	b.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

func (p *proc) kill9() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

type state struct {
	Elected bool `json:"elected"`
	Slaves  []struct {
		Active bool `json:"active"`
	} `json:"slaves"`
	Frameworks []struct {
		ID     string `json:"id"`
		Active bool   `json:"active"`
	} `json:"frameworks"`
}

func getState(port int) (*state, error) {
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/master/state")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var st state
	return &st, json.NewDecoder(resp.Body).Decode(&st)
}

const agents = 3

// waitLimit bounds each wait for the cluster.
var waitLimit = time.Minute

// BenchmarkFailover reports the mean, over b.N failovers, of the time
// from the leader's death to a new leader (elected-ms), to every agent
// re-registered (agents-ms), to every framework re-subscribed
// (frameworks-ms), and to all of it (failover-ms).
func BenchmarkFailover(b *testing.B) {
	session := os.Getenv("FAILOVER_ZK_SESSION")
	if session == "" {
		session = "2secs"
	}
	zk := zktest.Start(b)
	url := zk.URL("/mesolite")
	ports := []int{testutil.FreePort(b), testutil.FreePort(b), testutil.FreePort(b)}
	masters := make([]*proc, len(ports))
	startMaster := func(i int) {
		masters[i] = start(b, "master", "--ip=127.0.0.1", "--port="+strconv.Itoa(ports[i]), "--work_dir="+b.TempDir(),
			"--zk="+url, "--zk_session_timeout="+session, "--allocation_interval=100ms", "--logging_level=INFO")
	}
	for i := range ports {
		startMaster(i)
	}
	for range agents {
		start(b, "agent", "--master="+url, "--ip=127.0.0.1", "--port="+strconv.Itoa(testutil.FreePort(b)), "--work_dir="+b.TempDir(),
			"--resources=cpus:8;mem:4096;disk:1024", "--registration_backoff_factor=100ms", "--logging_level=INFO")
	}
	leader := func() (int, *state) {
		for i, p := range ports {
			select {
			case <-masters[i].done:
				continue
			default:
			}
			if st, err := getState(p); err == nil && st.Elected {
				return i, st
			}
		}
		return -1, nil
	}
	wait := func(what string, ok func() bool) {
		deadline := time.Now().Add(waitLimit)
		for !ok() {
			if time.Now().After(deadline) {
				for _, p := range procs {
					_ = p.cmd.Process.Signal(syscall.SIGQUIT)
				}
				time.Sleep(2 * time.Second)
				for _, p := range procs {
					b.Logf("---- %v ----\n%s", p.cmd.Args[:2], p.out.String())
				}
				b.Fatalf("no %s within %s", what, waitLimit)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	active := func(st *state) (agentsUp, fwsUp int) {
		for _, s := range st.Slaves {
			if s.Active {
				agentsUp++
			}
		}
		for _, f := range st.Frameworks {
			if f.Active {
				fwsUp++
			}
		}
		return
	}
	wait("leader with every agent", func() bool {
		_, st := leader()
		a, _ := 0, 0
		if st != nil {
			a, _ = active(st)
		}
		return a == agents
	})
	run := start(b, "run", "--master="+url, "--name=bench", "--command=sleep 3600")
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	client, err := scheduler.Subscribe(ctx, scheduler.Config{Master: url, BackoffMax: 2 * time.Second,
		Framework: &mesos.FrameworkInfo{Name: proto.String("bench-tasks"), FailoverTimeout: proto.Float64(600), Checkpoint: proto.Bool(true)}})
	if err != nil {
		b.Fatal(err)
	}
	go launchTen(ctx, client)
	wait("run's task running", func() bool { return bytes.Contains([]byte(run.out.String()), []byte("TASK_RUNNING")) })
	wait("both frameworks", func() bool {
		_, st := leader()
		if st == nil {
			return false
		}
		_, f := active(st)
		return f == 2
	})

	var elected, agentsBack, fwsBack, all []time.Duration
	b.ResetTimer()
	for range b.N {
		i, _ := leader()
		if i < 0 {
			b.Fatal("no leader")
		}
		killed := time.Now()
		masters[i].kill9()
		var te, ta, tf time.Duration
		wait("recovery", func() bool {
			j, st := leader()
			if j < 0 || j == i {
				return false
			}
			now := time.Since(killed)
			if te == 0 {
				te = now
			}
			a, f := active(st)
			if ta == 0 && a == agents {
				ta = now
			}
			if tf == 0 && f == 2 {
				tf = now
			}
			return ta != 0 && tf != 0
		})
		elected, agentsBack, fwsBack, all = append(elected, te), append(agentsBack, ta), append(fwsBack, tf), append(all, max(ta, tf))
		b.StopTimer()
		startMaster(i)
		time.Sleep(time.Second) // the restarted master joins the election
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(ms(mean(elected)), "elected-ms")
	b.ReportMetric(ms(mean(agentsBack)), "agents-ms")
	b.ReportMetric(ms(mean(fwsBack)), "frameworks-ms")
	b.ReportMetric(ms(mean(all)), "failover-ms")
	b.ReportMetric(ms(maxOf(all)), "max-failover-ms")
	b.Logf("ZooKeeper session timeout %s; per failover (elected / agents / frameworks): %s", session, table(elected, agentsBack, fwsBack))
}

func launchTen(ctx context.Context, c *scheduler.Client) {
	launched := false
	for ev := range c.Events() {
		if ev.GetType() != schedv1.Event_OFFERS {
			continue
		}
		for _, o := range ev.GetOffers().GetOffers() {
			if launched {
				_ = c.Decline(ctx, scheduler.RefuseFor(time.Hour), o.GetId())
				continue
			}
			var tasks []*mesos.TaskInfo
			for i := range 10 {
				id := fmt.Sprintf("t%d", i)
				tasks = append(tasks, &mesos.TaskInfo{Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)}, AgentId: o.GetAgentId(),
					Resources: []*mesos.Resource{{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(0.05)}},
						{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(16)}}},
					Command: &mesos.CommandInfo{Value: proto.String("sleep 3600")}})
			}
			if c.Launch(ctx, o, tasks...) == nil {
				launched = true
			}
		}
	}
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(max(len(ds), 1))
}

func maxOf(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func table(cols ...[]time.Duration) string {
	var out bytes.Buffer
	for i := range cols[0] {
		fmt.Fprintf(&out, "\n  %d:", i+1)
		for _, c := range cols {
			fmt.Fprintf(&out, " %6.0fms", ms(c[i]))
		}
	}
	return out.String()
}

// BenchmarkZKRegistryWrite is one registry write (one agent record, as an
// agent's admission writes it) on ZooKeeper: a multi-op transaction with
// the epoch check, on a loopback ZooKeeper with its data on local disk.
func BenchmarkZKRegistryWrite(b *testing.B) {
	s := openStore(b)
	info := &mesos.AgentInfo{Hostname: proto.String("node"), Port: proto.Int32(5051),
		Resources: []*mesos.Resource{{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(8)}}}}
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if err := s.Apply(ctx, []store.Op{store.PutAgent{Agent: store.Agent{ID: fmt.Sprintf("a%d", i%100), Info: info, Address: "10.0.0.1:5051", RegisteredAt: time.Now()}}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkZKRegistryWriteParallel is what the master's writer sees under
// load: concurrent callers' ops grouped, here 100 completed tasks per
// transaction.
func BenchmarkZKRegistryWrite100Tasks(b *testing.B) {
	s := openStore(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		ops := make([]store.Op, 100)
		for j := range ops {
			id := fmt.Sprintf("t%d-%d", i, j)
			ops[j] = store.PutTask{FrameworkID: "fw", Task: store.CompletedTask{CompletedAt: time.Now(), Task: &mesos.Task{
				Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)}, FrameworkId: &mesos.FrameworkID{Value: proto.String("fw")},
				AgentId: &mesos.AgentID{Value: proto.String("a")}, State: mesos.TaskState_TASK_FINISHED.Enum()}}}
		}
		if err := s.Apply(ctx, ops); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkZKRegistryLoad10000Agents is what a new leader reads before it
// serves, with 10,000 agents in the registry.
func BenchmarkZKRegistryLoad10000Agents(b *testing.B) {
	s := openStore(b)
	ctx := context.Background()
	info := &mesos.AgentInfo{Hostname: proto.String("node"), Port: proto.Int32(5051)}
	var ops []store.Op
	for i := range 10000 {
		ops = append(ops, store.PutAgent{Agent: store.Agent{ID: fmt.Sprintf("agent-%05d", i), Info: info, Address: "10.0.0.1:5051", RegisteredAt: time.Now()}})
	}
	if err := s.Apply(ctx, ops); err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	b.ResetTimer()
	for range b.N {
		snap, err := s.Load(ctx)
		if err != nil {
			b.Fatal(err)
		}
		mu.Lock()
		if len(snap.Agents) != 10000 {
			b.Fatalf("%d agents", len(snap.Agents))
		}
		mu.Unlock()
	}
}

func openStore(b *testing.B) *zkstore.Store {
	zk := zktest.Start(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := zkstore.Open(ctx, zkstore.Config{URL: zk.URL("/bench"), Owner: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	if _, err := s.Load(ctx); err != nil {
		b.Fatal(err)
	}
	return s
}
