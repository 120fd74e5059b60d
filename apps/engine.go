package apps

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
)

// Store buckets of the apps framework (the driver keeps its own,
// frameworks.BucketFramework).
const (
	bucketApps        = "apps"
	bucketVersions    = "versions"
	bucketInstances   = "instances"
	bucketDeployments = "deployments"
	bucketFailures    = "failures"
	bucketGroups      = "groups"
	// bucketGroupVersions keeps what a group was after each change made
	// to it through /v2/groups ("<id>@<version>"), for a rollback.
	bucketGroupVersions = "groupversions"
)

// master is what the engine asks of the framework driver: both calls
// return at once (the driver sends them in the background).
type master interface {
	Kill(taskID, agentID string)
	Revive()
}

// engineConfig holds the engine's knobs; Service fills them from flags.
type engineConfig struct {
	Role              string
	TaskLaunchTimeout time.Duration
	KillRetry         time.Duration
	Tick              time.Duration
	MaxVersions       int
	ServicePortMin    int
	ServicePortMax    int
	// EnvVarsPrefix is put before the names of the variables HOST and
	// PORT* of every task (--env_vars_prefix).
	EnvVarsPrefix string
	Logger        *slog.Logger
}

// appState is an app with what the engine knows of it.
type appState struct {
	app        *App
	versions   []string // stored versions, oldest first
	instances  map[string]*Instance
	deployment *Deployment
	// deleted: a stop deployment runs; the app is gone for the API.
	deleted     bool
	constraints []frameworks.Constraint
	// toLaunch is how many instances plan last said to launch.
	toLaunch int
	// failures counts unexpected ends since the app last changed its
	// config or ran a while; delayUntil is when it may launch again.
	failures     int
	delayUntil   time.Time
	lastFailure  *TaskFailure
	waitingSince time.Time
	// lastNoFit says why the last offer did not take an instance.
	lastNoFit string
}

// TaskFailure is an app's lastTaskFailure.
type TaskFailure struct {
	AppID     string `json:"appId"`
	Host      string `json:"host"`
	Message   string `json:"message"`
	State     string `json:"state"`
	TaskID    string `json:"taskId"`
	Timestamp string `json:"timestamp"`
	Version   string `json:"version"`
	SlaveID   string `json:"slaveId"`
}

// engine is the apps framework's state and the one goroutine that changes
// it. Every change runs in the loop (do), in batches: the batch's changes
// are made under mu (no I/O), then written to the store in one Apply, then
// acted on (kills, revives, events), then answered. Readers take mu for
// reading and see a consistent state, never blocked by the store.
type engine struct {
	cfg    engineConfig
	log    *slog.Logger
	store  frameworks.Store
	bus    *eventBus
	reqs   chan *request
	master master
	// stopped is closed when the loop has ended.
	stopped chan struct{}

	mu           sync.RWMutex
	apps         map[PathID]*appState
	byTask       map[string]*Instance
	deployments  map[string]*Deployment
	servicePorts map[int]PathID
	// groups are the groups made through /v2/groups, with their
	// dependencies; the others exist through their apps' ids.
	groups map[PathID]*Group
	// groupVersions are the kept versions of each group, oldest first
	// (bucketGroupVersions).
	groupVersions map[PathID][]string
	frameworkID   string
	wants         bool
	lastVersion   time.Time
}

// request is one change for the loop: done (when set) receives its
// outcome, after (when set) is called with it, in the loop, once the
// change is written and acted on.
type request struct {
	fn    func(tx *txn) error
	done  chan error
	after func(error)
}

func (r *request) finish(err error) {
	if r.after != nil {
		r.after(err)
	}
	if r.done != nil {
		r.done <- err
	}
}

// txn collects what one batch of changes must write and do.
type txn struct {
	now       time.Time
	apps      map[PathID]bool // apps to write (or delete, when gone)
	insts     map[string]*Instance
	deps      map[string]*Deployment // nil: delete
	ops       []frameworks.Op
	kills     []frameworks.TaskRef
	events    []Event
	revive    bool
	converge  map[PathID]bool
	failures  map[PathID]*TaskFailure
	removed   map[PathID]bool
	deletions []string // instance ids
	// plan, when set, is the plan the batch's deployments join.
	plan *planCtx
}

func newEngine(cfg engineConfig, store frameworks.Store, bus *eventBus) *engine {
	return &engine{
		cfg: cfg, log: cfg.Logger.With("component", "apps"), store: store, bus: bus,
		reqs:          make(chan *request, 256),
		stopped:       make(chan struct{}),
		apps:          map[PathID]*appState{},
		byTask:        map[string]*Instance{},
		deployments:   map[string]*Deployment{},
		servicePorts:  map[int]PathID{},
		groups:        map[PathID]*Group{},
		groupVersions: map[PathID][]string{},
	}
}

// load reads the state the store kept: apps, their versions, instances,
// deployments. Instances are kept as they were; reconciliation tells
// which still run.
func (e *engine) load(ctx context.Context) error {
	apps, err := e.store.List(ctx, bucketApps)
	if err != nil {
		return err
	}
	for _, kv := range apps {
		a := new(App)
		if err := json.Unmarshal(kv.Value, a); err != nil {
			return fmt.Errorf("app %s in the store: %w", kv.Key, err)
		}
		st := &appState{app: a, instances: map[string]*Instance{}}
		st.constraints = parseConstraints(a)
		e.apps[PathID(a.ID)] = st
		e.claimServicePorts(a)
		if t, err := ParseTime(a.Version); err == nil && t.After(e.lastVersion) {
			e.lastVersion = t
		}
	}
	versions, err := e.store.List(ctx, bucketVersions)
	if err != nil {
		return err
	}
	for _, kv := range versions {
		id, v, _ := strings.Cut(kv.Key, "@")
		if st := e.apps[PathID(id)]; st != nil {
			st.versions = append(st.versions, v)
		}
	}
	for _, st := range e.apps {
		slices.Sort(st.versions)
	}
	insts, err := e.store.List(ctx, bucketInstances)
	if err != nil {
		return err
	}
	var stale []frameworks.Op
	for _, kv := range insts {
		i := new(Instance)
		if err := json.Unmarshal(kv.Value, i); err != nil {
			return fmt.Errorf("instance %s in the store: %w", kv.Key, err)
		}
		st := e.apps[i.AppID]
		if st == nil {
			// Its app is gone (its removal written, the instance's not):
			// the record goes, and a task still running for it is killed
			// once reconciliation reports it, as a task of no instance.
			e.log.Warn("instance of an unknown app in the store; forgotten, its task killed if it runs", "task_id", i.TaskID, "app_id", i.AppID)
			stale = append(stale, frameworks.Delete(bucketInstances, kv.Key))
			continue
		}
		st.instances[i.TaskID] = i
		e.byTask[i.TaskID] = i
	}
	for len(stale) > 0 {
		n := min(len(stale), frameworks.MaxOpsPerApply)
		if err := e.store.Apply(ctx, stale[:n]...); err != nil {
			return err
		}
		stale = stale[n:]
	}
	deps, err := e.store.List(ctx, bucketDeployments)
	if err != nil {
		return err
	}
	for _, kv := range deps {
		d := new(Deployment)
		if err := json.Unmarshal(kv.Value, d); err != nil {
			return fmt.Errorf("deployment %s in the store: %w", kv.Key, err)
		}
		st := e.apps[d.AppID]
		if st == nil {
			continue
		}
		st.deployment = d
		st.deleted = d.Kind == KindStop
		e.deployments[d.ID] = d
	}
	groups, err := e.store.List(ctx, bucketGroups)
	if err != nil {
		return err
	}
	for _, kv := range groups {
		g := new(Group)
		if err := json.Unmarshal(kv.Value, g); err != nil {
			return fmt.Errorf("group %s in the store: %w", kv.Key, err)
		}
		e.groups[g.ID] = g
	}
	gversions, err := e.store.List(ctx, bucketGroupVersions)
	if err != nil {
		return err
	}
	for _, kv := range gversions {
		id, v, _ := strings.Cut(kv.Key, "@")
		e.groupVersions[PathID(id)] = append(e.groupVersions[PathID(id)], v)
	}
	for _, vs := range e.groupVersions {
		slices.Sort(vs)
	}
	fails, err := e.store.List(ctx, bucketFailures)
	if err != nil {
		return err
	}
	for _, kv := range fails {
		f := new(TaskFailure)
		if json.Unmarshal(kv.Value, f) == nil {
			if st := e.apps[PathID(kv.Key)]; st != nil {
				st.lastFailure = f
			}
		}
	}
	e.log.Info("state loaded", "apps", len(e.apps), "instances", len(e.byTask), "deployments", len(e.deployments))
	return nil
}

func parseConstraints(a *App) []frameworks.Constraint {
	var out []frameworks.Constraint
	for _, parts := range a.Constraints {
		if c, err := frameworks.ParseConstraint(parts); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// errStopped answers requests once the engine has stopped.
var errStopped = fmt.Errorf("the apps service is stopping: %w", errdefs.ErrUnavailable)

// do runs fn in the loop and returns its error, or the store's when the
// change could not be written. Once queued, a change runs even if ctx
// ends: a launch decided is a launch recorded.
func (e *engine) do(ctx context.Context, fn func(tx *txn) error) error {
	r := &request{fn: fn, done: make(chan error, 1)}
	select {
	case e.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-e.stopped:
		return errStopped
	}
	select {
	case err := <-r.done:
		return err
	case <-e.stopped:
		select {
		case err := <-r.done:
			return err
		default:
			return errStopped
		}
	}
}

// submit queues fn without waiting for it; after is called with its
// outcome once it is written. It waits only for room in the queue, which
// holds back a caller (the driver's event stream) that outpaces the loop.
func (e *engine) submit(ctx context.Context, fn func(tx *txn) error, after func(error)) {
	r := &request{fn: fn, after: after}
	select {
	case e.reqs <- r:
	case <-ctx.Done():
		after(ctx.Err())
	case <-e.stopped:
		after(errStopped)
	}
}

// maxBatch bounds the changes committed together.
const maxBatch = 128

// run is the loop. It answers every queued request before it returns.
func (e *engine) run(ctx context.Context) {
	tick := time.NewTicker(e.cfg.Tick)
	defer tick.Stop()
	defer close(e.stopped)
	for {
		var batch []*request
		select {
		case <-ctx.Done():
			e.drain()
			return
		case r := <-e.reqs:
			batch = append(batch, r)
		more:
			for len(batch) < maxBatch {
				select {
				case r := <-e.reqs:
					batch = append(batch, r)
				default:
					break more
				}
			}
		case <-tick.C:
			batch = append(batch, &request{fn: e.tick, done: make(chan error, 1)})
		}
		e.commit(ctx, batch)
	}
}

// drain answers what is still queued once the loop stops.
func (e *engine) drain() {
	for {
		select {
		case r := <-e.reqs:
			r.finish(errStopped)
		default:
			return
		}
	}
}

func (e *engine) newTxn() *txn {
	return &txn{
		now: time.Now(), apps: map[PathID]bool{}, insts: map[string]*Instance{}, deps: map[string]*Deployment{},
		converge: map[PathID]bool{}, failures: map[PathID]*TaskFailure{}, removed: map[PathID]bool{},
	}
}

// commit runs a batch: changes under the lock, then the store, then the
// effects, then the answers.
func (e *engine) commit(ctx context.Context, batch []*request) {
	tx := e.newTxn()
	errs := make([]error, len(batch))
	e.mu.Lock()
	for i, r := range batch {
		errs[i] = r.fn(tx)
	}
	e.converge(tx)
	ops := e.encode(tx)
	e.mu.Unlock()

	var storeErr error
	for start := 0; start < len(ops); start += frameworks.MaxOpsPerApply {
		if err := e.store.Apply(context.WithoutCancel(ctx), ops[start:min(start+frameworks.MaxOpsPerApply, len(ops))]...); err != nil {
			storeErr = fmt.Errorf("writing the state: %w: %w", errdefs.ErrUnavailable, err)
			e.log.Error("the store refused a change; the state in memory is ahead of it", "err", err)
			break
		}
	}
	for _, k := range tx.kills {
		e.master.Kill(k.TaskID, k.AgentID)
	}
	if tx.revive {
		e.master.Revive()
	}
	e.bus.publish(tx.events...)
	for i, r := range batch {
		err := errs[i]
		if err == nil {
			err = storeErr
		}
		r.finish(err)
	}
}

// encode turns what the batch touched into store ops, as it is now.
func (e *engine) encode(tx *txn) []frameworks.Op {
	ops := tx.ops
	for id := range tx.apps {
		st := e.apps[id]
		if st == nil {
			ops = append(ops, frameworks.Delete(bucketApps, string(id)), frameworks.Delete(bucketFailures, string(id)))
			continue
		}
		ops = append(ops, frameworks.Put(bucketApps, string(id), mustJSON(st.app)))
	}
	for id, f := range tx.failures {
		if e.apps[id] != nil {
			ops = append(ops, frameworks.Put(bucketFailures, string(id), mustJSON(f)))
		}
	}
	for _, id := range slices.Sorted(maps.Keys(tx.insts)) {
		if i := tx.insts[id]; i != nil {
			ops = append(ops, frameworks.Put(bucketInstances, id, mustJSON(i)))
		}
	}
	for _, id := range tx.deletions {
		if tx.insts[id] == nil {
			ops = append(ops, frameworks.Delete(bucketInstances, id))
		}
	}
	for id, d := range tx.deps {
		if d == nil {
			ops = append(ops, frameworks.Delete(bucketDeployments, id))
		} else {
			ops = append(ops, frameworks.Put(bucketDeployments, id, mustJSON(d)))
		}
	}
	return ops
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("apps: state that does not encode: %v", err))
	}
	return b
}

// touch marks an instance to be written.
func (tx *txn) touch(i *Instance) { tx.insts[i.TaskID] = i }

// event queues an event for after the commit.
func (tx *txn) event(typ string, fields map[string]any) {
	tx.events = append(tx.events, newEvent(typ, tx.now, fields))
}

// newVersion is a version for a change made now, later than every
// version before it (two changes in one millisecond get two versions).
func (e *engine) newVersion(now time.Time) string {
	t := now.UTC().Truncate(time.Millisecond)
	if !t.After(e.lastVersion) {
		t = e.lastVersion.Add(time.Millisecond)
	}
	e.lastVersion = t
	return FormatTime(t)
}

// converge runs plan for every app the batch touched and acts on it:
// kills, deployments that ended, apps that are gone.
func (e *engine) converge(tx *txn) {
	// A deployment that ends lets the deployments of its plan that wait
	// for it go on: their apps join tx.converge while it runs, and are
	// run in the same batch.
	seen := map[PathID]bool{}
	for {
		var next []PathID
		for id := range tx.converge {
			if !seen[id] {
				next = append(next, id)
			}
		}
		if len(next) == 0 {
			break
		}
		slices.Sort(next)
		for _, id := range next {
			seen[id] = true
			e.convergeApp(tx, id)
		}
	}
	e.wants = false
	for _, st := range e.apps {
		if st.toLaunch > 0 && !tx.now.Before(st.delayUntil) {
			e.wants = true
			break
		}
	}
}

// convergeApp runs plan for one app and acts on it; an app whose
// deployment waits for others of its plan does nothing yet.
func (e *engine) convergeApp(tx *txn, id PathID) {
	st := e.apps[id]
	if st == nil {
		return
	}
	if st.deployment != nil && e.waiting(st.deployment) {
		st.toLaunch = 0
		st.waitingSince = time.Time{}
		return
	}
	insts := slices.Collect(maps.Values(st.instances))
	sort.Slice(insts, func(a, b int) bool { return insts[a].TaskID < insts[b].TaskID })
	r := plan(st.app, insts, st.deployment)
	why := "the app has more instances than it wants"
	switch {
	case st.deleted:
		why = "the app is deleted"
	case st.deployment != nil && st.deployment.Kind == KindRestart:
		why = "replaced by an instance of the new version"
	}
	for _, i := range r.kill {
		e.kill(tx, i, why)
	}
	if r.launch > st.toLaunch {
		tx.revive = true
	}
	if r.launch > 0 && st.waitingSince.IsZero() {
		st.waitingSince = tx.now
	}
	if r.launch == 0 {
		st.waitingSince = time.Time{}
		st.lastNoFit = ""
	}
	st.toLaunch = r.launch
	if st.deployment != nil && r.done {
		e.endDeployment(tx, st, DeploymentSucceeded)
		if st.deleted {
			e.removeApp(tx, st)
		}
	}
}

// waiting says whether d waits for another deployment of its plan.
func (e *engine) waiting(d *Deployment) bool {
	for _, id := range d.After {
		if o := e.apps[id]; o != nil && o.deployment != nil && o.deployment.planID() == d.planID() {
			return true
		}
	}
	return false
}

// kill asks for an instance's end; it stays Killing until the terminal
// update, and its end does not count against the app's backoff.
func (e *engine) kill(tx *txn, i *Instance, why string) {
	if i.Condition == Killing || i.Condition.Terminal() {
		return
	}
	e.log.Info("killing instance", "task_id", i.TaskID, "app_id", i.AppID, "why", why)
	i.Condition = Killing
	i.KillSentAt = tx.now
	tx.touch(i)
	tx.kills = append(tx.kills, frameworks.TaskRef{TaskID: i.TaskID, AgentID: i.AgentID})
	tx.event(EventInstanceChanged, instanceChanged(i))
	tx.converge[i.AppID] = true
}

// removeInstance forgets an instance that ended.
func (e *engine) removeInstance(tx *txn, i *Instance) {
	if st := e.apps[i.AppID]; st != nil {
		delete(st.instances, i.TaskID)
		tx.converge[i.AppID] = true
	}
	delete(e.byTask, i.TaskID)
	delete(tx.insts, i.TaskID)
	tx.deletions = append(tx.deletions, i.TaskID)
}

// removeApp forgets a stopped app with its versions.
func (e *engine) removeApp(tx *txn, st *appState) {
	id := PathID(st.app.ID)
	for _, v := range st.versions {
		tx.ops = append(tx.ops, frameworks.Delete(bucketVersions, string(id)+"@"+v))
	}
	e.releaseServicePorts(id)
	delete(e.apps, id)
	tx.apps[id] = true
	tx.event(EventAppTerminated, map[string]any{"appId": id})
}

// endDeployment ends an app's running deployment.
func (e *engine) endDeployment(tx *txn, st *appState, how DeploymentState) {
	d := st.deployment
	if d == nil {
		return
	}
	d.State = how
	st.deployment = nil
	delete(e.deployments, d.ID)
	tx.deps[d.ID] = nil
	typ := EventDeploymentSuccess
	if how != DeploymentSucceeded {
		typ = EventDeploymentFailed
	}
	e.log.Info("deployment ended", "deployment_id", d.planID(), "app_id", d.AppID, "kind", d.Kind, "state", how)
	tx.converge[d.AppID] = true
	// The plan ends with its last deployment; the others may wait for
	// this one.
	last := true
	for _, o := range e.deployments {
		if o.planID() == d.planID() {
			last = false
			tx.converge[o.AppID] = true
		}
	}
	if last {
		tx.event(typ, map[string]any{"id": d.planID(), "plan": deploymentPlan([]*Deployment{d})})
		if d.Group != "" {
			g := map[string]any{"groupId": d.Group, "version": d.Version}
			if how == DeploymentSucceeded {
				tx.event(EventGroupChangeSuccess, g)
			} else {
				g["reason"] = "the deployment was canceled"
				tx.event(EventGroupChangeFailed, g)
			}
		}
	}
}

// cancelPlan ends every deployment of a plan where it is (a change
// with force replaces it). A stop canceled so leaves an app nobody
// wants: its instances are killed and it is gone at once, unless it is
// keep, the app the new change is about.
func (e *engine) cancelPlan(tx *txn, planID string, keep *appState) {
	for _, d := range slices.Collect(maps.Values(e.deployments)) {
		if d.planID() != planID {
			continue
		}
		st := e.apps[d.AppID]
		if st == nil {
			continue
		}
		e.endDeployment(tx, st, DeploymentCanceled)
		if d.Kind == KindStop && st != keep {
			e.dropApp(tx, st)
		}
	}
}

// dropApp removes an app at once, its instances killed and forgotten
// (their tasks are killed again if they report, as tasks of no instance).
func (e *engine) dropApp(tx *txn, st *appState) {
	for _, i := range st.instances {
		e.kill(tx, i, "its app was deleted")
	}
	for _, i := range st.instances {
		e.removeInstance(tx, i)
	}
	e.removeApp(tx, st)
}

// startDeployment starts one for an app, canceling the one it had (the
// caller checked force).
func (e *engine) startDeployment(tx *txn, st *appState, kind DeploymentKind, original, target *App, version string) *Deployment {
	if st.deployment != nil {
		e.cancelPlan(tx, st.deployment.planID(), st)
	}
	id := PathID(st.app.ID)
	d := &Deployment{ID: newDeploymentID(), AppID: id, Kind: kind, State: DeploymentRunning, Original: original, Target: target,
		StartedAt: tx.now, Version: version}
	d.Plan = d.ID
	d.Steps, d.Step = d.planSteps()
	st.deployment = d
	e.deployments[d.ID] = d
	tx.deps[d.ID] = d
	tx.converge[id] = true
	if tx.plan != nil {
		// One of several: finishPlan orders them and announces the plan.
		d.Plan, d.Version = tx.plan.id, tx.plan.version
		tx.plan.parts = append(tx.plan.parts, d)
		return d
	}
	e.log.Info("deployment started", "deployment_id", d.ID, "app_id", id, "kind", kind, "version", d.Version)
	tx.event(EventDeploymentInfo, map[string]any{"plan": deploymentPlan([]*Deployment{d}), "currentStep": map[string]any{"actions": planActions([]*Deployment{d})}})
	return d
}

// tick is the loop's periodic work: launch timeouts, kill retries, launch
// delays that ran out, and every app's plan run again.
func (e *engine) tick(tx *txn) error {
	for _, st := range e.apps {
		id := PathID(st.app.ID)
		tx.converge[id] = true
		if st.toLaunch > 0 && !st.delayUntil.IsZero() && !tx.now.Before(st.delayUntil) {
			st.delayUntil = time.Time{}
			tx.revive = true
		}
		u, _ := st.app.unreachable()
		for _, i := range st.instances {
			switch {
			case i.Condition == Unreachable && !u.disabled && tx.now.Sub(i.UnreachableSince) >= u.inactive:
				// Away too long: a new instance takes its place.
				e.log.Info("unreachable instance inactive; replacing it", "task_id", i.TaskID, "app_id", i.AppID,
					"unreachable_for", tx.now.Sub(i.UnreachableSince).Round(time.Second))
				i.Condition, i.Replaced = UnreachableInactive, true
				tx.touch(i)
				tx.event(EventInstanceChanged, instanceChanged(i))
				tx.revive = true
			case i.Condition == UnreachableInactive && tx.now.Sub(i.UnreachableSince) >= u.expunge:
				// Forgotten; should its task come back, it is a task of
				// no instance and killed then. Asked to die now too, in
				// case the master still knows it.
				e.log.Info("unreachable instance expunged", "task_id", i.TaskID, "app_id", i.AppID)
				tx.kills = append(tx.kills, frameworks.TaskRef{TaskID: i.TaskID, AgentID: i.AgentID})
				e.removeInstance(tx, i)
			case i.Replaced && i.Condition != Killing && i.Condition != UnreachableInactive &&
				tx.now.Sub(i.UnreachableSince) >= u.expunge:
				// Its agent came back: a replacement runs, so it goes
				// once expungeAfterSeconds have passed.
				e.kill(tx, i, "back after it was replaced, past expungeAfterSeconds")
			case i.Condition == Killing && tx.now.Sub(i.KillSentAt) >= e.cfg.KillRetry:
				// A kill can be lost (a master failing over, an agent
				// away): ask again until the terminal update comes.
				i.KillSentAt = tx.now
				tx.kills = append(tx.kills, frameworks.TaskRef{TaskID: i.TaskID, AgentID: i.AgentID})
			case (i.Condition == Provisioned || i.Condition == Staging || i.Condition == Starting) &&
				tx.now.Sub(i.LaunchedAt) >= e.cfg.TaskLaunchTimeout:
				e.kill(tx, i, fmt.Sprintf("not running within --task_launch_timeout (%s)", e.cfg.TaskLaunchTimeout))
			}
		}
	}
	return nil
}

func newDeploymentID() string { return newUUID() }

// errNotFound and the like build the errors the API maps to statuses.
func appNotFound(id PathID) error {
	return fmt.Errorf("App '%s' does not exist: %w", id, errdefs.ErrNotFound)
}

// LockedError is a change refused because a deployment runs for the app
// (409 unless force).
type LockedError struct{ Deployments []string }

func (e *LockedError) Error() string {
	return fmt.Sprintf("App is locked by one or more deployments. Override with the option '?force=true'. View details at '/v2/deployments/%s'.", strings.Join(e.Deployments, ","))
}

func (e *LockedError) Unwrap() error { return errdefs.ErrConflict }
