package frameworks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/scheduler"
	"google.golang.org/protobuf/proto"
)

// The driver's own bucket in the Store, and its key for the framework id.
const (
	BucketFramework = "framework"
	keyFrameworkID  = "id"
)

// ackParallel bounds the acknowledgements sent at once.
const ackParallel = 16

// Defaults for the zero values of DriverConfig.
const (
	DefaultDeclineIdle       = 120 * time.Second
	DefaultDeclineBusy       = 5 * time.Second
	DefaultMinReviveInterval = time.Second
	DefaultReconcileInterval = 10 * time.Minute
	// DefaultFailoverTimeout is a week: Marathon's default, long enough for
	// a framework to be restarted after a weekend without losing a task.
	DefaultFailoverTimeout = 7 * 24 * time.Hour
)

// Scheduler is a framework's own logic. The Driver calls Registered,
// Offers, Update and LaunchFailed from one goroutine, one at a time;
// KnownTasks and Wants may be called from others at any time and must be
// safe for that.
type Scheduler interface {
	// Registered tells that the framework is subscribed, for the first
	// time or again, as frameworkID. The Driver reconciles next.
	Registered(ctx context.Context, frameworkID string, master *mesos.MasterInfo)
	// KnownTasks lists the tasks the scheduler holds for not terminal;
	// explicit reconciliation asks the master about each.
	KnownTasks() []TaskRef
	// Offers decides what to launch on offers. Offers no Launch names are
	// declined. It must not block on the master: the Driver makes the
	// calls. more says whether it still has tasks it could launch now on
	// other offers (the unused offers are then declined for a short while
	// only).
	Offers(ctx context.Context, offers []*mesos.Offer) (launches []Launch, more bool)
	// Update acts on a status update. It calls ack once it has recorded
	// the update durably, from any goroutine, at once or later (a
	// scheduler that batches its writes acknowledges a batch at once); the
	// Driver then acknowledges the update to the master, when it carries
	// a uuid. An update never acked is sent again by the agent, so a
	// scheduler that could not record it does not call ack. Updates come
	// in the order of the stream, and a scheduler must act on them in
	// that order. Reconciliation answers come here too (no uuid,
	// REASON_RECONCILIATION), also for tasks the scheduler does not know.
	Update(ctx context.Context, status *mesos.TaskStatus, ack func())
	// LaunchFailed tells that the master did not take a Launch: its tasks
	// will never run (or, if the call was lost on its way back, the
	// implicit reconciliation shows them).
	LaunchFailed(ctx context.Context, tasks []*mesos.TaskInfo, err error)
	// Wants says whether the scheduler has tasks to launch now; without,
	// the Driver suppresses offers.
	Wants() bool
}

// TaskRef names a task for reconciliation.
type TaskRef struct {
	TaskID, AgentID string
}

// Launch is tasks to launch on one offer.
type Launch struct {
	Offer *mesos.Offer
	Tasks []*mesos.TaskInfo
}

// DriverConfig configures a Driver. Master, Framework and Store are
// required.
type DriverConfig struct {
	// Master is as scheduler.Config.Master: host:port, zk://, file://.
	Master string
	// Framework is what the framework subscribes with: name, user, role,
	// hostname, webui_url, failover_timeout, principal, capabilities. Its
	// id is the one kept in Store; checkpoint is always set (agents keep
	// the tasks of a framework that restarts).
	Framework *mesos.FrameworkInfo
	Store     Store
	// Principal and Secret authenticate with the master; TLS is the
	// client's TLS configuration for an https master.
	Principal, Secret string
	TLS               *tls.Config
	Logger            *slog.Logger
	// DeclineIdle is how long offers are refused when the scheduler has no
	// work (it revives when it gets some); DeclineBusy when it has work the
	// offer did not fit.
	DeclineIdle, DeclineBusy time.Duration
	// MinReviveInterval spaces REVIVE calls: a burst of new work revives
	// once.
	MinReviveInterval time.Duration
	// ReconcileInterval is how often the implicit reconciliation repeats
	// while subscribed.
	ReconcileInterval time.Duration
	// ReconcileBackoffMin and Max bound the wait for the answers of an
	// explicit reconciliation before asking again; after
	// ReconcileRounds rounds the implicit one runs whatever is missing
	// (tasks on an agent a new master does not know yet stay unanswered
	// until it re-registers).
	ReconcileBackoffMin, ReconcileBackoffMax time.Duration
	ReconcileRounds                          int
	// ResubscribeBackoffMax bounds the wait between attempts to reach a
	// master that is not there at start.
	ResubscribeBackoffMax time.Duration
}

func (cfg DriverConfig) withDefaults() (DriverConfig, error) {
	if cfg.Master == "" {
		return cfg, fmt.Errorf("frameworks: no master: %w", errdefs.ErrInvalid)
	}
	if cfg.Framework == nil || cfg.Framework.GetName() == "" {
		return cfg, fmt.Errorf("frameworks: the framework needs a name: %w", errdefs.ErrInvalid)
	}
	if cfg.Store == nil {
		return cfg, fmt.Errorf("frameworks: no store: %w", errdefs.ErrInvalid)
	}
	cfg.Framework = proto.Clone(cfg.Framework).(*mesos.FrameworkInfo)
	cfg.Framework.Checkpoint = proto.Bool(true)
	if cfg.Framework.FailoverTimeout == nil {
		cfg.Framework.FailoverTimeout = proto.Float64(DefaultFailoverTimeout.Seconds())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.DeclineIdle, DefaultDeclineIdle)
	def(&cfg.DeclineBusy, DefaultDeclineBusy)
	def(&cfg.MinReviveInterval, DefaultMinReviveInterval)
	def(&cfg.ReconcileInterval, DefaultReconcileInterval)
	def(&cfg.ReconcileBackoffMin, 2*time.Second)
	def(&cfg.ReconcileBackoffMax, time.Minute)
	def(&cfg.ResubscribeBackoffMax, 15*time.Second)
	if cfg.ReconcileRounds <= 0 {
		cfg.ReconcileRounds = 6
	}
	return cfg, nil
}

// Driver runs a framework's subscription for its Scheduler. Make one with
// NewDriver and call Run.
type Driver struct {
	cfg   DriverConfig
	sched Scheduler
	log   *slog.Logger

	// poke wakes the control goroutine: work may have changed, or a kill
	// or revive is waiting.
	poke       chan struct{}
	reviveWant atomic.Bool

	mu        sync.Mutex
	client    *scheduler.Client // nil while not subscribed
	fwID      string
	master    *mesos.MasterInfo
	kills     []TaskRef
	reconcile *reconciliation // the one running, nil if none
}

// NewDriver checks cfg and reads the framework id kept in the store.
func NewDriver(ctx context.Context, cfg DriverConfig, s Scheduler) (*Driver, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	d := &Driver{cfg: cfg, sched: s, log: cfg.Logger.With("component", "framework-driver"), poke: make(chan struct{}, 1)}
	id, err := cfg.Store.Get(ctx, BucketFramework, keyFrameworkID)
	switch {
	case err == nil:
		d.fwID = string(id)
		cfg.Framework.Id = &mesos.FrameworkID{Value: proto.String(d.fwID)}
	case errors.Is(err, errdefs.ErrNotFound):
	default:
		return nil, fmt.Errorf("reading the framework id: %w", err)
	}
	return d, nil
}

// FrameworkID is the framework's id: the stored one, or the master's once
// subscribed; empty before the first subscription of a new framework.
func (d *Driver) FrameworkID() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fwID
}

// Connected says whether the framework is subscribed now.
func (d *Driver) Connected() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.client != nil && d.client.StreamID() != ""
}

// MasterInfo is the leading master as it last described itself.
func (d *Driver) MasterInfo() *mesos.MasterInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.master
}

// Revive asks for offers: the scheduler has new work. Calls are coalesced
// and spaced by MinReviveInterval; it never blocks.
func (d *Driver) Revive() {
	d.reviveWant.Store(true)
	d.wake()
}

// Kill asks the master to kill a task (agentID may be empty). It never
// blocks; a kill that cannot be sent now (no master) is dropped with a
// log line, and the scheduler, which knows the task should end, asks again
// later.
func (d *Driver) Kill(taskID, agentID string) {
	d.mu.Lock()
	d.kills = append(d.kills, TaskRef{TaskID: taskID, AgentID: agentID})
	d.mu.Unlock()
	d.wake()
}

func (d *Driver) wake() {
	select {
	case d.poke <- struct{}{}:
	default:
	}
}

// Run subscribes and serves the subscription until ctx ends or the master
// refuses the framework (its error is returned: a framework removed for
// good, credentials refused). A master that cannot be reached is tried
// again, with backoff, for as long as it takes.
func (d *Driver) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); d.control(ctx) }()
	defer wg.Wait()
	defer cancel()

	backoff := 500 * time.Millisecond
	for {
		c, err := scheduler.Subscribe(ctx, d.clientConfig())
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, errdefs.ErrUnavailable) {
				return fmt.Errorf("subscribing: %w", err)
			}
			d.log.Warn("cannot subscribe yet; retrying", "master", d.cfg.Master, "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff/2 + rand.N(backoff/2+1)):
			}
			backoff = min(2*backoff, d.cfg.ResubscribeBackoffMax)
			continue
		}
		err = d.serve(ctx, c)
		c.Close()
		d.mu.Lock()
		d.client = nil
		d.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

func (d *Driver) clientConfig() scheduler.Config {
	d.mu.Lock()
	fw := proto.Clone(d.cfg.Framework).(*mesos.FrameworkInfo)
	if d.fwID != "" {
		fw.Id = &mesos.FrameworkID{Value: proto.String(d.fwID)}
	}
	d.mu.Unlock()
	return scheduler.Config{
		Master:            d.cfg.Master,
		Framework:         fw,
		Principal:         d.cfg.Principal,
		Secret:            d.cfg.Secret,
		TLS:               d.cfg.TLS,
		Logger:            d.cfg.Logger,
		ManualAcknowledge: true,
	}
}

// serve handles the events of one client until it stops.
func (d *Driver) serve(ctx context.Context, c *scheduler.Client) error {
	d.mu.Lock()
	d.client = c
	d.mu.Unlock()
	// Acknowledgements go out in the background, at most ackParallel at
	// once. One that comes after the client stopped fails, harmlessly:
	// the agent sends the update again to the next subscription.
	sem := make(chan struct{}, ackParallel)
	for ev := range c.Events() {
		switch ev.GetType() {
		case schedv1.Event_SUBSCRIBED:
			if err := d.subscribed(ctx, c, ev.GetSubscribed()); err != nil {
				return err
			}
		case schedv1.Event_OFFERS:
			d.offers(ctx, c, ev.GetOffers().GetOffers())
		case schedv1.Event_UPDATE:
			st := ev.GetUpdate().GetStatus()
			d.mu.Lock()
			rec := d.reconcile
			d.mu.Unlock()
			if rec != nil {
				rec.answered(st.GetTaskId().GetValue())
			}
			if len(st.GetUuid()) == 0 {
				// Reconciliation answers and the like: nothing to
				// acknowledge (and the master would refuse it).
				d.sched.Update(ctx, st, func() {})
				break
			}
			var once sync.Once
			d.sched.Update(ctx, st, func() {
				once.Do(func() {
					go func() {
						sem <- struct{}{}
						defer func() { <-sem }()
						if err := c.Acknowledge(ctx, st); err != nil && ctx.Err() == nil {
							d.log.Warn("acknowledging failed; the agent will resend the update", "task_id", st.GetTaskId().GetValue(), "state", st.GetState(), "err", err)
						}
					}()
				})
			})
		case schedv1.Event_FAILURE:
			f := ev.GetFailure()
			// The master sends FAILURE for every executor that ends,
			// including a command executor that exited 0 after its task.
			if f.GetStatus() == 0 {
				d.log.Debug("executor exited", "agent_id", f.GetAgentId().GetValue(), "executor_id", f.GetExecutorId().GetValue())
			} else {
				d.log.Info("executor failed", "agent_id", f.GetAgentId().GetValue(), "executor_id", f.GetExecutorId().GetValue(), "status", f.GetStatus())
			}
		case schedv1.Event_ERROR:
			d.log.Error("the master sent ERROR", "message", ev.GetError().GetMessage())
		}
	}
	d.stopReconciling()
	return c.Err()
}

// subscribed records the framework id (durably: a restart must fail over
// to it, not register anew) and starts a reconciliation.
func (d *Driver) subscribed(ctx context.Context, c *scheduler.Client, sub *schedv1.Event_Subscribed) error {
	id := sub.GetFrameworkId().GetValue()
	d.mu.Lock()
	old := d.fwID
	d.fwID = id
	d.master = sub.GetMasterInfo()
	d.mu.Unlock()
	if id != old {
		if old != "" {
			d.log.Warn("the master gave a new framework id; the old one's tasks are lost to it", "old", old, "framework_id", id)
		}
		if err := d.cfg.Store.Apply(ctx, Put(BucketFramework, keyFrameworkID, []byte(id))); err != nil {
			return fmt.Errorf("storing the framework id %s: %w", id, err)
		}
	}
	d.log.Info("subscribed", "framework_id", id, "master", c.Master())
	d.sched.Registered(ctx, id, sub.GetMasterInfo())
	d.startReconciling(ctx, c)
	// A new subscription starts unsuppressed, with no filters.
	d.Revive()
	return nil
}

// offers hands offers to the scheduler, launches what it decided and
// declines the rest.
func (d *Driver) offers(ctx context.Context, c *scheduler.Client, offers []*mesos.Offer) {
	launches, more := d.sched.Offers(ctx, offers)
	refuse := d.cfg.DeclineIdle
	if more {
		refuse = d.cfg.DeclineBusy
	}
	used := map[string]bool{}
	for _, l := range launches {
		if l.Offer == nil || len(l.Tasks) == 0 {
			continue
		}
		used[l.Offer.GetId().GetValue()] = true
		tasks := make([]*mesos.TaskInfo, len(l.Tasks))
		for i, t := range l.Tasks {
			if t.AgentId == nil {
				t = proto.Clone(t).(*mesos.TaskInfo)
				t.AgentId = l.Offer.GetAgentId()
			}
			tasks[i] = t
		}
		err := c.Accept(ctx, []*mesos.OfferID{l.Offer.GetId()}, []*mesos.Offer_Operation{scheduler.LaunchOperation(tasks...)}, scheduler.RefuseFor(refuse))
		if err != nil {
			d.log.Warn("launch refused or lost", "offer_id", l.Offer.GetId().GetValue(), "tasks", len(tasks), "err", err)
			d.sched.LaunchFailed(ctx, tasks, err)
		}
	}
	var decline []*mesos.OfferID
	for _, o := range offers {
		if !used[o.GetId().GetValue()] {
			decline = append(decline, o.GetId())
		}
	}
	if len(decline) > 0 {
		if err := c.Decline(ctx, scheduler.RefuseFor(refuse), decline...); err != nil {
			d.log.Debug("decline failed; the offers time out or are rescinded", "err", err)
		}
	}
	// Work may have run out: the control loop suppresses if so.
	d.wake()
}

// control sends what the scheduler asks for out of band (kills, revives)
// and keeps offers suppressed exactly while the scheduler wants none. It
// is level-triggered: each wake-up compares what is wanted with what was
// last told the master, so a revive and a suppress decided in either
// order end right.
func (d *Driver) control(ctx context.Context) {
	var (
		suppressed bool
		lastRevive time.Time
		client     *scheduler.Client
		stream     string
	)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.poke:
		case <-timer.C:
		}
		d.mu.Lock()
		c := d.client
		kills := d.kills
		d.kills = nil
		d.mu.Unlock()
		if c == nil || c.StreamID() == "" {
			for _, k := range kills {
				d.log.Debug("not subscribed; kill dropped (asked again later)", "task_id", k.TaskID)
			}
			continue
		}
		if sid := c.StreamID(); c != client || sid != stream {
			// A new client, or the one we had re-subscribed (its stream
			// id changed): the master forgot our suppression either way.
			client, stream, suppressed = c, sid, false
		}
		for _, k := range kills {
			var agent *mesos.AgentID
			if k.AgentID != "" {
				agent = &mesos.AgentID{Value: proto.String(k.AgentID)}
			}
			if err := c.Kill(ctx, &mesos.TaskID{Value: proto.String(k.TaskID)}, agent); err != nil && ctx.Err() == nil {
				d.log.Warn("KILL failed (asked again later)", "task_id", k.TaskID, "err", err)
			}
		}
		wants := d.sched.Wants()
		switch {
		case wants && (suppressed || d.reviveWant.Load()):
			if wait := d.cfg.MinReviveInterval - time.Since(lastRevive); wait > 0 {
				timer.Reset(wait)
				continue
			}
			d.reviveWant.Store(false)
			if err := c.Revive(ctx); err != nil {
				d.log.Warn("REVIVE failed", "err", err)
				d.reviveWant.Store(true)
				timer.Reset(d.cfg.MinReviveInterval)
				continue
			}
			lastRevive, suppressed = time.Now(), false
		case !wants && !suppressed:
			d.reviveWant.Store(false)
			if err := c.Suppress(ctx); err != nil {
				d.log.Debug("SUPPRESS failed", "err", err)
				continue
			}
			suppressed = true
		default:
			if !wants {
				d.reviveWant.Store(false)
			}
		}
	}
}
