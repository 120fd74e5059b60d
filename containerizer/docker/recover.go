package docker

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/docker/engine"
	"golang.org/x/sys/unix"
)

// Recover implements containerizer.Containerizer. Executor processes that
// still run (same pid and start time) and containers that still run are
// watched again; the others are left out, so the agent fails their tasks.
// Then every container with our owner label that no recovered handle
// accounts for is an orphan: stopped and removed when KillOrphans is set.
// With dockerd down, recovery of container-mode executors is optimistic
// and the orphan sweep waits until dockerd answers. Recover returns no
// error for a dockerd that is down.
func (c *Containerizer) Recover(ctx context.Context, handles []containerizer.Handle) error {
	up := c.health.ready(ctx) == nil
	for _, h := range handles {
		if h.Containerizer != Name {
			continue
		}
		var d handleData
		if err := json.Unmarshal(h.Data, &d); err != nil || d.Name == "" {
			c.log.Warn("unreadable docker handle, not recovered", "container_id", h.ContainerID, "error", err)
			continue
		}
		ct := &ctr{id: h.ContainerID, name: d.Name, mode: d.Mode, tty: d.Tty, swapSet: d.SwapSet, pid: h.Pid, started: d.ExecutorStart, done: make(chan struct{})}
		switch d.Mode {
		case modeExecutor:
			if ct.started == 0 || procStartTime(ct.pid) != ct.started {
				c.log.Info("docker executor is gone", "container_id", h.ContainerID, "pid", h.Pid)
				continue
			}
			go c.watchProcess(ct)
		case modeContainer:
			if up {
				ins, err := c.eng.Inspect(ctx, d.Name)
				if err != nil || ins.State == nil || !ins.State.Running {
					c.log.Info("executor container is gone", "container_id", h.ContainerID, "name", d.Name)
					continue
				}
				ct.pid = ins.State.Pid
			}
			c.followLogs(ct, h)
			go c.watchContainer(ct)
		default:
			continue
		}
		c.mu.Lock()
		c.containers[h.ContainerID] = ct
		c.mu.Unlock()
		c.log.Info("recovered docker container", "container_id", h.ContainerID, "name", d.Name, "mode", string(d.Mode))
	}
	if !up {
		c.mu.Lock()
		c.needCleanup = true
		c.mu.Unlock()
		c.log.Warn("dockerd is unreachable: orphan containers will be looked for once it answers")
		return nil
	}
	return c.cleanupOrphans(ctx)
}

// followLogs picks up a recovered executor container's output again, from
// when the sandbox logs were last written.
func (c *Containerizer) followLogs(ct *ctr, h containerizer.Handle) {
	ins, err := c.eng.Inspect(c.ctx, ct.name)
	if err != nil || ins.Mounts == nil {
		return
	}
	var dir string
	for _, m := range ins.Mounts {
		if m.Destination == c.opts.SandboxDirectory {
			dir = m.Source
		}
	}
	if dir == "" {
		return
	}
	var since time.Time
	for _, f := range []string{"stdout", "stderr"} {
		if fi, err := os.Stat(dir + "/" + f); err == nil && fi.ModTime().After(since) {
			since = fi.ModTime()
		}
	}
	var env []string
	if ins.Config != nil {
		env = ins.Config.Env
	}
	stdout, stderr, err := openLogs(dir+"/stdout", dir+"/stderr", env)
	if err != nil {
		c.log.Warn("reopen sandbox logs", "container_id", h.ContainerID, "error", err)
		return
	}
	done := make(chan error, 1)
	go func() {
		done <- c.eng.FollowLogs(c.ctx, ct.name, since, ct.tty, stdout, stderr)
		close(done)
	}()
	ct.logDone = closeWhenDone(done, stdout, stderr)
}

// watchProcess waits for an executor process that is not our child (the
// agent restarted) to exit; its exit status is unknown.
func (c *Containerizer) watchProcess(ct *ctr) {
	fd, err := unix.PidfdOpen(ct.pid, 0)
	if err == nil {
		for {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, -1); errors.Is(err, unix.EINTR) {
				continue
			}
			break
		}
		unix.Close(fd)
	} else {
		for procStartTime(ct.pid) == ct.started {
			time.Sleep(200 * time.Millisecond)
		}
	}
	c.executorExited(ct, -1)
}

// cleanupOrphans stops and removes our containers that nothing tracks.
func (c *Containerizer) cleanupOrphans(ctx context.Context) error {
	cs, err := c.eng.List(ctx, map[string]string{engine.LabelOwner: c.opts.Owner})
	if err != nil {
		c.health.failed(err)
		if engine.IsUnavailable(err) {
			c.mu.Lock()
			c.needCleanup = true
			c.mu.Unlock()
			return nil
		}
		return err
	}
	c.mu.Lock()
	c.needCleanup = false
	c.mu.Unlock()
	for _, s := range cs {
		if c.tracked(s) {
			continue
		}
		name := summaryName(s)
		running := s.State == container.StateRunning || s.State == container.StatePaused || s.State == container.StateRestarting
		if !c.opts.KillOrphans {
			if running {
				c.log.Warn("leaving orphan container running (--docker_kill_orphans=false)", "name", name, "container_id", s.Labels[engine.LabelContainerID])
			}
			continue
		}
		c.log.Info("removing orphan container", "name", name, "container_id", s.Labels[engine.LabelContainerID], "state", s.State)
		if running {
			if err := c.eng.Stop(ctx, s.ID, "", 0); err != nil {
				c.log.Warn("stop orphan container", "name", name, "error", err)
			}
		}
		if err := c.eng.Remove(ctx, s.ID); err != nil {
			c.log.Warn("remove orphan container", "name", name, "error", err)
		}
	}
	return nil
}

// tracked says whether a listed container belongs to a live (or
// launching) container of ours.
func (c *Containerizer) tracked(s container.Summary) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.containers[s.Labels[engine.LabelContainerID]]
	return ok
}

func summaryName(s container.Summary) string {
	if len(s.Names) > 0 {
		return s.Names[0][1:]
	}
	return s.ID
}

// sweep removes our exited containers RemoveDelay after they ended, and
// keeps trying to stop destroyed containers dockerd could not stop.
func (c *Containerizer) sweep(ctx context.Context) {
	interval := min(max(c.opts.RemoveDelay/10, time.Second), time.Minute)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.health.isUp() {
			continue
		}
		c.sweepOnce(ctx)
	}
}

func (c *Containerizer) sweepOnce(ctx context.Context) {
	c.mu.Lock()
	doomed := make([]string, 0, len(c.doomed))
	for n := range c.doomed {
		doomed = append(doomed, n)
	}
	c.mu.Unlock()
	for _, n := range doomed {
		if err := c.eng.Stop(ctx, n, "", 0); err == nil {
			c.mu.Lock()
			delete(c.doomed, n)
			c.mu.Unlock()
		}
	}
	cs, err := c.eng.List(ctx, map[string]string{engine.LabelOwner: c.opts.Owner})
	if err != nil {
		c.health.failed(err)
		return
	}
	now := time.Now()
	for _, s := range cs {
		if c.tracked(s) || s.State == container.StateRunning || s.State == container.StatePaused || s.State == container.StateRestarting {
			continue
		}
		ins, err := c.eng.Inspect(ctx, s.ID)
		if err != nil {
			continue
		}
		ended := time.Unix(s.Created, 0)
		if x := exitTime(ins); !x.IsZero() {
			ended = x
		}
		if now.Sub(ended) < c.opts.RemoveDelay {
			continue
		}
		if err := c.eng.Remove(ctx, s.ID); err != nil {
			c.log.Warn("remove exited container", "name", summaryName(s), "error", err)
			continue
		}
		c.log.Info("removed exited container", "name", summaryName(s), "ended", ended)
	}
}

func exitTime(ins container.InspectResponse) time.Time {
	if ins.State == nil {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, ins.State.FinishedAt)
	if err != nil || t.Year() < 2000 {
		return time.Time{}
	}
	return t
}
