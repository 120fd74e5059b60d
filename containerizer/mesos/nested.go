package mesos

import (
	"context"
	"fmt"
	"time"

	mesosv1 "github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/isolation"
)

var _ containerizer.Nester = (*Containerizer)(nil)

// PrepareNested implements containerizer.Nester: the task's cgroup below
// its executor's container's, with the task's cpus and mem (the container's
// pids cap covers them all), its own OOM watch, delegated to the
// container's user so the executor can move the task in.
func (c *Containerizer) PrepareNested(ctx context.Context, parent, id string, rs []*mesosv1.Resource) error {
	ct, err := c.get(parent)
	if err != nil {
		return err
	}
	if ct.cg == nil || !ct.nestable {
		return fmt.Errorf("container %s has no cgroup to nest in: %w", parent, containerizer.ErrNotSupported)
	}
	select {
	case <-ct.done:
		return fmt.Errorf("container %s has terminated: %w", parent, errdefs.ErrConflict)
	default:
	}
	c.mu.Lock()
	_, dup := c.nested[id]
	c.mu.Unlock()
	if dup {
		return fmt.Errorf("nested container %s: %w", id, errdefs.ErrConflict)
	}
	l := c.limits(rs)
	l.Pids = 0
	cg, err := ct.cg.CreateNested(ctx, id, l)
	if err != nil {
		return fmt.Errorf("nested container %s: %w", id, err)
	}
	if ct.user != nil && ct.user.UID != 0 {
		if err := cg.Delegate(int(ct.user.UID), int(ct.user.GID)); err != nil {
			_ = cg.Delete(context.WithoutCancel(ctx))
			return fmt.Errorf("nested container %s: %w", id, err)
		}
	}
	n := &nestedCg{id: id, parent: parent, cg: cg}
	c.trackNested(n)
	c.log.Info("prepared nested cgroup", "container_id", id, "parent_container_id", parent, "cpus", l.CPUs, "mem_bytes", l.MemoryBytes)
	return nil
}

// trackNested watches a nested cgroup for OOM kills: the task is killed
// whole (the kernel took one process; Mesos destroys the nested container
// on a limitation), its siblings and its executor are not touched.
func (c *Containerizer) trackNested(n *nestedCg) {
	wctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	c.mu.Lock()
	c.nested[n.id] = n
	c.mu.Unlock()
	if !c.set.Has(isolation.CgroupsMem) {
		return
	}
	events, err := n.cg.WatchOOM(wctx)
	if err != nil {
		c.log.Warn("cannot watch a nested cgroup for OOM kills", "container_id", n.id, "error", err)
		return
	}
	go func() {
		for ev := range events {
			n.mu.Lock()
			first := n.oom == nil
			e := ev
			n.oom = &e
			n.mu.Unlock()
			if first {
				c.log.Warn("task hit its memory limit; killing it", "container_id", n.id, "parent_container_id", n.parent, "limit_bytes", ev.LimitBytes, "max_usage_bytes", ev.MaxUsageBytes)
				_ = n.cg.Kill(wctx)
			}
		}
	}()
}

func (c *Containerizer) getNested(id string) *nestedCg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nested[id]
}

// SealNested implements containerizer.Nester.
func (c *Containerizer) SealNested(ctx context.Context, id string) error {
	n := c.getNested(id)
	if n == nil {
		return nil
	}
	return n.cg.Seal()
}

// DestroyNested implements containerizer.Nester.
func (c *Containerizer) DestroyNested(ctx context.Context, id string) error {
	n := c.getNested(id)
	if n == nil {
		return nil
	}
	if err := n.cg.Kill(ctx); err != nil {
		return fmt.Errorf("nested container %s: %w", id, err)
	}
	if err := n.cg.Delete(ctx); err != nil {
		return fmt.Errorf("nested container %s: %w", id, err)
	}
	n.cancel()
	c.mu.Lock()
	delete(c.nested, id)
	c.mu.Unlock()
	return nil
}

// Nested implements containerizer.Nester.
func (c *Containerizer) Nested(ctx context.Context, parent string) ([]string, error) {
	if _, err := c.get(parent); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for id, n := range c.nested {
		if n.parent == parent {
			out = append(out, id)
		}
	}
	return out, nil
}

// recoverNested takes back the nested cgroups of a recovered task group's
// container, sealed: a task not placed before the agent stopped is not
// placed now (its executor fails it).
func (c *Containerizer) recoverNested(ct *container) {
	if ct.cg == nil || !ct.nestable {
		return
	}
	ids, err := ct.cg.NestedIDs()
	if err != nil {
		c.log.Warn("list nested cgroups", "container_id", ct.id, "error", err)
		return
	}
	for _, id := range ids {
		cg, err := ct.cg.LoadNested(id)
		if err != nil {
			continue
		}
		_ = cg.Seal()
		c.trackNested(&nestedCg{id: id, parent: ct.id, cg: cg})
	}
}

// nestedLimitation is the task's own OOM kill: from its watch's event or,
// before that was read, from its cgroup's counter.
func (c *Containerizer) nestedLimitation(n *nestedCg) (containerizer.Termination, bool) {
	n.mu.Lock()
	ev := n.oom
	n.mu.Unlock()
	if ev == nil && c.set.Has(isolation.CgroupsMem) {
		if st, err := n.cg.Stats(); err == nil && st.OOMKills > 0 {
			ev = &isolation.OOMEvent{ContainerID: n.id, Time: time.Now(), LimitBytes: st.MemoryLimitBytes, MaxUsageBytes: max(st.MemoryMaxUsageBytes, st.MemoryUsageBytes)}
		}
	}
	if ev == nil {
		return containerizer.Termination{}, false
	}
	return containerizer.Termination{
		ExitStatus: -1,
		Limitation: true,
		Reason:     mesosv1.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY,
		Message:    isolation.OOMMessage(*ev),
	}, true
}
