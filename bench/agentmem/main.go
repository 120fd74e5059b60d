// Command agentmem measures the agent's resident memory idle and while it
// runs many tasks, against the targets in docs/benchmarks.md:
//
//	go run ./bench/agentmem                          # 1,000 tasks on 10 executors
//	go run ./bench/agentmem -tasks 2000 -executors 20
//
// It builds mesolite and the example executor, starts `mesolite master`
// and `mesolite agent` as their own processes on loopback, reads the
// agent's RSS from /proc once registered and settled, then subscribes a
// framework that launches the tasks (`sleep`, so they hold still) spread
// over custom executors, waits for every TASK_RUNNING, lets the agent
// settle again (status updates acknowledged, checkpoints written) and reads
// its RSS once more. Executors are separate processes and reported apart:
// the target is the agent's own footprint.
//
// With -completed it measures what finished tasks cost instead: one custom
// executor runs that many short tasks (`true`) to completion, and the
// agent's RSS and the size of its /state are read once every update is
// acknowledged. The agent keeps --max_completed_tasks_per_executor of them
// (-max_completed; its default, 200, when 0), which /state must respect:
//
//	go run ./bench/agentmem -completed 1000
//	go run ./bench/agentmem -completed 1000 -max_completed 1000   # nothing trimmed
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/scheduler"
)

func main() {
	tasks := flag.Int("tasks", 1000, "tasks to run at once")
	executors := flag.Int("executors", 10, "custom executors the tasks are spread over")
	settle := flag.Duration("settle", 5*time.Second, "wait before each reading, for the agent to go quiet")
	completed := flag.Int("completed", 0, "instead: run this many short tasks to completion in one executor")
	maxCompleted := flag.Int("max_completed", 0, "with -completed: the agent's --max_completed_tasks_per_executor (0: its default)")
	flag.Parse()
	var err error
	if *completed > 0 {
		err = runCompleted(*completed, *maxCompleted, *settle)
	} else {
		err = run(*tasks, *executors, *settle)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentmem:", err)
		os.Exit(1)
	}
}

// cluster is a master and an agent, each its own process, on loopback.
type cluster struct {
	dir                   string
	exe                   string // the example executor
	masterAddr, agentAddr string
	master, agent         *exec.Cmd
}

// startCluster builds mesolite and the example executor, starts a master
// and an agent (with agentArgs added) and waits for the agent to register.
// close stops both and removes everything.
func startCluster(ctx context.Context, agentArgs ...string) (*cluster, error) {
	dir, err := os.MkdirTemp("", "mesolite-agentmem")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir, exe: filepath.Join(dir, "executor"), masterAddr: freeAddr(), agentAddr: freeAddr()}
	bin := filepath.Join(dir, "mesolite")
	// mesolite-executor beside mesolite, as make build installs them: the
	// agent's prestarted inits run from it.
	for out, pkg := range map[string]string{bin: "./cmd/mesolite", filepath.Join(dir, "mesolite-executor"): "./cmd/mesolite-executor",
		c.exe: "./examples/executor"} {
		if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
			c.close()
			return nil, fmt.Errorf("build %s: %w\n%s", pkg, err, b)
		}
	}
	if c.master, err = start(ctx, dir, "master", bin, "master", "--ip=127.0.0.1", "--port="+port(c.masterAddr),
		"--work_dir="+filepath.Join(dir, "master")); err != nil {
		c.close()
		return nil, err
	}
	if err := waitHTTP(ctx, "http://"+c.masterAddr+"/master/health"); err != nil {
		c.close()
		return nil, err
	}
	args := append([]string{"agent", "--master=" + c.masterAddr, "--ip=127.0.0.1", "--port=" + port(c.agentAddr),
		"--work_dir=" + filepath.Join(dir, "agent"), "--resources=cpus:64;mem:262144;disk:65536;ports:[31000-32000]"}, agentArgs...)
	if c.agent, err = start(ctx, dir, "agent", bin, args...); err != nil {
		c.close()
		return nil, err
	}
	// The files endpoints answer 503 until the agent has registered.
	if err := waitHTTP(ctx, "http://"+c.agentAddr+"/files/debug"); err != nil {
		c.close()
		return nil, err
	}
	return c, nil
}

func (c *cluster) close() {
	// The agent first: it ends its executors while its master is there.
	if c.agent != nil {
		stop(c.agent)
	}
	if c.master != nil {
		stop(c.master)
	}
	os.RemoveAll(c.dir)
}

func run(nTasks, nExecutors int, settle time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c, err := startCluster(ctx)
	if err != nil {
		return err
	}
	defer c.close()
	masterAddr, exe, agent := c.masterAddr, c.exe, c.agent
	time.Sleep(settle)
	idle := readMem(agent.Process.Pid)
	// What the agent keeps started while idle (prestarted inits and what
	// each holds ready, the fetch child): RSS counts their shared pages
	// (the binary's text) in each, PSS shares them out.
	kept := childrenNamed(agent.Process.Pid, "")
	var keptRSS, keptPSS int64
	var keptWhat []string
	for _, pid := range kept {
		keptRSS += readMem(pid).rss
		keptPSS += readPSS(pid)
		argv, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(strings.TrimRight(string(argv), "\x00"), "\x00")
		keptWhat = append(keptWhat, fmt.Sprintf("%s %.1f/%.1f MB", filepath.Base(strings.Join(args[:min(len(args), 2)], " ")),
			mb(readMem(pid).rss), mb(readPSS(pid))))
	}
	idlePSS := readPSS(agent.Process.Pid)

	fw, err := scheduler.Subscribe(ctx, scheduler.Config{
		Master:    masterAddr,
		Framework: &mesos.FrameworkInfo{User: proto.String("root"), Name: proto.String("agentmem")},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	defer fw.Close()
	start := time.Now()
	running, launched := 0, 0
	for running < nTasks {
		select {
		case ev, ok := <-fw.Events():
			if !ok {
				return fmt.Errorf("framework stream ended: %w", fw.Err())
			}
			switch ev.GetType() {
			case schedv1.Event_OFFERS:
				for _, o := range ev.GetOffers().GetOffers() {
					var batch []*mesos.TaskInfo
					for ; launched < nTasks && len(batch) < 200; launched++ {
						batch = append(batch, task(launched, launched%nExecutors, exe, "exec sleep 3600", o.GetAgentId()))
					}
					if len(batch) == 0 {
						_ = fw.Decline(ctx, scheduler.RefuseFor(time.Hour), o.GetId())
						continue
					}
					// No refuse filter: the rest comes back in the next offer at once.
					ops := []*mesos.Offer_Operation{scheduler.LaunchOperation(batch...)}
					if err := fw.Accept(ctx, []*mesos.OfferID{o.GetId()}, ops, scheduler.RefuseFor(0)); err != nil {
						return err
					}
				}
			case schedv1.Event_UPDATE:
				st := ev.GetUpdate().GetStatus()
				if err := fw.Acknowledge(ctx, st); err != nil {
					return err
				}
				switch st.GetState() {
				case mesos.TaskState_TASK_RUNNING:
					running++
				case mesos.TaskState_TASK_STARTING, mesos.TaskState_TASK_STAGING:
				default:
					return fmt.Errorf("task %s: %s %s", st.GetTaskId().GetValue(), st.GetState(), st.GetMessage())
				}
			}
		case <-time.After(2 * time.Minute):
			return fmt.Errorf("only %d of %d tasks running after 2 minutes", running, nTasks)
		}
	}
	launchTime := time.Since(start)
	time.Sleep(settle)
	busy := readMem(agent.Process.Pid)
	var execRSS int64
	for _, pid := range childrenNamed(agent.Process.Pid, "executor") {
		execRSS += readMem(pid).rss
	}
	fmt.Printf("machine: %s, %d CPUs, %s\n", hostModel(), runtime.NumCPU(), runtime.Version())
	fmt.Printf("agent RSS idle:                     %6.1f MB (peak %.1f MB, PSS %.1f MB)\n", mb(idle.rss), mb(idle.hwm), mb(idlePSS))
	fmt.Printf("kept started while idle: %d processes, RSS %.1f MB together, PSS %.1f MB; agent and them: PSS %.1f MB\n",
		len(kept), mb(keptRSS), mb(keptPSS), mb(idlePSS+keptPSS))
	fmt.Printf("  (RSS/PSS each: %s)\n", strings.Join(keptWhat, "; "))
	fmt.Printf("agent RSS with %d tasks running: %6.1f MB (peak %.1f MB)\n", nTasks, mb(busy.rss), mb(busy.hwm))
	fmt.Printf("%d executors: %.1f MB RSS together; %d tasks running %.1f s after the first offer\n",
		nExecutors, mb(execRSS), nTasks, launchTime.Seconds())
	_ = fw.Teardown(ctx)
	return nil
}

// runCompleted runs nTasks short tasks to completion in one executor and
// reports the agent's RSS and /state, and how many of those tasks /state
// still lists (at most maxCompleted, or the agent's default 200).
func runCompleted(nTasks, maxCompleted int, settle time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var agentArgs []string
	if maxCompleted > 0 {
		agentArgs = append(agentArgs, "--max_completed_tasks_per_executor="+strconv.Itoa(maxCompleted))
	}
	c, err := startCluster(ctx, agentArgs...)
	if err != nil {
		return err
	}
	defer c.close()
	time.Sleep(settle)
	idle := readMem(c.agent.Process.Pid)
	idleState, err := readState(ctx, c.agentAddr)
	if err != nil {
		return err
	}

	fw, err := scheduler.Subscribe(ctx, scheduler.Config{
		Master:    c.masterAddr,
		Framework: &mesos.FrameworkInfo{User: proto.String("root"), Name: proto.String("agentmem-completed")},
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	defer fw.Close()
	began := time.Now()
	finished, launched := 0, 0
	// The peak while tasks come and go, not only what is left after.
	var peak mem
	for finished < nTasks {
		select {
		case ev, ok := <-fw.Events():
			if !ok {
				return fmt.Errorf("framework stream ended: %w", fw.Err())
			}
			switch ev.GetType() {
			case schedv1.Event_OFFERS:
				for _, o := range ev.GetOffers().GetOffers() {
					var batch []*mesos.TaskInfo
					for ; launched < nTasks && len(batch) < 200; launched++ {
						batch = append(batch, task(launched, 0, c.exe, "true", o.GetAgentId()))
					}
					if len(batch) == 0 {
						_ = fw.Decline(ctx, scheduler.RefuseFor(time.Hour), o.GetId())
						continue
					}
					ops := []*mesos.Offer_Operation{scheduler.LaunchOperation(batch...)}
					if err := fw.Accept(ctx, []*mesos.OfferID{o.GetId()}, ops, scheduler.RefuseFor(0)); err != nil {
						return err
					}
				}
			case schedv1.Event_UPDATE:
				st := ev.GetUpdate().GetStatus()
				if err := fw.Acknowledge(ctx, st); err != nil {
					return err
				}
				switch st.GetState() {
				case mesos.TaskState_TASK_FINISHED:
					finished++
					if finished%100 == 0 {
						if m := readMem(c.agent.Process.Pid); m.rss > peak.rss {
							peak = m
						}
					}
				case mesos.TaskState_TASK_STARTING, mesos.TaskState_TASK_STAGING, mesos.TaskState_TASK_RUNNING:
				default:
					return fmt.Errorf("task %s: %s %s", st.GetTaskId().GetValue(), st.GetState(), st.GetMessage())
				}
			}
		case <-time.After(2 * time.Minute):
			return fmt.Errorf("only %d of %d tasks finished after 2 minutes", finished, nTasks)
		}
	}
	took := time.Since(began)
	time.Sleep(settle)
	after := readMem(c.agent.Process.Pid)
	st, err := readState(ctx, c.agentAddr)
	if err != nil {
		return err
	}
	var execRSS int64
	for _, pid := range childrenNamed(c.agent.Process.Pid, "executor") {
		execRSS += readMem(pid).rss
	}
	limit := maxCompleted
	if limit <= 0 {
		limit = 200
	}
	fmt.Printf("machine: %s, %d CPUs, %s\n", hostModel(), runtime.NumCPU(), runtime.Version())
	fmt.Printf("--max_completed_tasks_per_executor=%d; %d tasks finished in one executor in %.1f s\n", limit, nTasks, took.Seconds())
	fmt.Printf("agent RSS idle:                        %6.1f MB; /state %d bytes\n", mb(idle.rss), idleState.size)
	fmt.Printf("agent RSS while tasks finished (max):  %6.1f MB\n", mb(peak.rss))
	fmt.Printf("agent RSS after, settled:              %6.1f MB (peak %.1f MB); /state %d bytes (%.1f KB a completed task listed)\n",
		mb(after.rss), mb(after.hwm), st.size, float64(st.size-idleState.size)/1024/float64(max(st.completed, 1)))
	fmt.Printf("/state: %d completed tasks of the executor (at most %d), %d running, %d executors\n", st.completed, limit, st.running, st.executors)
	fmt.Printf("executor RSS: %.1f MB\n", mb(execRSS))
	_ = fw.Teardown(ctx)
	if st.completed > limit {
		return fmt.Errorf("/state lists %d completed tasks of one executor; the bound is %d", st.completed, limit)
	}
	if st.completed < min(limit, nTasks) {
		return fmt.Errorf("/state lists %d completed tasks; want %d", st.completed, min(limit, nTasks))
	}
	return nil
}

// agentState is what runCompleted reads from the agent's /state.
type agentState struct {
	size                          int
	executors, running, completed int // completed: the most in one executor
}

func readState(ctx context.Context, agentAddr string) (agentState, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+agentAddr+"/state", nil)
	if err != nil {
		return agentState{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return agentState{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return agentState{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return agentState{}, fmt.Errorf("GET /state: %s", resp.Status)
	}
	type executor struct {
		Tasks          []json.RawMessage `json:"tasks"`
		CompletedTasks []json.RawMessage `json:"completed_tasks"`
	}
	var doc struct {
		Frameworks []struct {
			Executors          []executor `json:"executors"`
			CompletedExecutors []executor `json:"completed_executors"`
		} `json:"frameworks"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return agentState{}, fmt.Errorf("GET /state: %w", err)
	}
	st := agentState{size: len(body)}
	for _, fw := range doc.Frameworks {
		for _, ex := range append(fw.Executors, fw.CompletedExecutors...) {
			st.executors++
			st.running += len(ex.Tasks)
			st.completed = max(st.completed, len(ex.CompletedTasks))
		}
	}
	return st, nil
}

func task(i, ex int, exe, script string, agentID *mesos.AgentID) *mesos.TaskInfo {
	scalar := func(name string, v float64) *mesos.Resource {
		return &mesos.Resource{Name: proto.String(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(v)}}
	}
	exID := "ex-" + strconv.Itoa(ex)
	return &mesos.TaskInfo{
		Name:      proto.String("sleeper"),
		TaskId:    &mesos.TaskID{Value: proto.String("t-" + strconv.Itoa(i))},
		AgentId:   agentID,
		Resources: []*mesos.Resource{scalar("cpus", 0.01), scalar("mem", 1)},
		Data:      []byte(script),
		Executor: &mesos.ExecutorInfo{
			ExecutorId: &mesos.ExecutorID{Value: proto.String(exID)},
			Name:       proto.String(exID),
			Command:    &mesos.CommandInfo{Value: proto.String(exe), Shell: proto.Bool(false), Arguments: []string{exe}},
			Resources:  []*mesos.Resource{scalar("cpus", 0.1), scalar("mem", 32)},
		},
	}
}

type mem struct{ rss, hwm int64 } // bytes

// readMem reads VmRSS and VmHWM of pid.
func readMem(pid int) mem {
	var m mem
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			m.rss = kb << 10
		case "VmHWM":
			m.hwm = kb << 10
		}
	}
	return m
}

// readPSS reads the proportional set size of pid: its private pages and
// its share of those it shares.
func readPSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// childrenNamed finds the descendants of pid whose command name is name
// (all of them when name is empty).
func childrenNamed(pid int, name string) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	comm := map[int]string{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < 0 {
			continue
		}
		comm[p] = s[open+1 : close]
		fields := strings.Fields(s[close+1:])
		if len(fields) > 1 {
			parent[p], _ = strconv.Atoi(fields[1])
		}
	}
	var out []int
	for p, c := range comm {
		if name != "" && c != name {
			continue
		}
		for a := parent[p]; a > 1; a = parent[a] {
			if a == pid {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

func start(ctx context.Context, dir, name, bin string, args ...string) (*exec.Cmd, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return cmd, nil
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("no 200 from " + url + " within 30s")
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

func mb(b int64) float64 { return float64(b) / (1 << 20) }

func hostModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
