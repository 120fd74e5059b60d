package master

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/master/store"
	"github.com/mesolite/mesolite/master/store/zkstore"
	"google.golang.org/protobuf/proto"
)

// registry is where the master keeps what must outlive it: the local bbolt
// file (store.Store) of a standalone master, or ZooKeeper (zkstore.Store)
// shared by the masters of a --zk cluster.
type registry interface {
	// Kind is "local" or "zookeeper", shown in /master/state's flags.
	Kind() string
	// Load reads the whole registry; a ZooKeeper registry first claims it
	// for this master, deposing any earlier writer.
	Load(ctx context.Context) (*store.Snapshot, error)
	// Apply applies ops in order. zkstore.ErrDeposed means another master
	// claimed the registry: this one no longer leads.
	Apply(ctx context.Context, ops []store.Op) error
	Close() error
}

// masterRole is where a master stands in the election. Only a leading
// master changes its books or the registry.
//
//	follower ──elected──▶ recovering ──registry read──▶ leading
//	                           │                           │
//	                           └────────── deposed ◀───────┘ (a registry write refused:
//	                                                          another master claimed it)
type masterRole int

const (
	// roleFollower: another master leads, or nobody yet; calls are
	// redirected to the leader.
	roleFollower masterRole = iota
	// roleRecovering: elected, reading the registry; calls get 503 so
	// that nobody is told something the registry would contradict.
	roleRecovering
	// roleLeading: serving.
	roleLeading
	// roleDeposed: a registry write was refused because another master
	// claimed the registry; Run returns and the process should exit.
	roleDeposed
)

func (r masterRole) String() string {
	switch r {
	case roleFollower:
		return "follower"
	case roleRecovering:
		return "recovering"
	case roleLeading:
		return "leading"
	case roleDeposed:
		return "deposed"
	}
	return fmt.Sprintf("role(%d)", int(r))
}

// registryWriteTimeout bounds one registry transaction.
const registryWriteTimeout = 30 * time.Second

// persistReq is ops queued for the registry writer, and where to say how
// their write went.
type persistReq struct {
	ops  []store.Op
	done chan error // buffered: the writer never blocks on it
}

// persist queues ops for the registry, in the order of the calls, and
// returns a channel that receives the outcome. Callers hold m.mu while
// they change the books and call persist, so the registry sees changes in
// the order the books made them; none waits on the channel under m.mu.
// Without a registry the channel answers nil at once.
func (m *Master) persist(ops ...store.Op) <-chan error {
	done := make(chan error, 1)
	if m.reg == nil || len(ops) == 0 {
		done <- nil
		return done
	}
	m.wmu.Lock()
	m.wqueue = append(m.wqueue, persistReq{ops: ops, done: done})
	m.wmu.Unlock()
	select {
	case m.wkick <- struct{}{}:
	default:
	}
	return done
}

// startWriter starts the goroutine that applies queued ops; Close stops it
// after the queue is drained.
func (m *Master) startWriter() {
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		m.writeLoop()
	}()
}

// writeLoop applies the queue, everything queued at once in one Apply
// (one fsync or one ZooKeeper transaction for a burst of changes).
func (m *Master) writeLoop() {
	for {
		select {
		case <-m.wkick:
		case <-m.wstop:
		}
		m.wmu.Lock()
		batch := m.wqueue
		m.wqueue = nil
		m.wmu.Unlock()
		if len(batch) == 0 {
			select {
			case <-m.wstop:
				return
			default:
				continue
			}
		}
		var ops []store.Op
		for _, r := range batch {
			ops = append(ops, r.ops...)
		}
		ctx, cancel := context.WithTimeout(context.Background(), registryWriteTimeout)
		start := time.Now()
		err := m.reg.Apply(ctx, ops)
		cancel()
		m.observeRegistryWrite(time.Since(start), len(ops), err)
		if err != nil {
			if errors.Is(err, zkstore.ErrDeposed) {
				m.depose(err)
			} else {
				m.log.Error("registry write failed", "ops", len(ops), "error", err)
			}
		}
		for _, r := range batch {
			r.done <- err
		}
	}
}

// observeRegistryWrite keeps the registry's write metrics.
func (m *Master) observeRegistryWrite(d time.Duration, ops int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.counters.registryWrites++
	m.counters.registryOps += uint64(ops)
	m.counters.registryStores.add(float64(d.Microseconds()) / 1000)
	if err != nil {
		m.counters.registryWriteErrors++
	}
}

// depose steps down: another master claimed the registry, so whatever this
// one decides from now on could contradict the leader's books.
func (m *Master) depose(err error) {
	m.mu.Lock()
	if m.role == roleDeposed {
		m.mu.Unlock()
		return
	}
	m.role = roleDeposed
	m.mu.Unlock()
	m.log.Error("a registry write was refused: another master leads now; stepping down", "error", err)
	m.deposeOnce.Do(func() { close(m.deposed) })
}

// persistError is the answer for a registration whose registry write
// failed.
func persistError(err error) error {
	if errors.Is(err, zkstore.ErrDeposed) {
		return httpErr(503, "Not the leading master any more")
	}
	return httpErr(503, "Failed to persist in the registry; the master's log says why")
}

// loadRegistry reads the registry into the books; m.mu must not be held
// (the read is I/O). It is the step between being elected and leading.
func (m *Master) loadRegistry(ctx context.Context) error {
	if m.reg == nil {
		return nil
	}
	start := time.Now()
	snap, err := m.reg.Load(ctx)
	if err != nil {
		return fmt.Errorf("read the registry: %w", err)
	}
	m.mu.Lock()
	m.counters.registryFetchMS = float64(time.Since(start).Microseconds()) / 1000
	cleanup := m.installSnapshot(snap)
	agents, fws := len(m.agents), len(m.frameworks)
	m.mu.Unlock()
	m.persist(cleanup...)
	m.log.Info("registry recovered", "registry", m.reg.Kind(), "agents", agents, "unreachable_agents", len(snap.Agents)-agents,
		"frameworks", fws, "completed_frameworks", len(snap.Frameworks)-fws, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// installSnapshot fills the books from a registry snapshot: admitted agents
// as recovered (they have AgentReregisterTimeout from the election to come
// back), unreachable agents as such, frameworks as recovered and
// disconnected, completed frameworks and tasks within their bounds. It
// returns the ops that trim the registry to those bounds. m.mu must be
// held.
func (m *Master) installSnapshot(snap *store.Snapshot) []store.Op {
	var cleanup []store.Op
	now := m.clock.Now()
	m.installSettingsLocked(snap.Settings)
	var unreachable []store.Agent
	for _, rec := range snap.Agents {
		if !rec.UnreachableAt.IsZero() {
			unreachable = append(unreachable, rec)
			continue
		}
		a := newAgent(rec.ID)
		a.reserved = storedReservations(rec)
		m.fillAgent(a, rec.Info, rec.Address, rec.Version)
		a.recovered = true
		a.registeredTime = rec.RegisteredAt
		a.principal, a.tokenHash = rec.Principal, rec.TokenHash
		m.agents[a.id] = a
	}
	slices.SortFunc(unreachable, func(a, b store.Agent) int { return a.UnreachableAt.Compare(b.UnreachableAt) })
	for _, rec := range unreachable {
		if now.Sub(rec.UnreachableAt) > m.cfg.RegistryMaxAgentAge {
			cleanup = append(cleanup, store.RemoveAgent{ID: rec.ID})
			continue
		}
		cleanup = append(cleanup, m.markUnreachable(rec)...)
	}
	// The operator's marks apply to the agents just installed.
	if data, ok := snap.Settings[settingAgentMarks]; ok {
		m.installAgentMarksLocked(data)
	}

	var completed []store.Framework
	for _, rec := range snap.Frameworks {
		if rec.Completed {
			completed = append(completed, rec)
			continue
		}
		fw := newFramework(rec.ID, rec.Info)
		fw.principal = rec.Principal
		if fw.principal == "" {
			fw.principal = rec.Info.GetPrincipal()
		}
		fw.recovered = true
		fw.registeredTime = rec.RegisteredAt
		fw.failoverTimeout = m.failoverTimeout(rec.Info)
		m.frameworks[fw.id] = fw
		m.alloc.AddFramework(fw.id, allocatorFramework(fw, false))
	}
	slices.SortFunc(completed, func(a, b store.Framework) int { return a.CompletedAt.Compare(b.CompletedAt) })
	for _, rec := range completed {
		fw := newFramework(rec.ID, rec.Info)
		fw.principal = rec.Principal
		fw.registeredTime = rec.RegisteredAt
		fw.unregisteredTime = rec.CompletedAt
		cleanup = append(cleanup, m.markRemoved(fw)...)
	}
	for fwID, ts := range snap.Tasks {
		fw := m.frameworks[fwID]
		if fw == nil {
			fw = m.completedFramework(fwID)
		}
		if fw == nil {
			// Tasks of a framework the registry no longer holds.
			cleanup = append(cleanup, store.RemoveTasks{FrameworkID: fwID})
			continue
		}
		for _, ct := range ts {
			t := &task{t: ct.Task, fw: fw, agentID: ct.Task.GetAgentId().GetValue(), role: fw.allocationRole(), released: true}
			fw.completedTasks = append(fw.completedTasks, t)
		}
		if n := len(fw.completedTasks) - m.cfg.MaxCompletedTasksPerFramework; n > 0 {
			for _, t := range fw.completedTasks[:n] {
				cleanup = append(cleanup, store.RemoveTask{FrameworkID: fwID, TaskID: t.id()})
			}
			fw.completedTasks = slices.Delete(fw.completedTasks, 0, n)
		}
	}
	return cleanup
}

// completedFramework finds a completed framework still shown.
func (m *Master) completedFramework(id string) *framework {
	for _, fw := range m.completed {
		if fw.id == id {
			return fw
		}
	}
	return nil
}

// keepRemoved is how many torn-down framework ids the master remembers
// (in memory and in the registry) to refuse their SUBSCRIBE and shut their
// tasks down where agents still run them.
func (m *Master) keepRemoved() int { return max(m.cfg.MaxCompletedFrameworks, 1000) }

// markRemoved records a torn-down framework: among the completed ones
// shown (MaxCompletedFrameworks, whose completed tasks the registry keeps)
// and among the removed ids (keepRemoved). It returns the registry ops
// that forget what falls out of either bound. m.mu must be held.
func (m *Master) markRemoved(fw *framework) []store.Op {
	var ops []store.Op
	if !m.removedFWs[fw.id] {
		m.removedFWs[fw.id] = true
		m.removedOrder = append(m.removedOrder, fw.id)
	}
	if n := len(m.removedOrder) - m.keepRemoved(); n > 0 {
		for _, id := range m.removedOrder[:n] {
			delete(m.removedFWs, id)
			ops = append(ops, store.RemoveFramework{ID: id})
		}
		m.removedOrder = slices.Delete(m.removedOrder, 0, n)
	}
	m.completed = append(m.completed, fw)
	if n := len(m.completed) - m.cfg.MaxCompletedFrameworks; n > 0 {
		for _, old := range m.completed[:n] {
			if m.removedFWs[old.id] {
				ops = append(ops, store.RemoveTasks{FrameworkID: old.id})
			}
		}
		m.completed = slices.Delete(m.completed, 0, n)
	}
	return ops
}

// unreachableAgent is an agent removed for not coming back in time, kept
// so that it is recognised (and its token checked) when it returns.
type unreachableAgent struct {
	rec store.Agent
}

// markUnreachable records an unreachable agent within
// RegistryMaxAgentCount and returns the ops that forget the oldest beyond
// it. m.mu must be held.
func (m *Master) markUnreachable(rec store.Agent) []store.Op {
	var ops []store.Op
	if _, ok := m.unreachable[rec.ID]; !ok {
		m.unreachableOrder = append(m.unreachableOrder, rec.ID)
	}
	m.unreachable[rec.ID] = &unreachableAgent{rec: rec}
	if n := len(m.unreachableOrder) - m.cfg.RegistryMaxAgentCount; n > 0 {
		for _, id := range m.unreachableOrder[:n] {
			delete(m.unreachable, id)
			ops = append(ops, store.RemoveAgent{ID: id})
		}
		m.unreachableOrder = slices.Delete(m.unreachableOrder, 0, n)
	}
	return ops
}

// forgetUnreachable drops an agent from the unreachable ones (it came
// back). m.mu must be held.
func (m *Master) forgetUnreachable(id string) {
	if _, ok := m.unreachable[id]; !ok {
		return
	}
	delete(m.unreachable, id)
	m.unreachableOrder = slices.DeleteFunc(m.unreachableOrder, func(s string) bool { return s == id })
}

// agentRecord is an agent's registry record.
func agentRecord(a *agent) store.Agent {
	return store.Agent{ID: a.id, Info: proto.Clone(a.info).(*mesos.AgentInfo), Address: a.addr, Version: a.version,
		RegisteredAt: a.registeredTime, Principal: a.principal, TokenHash: a.tokenHash, Reserved: a.reserved.ToProto("")}
}

// completedTaskRecord is a completed task as the registry keeps it: its
// latest status only, without data, so records stay small.
func completedTaskRecord(t *task, at time.Time) store.CompletedTask {
	c := proto.Clone(t.t).(*mesos.Task)
	if n := len(c.Statuses); n > 1 {
		c.Statuses = c.Statuses[n-1:]
	}
	for _, st := range c.Statuses {
		st.Data = nil
	}
	return store.CompletedTask{Task: c, CompletedAt: at}
}

// openRegistry opens the registry the configuration asks for: none for
// --registry=in_memory, ZooKeeper with --zk, else the local file under
// --work_dir (none without one).
func openRegistry(ctx context.Context, cfg *Config, owner string) (registry, error) {
	switch {
	case cfg.Registry == RegistryInMemory:
		return nil, nil
	case cfg.ZK != "":
		s, err := zkstore.Open(ctx, zkstore.Config{URL: cfg.ZK, SessionTimeout: cfg.ZKSessionTimeout, Owner: owner, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("registry in ZooKeeper: %w", err)
		}
		return s, nil
	case cfg.WorkDir != "":
		return store.Open(cfg.WorkDir)
	}
	return nil, nil
}

// registryKind is what /master/state says about the registry.
func (c *Config) registryKind() string {
	switch {
	case c.Registry == RegistryInMemory:
		return "in_memory"
	case c.ZK != "":
		return "zookeeper"
	case c.WorkDir != "":
		return "local"
	}
	return "in_memory"
}
