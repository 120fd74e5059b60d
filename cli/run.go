package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/duration"
	"github.com/mesolite/mesolite/scheduler"
)

const runSynopsis = `Usage: mesolite run --master=HOST:PORT --name=NAME --command=CMD [flags]

Runs one task on the cluster and follows it to its end, like Mesos's
mesos-execute: subscribes as a framework, waits for an offer with enough
resources (declining the others), launches the task, prints every state it
goes through with reason and message, where its sandbox is and the URL of
each host port it was given, and when it ends the last lines of its stdout
and stderr. Ctrl-C kills the task and tears the framework down. A request no
agent of the cluster could ever satisfy (more cpus than the largest agent
has, a resource no agent has) is refused with the reason.

Exit status, as docker run and timeout(1) have it:
  0        the task finished (TASK_FINISHED)
  N        the task's command exited with status N (TASK_FAILED)
  128+S    the task's command was ended by signal S
  137      the task was killed (TASK_KILLED: 'mesolite kill', an operator)
  124      --timeout passed; the task was killed
  130      interrupted (Ctrl-C); the task was killed
  1        any other end: the task failed without an exit status (lost,
           dropped, a limit, a launch failure), the request cannot be
           satisfied, the master refused or went away
  2        bad usage

Examples:
  mesolite run --name=hi --command='echo hi'
  mesolite run --name=web --docker_image=busybox --network=bridge \
      --port_mapping=31001:8080 --command='httpd -f -p 8080'
  mesolite run --name=x --executor_command=./my-executor \
      --uri=http://127.0.0.1:8000/my-executor,executable --command='echo hi'
  mesolite run --task=task.json
  mesolite run --task_group=group.json`

// killWait bounds how long an interrupted run waits for its task to
// report the kill before tearing the framework down anyway.
const killWait = 30 * time.Second

// Run is `mesolite run`.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("run", runSynopsis, stdout, stderr)
	master := c.masterFlag()
	var spec taskSpec
	c.StringVar(&spec.name, "name", "", "the task's name (required unless --task gives one)")
	// Not --task_id: MESOS_TASK_ID is set inside every Docker task, and a
	// run started from one must not inherit its id.
	c.StringVar(&spec.taskID, "id", "", "the task's id (default: the name and a random suffix)")
	c.StringVar(&spec.command, "command", "",
		"the command to run. With --executor_command it goes to the executor as the task's data")
	c.BoolVar(&spec.shell, "shell", true,
		"run the command with /bin/sh -c; with --shell=false it is split into words and run\n"+
			"directly (in a Docker container: passed to the image's ENTRYPOINT; no --command\n"+
			"runs the image's own ENTRYPOINT and CMD)")
	c.StringVar(&spec.resources, "resources", "cpus:0.1;mem:32",
		"what the task needs, in Mesos's form 'cpus:0.1;mem:32;disk:64;ports:[31000-31000]'\n"+
			"(name(role):value takes from a reservation), a JSON array of Resource objects,\n"+
			"or file:///path holding either")
	envs := c.StringList("env", "an environment variable NAME=VALUE for the command (repeatable), or a JSON\n"+
		"object of them as mesos-execute takes")
	uris := c.StringList("uri", "fetch URL into the sandbox before the task starts (repeatable), with options\n"+
		"URL[,executable][,extract=false][,cache][,output_file=NAME]: executable makes it\n"+
		"mode 0755 and skips extraction, extract=false keeps an archive as it is, cache\n"+
		"goes through the agent's fetcher cache, output_file names it in the sandbox")
	c.StringVar(&spec.executorCommand, "executor_command", "",
		"run the task under a custom executor started with this command (shell); the --uri\n"+
			"files are fetched for the executor and --command travels as the task's data")
	c.StringVar(&spec.dockerImage, "docker_image", "", "run the task in a Docker container of this image")
	c.StringVar(&spec.network, "network", "",
		"Docker network: host, bridge, none or user:NAME (default host, bridge with\n"+
			"--port_mapping)")
	pms := c.StringList("port_mapping", "publish a container port: HOST:CONTAINER[/tcp|/udp] (repeatable). The host\n"+
		"port is taken from the offer's ports; 0 picks any offered port")
	c.BoolVar(&spec.forcePullImage, "force_pull_image", false, "pull the Docker image even when the agent has it")
	c.BoolVar(&spec.privileged, "privileged", false, "run the Docker container privileged (the agent must allow it)")
	c.StringVar(&spec.taskFile, "task", "",
		"a file holding a Mesos v1 TaskInfo in JSON to launch as it is; task_id and agent_id\n"+
			"are filled in when absent (an agent_id pins the task to that agent), and\n"+
			"--resources applies when it has no resources")
	groupFile := c.String("task_group", "",
		"a file holding a Mesos v1 TaskGroupInfo in JSON (mesos-execute's --task_group):\n"+
			"its tasks, each read as a --task file and with a command, run together under the\n"+
			"default executor; the run follows all of them and exits 0 only when all finished")
	fwName := c.String("framework_name", "mesolite-run", "the framework's name")
	role := c.String("role", "*", "the role the framework subscribes with")
	user := c.String("user", "", "the Unix user the task runs as (default: yours)")
	checkpoint := c.Bool("checkpoint", true, "ask agents to checkpoint the task so it survives an agent restart\n"+
		"(FrameworkInfo.checkpoint; --checkpoint=false: the task ends with its agent, TASK_LOST)")
	timeout := c.Duration("timeout", 0, "give up, killing the task, after this long (e.g. 5mins; 0: no limit)")
	outputLines := c.Int("output_lines", 10, "when the task ends, print the last N lines of its stdout and stderr\n"+
		"(0: print none)")
	contentType := c.String("content_type", codec.MediaTypeJSON,
		"encoding of the scheduler API: application/json or application/x-protobuf")

	pos, code, stop := c.parse(args)
	if stop {
		return code
	}
	if len(pos) > 0 {
		return c.usageError("unexpected argument %q", pos[0])
	}
	spec.env, spec.uris, spec.portMappings = *envs, *uris, *pms
	var tmpl *taskTemplate
	var group *groupTemplate
	var err error
	if *groupFile != "" {
		if spec.taskFile != "" {
			return c.usageError("--task and --task_group cannot be combined")
		}
		spec.taskFile = *groupFile
		if group, err = groupFromFile(spec); err != nil {
			return c.usageError("%v", err)
		}
		tmpl = group.tasks[0] // names the run in messages
	} else if tmpl, err = buildTask(spec); err != nil {
		return c.usageError("%v", err)
	}
	cdc, err := codecFor(*contentType)
	if err != nil {
		return c.usageError("%v", err)
	}

	fw := &mesos.FrameworkInfo{
		Name: mesos.Ptr(*fwName),
		User: mesos.Ptr(*user),
		Role: mesos.Ptr(*role),
		Capabilities: []*mesos.FrameworkInfo_Capability{
			{Type: mesos.FrameworkInfo_Capability_TASK_KILLING_STATE.Enum()},
			{Type: mesos.FrameworkInfo_Capability_PARTITION_AWARE.Enum()},
		},
		// Says that the framework exists for this one task: `mesolite
		// kill` may tear it down to kill the task.
		Labels: &mesos.Labels{Labels: []*mesos.Label{{Key: mesos.Ptr(runLabel), Value: mesos.Ptr(tmpl.task.GetTaskId().GetValue())}}},
	}
	if *checkpoint {
		fw.Checkpoint = mesos.Ptr(true)
	}
	if h, err := os.Hostname(); err == nil {
		fw.Hostname = mesos.Ptr(h)
	}

	r := &runner{cmd: c, out: stdout, masterFlag: *master, tmpl: tmpl, group: group, reported: map[string]bool{}, outputLines: *outputLines}
	return r.run(c.context(ctx), scheduler.Config{Master: *master, Framework: fw, Codec: cdc, Logger: c.logger(), Principal: c.principal, Secret: c.secret, TLS: c.tls()}, *timeout)
}

func codecFor(s string) (codec.Codec, error) {
	switch strings.ToLower(s) {
	case "json", codec.MediaTypeJSON:
		return codec.JSON, nil
	case "protobuf", codec.MediaTypeProtobuf:
		return codec.Protobuf, nil
	}
	return nil, invalid("--content_type=%s: want %s or %s", s, codec.MediaTypeJSON, codec.MediaTypeProtobuf)
}

// runner follows one task through its life.
type runner struct {
	cmd        *command
	out        io.Writer
	masterFlag string
	tmpl       *taskTemplate
	client     *scheduler.Client

	subscribed bool
	task       *mesos.TaskInfo // set once launched
	last       *mesos.TaskStatus
	reported   map[string]bool // agents whose offers were too small, said once
	// lastFitCheck is when the run last asked whether any agent could
	// ever fit the task, unfit how many times in a row the answer was no,
	// and fitRecheck fires the next question (see checkSatisfiable).
	lastFitCheck time.Time
	unfit        int
	fitRecheck   <-chan time.Time
	// agent is the HTTP address of the agent the task was launched on;
	// outputLines how much of its output to print at the end.
	agent       string
	outputLines int
	// unknown counts reconciliation answers TASK_UNKNOWN in a row, and
	// recheck fires the next reconciliation after one (see update).
	unknown int
	recheck <-chan time.Time
	// removed is set once the master said the framework is gone (an
	// ERROR event).
	removed bool
	// uncertain is set while it is unknown whether the master got the
	// ACCEPT of task (it went away during the call).
	uncertain bool

	// group, for --task_group: the group to launch; groupTasks its tasks
	// once launched (task is the first of them), groupLast the latest
	// status of each.
	group         *groupTemplate
	groupTasks    []*mesos.TaskInfo
	groupLast     map[string]*mesos.TaskStatus
	groupExecutor string // the group's executor, whose sandbox holds the tasks' own
}

// unknownRechecks is how many TASK_UNKNOWN answers in a row, spaced by
// unknownBackoff doubling, the run accepts before it believes the master
// lost the task: right after a failover a master may not know a task whose
// agent has not come back yet (a master that knows the agent stays silent,
// one that does not says TASK_UNKNOWN), and ending the run would kill it.
const unknownRechecks = 4

var unknownBackoff = 5 * time.Second

func (r *runner) taskID() string { return r.tmpl.task.GetTaskId().GetValue() }

func (r *runner) run(ctx context.Context, cfg scheduler.Config, timeout time.Duration) int {
	// The subscription must outlive ctx: after Ctrl-C the task is killed,
	// and calls need a live subscription.
	life, stopClient := context.WithCancel(context.WithoutCancel(ctx))
	defer stopClient()
	// Until subscribed, though, Ctrl-C just stops.
	unhook := context.AfterFunc(ctx, stopClient)
	client, err := scheduler.Subscribe(life, cfg)
	if interrupted := !unhook(); interrupted {
		if err == nil {
			client.Close()
		}
		return r.cmd.fail("interrupted while subscribing")
	}
	if err != nil {
		return r.cmd.fail("%v", err)
	}
	r.client = client
	defer client.Close()

	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	for {
		select {
		case ev, ok := <-client.Events():
			if !ok {
				return r.cmd.fail("lost the master: %v", client.Err())
			}
			if code, done := r.handle(life, ev); done {
				r.printOutput(life)
				r.teardown(life)
				return code
			}
		case <-r.fitRecheck:
			if code, done := r.checkSatisfiable(life, true); done {
				r.teardown(life)
				return code
			}
		case <-r.recheck:
			r.recheck = nil
			if err := r.client.Reconcile(life, scheduler.ReconcileTask(r.taskID(), r.task.GetAgentId().GetValue())); err != nil {
				r.printf("reconciling: %v\n", err)
			}
		case <-ctx.Done():
			return r.abort(life, "interrupted", exitInterrupted)
		case <-deadline:
			return r.abort(life, "timed out after "+duration.Format(timeout), exitTimeout)
		}
	}
}

// handle acts on one event and says whether the run is over, with its
// exit status.
func (r *runner) handle(ctx context.Context, ev *schedv1.Event) (int, bool) {
	switch ev.GetType() {
	case schedv1.Event_SUBSCRIBED:
		if !r.subscribed {
			r.subscribed = true
			r.printf("subscribed to master %s as framework %s\n", r.client.Master(), r.client.FrameworkID())
			r.printf("waiting for an offer with %s\n", r.wantText())
			return 0, false
		}
		r.printf("re-subscribed to master %s\n", r.client.Master())
		if r.task != nil {
			// Updates sent while we were away may be lost: ask.
			if err := r.client.Reconcile(ctx, r.reconcileTasks()...); err != nil {
				r.printf("reconciling: %v\n", err)
			}
		}
	case schedv1.Event_OFFERS:
		if r.group != nil {
			return r.groupOffers(ctx, ev.GetOffers().GetOffers())
		}
		return r.offers(ctx, ev.GetOffers().GetOffers())
	case schedv1.Event_UPDATE:
		if r.group != nil {
			return r.groupUpdate(ev.GetUpdate().GetStatus())
		}
		return r.update(ev.GetUpdate().GetStatus())
	case schedv1.Event_FAILURE:
		f := ev.GetFailure()
		if r.task != nil && f.GetAgentId().GetValue() == r.task.GetAgentId().GetValue() {
			if f.ExecutorId != nil {
				// An executor that exits 0 did so after the agent took its
				// task's last update, which follows (updates wait for the
				// previous one's acknowledgement, the executor does not):
				// only an abnormal end is news.
				if f.GetStatus() != 0 {
					r.printf("executor %s on agent %s terminated (status %d)\n", f.GetExecutorId().GetValue(), f.GetAgentId().GetValue(), f.GetStatus())
				}
			} else {
				r.printf("agent %s was lost\n", f.GetAgentId().GetValue())
			}
		}
	case schedv1.Event_ERROR:
		r.removed = true
		if r.task != nil && (r.last == nil || !terminal(r.last.GetState())) {
			// An operator's TEARDOWN (what `mesolite kill` does to a run's
			// task): the framework is gone, and its task killed with it.
			r.printf("the master removed the framework: %s; task %s is killed with it\n", ev.GetError().GetMessage(), r.taskID())
			return exitKilled, true
		}
		return r.cmd.fail("the master sent an error: %s", ev.GetError().GetMessage()), true
	}
	return 0, false
}

func (r *runner) wantText() string {
	if r.group != nil {
		return describeResources(r.group.want())
	}
	s := describeResources(r.tmpl.want)
	if r.tmpl.pickPorts > 0 {
		s += fmt.Sprintf(" and %d free port(s)", r.tmpl.pickPorts)
	}
	return s
}

// offers launches the task on the first offer it fits and declines the
// rest.
func (r *runner) offers(ctx context.Context, offers []*mesos.Offer) (int, bool) {
	var decline []*mesos.OfferID
	for _, o := range offers {
		if r.task != nil {
			decline = append(decline, o.GetId())
			continue
		}
		task, err := r.tmpl.forOffer(o, r.client.FrameworkID())
		if err != nil {
			if !r.reported[o.GetAgentId().GetValue()] {
				r.reported[o.GetAgentId().GetValue()] = true
				r.printf("offer from %s does not fit: %v\n", o.GetHostname(), strings.TrimPrefix(err.Error(), errNoFit.Error()+": "))
			}
			decline = append(decline, o.GetId())
			continue
		}
		if err := r.client.Launch(ctx, o, task); err != nil {
			if !errors.Is(err, errdefs.ErrUnavailable) {
				return r.cmd.fail("launching task %s: %v", r.taskID(), err), true
			}
			// The master went away with the ACCEPT (a failover): it may
			// or may not have launched the task. Reconciliation after
			// the re-subscription tells; a launch that never happened is
			// tried again on a new offer (see update).
			r.printf("the master went away while launching task %s (%v); will ask the next leader\n", r.taskID(), err)
			r.task, r.uncertain = task, true
			continue
		}
		r.task = task
		r.printf("launching task %s on agent %s (%s) with %s\n", r.taskID(), o.GetAgentId().GetValue(), o.GetHostname(), describeResources(task.GetResources()))
		r.printSandbox(ctx, o)
		r.printPorts(task)
		// One task is all we want: stop the offers.
		if err := r.client.Suppress(ctx); err != nil {
			r.printf("suppressing offers: %v\n", err)
		}
	}
	if len(decline) > 0 {
		var filters *mesos.Filters
		if r.task != nil {
			filters = scheduler.RefuseFor(time.Hour)
		}
		if err := r.client.Decline(ctx, filters, decline...); err != nil && !errors.Is(err, context.Canceled) {
			r.printf("declining offers: %v\n", err)
		}
	}
	if r.task == nil && len(decline) > 0 {
		return r.checkSatisfiable(ctx, false)
	}
	return 0, false
}

// printSandbox says where the task's files are: the agent's address, the
// virtual path of the files API, a URL to read stdout and the logs command.
func (r *runner) printSandbox(ctx context.Context, o *mesos.Offer) {
	agent := r.agentAddr(ctx, o)
	r.agent = agent
	dir := sandboxPath(r.client.FrameworkID(), r.tmpl.executorID())
	r.printf("sandbox: agent %s, path %s\n", agent, dir)
	r.printf("  stdout: %s\n", filesURL(transportOf(ctx).scheme(), agent, "read", dir+"/stdout", "offset=0"))
	r.printf("  logs:   mesolite logs --master=%s %s\n", r.masterFlag, r.taskID())
}

// agentAddr finds the agent's HTTP address: the offer's url when the
// master sets it, else the agent's pid in /master/state, else the offer's
// hostname and the default agent port.
func (r *runner) agentAddr(ctx context.Context, o *mesos.Offer) string {
	if a := o.GetUrl().GetAddress(); a.GetPort() != 0 {
		host := a.GetIp()
		if host == "" {
			host = a.GetHostname()
		}
		if host != "" {
			return net.JoinHostPort(host, strconv.Itoa(int(a.GetPort())))
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if st, err := getState(sctx, r.client.Master()); err == nil {
		for i := range st.Slaves {
			if st.Slaves[i].ID == o.GetAgentId().GetValue() {
				return st.Slaves[i].agentAddr()
			}
		}
	}
	return net.JoinHostPort(o.GetHostname(), "5051")
}

// update prints a status of our task and ends the run at a terminal one.
func (r *runner) update(st *mesos.TaskStatus) (int, bool) {
	if st.GetTaskId().GetValue() != r.taskID() {
		return 0, false
	}
	if r.uncertain {
		switch st.GetState() {
		case mesos.TaskState_TASK_UNKNOWN, mesos.TaskState_TASK_GONE, mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_DROPPED:
			if st.GetReason() == mesos.TaskStatus_REASON_RECONCILIATION {
				r.printf("task %s was never launched; waiting for a new offer\n", r.taskID())
				r.task, r.uncertain = nil, false
				if err := r.client.Revive(context.Background()); err != nil {
					r.printf("reviving offers: %v\n", err)
				}
				return 0, false
			}
		}
		r.uncertain = false
	}
	if st.GetState() == mesos.TaskState_TASK_UNKNOWN && st.GetReason() == mesos.TaskStatus_REASON_RECONCILIATION && r.task != nil {
		r.unknown++
		if r.unknown < unknownRechecks {
			wait := unknownBackoff << (r.unknown - 1)
			r.printf("the master does not know task %s (yet); asking again in %s\n", r.taskID(), duration.Format(wait))
			r.recheck = time.After(wait)
			return 0, false
		}
	} else {
		r.unknown = 0
	}
	// The agent resends an update until it is acknowledged, and a
	// reconciliation repeats the latest: print each change once.
	if r.last == nil || r.last.GetState() != st.GetState() || r.last.GetMessage() != st.GetMessage() {
		r.printf("%s\n", formatStatus(st))
		if ips := containerIPs(st); st.GetState() == mesos.TaskState_TASK_RUNNING && len(ips) > 0 {
			r.printf("  container address: %s\n", strings.Join(ips, ", "))
		}
	}
	r.last = st
	if !terminal(st.GetState()) {
		return 0, false
	}
	return exitCode(st), true
}

// formatStatus is `STATE: message (reason: R, source: S)`.
func formatStatus(st *mesos.TaskStatus) string {
	var b strings.Builder
	b.WriteString(st.GetState().String())
	if m := strings.TrimSpace(st.GetMessage()); m != "" {
		b.WriteString(": " + m)
	}
	var extra []string
	if st.Reason != nil {
		extra = append(extra, "reason: "+st.GetReason().String())
	}
	if st.Source != nil {
		extra = append(extra, "source: "+st.GetSource().String())
	}
	if len(extra) > 0 {
		b.WriteString(" (" + strings.Join(extra, ", ") + ")")
	}
	return b.String()
}

func containerIPs(st *mesos.TaskStatus) []string {
	var ips []string
	for _, ni := range st.GetContainerStatus().GetNetworkInfos() {
		for _, ip := range ni.GetIpAddresses() {
			if ip.GetIpAddress() != "" {
				ips = append(ips, ip.GetIpAddress())
			}
		}
	}
	return ips
}

// terminal reports whether a task in state s is over for good. Unreachable
// tasks may come back; TASK_UNKNOWN means the master forgot the task.
func terminal(s mesos.TaskState) bool {
	switch s {
	case mesos.TaskState_TASK_FINISHED, mesos.TaskState_TASK_FAILED, mesos.TaskState_TASK_KILLED,
		mesos.TaskState_TASK_ERROR, mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_DROPPED,
		mesos.TaskState_TASK_GONE, mesos.TaskState_TASK_GONE_BY_OPERATOR, mesos.TaskState_TASK_UNKNOWN:
		return true
	}
	return false
}

// abort ends a run early: kills the task if it runs, waits a while for it
// to say it is gone, and tears the framework down.
func (r *runner) abort(ctx context.Context, why string, code int) int {
	if r.group != nil {
		return r.abortGroup(ctx, why, code)
	}
	if r.task == nil || (r.last != nil && terminal(r.last.GetState())) {
		r.printf("%s; tearing down\n", why)
		r.teardown(ctx)
		return code
	}
	r.printf("%s; killing task %s\n", why, r.taskID())
	kctx, cancel := context.WithTimeout(ctx, killWait)
	defer cancel()
	if err := r.client.Kill(kctx, r.task.GetTaskId(), r.task.GetAgentId()); err != nil {
		r.printf("killing: %v\n", err)
	} else {
	wait:
		for {
			select {
			case ev, ok := <-r.client.Events():
				if !ok {
					break wait
				}
				if ev.GetType() == schedv1.Event_UPDATE {
					if _, done := r.update(ev.GetUpdate().GetStatus()); done {
						break wait
					}
				}
			case <-kctx.Done():
				r.printf("no terminal state within %s; tearing down\n", duration.Format(killWait))
				break wait
			}
		}
	}
	r.printOutput(ctx)
	r.teardown(ctx)
	return code
}

// teardown removes the framework; the master kills whatever is left.
func (r *runner) teardown(ctx context.Context) {
	if r.removed {
		return // the master removed the framework already
	}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.client.Teardown(tctx); err != nil {
		r.printf("tearing down framework %s: %v\n", r.client.FrameworkID(), err)
	}
}

func (r *runner) printf(format string, args ...any) {
	fmt.Fprintf(r.out, format, args...)
}

// reconcileTasks names the run's launched tasks for a reconciliation.
func (r *runner) reconcileTasks() []*schedv1.Call_Reconcile_Task {
	if r.group == nil {
		return []*schedv1.Call_Reconcile_Task{scheduler.ReconcileTask(r.taskID(), r.task.GetAgentId().GetValue())}
	}
	var out []*schedv1.Call_Reconcile_Task
	for _, t := range r.groupTasks {
		out = append(out, scheduler.ReconcileTask(t.GetTaskId().GetValue(), t.GetAgentId().GetValue()))
	}
	return out
}

// groupOffers launches the group (LAUNCH_GROUP) on the first offer it
// fits whole and declines the rest.
func (r *runner) groupOffers(ctx context.Context, offers []*mesos.Offer) (int, bool) {
	var decline []*mesos.OfferID
	for _, o := range offers {
		if r.task != nil {
			decline = append(decline, o.GetId())
			continue
		}
		ex, tasks, err := r.group.forOffer(o, r.client.FrameworkID())
		if err != nil {
			if !r.reported[o.GetAgentId().GetValue()] {
				r.reported[o.GetAgentId().GetValue()] = true
				r.printf("offer from %s does not fit the group: %v\n", o.GetHostname(), err)
			}
			decline = append(decline, o.GetId())
			continue
		}
		op := &mesos.Offer_Operation{
			Type:        mesos.Offer_Operation_LAUNCH_GROUP.Enum(),
			LaunchGroup: &mesos.Offer_Operation_LaunchGroup{Executor: ex, TaskGroup: &mesos.TaskGroupInfo{Tasks: tasks}},
		}
		if err := r.client.Accept(ctx, []*mesos.OfferID{o.GetId()}, []*mesos.Offer_Operation{op}, nil); err != nil {
			// Unlike a single task's, a group's launch the master may or
			// may not have had is not retried: the run ends, and says so.
			return r.cmd.fail("launching the task group: %v", err), true
		}
		r.task, r.groupTasks, r.groupLast = tasks[0], tasks, map[string]*mesos.TaskStatus{}
		r.groupExecutor = ex.GetExecutorId().GetValue()
		agent := r.agentAddr(ctx, o)
		r.agent = agent
		dir := sandboxPath(r.client.FrameworkID(), ex.GetExecutorId().GetValue())
		r.printf("launching a group of %d task(s) under executor %s on agent %s (%s)\n", len(tasks), ex.GetExecutorId().GetValue(), o.GetAgentId().GetValue(), o.GetHostname())
		for _, t := range tasks {
			id := t.GetTaskId().GetValue()
			r.printf("  task %s with %s\n", id, describeResources(t.GetResources()))
			r.printf("    stdout: %s\n", filesURL(transportOf(ctx).scheme(), agent, "read", dir+"/tasks/"+id+"/stdout", "offset=0"))
		}
		if err := r.client.Suppress(ctx); err != nil {
			r.printf("suppressing offers: %v\n", err)
		}
	}
	if len(decline) > 0 {
		var filters *mesos.Filters
		if r.task != nil {
			filters = scheduler.RefuseFor(time.Hour)
		}
		if err := r.client.Decline(ctx, filters, decline...); err != nil && !errors.Is(err, context.Canceled) {
			r.printf("declining offers: %v\n", err)
		}
	}
	if r.task == nil && len(decline) > 0 {
		return r.checkSatisfiable(ctx, false)
	}
	return 0, false
}

// groupUpdate prints a status of one of the group's tasks, prefixed with
// its id, and ends the run once every task is terminal: 0 when all
// finished.
func (r *runner) groupUpdate(st *mesos.TaskStatus) (int, bool) {
	id := st.GetTaskId().GetValue()
	known := false
	for _, t := range r.groupTasks {
		known = known || t.GetTaskId().GetValue() == id
	}
	if !known {
		return 0, false
	}
	if last := r.groupLast[id]; last == nil || last.GetState() != st.GetState() || last.GetMessage() != st.GetMessage() {
		r.printf("%s: %s\n", id, formatStatus(st))
	}
	r.groupLast[id] = st
	// The group's status is its first failed task's (in the group's
	// order): the executor kills the others when one fails, and their
	// TASK_KILLED says less than the failure.
	code, killed := exitOK, exitOK
	for _, t := range r.groupTasks {
		last := r.groupLast[t.GetTaskId().GetValue()]
		if last == nil || !terminal(last.GetState()) {
			return 0, false
		}
		c := exitCode(last)
		switch {
		case last.GetState() == mesos.TaskState_TASK_KILLED:
			killed = cmp.Or(killed, c)
		default:
			code = cmp.Or(code, c)
		}
	}
	return cmp.Or(code, killed), true
}

// abortGroup ends a group's run early: kills its tasks that still run
// (the executor kills the rest of the group with the first), waits a
// while for them to end, and tears the framework down.
func (r *runner) abortGroup(ctx context.Context, why string, code int) int {
	var running []*mesos.TaskInfo
	for _, t := range r.groupTasks {
		if last := r.groupLast[t.GetTaskId().GetValue()]; last == nil || !terminal(last.GetState()) {
			running = append(running, t)
		}
	}
	if len(running) == 0 {
		r.printf("%s; tearing down\n", why)
		r.teardown(ctx)
		return code
	}
	r.printf("%s; killing the task group\n", why)
	kctx, cancel := context.WithTimeout(ctx, killWait)
	defer cancel()
	for _, t := range running {
		if err := r.client.Kill(kctx, t.GetTaskId(), t.GetAgentId()); err != nil {
			r.printf("killing %s: %v\n", t.GetTaskId().GetValue(), err)
		}
	}
wait:
	for {
		select {
		case ev, ok := <-r.client.Events():
			if !ok {
				break wait
			}
			if ev.GetType() == schedv1.Event_UPDATE {
				if _, done := r.groupUpdate(ev.GetUpdate().GetStatus()); done {
					break wait
				}
			}
		case <-kctx.Done():
			r.printf("no terminal state within %s; tearing down\n", duration.Format(killWait))
			break wait
		}
	}
	r.printOutput(ctx)
	r.teardown(ctx)
	return code
}
