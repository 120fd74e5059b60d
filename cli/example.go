package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/resources"
	"github.com/mesolite/mesolite/scheduler"
	"google.golang.org/protobuf/proto"
)

const exampleSynopsis = `Usage: mesolite example-framework --master=HOST:PORT --image=IMAGE [--instances=N] [flags]

Keeps N Docker containers of an image running, like the ExampleFramework of
the classic Mesos and Docker tutorial: it launches containers on offers until
N run, relaunches one whenever a container ends (in any terminal state,
'docker kill' included), declines the offers it does not need, reconciles
its tasks after re-subscribing to a master, and logs every state change.
Ctrl-C tears the framework down, which stops the containers.`

// ExampleFramework is `mesolite example-framework`.
func ExampleFramework(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := newCommand("example-framework", exampleSynopsis, stdout, stderr)
	master := c.masterFlag()
	image := c.String("image", "", "the Docker image to keep running (required)")
	instances := c.Int("instances", 1, "how many containers to keep running")
	cpus := c.Float64("cpus", 0.1, "cpus for each container")
	mem := c.Float64("mem", 32, "memory for each container, in MB")
	command := c.String("command", "", "run this with /bin/sh -c in each container (default: the image's own\n"+
		"ENTRYPOINT and CMD)")
	network := c.String("network", "host", "Docker network of the containers: host, bridge, none or user:NAME")
	refuse := c.Float64("refuse_seconds", 5,
		"seconds that declined offers stay away (Filters.refuse_seconds)")
	fwName := c.String("framework_name", "mesolite-example", "the framework's name")
	role := c.String("role", "*", "the role the framework subscribes with")
	pos, code, stop := c.parse(args)
	if stop {
		return code
	}
	switch {
	case len(pos) > 0:
		return c.usageError("unexpected argument %q", pos[0])
	case *image == "":
		return c.usageError("--image is required")
	case *instances < 0:
		return c.usageError("--instances must not be negative")
	case *refuse < 0:
		return c.usageError("--refuse_seconds must not be negative")
	}
	spec := taskSpec{
		name:        "instance",
		command:     *command,
		shell:       *command != "",
		resources:   fmt.Sprintf("cpus:%g;mem:%g", *cpus, *mem),
		dockerImage: *image,
		network:     *network,
	}
	if _, err := buildTask(spec); err != nil {
		return c.usageError("%v", err)
	}

	fw := &mesos.FrameworkInfo{
		Name: mesos.Ptr(*fwName),
		Role: mesos.Ptr(*role),
		Capabilities: []*mesos.FrameworkInfo_Capability{
			{Type: mesos.FrameworkInfo_Capability_TASK_KILLING_STATE.Enum()},
		},
	}
	if h, err := os.Hostname(); err == nil {
		fw.Hostname = mesos.Ptr(h)
	}
	life, stopClient := context.WithCancel(context.WithoutCancel(ctx))
	defer stopClient()
	unhook := context.AfterFunc(ctx, stopClient) // Ctrl-C while subscribing just stops
	client, err := scheduler.Subscribe(life, scheduler.Config{Master: *master, Framework: fw, Logger: c.logger(), Principal: c.principal, Secret: c.secret, TLS: c.tls()})
	if interrupted := !unhook(); interrupted {
		if err == nil {
			client.Close()
		}
		return exitOK
	}
	if err != nil {
		return c.fail("%v", err)
	}
	defer client.Close()

	e := &example{
		out: stdout, client: client, spec: spec, want: *instances,
		refuse: &mesos.Filters{RefuseSeconds: mesos.Ptr(*refuse)}, tasks: map[string]*instance{},
	}
	for {
		select {
		case ev, ok := <-client.Events():
			if !ok {
				return c.fail("lost the master: %v", client.Err())
			}
			e.handle(life, ev)
		case <-ctx.Done():
			e.logf("stopping: tearing down the framework, which stops %d container(s)", len(e.tasks))
			tctx, cancel := context.WithTimeout(life, 10*time.Second)
			defer cancel()
			if err := client.Teardown(tctx); err != nil {
				return c.fail("tearing down: %v", err)
			}
			return exitOK
		}
	}
}

// instance is one container the framework launched and has not seen end.
type instance struct {
	agentID string
	state   mesos.TaskState
}

type example struct {
	out    io.Writer
	client *scheduler.Client
	spec   taskSpec
	want   int
	refuse *mesos.Filters
	tasks  map[string]*instance // by task id
	serial int
	subs   int
}

func (e *example) logf(format string, args ...any) {
	fmt.Fprintf(e.out, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func (e *example) handle(ctx context.Context, ev *schedv1.Event) {
	switch ev.GetType() {
	case schedv1.Event_SUBSCRIBED:
		e.subs++
		if e.subs == 1 {
			e.logf("subscribed to master %s as framework %s; keeping %d instance(s) of %s running",
				e.client.Master(), e.client.FrameworkID(), e.want, e.spec.dockerImage)
			return
		}
		// Updates may have been lost while we were away: ask about the
		// tasks we know (explicit), then about all the master knows
		// (implicit), as Mesos's reconciliation guide advises.
		e.logf("re-subscribed to master %s; reconciling %d task(s)", e.client.Master(), len(e.tasks))
		var known []*schedv1.Call_Reconcile_Task
		for id, in := range e.tasks {
			known = append(known, scheduler.ReconcileTask(id, in.agentID))
		}
		if len(known) > 0 {
			if err := e.client.Reconcile(ctx, known...); err != nil {
				e.logf("reconciling: %v", err)
			}
		}
		if err := e.client.Reconcile(ctx); err != nil {
			e.logf("reconciling: %v", err)
		}
	case schedv1.Event_OFFERS:
		e.offers(ctx, ev.GetOffers().GetOffers())
	case schedv1.Event_UPDATE:
		e.update(ctx, ev.GetUpdate().GetStatus())
	case schedv1.Event_ERROR:
		e.logf("the master sent an error: %s", ev.GetError().GetMessage())
	}
}

// offers launches as many missing instances as each offer holds and
// declines the rest.
func (e *example) offers(ctx context.Context, offers []*mesos.Offer) {
	var decline []*mesos.OfferID
	for _, o := range offers {
		var launch []*mesos.TaskInfo
		remaining := o.GetResources()
		for len(e.tasks)+len(launch) < e.want {
			e.serial++
			spec := e.spec
			spec.name = fmt.Sprintf("%s-%d", e.spec.name, e.serial)
			tmpl, err := buildTask(spec)
			if err != nil {
				e.logf("building task: %v", err)
				break
			}
			rest := offerWith(o, remaining)
			task, err := tmpl.forOffer(rest, e.client.FrameworkID())
			if err != nil {
				e.serial--
				break
			}
			remaining = subtractUsed(remaining, task.GetResources())
			launch = append(launch, task)
		}
		if len(launch) == 0 {
			decline = append(decline, o.GetId())
			continue
		}
		if err := e.client.Launch(ctx, o, launch...); err != nil {
			e.logf("launching on %s: %v", o.GetHostname(), err)
			continue
		}
		for _, t := range launch {
			e.tasks[t.GetTaskId().GetValue()] = &instance{agentID: o.GetAgentId().GetValue(), state: mesos.TaskState_TASK_STAGING}
			e.logf("launching %s on %s", t.GetTaskId().GetValue(), o.GetHostname())
		}
	}
	if len(decline) > 0 {
		if err := e.client.Decline(ctx, e.refuse, decline...); err != nil {
			e.logf("declining offers: %v", err)
		}
	}
}

// update tracks an instance's state; one that ended is forgotten, and the
// offer filters are dropped so that its replacement launches soon.
func (e *example) update(ctx context.Context, st *mesos.TaskStatus) {
	id := st.GetTaskId().GetValue()
	in, known := e.tasks[id]
	if !known {
		if terminal(st.GetState()) {
			return
		}
		// A task the master still runs for us that we had forgotten
		// (found by implicit reconciliation): keep counting it.
		in = &instance{agentID: st.GetAgentId().GetValue()}
		e.tasks[id] = in
	}
	if in.state != st.GetState() || !known {
		e.logf("%s: %s", id, formatStatus(st))
	}
	in.state = st.GetState()
	if !terminal(st.GetState()) {
		return
	}
	delete(e.tasks, id)
	e.logf("%d of %d instance(s) running; relaunching", len(e.tasks), e.want)
	if err := e.client.Revive(ctx); err != nil {
		e.logf("reviving offers: %v", err)
	}
}

// offerWith is the offer with only the resources not yet used by the tasks
// launched on it in this round.
func offerWith(o *mesos.Offer, remaining []*mesos.Resource) *mesos.Offer {
	return &mesos.Offer{Id: o.Id, FrameworkId: o.FrameworkId, AgentId: o.AgentId, Hostname: o.Hostname, Url: o.Url, Resources: remaining}
}

// subtractUsed removes what a task took from an offer's resources.
func subtractUsed(offered, used []*mesos.Resource) []*mesos.Resource {
	out := make([]*mesos.Resource, 0, len(offered))
	for _, r := range offered {
		left, ok := valueOf(r)
		if !ok {
			// allocate never takes from it.
			out = append(out, proto.Clone(r).(*mesos.Resource))
			continue
		}
		role := resources.ReservationRole(r)
		for _, u := range used {
			if u.GetName() != r.GetName() || u.GetType() != r.GetType() || resources.ReservationRole(u) != role {
				continue
			}
			if v, ok := valueOf(u); ok {
				left = left.Subtract(v)
			}
		}
		out = append(out, withValue(r, left))
	}
	return out
}
