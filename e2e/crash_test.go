package e2e

import (
	"context"
	"fmt"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/isolation"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/scheduler"
	"google.golang.org/protobuf/proto"
)

// crashFramework launches n command tasks on whatever is offered and
// records every update it receives.
type crashFramework struct {
	mu       sync.Mutex
	launched int
	states   map[string][]mesos.TaskState
	uuids    map[string]int // uuid -> times delivered
	bad      []string       // terminal updates no crash window explains
}

func (f *crashFramework) terminal() (ended int, dups []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, ss := range f.states {
		n := 0
		for _, s := range ss {
			if mesos.IsTerminal(s) {
				n++
			}
		}
		if n > 0 {
			ended++
		}
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s: %v", id, ss))
		}
	}
	for u, n := range f.uuids {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("uuid %x delivered %d times", u, n))
		}
	}
	return ended, dups
}

// TestAgentCrashWindowsLoseAndDuplicateNothing SIGKILLs the agent at random
// moments of a 50-task launch, three times, restarting it each time: every
// task ends exactly once (TASK_FINISHED, or what the crash explains: lost
// before the agent had it, or its launch abandoned), no update reaches the
// framework twice, and no executor runs on unwatched.
func TestAgentCrashWindowsLoseAndDuplicateNothing(t *testing.T) {
	const tasks = 50
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f := launchBurst(ctx, t, c, "crash-windows", tasks, "sleep 1.5", 10)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	for round := 0; round < 3; round++ {
		wait := time.Duration(100+rng.IntN(1400)) * time.Millisecond
		time.Sleep(wait)
		t.Logf("round %d: SIGKILL of the agent %v after its start", round, wait)
		c.agent.kill9()
		c.startAgent(t)
	}
	f.waitEveryTaskEndedOnce(t, c, tasks)
}

// TestAgentRestartMidBurst stops the agent, with SIGTERM (an operator's
// restart) and with SIGKILL (a crash), while a burst of 200 short tasks,
// all offered at once, is being launched and is ending, and starts it
// again: no update is lost or delivered twice, every task ends once, and
// no executor or task process is left behind. The executors of the
// tasks in flight outlive their agent and are recovered by the new one.
func TestAgentRestartMidBurst(t *testing.T) {
	const tasks = 200
	for _, stop := range []struct {
		name string
		do   func(*proc)
	}{
		{"SIGTERM", (*proc).stop},
		{"SIGKILL", (*proc).kill9},
	} {
		t.Run(stop.name, func(t *testing.T) {
			c := startCluster(t)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			f := launchBurst(ctx, t, c, "burst-"+stop.name, tasks, "sleep 0.5", tasks)
			// In the middle: some tasks finished, others running or
			// being launched.
			testutil.Eventually(t, time.Minute, 5*time.Millisecond, func() bool {
				ended, _ := f.terminal()
				return ended >= tasks/4
			}, "a quarter of the burst ended")
			ended, _ := f.terminal()
			t.Logf("%s of the agent with %d of %d tasks ended", stop.name, ended, tasks)
			stop.do(c.agent)
			c.startAgent(t)
			f.waitEveryTaskEndedOnce(t, c, tasks)
			if stop.name == "SIGTERM" {
				// An orderly stop leaves nothing for a crash to explain.
				f.mu.Lock()
				defer f.mu.Unlock()
				for id, ss := range f.states {
					if last := ss[len(ss)-1]; last != mesos.TaskState_TASK_FINISHED {
						t.Errorf("%s ended %v after a SIGTERM of the agent: %v", id, last, ss)
					}
				}
			}
		})
	}
}

// launchBurst subscribes a checkpointing framework that launches n
// command tasks running cmd, at most perOffer from an offer, on whatever
// is offered, and records every update it receives.
func launchBurst(ctx context.Context, t *testing.T, c *cluster, name string, n int, cmd string, perOffer int) *crashFramework {
	t.Helper()
	cl, err := scheduler.Subscribe(ctx, scheduler.Config{
		Master: c.masterAddr,
		Framework: &mesos.FrameworkInfo{Name: proto.String(name), User: proto.String("root"),
			Checkpoint: proto.Bool(true), FailoverTimeout: proto.Float64(300)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.Close() })
	f := &crashFramework{states: map[string][]mesos.TaskState{}, uuids: map[string]int{}}
	go func() {
		for ev := range cl.Events() {
			switch ev.GetType() {
			case schedv1.Event_OFFERS:
				for _, o := range ev.GetOffers().GetOffers() {
					var batch []*mesos.TaskInfo
					// As many as the offer holds (0.01 cpus, 4 MB each).
					var cpus, mem float64
					for _, r := range o.GetResources() {
						switch r.GetName() {
						case "cpus":
							cpus += r.GetScalar().GetValue()
						case "mem":
							mem += r.GetScalar().GetValue()
						}
					}
					fit := min(int(cpus/0.01+1e-9), int(mem/4), perOffer)
					f.mu.Lock()
					for f.launched < n && len(batch) < fit {
						id := fmt.Sprintf("%s-%03d", name, f.launched)
						f.launched++
						batch = append(batch, &mesos.TaskInfo{
							Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)}, AgentId: o.AgentId,
							Command: &mesos.CommandInfo{Value: proto.String(cmd)},
							Resources: []*mesos.Resource{
								{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(0.01)}},
								{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(4)}},
							},
						})
					}
					f.mu.Unlock()
					if len(batch) == 0 {
						_ = cl.Decline(ctx, nil, o.Id)
						continue
					}
					if err := cl.Launch(ctx, o, batch...); err != nil {
						t.Logf("launch: %v", err)
					}
				}
			case schedv1.Event_UPDATE:
				st := ev.GetUpdate().GetStatus()
				f.mu.Lock()
				f.states[st.GetTaskId().GetValue()] = append(f.states[st.GetTaskId().GetValue()], st.GetState())
				if st.GetState() != mesos.TaskState_TASK_FINISHED && mesos.IsTerminal(st.GetState()) {
					// What a crash may rightly end a task with: the agent
					// died before the launch reached it (its offer went
					// with it) or before it had the task (the master
					// reports it lost), or before it recorded the new
					// container (the launch is abandoned, its processes
					// killed).
					t.Logf("%s %s %s %s", st.GetTaskId().GetValue(), st.GetState(), st.GetReason(), st.GetMessage())
					lost := st.GetState() == mesos.TaskState_TASK_LOST &&
						(st.GetReason() == mesos.TaskStatus_REASON_TASK_UNKNOWN || st.GetReason() == mesos.TaskStatus_REASON_INVALID_OFFERS)
					abandoned := st.GetState() == mesos.TaskState_TASK_FAILED && st.GetReason() == mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED
					if !lost && !abandoned {
						f.bad = append(f.bad, fmt.Sprintf("%s %s %s %s", st.GetTaskId().GetValue(), st.GetState(), st.GetReason(), st.GetMessage()))
					}
				}
				if len(st.GetUuid()) > 0 {
					f.uuids[string(st.GetUuid())]++
				}
				f.mu.Unlock()
			}
		}
	}()
	return f
}

// waitEveryTaskEndedOnce waits for all n tasks to end, failing on a
// duplicate or an end no crash explains, then checks that no late resend
// duplicates anything and that no executor or task process is left.
func (f *crashFramework) waitEveryTaskEndedOnce(t *testing.T, c *cluster, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ended, dups := f.terminal()
		if len(dups) > 0 {
			t.Fatalf("duplicates: %v", dups)
		}
		f.mu.Lock()
		bad := f.bad
		f.mu.Unlock()
		if len(bad) > 0 {
			t.Fatalf("tasks ended for no crash's reason: %v", bad)
		}
		if ended == n {
			break
		}
		if time.Now().After(deadline) {
			f.mu.Lock()
			t.Fatalf("%d of %d tasks ended; states %v", ended, n, f.states)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Late resends would show up now as duplicates.
	time.Sleep(2 * time.Second)
	if _, dups := f.terminal(); len(dups) > 0 {
		t.Fatalf("duplicates after the end: %v", dups)
	}
	// Nothing of an abandoned launch runs on, unwatched: executors exit
	// once their last update is acknowledged, and the tasks' processes
	// (which carry the sandbox in their environment too) with them. An
	// executor whose acknowledgement a crash lost leaves on its own after
	// its wait for it (30 s, executor/command's terminalAckTimeout): the
	// wait here is longer.
	leakStart := time.Now()
	testutil.Eventually(t, 45*time.Second, 100*time.Millisecond, func() bool {
		return len(executorsUnder(c.agentDir)) == 0
	}, "executor or task processes left running: %v", executorsUnder(c.agentDir))
	if d := time.Since(leakStart); d > 5*time.Second {
		t.Logf("the last executors took %v more to leave (an acknowledgement lost to a crash?)", d.Round(time.Second))
	}
}

// executorsUnder lists the processes of executors and tasks whose
// sandbox is under dir: by MESOS_DIRECTORY in their environment, or by
// their working directory (a built-in executor running in place in a
// prestarted init keeps the init's environment, which has no
// MESOS_DIRECTORY, but works in its sandbox).
func executorsUnder(dir string) []int {
	pids := isolation.FindByEnv(func(kv string) bool {
		d, ok := strings.CutPrefix(kv, "MESOS_DIRECTORY=")
		return ok && strings.HasPrefix(d, dir+"/")
	})
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() || slices.Contains(pids, pid) {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err == nil && strings.HasPrefix(strings.TrimSuffix(cwd, " (deleted)"), dir+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}
