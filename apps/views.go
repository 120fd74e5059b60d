package apps

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// What the API shows, built under the engine's read lock from copies, so
// encoding happens outside it.

// taskJSON is a task as /v2/tasks and embed=apps.tasks show it
// (types/task.raml).
type taskJSON struct {
	AppID              PathID         `json:"appId"`
	HealthCheckResults []healthResult `json:"healthCheckResults,omitempty"`
	Host               string         `json:"host"`
	ID                 string         `json:"id"`
	IPAddresses        []ipAddress    `json:"ipAddresses"`
	Ports              []uint64       `json:"ports"`
	ServicePorts       []int          `json:"servicePorts"`
	SlaveID            string         `json:"slaveId"`
	State              string         `json:"state"`
	StagedAt           string         `json:"stagedAt,omitempty"`
	StartedAt          string         `json:"startedAt,omitempty"`
	Version            string         `json:"version"`
	LocalVolumes       []any          `json:"localVolumes"`
	// AgentURL is mesolite's: where the task's agent serves its sandbox
	// (the web page links it); Marathon clients ignore it.
	AgentURL string `json:"agentUrl,omitempty"`
}

type ipAddress struct {
	IPAddress string `json:"ipAddress"`
	Protocol  string `json:"protocol"`
}

// healthResult is a task's health (types/healthCheck.raml, Health).
type healthResult struct {
	Alive               bool   `json:"alive"`
	ConsecutiveFailures int    `json:"consecutiveFailures"`
	FirstSuccess        string `json:"firstSuccess,omitempty"`
	LastFailure         string `json:"lastFailure,omitempty"`
	LastSuccess         string `json:"lastSuccess,omitempty"`
	LastFailureCause    string `json:"lastFailureCause,omitempty"`
	InstanceID          string `json:"instanceId"`
	TaskID              string `json:"taskId"`
}

func timeOrEmpty(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return FormatTime(t)
}

func viewTask(i *Instance, a *App) taskJSON {
	t := taskJSON{
		AppID: i.AppID, Host: i.Placement.Hostname, ID: i.TaskID, Ports: portsOrEmpty(i.Ports), SlaveID: i.AgentID,
		State: i.MesosState, StagedAt: timeOrEmpty(i.StagedAt), StartedAt: timeOrEmpty(i.StartedAt), Version: i.Version,
		IPAddresses: []ipAddress{}, LocalVolumes: []any{}, ServicePorts: []int{}, AgentURL: i.AgentURL,
	}
	if t.State == "" {
		t.State = "TASK_STAGING"
	}
	if t.StagedAt == "" {
		t.StagedAt = FormatTime(i.LaunchedAt)
	}
	for _, ip := range i.IPAddresses {
		t.IPAddresses = append(t.IPAddresses, ipAddress{IPAddress: ip, Protocol: "IPv4"})
	}
	if a != nil {
		for _, p := range a.servicePorts() {
			t.ServicePorts = append(t.ServicePorts, *p)
		}
		// One result per check that has one: the executor's for the
		// Mesos-native check, the service's own for the others.
		for k, hc := range a.HealthChecks {
			if hc.mesos() {
				if i.Healthy == nil {
					continue
				}
				h := healthResult{Alive: *i.Healthy, ConsecutiveFailures: i.HealthFailed, InstanceID: i.TaskID, TaskID: i.TaskID}
				if *i.Healthy {
					h.LastSuccess = FormatTime(i.HealthSince)
					h.FirstSuccess = h.LastSuccess
				} else {
					h.LastFailure = FormatTime(i.HealthSince)
					h.LastFailureCause = i.Message
				}
				t.HealthCheckResults = append(t.HealthCheckResults, h)
				continue
			}
			c := i.Checks[k]
			if c == nil || c.Alive == nil {
				continue
			}
			t.HealthCheckResults = append(t.HealthCheckResults, healthResult{Alive: *c.Alive, ConsecutiveFailures: c.ConsecutiveFailures,
				FirstSuccess: timeOrEmpty(c.FirstSuccess), LastSuccess: timeOrEmpty(c.LastSuccess), LastFailure: timeOrEmpty(c.LastFailure),
				LastFailureCause: c.LastFailureCause, InstanceID: i.TaskID, TaskID: i.TaskID})
		}
	}
	return t
}

// counts are an app's task counts (embed apps.counts).
type counts struct {
	Staged, Running, Healthy, Unhealthy int
}

func countOf(st *appState) counts {
	var c counts
	for _, i := range st.instances {
		switch i.Condition {
		case Provisioned, Staging, Starting:
			c.Staged++
		case Running:
			c.Running++
		}
		if h := i.health(st.app); i.Condition == Running && h != nil {
			if *h {
				c.Healthy++
			} else {
				c.Unhealthy++
			}
		}
	}
	return c
}

// embeds says what an app's view includes.
type embeds struct {
	tasks, counts, deployments, lastTaskFailure, readiness bool
}

// parseEmbeds reads embed= values, for apps (prefix "apps.") or one app
// ("app."); both prefixes are taken, as Marathon does.
func parseEmbeds(values []string, single bool) embeds {
	e := embeds{counts: true, deployments: true}
	if single {
		e = embeds{tasks: true, counts: true, deployments: true, lastTaskFailure: true}
	}
	if len(values) == 0 {
		return e
	}
	if !single {
		e = embeds{}
	}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			_, what, _ := strings.Cut(strings.TrimSpace(part), ".")
			switch what {
			case "tasks":
				e.tasks, e.deployments = true, true
			case "counts", "count":
				e.counts = true
			case "deployments":
				e.deployments = true
			case "lastTaskFailure":
				e.lastTaskFailure = true
			case "readiness":
				e.readiness = true
			case "failures":
				e.tasks, e.counts, e.deployments, e.lastTaskFailure = true, true, true, true
			}
		}
	}
	return e
}

type deploymentRef struct {
	ID string `json:"id"`
}

// appJSON is an app as GET /v2/apps shows it: its definition and what is
// embedded.
type appJSON struct {
	*App
	TasksStaged     *int               `json:"tasksStaged,omitempty"`
	TasksRunning    *int               `json:"tasksRunning,omitempty"`
	TasksHealthy    *int               `json:"tasksHealthy,omitempty"`
	TasksUnhealthy  *int               `json:"tasksUnhealthy,omitempty"`
	Deployments     *[]deploymentRef   `json:"deployments,omitempty"`
	Tasks           *[]taskJSON        `json:"tasks,omitempty"`
	LastTaskFailure *TaskFailure       `json:"lastTaskFailure,omitempty"`
	ReadinessChecks *[]ReadinessResult `json:"readinessCheckResults,omitempty"`
}

func viewApp(st *appState, em embeds) appJSON {
	// st.app is never changed in place (a change replaces it), so it is
	// shared with the encoder.
	v := appJSON{App: st.app}
	if em.counts {
		c := countOf(st)
		v.TasksStaged, v.TasksRunning, v.TasksHealthy, v.TasksUnhealthy = &c.Staged, &c.Running, &c.Healthy, &c.Unhealthy
	}
	if em.deployments {
		refs := []deploymentRef{}
		if st.deployment != nil {
			refs = append(refs, deploymentRef{ID: st.deployment.planID()})
		}
		v.Deployments = &refs
	}
	if em.tasks {
		ts := []taskJSON{}
		for _, id := range slices.Sorted(maps.Keys(st.instances)) {
			if i := st.instances[id]; !i.Condition.Terminal() {
				ts = append(ts, viewTask(i, st.app))
			}
		}
		v.Tasks = &ts
	}
	if em.lastTaskFailure {
		v.LastTaskFailure = st.lastFailure
	}
	if em.readiness {
		// The last readiness probe of each instance the deployment in
		// progress waits for, as Marathon shows them.
		rs := []ReadinessResult{}
		if st.deployment != nil {
			for _, id := range slices.Sorted(maps.Keys(st.instances)) {
				if r := st.instances[id].Readiness; r != nil {
					rs = append(rs, *r)
				}
			}
		}
		v.ReadinessChecks = &rs
	}
	return v
}

// deploymentJSON is a deployment as /v2/deployments shows it.
type deploymentJSON struct {
	ID             string         `json:"id"`
	Version        string         `json:"version"`
	AffectedApps   []PathID       `json:"affectedApps"`
	AffectedPods   []string       `json:"affectedPods"`
	Steps          []stepJSON     `json:"steps"`
	CurrentActions []actionJSON   `json:"currentActions"`
	CurrentStep    int            `json:"currentStep"`
	TotalSteps     int            `json:"totalSteps"`
	Extra          map[string]any `json:"-"`
}

type stepJSON struct {
	Actions []actionJSON `json:"actions"`
}

type actionJSON struct {
	Action                string            `json:"action"`
	App                   PathID            `json:"app"`
	ReadinessCheckResults []ReadinessResult `json:"readinessCheckResults"`
}

// planActions is the actions of the plan's current step: the earliest
// step a deployment of it is still in.
func planActions(parts []*Deployment) []actionJSON {
	steps, cur := planProgress(parts)
	if cur >= len(steps) {
		return []actionJSON{}
	}
	return viewSteps(steps[cur : cur+1])[0].Actions
}

// planProgress is the plan's steps and the 0-based step it is in.
func planProgress(parts []*Deployment) ([][]StepAction, int) {
	var steps [][]StepAction
	cur := -1
	for _, d := range parts {
		s, step := d.planSteps()
		if len(s) > len(steps) {
			steps = s
		}
		if cur < 0 || step < cur {
			cur = step
		}
	}
	return steps, max(cur, 0)
}

func viewSteps(steps [][]StepAction) []stepJSON {
	out := []stepJSON{}
	for _, step := range steps {
		s := stepJSON{Actions: []actionJSON{}}
		for _, a := range step {
			s.Actions = append(s.Actions, actionJSON{Action: a.Action, App: a.App, ReadinessCheckResults: []ReadinessResult{}})
		}
		out = append(out, s)
	}
	return out
}

// viewPlan is a plan as /v2/deployments shows it: the deployments of its
// apps still running, parts, all of one plan.
func viewPlan(parts []*Deployment) deploymentJSON {
	steps, cur := planProgress(parts)
	d := parts[0]
	v := deploymentJSON{ID: d.planID(), Version: d.Version, AffectedApps: []PathID{}, AffectedPods: []string{},
		Steps: viewSteps(steps), CurrentActions: planActions(parts), CurrentStep: cur + 1, TotalSteps: len(steps)}
	for _, step := range steps {
		for _, a := range step {
			if !slices.Contains(v.AffectedApps, a.App) {
				v.AffectedApps = append(v.AffectedApps, a.App)
			}
		}
	}
	slices.Sort(v.AffectedApps)
	return v
}

// plansOf groups deployments by plan, in the order of their plan ids.
func plansOf(deps map[string]*Deployment) [][]*Deployment {
	by := map[string][]*Deployment{}
	for _, d := range deps {
		by[d.planID()] = append(by[d.planID()], d)
	}
	var out [][]*Deployment
	for _, id := range slices.Sorted(maps.Keys(by)) {
		parts := by[id]
		slices.SortFunc(parts, func(a, b *Deployment) int { return strings.Compare(string(a.AppID), string(b.AppID)) })
		out = append(out, parts)
	}
	return out
}

// deploymentPlan is a plan as deployment events carry it: the original
// and target groups (the root, holding the apps) and the steps.
func deploymentPlan(parts []*Deployment) map[string]any {
	d := parts[0]
	var original, target []*App
	for _, p := range parts {
		if p.Original != nil {
			original = append(original, p.Original)
		}
		if p.Target != nil {
			target = append(target, p.Target)
		}
	}
	group := func(apps []*App) map[string]any {
		if apps == nil {
			apps = []*App{}
		}
		return map[string]any{"id": "/", "apps": apps, "groups": []any{}, "dependencies": []any{}, "version": d.Version}
	}
	steps, _ := planProgress(parts)
	return map[string]any{"id": d.planID(), "version": d.Version, "original": group(original), "target": group(target), "steps": viewSteps(steps)}
}

// queueJSON is one app waiting to launch instances (/v2/queue).
type queueJSON struct {
	App   appJSON `json:"app"`
	Count int     `json:"count"`
	Delay struct {
		TimeLeftSeconds int  `json:"timeLeftSeconds"`
		Overdue         bool `json:"overdue"`
	} `json:"delay"`
	Since              string         `json:"since"`
	ProcessedOfferSum  map[string]any `json:"processedOffersSummary"`
	LastUnusedOfferMsg string         `json:"lastUnusedOfferReason,omitempty"`
}

func viewQueue(st *appState, now time.Time) queueJSON {
	q := queueJSON{App: viewApp(st, embeds{}), Count: st.toLaunch, Since: timeOrEmpty(st.waitingSince),
		ProcessedOfferSum: map[string]any{}, LastUnusedOfferMsg: st.lastNoFit}
	if left := st.delayUntil.Sub(now); left > 0 {
		q.Delay.TimeLeftSeconds = int(left.Seconds() + 0.999)
	} else {
		q.Delay.Overdue = true
	}
	return q
}
