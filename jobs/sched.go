package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

// A run is one attempt at running a job, one task. Its states:
//
//	queued ──offer──▶ launching ──TASK_RUNNING──▶ running
//	  ▲                  │                          │
//	  │ launch refused   │ terminal update          │ terminal update
//	  └──────────────────┤◀─────────────────────────┘
//	                     ├─ TASK_FINISHED ─▶ succeeded (successCount, dependents)
//	                     └─ other ─▶ failed ─┬─ attempt < retries: a new run, queued
//	                                         │  after a backoff doubling per attempt
//	                                         └─ else: errorCount
//
// Runs are kept in the store (bucketRuns) from the moment they are
// queued: a queued run is stored in the same Apply as the schedule step or
// the result that queued it, a launched run's task id before its task is
// launched, and a finished run is removed in the same Apply as the result
// it counts. A restarted service, or a new leader, thus queues the queued
// runs again and knows the launched ones by task id (reconciliation tells
// their state; one the master never heard of is queued again), so no run
// is lost or doubled. Runs from before this was kept are adopted when
// reconciliation tells of them (their task ids name the job).
type runState int

const (
	runQueued runState = iota
	runLaunching
	runRunning
	runSucceeded
	runFailed
	// runAwaiting: an async job's task finished; the run ends when the
	// job reports its result (PUT /scheduler/task/{taskId}).
	runAwaiting
)

func (s runState) String() string {
	return [...]string{"queued", "launching", "running", "succeeded", "failed", "awaiting completion"}[s]
}

type run struct {
	id        string // the key of its record in bucketRuns
	job       string
	taskID    string
	attempt   int
	state     runState
	agentID   string
	args      string // manual start's ?arguments=
	queuedAt  time.Time
	notBefore time.Time // a retry waits out its backoff
	high      bool
	stopped   bool      // the job was deleted or its tasks killed: not counted
	startedAt time.Time // when it was first reported TASK_RUNNING
	// progress is what the run reported of itself (progress.go).
	progress runProgress
}

// runTable is the runs of every job: those waiting for an offer and those
// launched, by task id.
type runTable struct {
	queue  []*run
	byTask map[string]*run
	// triggered is when each dependent job was last started by its
	// parents (or, after a restart, its last result): its parents must
	// all succeed after it to start it again.
	triggered map[string]time.Time
}

func newRunTable() runTable {
	return runTable{byTask: map[string]*run{}, triggered: map[string]time.Time{}}
}

// inFlightLocked is the jobs with a run in flight (launched and not
// stopped), and busyLocked those with one queued too: built once per
// pass, as a scan of every run per job made scheduling quadratic.
func (s *Service) inFlightLocked() map[string]bool {
	out := make(map[string]bool, len(s.runs.byTask))
	for _, r := range s.runs.byTask {
		if !r.stopped {
			out[r.job] = true
		}
	}
	return out
}

func (s *Service) busyLocked() map[string]bool {
	out := s.inFlightLocked()
	for _, r := range s.runs.queue {
		out[r.job] = true
	}
	return out
}

// StartNow queues a run of the named job (PUT /scheduler/job/{name}); it
// starts when no other run of the job is in flight (unless async or
// concurrent).
func (s *Service) StartNow(ctx context.Context, name, args string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[name]
	if !ok {
		return errNoJob(name)
	}
	r := s.newRunLocked(j, 0, args, time.Now())
	if err := s.store.Apply(ctx, putRun(r)); err != nil {
		return fmt.Errorf("storing the run of job %s: %w", name, err)
	}
	s.queueLocked(r)
	return nil
}

// KillRuns kills the job's tasks and drops its queued runs
// (DELETE /scheduler/task/kill/{name}).
func (s *Service) KillRuns(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.jobs[name]; !ok {
		return errNoJob(name)
	}
	return s.stopRunsLocked(ctx, name)
}

// stopRunsLocked drops the job's queued runs and kills its launched ones
// (which are no longer counted), storing that with extra in one Apply
// first.
func (s *Service) stopRunsLocked(ctx context.Context, name string, extra ...frameworks.Op) error {
	ops := extra
	for _, r := range s.runs.queue {
		if r.job == name {
			ops = append(ops, dropRun(r))
		}
	}
	var kill []*run
	for _, r := range s.runs.byTask {
		if r.job == name && !r.stopped {
			stopped := *r
			stopped.stopped = true
			ops = append(ops, putRun(&stopped))
			kill = append(kill, r)
		}
	}
	if err := s.applyLocked(ctx, ops); err != nil {
		return fmt.Errorf("stopping the runs of job %s: %w", name, err)
	}
	s.runs.queue = slices.DeleteFunc(s.runs.queue, func(r *run) bool { return r.job == name })
	for _, r := range kill {
		r.stopped = true
		s.driver.Kill(r.taskID, r.agentID)
	}
	delete(s.runs.triggered, name)
	return nil
}

// maxTickWait bounds the scheduling loop's sleep with nothing due sooner,
// so that a step of the wall clock (schedules are wall-clock times; the
// loop's timer is not) is caught up within it.
const maxTickWait = 10 * time.Second

// loop starts due scheduled runs: it sleeps until the next run is due
// (at most maxTickWait), or until a job changes; while a due job waits
// for its run in flight, or a store write failed, it looks again every
// Tick.
func (s *Service) loop(ctx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-s.wake:
		}
		next := s.tick(ctx, time.Now())
		wait := maxTickWait
		if !next.IsZero() {
			wait = min(max(time.Until(next), 0), maxTickWait)
		}
		timer.Reset(wait)
	}
}

// cachedSchedule is a job's schedule as parsed from its text (and, for a
// cron schedule, its next run).
type cachedSchedule struct {
	text, zone, next string
	sc               Schedule
	err              error
}

// scheduleLocked is j's parsed schedule, parsed again only when its text
// (or zone) changed: a pass over every job then costs a map lookup each,
// not a parse (and, with scheduleTimeZone, a zoneinfo read).
func (s *Service) scheduleLocked(j *Job, now time.Time) (Schedule, error) {
	c, ok := s.schedules[j.Name]
	if !ok || c.text != j.Schedule || c.zone != j.ScheduleTimeZone || c.next != j.NextCronRun {
		sc, err := ParseSchedule(j.Schedule, j.ScheduleTimeZone, now)
		if err == nil && sc.Cron != nil && j.NextCronRun != "" {
			// A cron schedule's text stays; its next run is kept beside.
			if next, perr := time.Parse(time.RFC3339Nano, j.NextCronRun); perr == nil {
				sc.Start = next.In(sc.Loc)
			}
		}
		c = cachedSchedule{text: j.Schedule, zone: j.ScheduleTimeZone, next: j.NextCronRun, sc: sc, err: err}
		s.schedules[j.Name] = c
	}
	return c.sc, c.err
}

// dueStep is one due job's schedule step: the job as it is to be stored,
// the run it makes (nil for a skipped run) and their ops.
type dueStep struct {
	next *Job
	run  *run
	ops  []frameworks.Op
}

// tick queues the scheduled jobs due at now and returns when it should
// look again: when the next run is due, sooner (now+Tick) when a due job
// waits for its run in flight or a store write failed; the zero time when
// no job is scheduled.
//
// A job's schedule is rewritten as Chronos does: each run started (or
// skipped) moves its start to the next run and counts its repetitions
// down. A run due more than epsilon ago is skipped; a due job with a run
// still queued or in flight waits for it (never two runs at once, unless
// async or concurrent), so epsilon decides whether it still runs. The
// steps of one pass are stored in as few Applys as the store's limit
// allows, each step (the schedule and its run) whole in one.
func (s *Service) tick(ctx context.Context, now time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var next time.Time
	soonest := func(t time.Time) {
		if next.IsZero() || t.Before(next) {
			next = t
		}
	}
	var due []string
	for name, j := range s.jobs {
		if j.Schedule == "" || j.Disabled {
			continue
		}
		sc, err := s.scheduleLocked(j, now)
		if err != nil || sc.Repeat == 0 {
			continue
		}
		if now.Before(sc.Start) {
			soonest(sc.Start)
			continue
		}
		due = append(due, name)
	}
	slices.Sort(due)
	clear(s.waiting)
	var busy map[string]bool
	if len(due) > 0 {
		busy = s.busyLocked()
	}
	var steps []dueStep
	nops := 0
	flush := func() {
		if len(steps) == 0 {
			return
		}
		var ops []frameworks.Op
		for _, st := range steps {
			ops = append(ops, st.ops...)
		}
		// A schedule step and its run are stored together: neither is
		// kept without the other.
		if err := s.store.Apply(ctx, ops...); err != nil {
			s.log.Warn("cannot store the jobs' next runs; trying again", "jobs", len(steps), "err", err)
			soonest(now.Add(s.cfg.Tick))
		} else {
			for _, st := range steps {
				s.jobs[st.next.Name] = st.next
				if st.run != nil {
					s.queueLocked(st.run)
				}
			}
		}
		steps, nops = nil, 0
	}
	for _, name := range due {
		j := s.jobs[name]
		sc, _ := s.scheduleLocked(j, now)
		eps, _ := ParsePeriod(j.Epsilon)
		late := now.After(eps.AddTo(sc.Start, 1))
		if !late && !j.Concurrent && busy[name] {
			s.waiting[name] = true
			soonest(now.Add(s.cfg.Tick))
			continue
		}
		nj := *j
		if late {
			at, k, ok := sc.Next(now)
			if !ok {
				sc.Repeat = 0
			} else {
				sc.Start = at
				if sc.Repeat != Forever {
					sc.Repeat -= k
				}
			}
			s.log.Info("run missed by more than epsilon; skipped", "job", name, "due", sc.Start, "epsilon", j.Epsilon)
		} else {
			sc.Start = sc.At(1)
			if sc.Repeat != Forever {
				sc.Repeat--
			}
		}
		if sc.Repeat != 0 {
			soonest(sc.Start)
		}
		nj.Schedule = sc.String()
		if sc.Cron != nil {
			nj.NextCronRun = sc.Start.UTC().Format(timeFormat)
		}
		op, err := jobOp(&nj)
		if err != nil {
			s.log.Warn("cannot encode the job", "job", name, "err", err)
			continue
		}
		st := dueStep{next: &nj, ops: []frameworks.Op{op}}
		if !late {
			st.run = s.newRunLocked(&nj, 0, "", now)
			st.ops = append(st.ops, putRun(st.run))
		}
		if nops+len(st.ops) > frameworks.MaxOpsPerApply {
			flush()
		}
		steps = append(steps, st)
		nops += len(st.ops)
	}
	flush()
	s.nextPass = now.Add(maxTickWait)
	if !next.IsZero() && next.Before(s.nextPass) {
		s.nextPass = next
	}
	return next
}

var _ frameworks.Scheduler = (*Service)(nil)

// Registered implements frameworks.Scheduler.
func (s *Service) Registered(context.Context, string, *mesos.MasterInfo) {}

// KnownTasks implements frameworks.Scheduler.
func (s *Service) KnownTasks() []frameworks.TaskRef {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]frameworks.TaskRef, 0, len(s.runs.byTask))
	for _, r := range s.runs.byTask {
		if r.state == runAwaiting {
			continue // its task is over; the job reports the rest
		}
		out = append(out, frameworks.TaskRef{TaskID: r.taskID, AgentID: r.agentID})
	}
	return out
}

// Wants implements frameworks.Scheduler.
func (s *Service) Wants() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.runs.queue) > 0
}

// TaskID is Chronos's task id of a run: ct:<millis>:<attempt>:<job>:, so a
// user finds a job's runs in the Mesos UI by its name.
func TaskID(job string, attempt int, at time.Time) string {
	return "ct:" + strconv.FormatInt(at.UnixMilli(), 10) + ":" + strconv.Itoa(attempt) + ":" + job + ":"
}

// ParseTaskID reads the job name and attempt out of a task id TaskID made.
func ParseTaskID(id string) (job string, attempt int, ok bool) {
	parts := strings.Split(id, ":")
	if len(parts) != 5 || parts[0] != "ct" || parts[4] != "" {
		return "", 0, false
	}
	if _, err := strconv.ParseInt(parts[1], 10, 64); err != nil {
		return "", 0, false
	}
	attempt, err := strconv.Atoi(parts[2])
	if err != nil || attempt < 0 || ValidName(parts[3]) != nil {
		return "", 0, false
	}
	return parts[3], attempt, true
}

// Offers implements frameworks.Scheduler: queued runs, high priority
// first, then oldest first, on the first offer that fits them.
func (s *Service) Offers(ctx context.Context, offers []*mesos.Offer) ([]frameworks.Launch, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	queue := slices.Clone(s.runs.queue)
	slices.SortStableFunc(queue, func(a, b *run) int {
		if a.high != b.high {
			if a.high {
				return -1
			}
			return 1
		}
		return a.queuedAt.Compare(b.queuedAt)
	})
	lefts := make([][]*mesos.Resource, len(offers))
	room := make([]scalars, len(offers))
	for i, o := range offers {
		lefts[i] = o.GetResources()
		room[i] = s.usableScalars(lefts[i])
	}
	tasks := make([][]*mesos.TaskInfo, len(offers))
	launched := map[*run]bool{}
	inFlight := s.inFlightLocked()
	for _, r := range queue {
		if !slices.ContainsFunc(room, func(sc scalars) bool { return sc.cpus > 1e-9 && sc.mem > 1e-9 }) {
			break // every job needs cpus and mem: the offers are used up
		}
		j := s.jobs[r.job]
		if j == nil {
			launched[r] = true // the job is gone: drop the run
			continue
		}
		if !j.Concurrent && inFlight[r.job] || now.Before(r.notBefore) {
			continue
		}
		for i, o := range offers {
			// An offer without the room is passed over before placing,
			// which costs far more (10 agents full, thousands of runs
			// queued: 45 % of the process's CPU went to failed placements).
			if !room[i].fits(j) {
				continue
			}
			task, used, ok := s.place(j, r, o, lefts[i], now)
			if !ok {
				continue
			}
			lefts[i] = resources.Remaining(lefts[i], used)
			room[i].cpus -= float64(j.CPUs)
			room[i].mem -= float64(j.Mem)
			room[i].disk -= float64(j.Disk)
			tasks[i] = append(tasks[i], task)
			r.taskID, r.agentID, r.state = task.GetTaskId().GetValue(), o.GetAgentId().GetValue(), runLaunching
			s.runs.byTask[r.taskID] = r
			launched[r] = true
			inFlight[r.job] = true
			s.log.Info("launching a run", "job", r.job, "task_id", r.taskID, "attempt", r.attempt, "agent_id", r.agentID)
			break
		}
	}
	// The launched runs' task ids are stored before their tasks are
	// launched, so that a new leader knows them.
	var ops []frameworks.Op
	for r := range launched {
		if r.taskID == "" {
			ops = append(ops, dropRun(r))
		} else {
			ops = append(ops, putRun(r))
		}
	}
	if err := s.applyLocked(ctx, ops); err != nil {
		s.log.Warn("cannot store the runs to launch; launching none", "err", err)
		for r := range launched {
			if r.taskID != "" {
				delete(s.runs.byTask, r.taskID)
				r.taskID, r.agentID, r.state = "", "", runQueued
			}
		}
		return nil, len(s.runs.queue) > 0
	}
	s.runs.queue = slices.DeleteFunc(s.runs.queue, func(r *run) bool { return launched[r] })
	var launches []frameworks.Launch
	for i, o := range offers {
		if len(tasks[i]) > 0 {
			launches = append(launches, frameworks.Launch{Offer: o, Tasks: tasks[i]})
		}
	}
	return launches, len(s.runs.queue) > 0
}

// scalars are the cpus, mem and disk of an offer a job may use.
type scalars struct{ cpus, mem, disk float64 }

// fits says whether j's resources are within sc (a job's disk of 0 needs
// none).
func (sc scalars) fits(j *Job) bool {
	return float64(j.CPUs) <= sc.cpus && float64(j.Mem) <= sc.mem && float64(j.Disk) <= sc.disk
}

// usableScalars sums the unreserved (and the framework role's) cpus, mem
// and disk of an offer's resources, as place may use them.
func (s *Service) usableScalars(left []*mesos.Resource) scalars {
	var sc scalars
	for _, res := range left {
		if rr := resources.ReservationRole(res); rr != resources.Unreserved && (s.cfg.Role == "" || rr != s.cfg.Role) {
			continue
		}
		v := res.GetScalar().GetValue()
		switch res.GetName() {
		case resources.CPUs:
			sc.cpus += v
		case resources.Mem:
			sc.mem += v
		case resources.Disk:
			sc.disk += v
		}
	}
	return sc
}

// place builds the task of run r of j on offer o from what is left of it,
// if it fits and the job's constraints allow the agent.
func (s *Service) place(j *Job, r *run, o *mesos.Offer, left []*mesos.Resource, now time.Time) (*mesos.TaskInfo, []*mesos.Resource, bool) {
	where := frameworks.PlacementOf(o)
	for _, c := range j.Constraints {
		fc, err := parseConstraint(c)
		if err != nil || !fc.Allows(where, nil) {
			return nil, nil, false
		}
	}
	role := s.cfg.Role
	var usable []*mesos.Resource
	for _, res := range left {
		if rr := resources.ReservationRole(res); rr == resources.Unreserved || role != "" && rr == role {
			usable = append(usable, res)
		}
	}
	want := []*mesos.Resource{scalar(resources.CPUs, float64(j.CPUs)), scalar(resources.Mem, float64(j.Mem))}
	if j.Disk > 0 {
		want = append(want, scalar(resources.Disk, float64(j.Disk)))
	}
	used, _, err := resources.Allocate(usable, want, 0)
	if err != nil {
		return nil, nil, false
	}
	// Two runs of a concurrent job placed in one pass (or in one
	// millisecond) would get one task id: a later millisecond is taken,
	// as unique as Chronos's form allows.
	at := now
	taskID := TaskID(j.Name, r.attempt, at)
	for s.runs.byTask[taskID] != nil {
		at = at.Add(time.Millisecond)
		taskID = TaskID(j.Name, r.attempt, at)
	}
	t := &mesos.TaskInfo{
		Name:      proto.String("ChronosTask:" + j.Name),
		TaskId:    &mesos.TaskID{Value: proto.String(taskID)},
		AgentId:   o.GetAgentId(),
		Resources: used,
		Command:   command(j, r, taskID, o.GetHostname()),
		Container: containerInfo(j),
	}
	if j.Executor != "" {
		// As Chronos: the job's runs go to its custom executor, which
		// reads "executorFlags|command" from the task's data. The
		// executor's command is the job's otherwise (its environment, its
		// URIs, which may fetch the executor, its user). One executor id
		// per job (and version of it): its runs on an agent share the
		// executor, as Chronos's share theirs, and no other job's executor
		// is taken for it.
		// Its ExecutorInfo must be the same for every run (an agent
		// refuses a task whose ExecutorInfo differs from that of the
		// executor of its id), so nothing of one run goes into it: not the
		// task id (the executor reads it off the task), not ?arguments=.
		ex := t.Command
		ex.Value, ex.Shell, ex.Arguments = proto.String(j.Executor), proto.Bool(true), nil
		ex.Environment.Variables = slices.DeleteFunc(ex.Environment.Variables, func(v *mesos.Environment_Variable) bool {
			return v.GetName() == "mesos_task_id"
		})
		t.Executor = &mesos.ExecutorInfo{
			Type:      mesos.ExecutorInfo_CUSTOM.Enum(),
			Name:      proto.String("Chronos executor of " + j.Name),
			Command:   ex,
			Container: t.Container,
		}
		// The id names this ExecutorInfo: once the job is changed (its
		// executor, environment, user...), its runs go to a new executor,
		// not to the old one, which an agent would refuse them as differing.
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(t.Executor)
		sum := sha256.Sum256(b)
		t.Executor.ExecutorId = &mesos.ExecutorID{Value: proto.String("chronos-executor-" + j.Name + "-" + hex.EncodeToString(sum[:4]))}
		t.Command, t.Container = nil, nil
		t.Data = []byte(j.ExecutorFlags + "|" + j.Command)
	}
	if j.TaskInfoData != "" {
		t.Data = []byte(j.TaskInfoData)
	}
	return t, used, true
}

func scalar(name string, v float64) *mesos.Resource {
	return &mesos.Resource{Name: proto.String(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(v)}}
}

// command is the job's CommandInfo, with the environment Chronos gives a
// task.
func command(j *Job, r *run, taskID, host string) *mesos.CommandInfo {
	ci := &mesos.CommandInfo{}
	if u, ok := remoteExecutable(j.Command); ok {
		// Chronos's "remote executable": the command is a URL, fetched
		// into the sandbox, made executable and run from there.
		ci.Uris = append(ci.Uris, &mesos.CommandInfo_URI{Value: proto.String(j.Command), Executable: proto.Bool(true)})
		ci.Shell, ci.Value = proto.Bool(true), proto.String(u)
	} else if j.Shell {
		ci.Shell, ci.Value = proto.Bool(true), proto.String(j.Command)
	} else {
		args := append([]string{j.Command}, j.Arguments...)
		args = append(args, strings.Fields(r.args)...)
		ci.Shell, ci.Value, ci.Arguments = proto.Bool(false), proto.String(j.Command), args
	}
	if j.RunAsUser != "" {
		ci.User = proto.String(j.RunAsUser)
	}
	env := []*mesos.Environment_Variable{}
	add := func(k, v string) {
		env = append(env, &mesos.Environment_Variable{Name: proto.String(k), Value: proto.String(v)})
	}
	add("mesos_task_id", taskID)
	add("CHRONOS_JOB_OWNER", j.Owner)
	add("CHRONOS_JOB_NAME", j.Name)
	add("HOST", host)
	add("CHRONOS_RESOURCE_CPU", strconv.FormatFloat(float64(j.CPUs), 'f', -1, 64))
	add("CHRONOS_RESOURCE_MEM", strconv.FormatFloat(float64(j.Mem), 'f', -1, 64))
	add("CHRONOS_RESOURCE_DISK", strconv.FormatFloat(float64(j.Disk), 'f', -1, 64))
	for _, e := range j.EnvironmentVariables {
		add(e.Name, e.Value)
	}
	ci.Environment = &mesos.Environment{Variables: env}
	for _, u := range j.URIs {
		ci.Uris = append(ci.Uris, &mesos.CommandInfo_URI{Value: proto.String(u), Extract: proto.Bool(true)})
	}
	for _, f := range j.Fetch {
		ci.Uris = append(ci.Uris, &mesos.CommandInfo_URI{Value: proto.String(f.URI), Executable: proto.Bool(f.Executable),
			Extract: proto.Bool(f.Extract), Cache: proto.Bool(f.Cache)})
	}
	return ci
}

// remoteExecutable says whether command is a URL to fetch and run, as
// Chronos takes an http(s) URL (with nothing after it), and gives the
// shell command that runs it from the sandbox: the file's name, quoted.
// (Chronos takes any command starting "http" so; a command like "httpd -k
// graceful" is a command here. Its ftp URLs are not taken: the agents'
// fetcher has no ftp.)
func remoteExecutable(command string) (string, bool) {
	u, err := url.Parse(command)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.ContainsAny(command, " \t\n") {
		return "", false
	}
	name := path.Base(u.Path)
	if name == "/" || name == "." || name == "" {
		return "", false
	}
	return "'./" + strings.ReplaceAll(name, "'", `'\''`) + "'", true
}

// containerInfo is the job's docker container, if it has one.
func containerInfo(j *Job) *mesos.ContainerInfo {
	c := j.Container
	if c == nil {
		return nil
	}
	if strings.EqualFold(c.Type, "MESOS") {
		return &mesos.ContainerInfo{Type: mesos.ContainerInfo_MESOS.Enum(),
			Mesos: &mesos.ContainerInfo_MesosInfo{Image: &mesos.Image{Type: mesos.Image_DOCKER.Enum(),
				Docker: &mesos.Image_Docker{Name: proto.String(c.Image)}}}}
	}
	d := &mesos.ContainerInfo_DockerInfo{Image: proto.String(c.Image), ForcePullImage: proto.Bool(c.ForcePullImage)}
	switch strings.ToUpper(c.Network) {
	case "BRIDGE":
		d.Network = mesos.ContainerInfo_DockerInfo_BRIDGE.Enum()
	case "NONE":
		d.Network = mesos.ContainerInfo_DockerInfo_NONE.Enum()
	case "USER":
		d.Network = mesos.ContainerInfo_DockerInfo_USER.Enum()
	default:
		d.Network = mesos.ContainerInfo_DockerInfo_HOST.Enum()
	}
	for _, p := range c.Parameters {
		d.Parameters = append(d.Parameters, &mesos.Parameter{Key: proto.String(p.Key), Value: proto.String(p.Value)})
	}
	ci := &mesos.ContainerInfo{Type: mesos.ContainerInfo_DOCKER.Enum(), Docker: d}
	for _, v := range c.Volumes {
		mode := mesos.Volume_RW.Enum()
		if strings.EqualFold(v.Mode, "RO") {
			mode = mesos.Volume_RO.Enum()
		}
		ci.Volumes = append(ci.Volumes, &mesos.Volume{ContainerPath: proto.String(v.ContainerPath), HostPath: proto.String(v.HostPath), Mode: mode})
	}
	return ci
}

// retryBackoff is the wait before attempt (1, 2, ...): RetryBackoff,
// doubling with each attempt, at most MaxRetryBackoff.
func (s *Service) retryBackoff(attempt int) time.Duration {
	d := s.cfg.RetryBackoff
	for i := 1; i < attempt && d < MaxRetryBackoff; i++ {
		d *= 2
	}
	return min(d, MaxRetryBackoff)
}

// MarkSuccess records a success of the named job as if a run had
// finished, and starts the jobs that depend on it
// (PUT /scheduler/job/success/{name}).
func (s *Service) MarkSuccess(ctx context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	j, ok := s.jobs[name]
	if !ok {
		return errNoJob(name)
	}
	now := time.Now()
	next := *j
	next.SuccessCount++
	next.ErrorsSinceSuccess = 0
	next.LastSuccess = now.UTC().Format(timeFormat)
	if _, err := s.recordLocked(ctx, j, &next, nil, true, now); err != nil {
		return err
	}
	return nil
}

// recordLocked stores next as the job j was, with extra, and the runs of
// the dependents it starts when succeeded, in one Apply; then it queues
// those runs.
func (s *Service) recordLocked(ctx context.Context, j, next *Job, extra []frameworks.Op, succeeded bool, now time.Time) ([]*run, error) {
	op, err := jobOp(next)
	if err != nil {
		return nil, err
	}
	ops := append([]frameworks.Op{op}, extra...)
	s.jobs[j.Name] = next // the dependents look at their parents' results
	var deps []*run
	if succeeded {
		deps = s.dependentsLocked(j.Name, now)
		for _, r := range deps {
			ops = append(ops, putRun(r))
		}
	}
	if err := s.applyLocked(ctx, ops); err != nil {
		s.jobs[j.Name] = j
		return nil, fmt.Errorf("storing job %s: %w", j.Name, err)
	}
	for _, r := range deps {
		s.runs.triggered[r.job] = now
		s.log.Info("parents succeeded; starting the dependent job", "job", r.job, "parents", s.jobs[r.job].Parents)
		s.queueLocked(r)
	}
	return deps, nil
}

// LaunchFailed implements frameworks.Scheduler: the runs go back to the
// queue.
func (s *Service) LaunchFailed(ctx context.Context, tasks []*mesos.TaskInfo, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ops []frameworks.Op
	for _, t := range tasks {
		if r := s.runs.byTask[t.GetTaskId().GetValue()]; r != nil {
			delete(s.runs.byTask, r.taskID)
			if r.stopped {
				ops = append(ops, dropRun(r))
				continue
			}
			r.state, r.taskID, r.agentID = runQueued, "", ""
			s.runs.queue = append(s.runs.queue, r)
			ops = append(ops, putRun(r))
		}
	}
	if err := s.applyLocked(ctx, ops); err != nil {
		// The stored task ids are reconciled after a restart: the master
		// does not know them, and the runs are queued again then.
		s.log.Warn("cannot store the runs queued again", "err", err)
	}
}

// timeFormat is how Chronos writes lastSuccess and lastError.
const timeFormat = "2006-01-02T15:04:05.000Z"

// Update implements frameworks.Scheduler: it moves the run along its
// states and records the result in the job before acknowledging.
func (s *Service) Update(ctx context.Context, st *mesos.TaskStatus, ack func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, state := st.GetTaskId().GetValue(), st.GetState()
	r := s.runs.byTask[id]
	if r == nil && !mesos.IsTerminal(state) {
		// A run of ours from before runs were stored (reconciliation
		// tells of it): adopt it, so that its end is counted and no
		// second run starts beside it.
		if name, attempt, ok := ParseTaskID(id); ok && s.jobs[name] != nil {
			r = &run{id: "adopted:" + id, job: name, taskID: id, attempt: attempt, agentID: st.GetAgentId().GetValue(), state: runLaunching, queuedAt: time.Now()}
			s.runs.byTask[id] = r
			s.log.Info("adopted a run from before a restart", "job", name, "task_id", id, "state", state)
		}
	}
	if r == nil {
		if !mesos.IsTerminal(state) {
			s.log.Warn("killing a task no run stands for", "task_id", id, "state", state)
			s.driver.Kill(id, st.GetAgentId().GetValue())
		}
		ack()
		return
	}
	if !mesos.IsTerminal(state) {
		if state == mesos.TaskState_TASK_RUNNING {
			if r.state != runRunning {
				r.startedAt = time.Now()
			}
			r.state = runRunning
		}
		ack()
		return
	}
	j := s.jobs[r.job]
	if r.state == runLaunching && !r.stopped && j != nil && st.GetReason() == mesos.TaskStatus_REASON_RECONCILIATION &&
		(state == mesos.TaskState_TASK_LOST || state == mesos.TaskState_TASK_DROPPED) {
		// Stored as launched by a previous leader (or before a restart)
		// but unknown to the master: its launch never arrived. Queue it
		// again rather than count a failure.
		s.log.Info("a run's launch never reached the master; queueing it again", "job", r.job, "task_id", id)
		delete(s.runs.byTask, id)
		r.state, r.taskID, r.agentID = runQueued, "", ""
		if err := s.store.Apply(ctx, putRun(r)); err != nil {
			s.log.Warn("cannot store the run queued again", "job", r.job, "err", err)
		}
		s.queueLocked(r)
		ack()
		return
	}
	if r.stopped || j == nil {
		if err := s.store.Apply(ctx, dropRun(r)); err != nil {
			s.log.Warn("cannot drop a stopped run; the agent sends its end again", "task_id", id, "err", err)
			return
		}
		delete(s.runs.byTask, id)
		ack()
		return
	}
	if r.state == runAwaiting {
		ack() // the end of its task again (a resend)
		return
	}
	if state == mesos.TaskState_TASK_FINISHED && j.Async {
		// An async job's task only started the work: the run lasts until
		// the job reports how it ended.
		r.state = runAwaiting
		if err := s.store.Apply(ctx, putRun(r)); err != nil {
			r.state = runRunning
			s.log.Warn("cannot store the run awaiting completion; the agent sends its end again", "job", j.Name, "task_id", id, "err", err)
			return
		}
		s.log.Info("async run's task finished; awaiting the job's report", "job", j.Name, "task_id", id)
		ack()
		return
	}
	if s.finishRunLocked(ctx, r, j, state == mesos.TaskState_TASK_FINISHED, state.String(), st.GetMessage()) {
		ack()
	}
}

// finishRunLocked counts the end of run r of job j: a success, or a
// failure that is retried while j has retries left, else counted (and
// notified, and the job disabled after --disable_after_failures). It
// reports false when the store refused the change (the caller keeps the
// update unacknowledged, so it comes again).
func (s *Service) finishRunLocked(ctx context.Context, r *run, j *Job, succeeded bool, state, message string) bool {
	id := r.taskID
	now := time.Now()
	next := *j
	disabledNow := false
	if succeeded {
		next.SuccessCount++
		next.ErrorsSinceSuccess = 0
		next.LastSuccess = now.UTC().Format(timeFormat)
	} else {
		if r.attempt < j.Retries {
			retry := s.newRunLocked(j, r.attempt+1, r.args, now)
			retry.notBefore = now.Add(s.retryBackoff(r.attempt + 1))
			if err := s.store.Apply(ctx, putRun(retry), dropRun(r)); err != nil {
				s.log.Warn("cannot store the retry; the agent sends the failure again", "job", j.Name, "task_id", id, "err", err)
				return false
			}
			s.log.Info("run failed; retrying", "job", j.Name, "task_id", id, "state", state, "attempt", r.attempt+1, "retries", j.Retries, "message", message)
			delete(s.runs.byTask, id)
			r.state = runFailed
			s.noteRunLocked(r, state, false, now)
			s.queueLocked(retry)
			return true
		}
		next.ErrorCount++
		next.ErrorsSinceSuccess++
		next.LastError = now.UTC().Format(timeFormat)
		if n := s.cfg.DisableAfterFailures; n > 0 && next.ErrorsSinceSuccess >= int64(n) && !next.Disabled {
			next.Disabled, disabledNow = true, true
		}
	}
	// A softError job's failure starts its dependents as a success would.
	if _, err := s.recordLocked(ctx, j, &next, []frameworks.Op{dropRun(r)}, succeeded || j.SoftError, now); err != nil {
		s.log.Warn("cannot record the run's result; the agent sends it again", "job", j.Name, "task_id", id, "err", err)
		return false
	}
	delete(s.runs.byTask, id)
	if s.waiting[r.job] {
		s.poke() // its next run is due
	}
	r.state = runFailed
	if succeeded {
		r.state = runSucceeded
	}
	s.noteRunLocked(r, state, succeeded, now)
	s.log.Info("run ended", "job", j.Name, "task_id", id, "state", r.state, "task_state", state)
	if !succeeded {
		if disabledNow {
			s.log.Warn("job disabled after consecutive failures", "job", j.Name, "failures", next.ErrorsSinceSuccess, "disable_after_failures", s.cfg.DisableAfterFailures)
		}
		s.notifyFailure(next, id, state, message, disabledNow, now)
	}
	return true
}

// CompleteAsync is PUT /scheduler/task/{taskId}: an async job reports how
// the run of task id ended; statusCode 0 is a success.
func (s *Service) CompleteAsync(ctx context.Context, taskID string, statusCode int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.runs.byTask[taskID]
	if r == nil || r.state != runAwaiting {
		return errdefs.Classf(errdefs.ErrNotFound, "no run of task %q is awaiting its completion (only an async job's run whose task finished is)", taskID)
	}
	j := s.jobs[r.job]
	if j == nil {
		return errdefs.Classf(errdefs.ErrNotFound, "the job of task %q is gone", taskID)
	}
	state, msg := "TASK_FINISHED", ""
	if statusCode != 0 {
		state, msg = "TASK_FAILED", fmt.Sprintf("the job reported status %d", statusCode)
	}
	if !s.finishRunLocked(ctx, r, j, statusCode == 0, state, msg) {
		return errdefs.Classf(errdefs.ErrUnavailable, "cannot store the result of task %q; report it again", taskID)
	}
	return nil
}

// dependentsLocked makes (does not store or queue) a run of each job
// whose parents (parent among them) have all succeeded since the job was
// last started by them.
func (s *Service) dependentsLocked(parent string, now time.Time) []*run {
	if s.children == nil {
		// Rebuilt after a job was added, replaced or deleted: a scan of
		// every job at each run's end made ends quadratic.
		s.children = map[string][]string{}
		for name, c := range s.jobs {
			for _, p := range c.Parents {
				s.children[p] = append(s.children[p], name)
			}
		}
		for _, names := range s.children {
			slices.Sort(names)
		}
	}
	var out []*run
	for _, name := range s.children[parent] {
		c := s.jobs[name]
		if c == nil || c.Disabled || !slices.Contains(c.Parents, parent) {
			continue
		}
		since, ok := s.runs.triggered[c.Name]
		if !ok {
			since = latest(c.LastSuccess, c.LastError)
		}
		all := true
		for _, p := range c.Parents {
			pj := s.jobs[p]
			if pj == nil || !(latest(pj.LastSuccess).After(since) || pj.SoftError && latest(pj.LastError).After(since)) {
				all = false
				break
			}
		}
		if all {
			out = append(out, s.newRunLocked(c, 0, "", now))
		}
	}
	return out
}

// latest is the latest of Chronos times; the zero time for none.
func latest(times ...string) time.Time {
	var out time.Time
	for _, v := range times {
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil && t.After(out) {
			out = t
		}
	}
	return out
}

// String names a run in logs.
func (r *run) String() string { return fmt.Sprintf("%s#%d(%s)", r.job, r.attempt, r.state) }
