package agent

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/mesolite/mesolite/isolation"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/sandbox"
)

func executorMessageEvent(data []byte) *executor.Event {
	return &executor.Event{Type: executor.Event_MESSAGE.Enum(), Message: &executor.Event_Message{Data: data}}
}

func writeJSONAtomic(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b)
}

func (a *Agent) checkpointAgentID(id string) error {
	if err := os.MkdirAll(a.meta.agent(id), 0o755); err != nil {
		return err
	}
	if err := checkpointProto(filepath.Join(a.meta.agent(id), "agent.info"), a.info); err != nil {
		return err
	}
	tmp := a.meta.latest() + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(id, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, a.meta.latest())
}

// recover rebuilds frameworks, executors, tasks and update streams from the
// checkpoint, and reattaches the containerizer to live containers. Executors
// whose container is gone have their tasks failed once the master is back.
func (a *Agent) recover(ctx context.Context) error {
	id, err := os.Readlink(a.meta.latest())
	if errors.Is(err, fs.ErrNotExist) {
		// A fresh agent still owns nothing: clean up what earlier runs left.
		return a.cz.Recover(ctx, nil)
	}
	if err != nil {
		return err
	}
	a.agentID = id
	a.info.Id = &mesos.AgentID{Value: &id}
	a.ensureFilesHandlerLocked()
	var handles []containerizer.Handle
	var dead []*executorState
	interrupted := map[*executorState]bool{}
	fws, err := listDirs(filepath.Join(a.meta.agent(id), "frameworks"))
	if err != nil {
		return err
	}
	for _, fwID := range fws {
		fi := &mesos.FrameworkInfo{}
		if err := readProto(filepath.Join(a.meta.framework(id, fwID), "framework.info"), fi); err != nil {
			a.log.Warn("skipping framework with unreadable checkpoint", "framework_id", fwID, "error", err)
			a.metrics.recoveryErrors++
			continue
		}
		fw := &framework{info: fi, executors: map[string]*executorState{}}
		exs, _ := listDirs(filepath.Join(a.meta.framework(id, fwID), "executors"))
		for _, exID := range exs {
			ei := &mesos.ExecutorInfo{}
			if err := readProto(filepath.Join(a.meta.executor(id, fwID, exID), "executor.info"), ei); err != nil {
				continue
			}
			runs, _ := listDirs(filepath.Join(a.meta.executor(id, fwID, exID), "runs"))
			for _, cid := range runs {
				runDir := a.meta.run(id, fwID, exID, cid)
				// Recovered executors wait to resubscribe (registering)
				// until the recovery timeout.
				es := newExecutorState(ei, fwID, cid, phaseRegistering)
				if !fi.GetCheckpoint() {
					es.cause = causeAgentRestarted
				}
				es.commandTask = len(ei.GetCommand().GetArguments()) == 3 && ei.GetCommand().GetArguments()[1] == "executor" && ei.GetCommand().GetArguments()[2] == "command"
				es.directory = a.layout.RunDir(sandbox.RunID{AgentID: id, FrameworkID: fwID, ExecutorID: exID, ContainerID: cid})
				tasks, _ := listDirs(filepath.Join(runDir, "tasks"))
				for _, tid := range tasks {
					ti := &mesos.TaskInfo{}
					if err := readProto(filepath.Join(runDir, "tasks", tid, "task.info"), ti); err != nil {
						continue
					}
					ts := &taskState{info: ti, state: mesos.TaskState_TASK_STAGING}
					s, err := a.sum.Recover(fwID, tid, filepath.Join(runDir, "tasks", tid, "task.updates"))
					if err != nil {
						a.log.Warn("read task updates", "task_id", tid, "error", err)
						a.metrics.recoveryErrors++
					}
					if s != nil {
						ts.state = s.latest
						ts.statuses = append(ts.statuses, s.pending...)
						if mesos.IsTerminal(s.latest) && len(s.pending) == 0 {
							continue // finished and acknowledged
						}
					}
					switch {
					case mesos.IsTerminal(ts.state):
						es.terminal[tid] = ts
					default:
						es.launched[tid] = ts
					}
					es.resources = append(es.resources, ti.GetResources()...)
				}
				var h containerizer.Handle
				b, herr := os.ReadFile(filepath.Join(runDir, "handle.json"))
				_, terr := os.Stat(filepath.Join(runDir, "terminated"))
				switch {
				case terr == nil || herr != nil || json.Unmarshal(b, &h) != nil:
					if terr == nil && len(es.launched) == 0 {
						// Ended before the restart, its tasks reported:
						// only its acknowledgements may be pending.
						es.phase = phaseTerminated
						es.cancel()
					}
					if terr != nil && herr != nil {
						// The agent died while launching it, before it
						// recorded the container: whatever did start
						// cannot be reattached, and must not run on
						// unwatched.
						interrupted[es] = true
						if pids := isolation.KillTagged(EnvContainerID, cid); len(pids) > 0 {
							a.log.Warn("killed the processes of a launch interrupted by the agent's restart", "container_id", cid, "pids", pids)
						}
						_ = a.cz.Destroy(ctx, cid) // a docker container or cgroup of that id
					}
					dead = append(dead, es)
				default:
					es.handle = &h
					handles = append(handles, h)
				}
				fw.executors[exID] = es
			}
		}
		a.frameworks[fwID] = fw
	}
	if err := a.cz.Recover(ctx, handles); err != nil {
		return err
	}
	live := map[string]bool{}
	if ids, err := a.cz.Containers(ctx); err == nil {
		for _, cid := range ids {
			live[cid] = true
		}
	}
	for _, fw := range a.frameworks {
		for _, es := range fw.executors {
			if es.handle != nil && !live[es.containerID] {
				dead = append(dead, es)
				es.handle = nil
			}
		}
	}
	a.log.Info("recovered checkpointed state", "agent_id", id, "frameworks", len(a.frameworks), "live_containers", len(live), "lost_containers", len(dead))
	var unwanted []*executorState
	for _, fw := range a.frameworks {
		for _, es := range fw.executors {
			if es.handle != nil {
				a.spawn(func() { a.awaitContainer(es) })
				if es.cause == causeAgentRestarted {
					a.mu.Lock()
					if a.setPhaseLocked(es, phaseKilling) {
						unwanted = append(unwanted, es)
					}
					a.mu.Unlock()
				}
			}
		}
	}
	for _, es := range unwanted {
		a.log.Info("destroying a recovered executor of a framework that does not checkpoint", "framework_id", es.frameworkID, "container_id", es.containerID)
		a.spawn(func() { a.destroy(es) })
	}
	for _, es := range dead {
		a.spawn(func() {
			if !es.live() {
				a.maybeForgetExecutor(es)
				return
			}
			term := &containerizer.Termination{
				ExitStatus: -1, Limitation: true, Reason: mesos.TaskStatus_REASON_EXECUTOR_TERMINATED,
				Message: "Executor's container was gone when the agent recovered",
			}
			if interrupted[es] {
				term.Reason = mesos.TaskStatus_REASON_CONTAINER_LAUNCH_FAILED
				term.Message = "The agent restarted while it launched the container; the launch was abandoned"
			}
			a.executorTerminated(context.WithoutCancel(ctx), es, term, mesos.TaskState_TASK_FAILED)
		})
	}
	return nil
}

// recoveryDeadline destroys recovered executors that do not resubscribe
// within the recovery timeout: a live container whose executor never comes
// back would otherwise hold resources for ever.
func (a *Agent) recoveryDeadline(ctx context.Context) {
	t := time.NewTimer(a.cfg.RecoveryTimeout)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	a.mu.Lock()
	var stale []*executorState
	for _, fw := range a.frameworks {
		for _, es := range fw.executors {
			if es.handle != nil && es.phase == phaseRegistering && es.regTimer == nil {
				es.cause = causeReregistrationTimeout
				a.setPhaseLocked(es, phaseKilling)
				stale = append(stale, es)
			}
		}
	}
	a.mu.Unlock()
	for _, es := range stale {
		a.log.Warn("recovered executor did not resubscribe within the recovery timeout; destroying", "container_id", es.containerID)
		a.destroy(es)
	}
}
