package apps

import (
	"math"
	"slices"
	"time"
)

// DeploymentKind is what a deployment does to its app; its steps, as
// /v2/deployments shows them, follow from it.
type DeploymentKind string

// The kinds.
const (
	// KindStart: a new app; its instances start.
	KindStart DeploymentKind = "start"
	// KindScale: only the instance count changed; nothing restarts.
	KindScale DeploymentKind = "scale"
	// KindRestart: a new config (or a restart): every instance is replaced
	// as the upgrade strategy allows.
	KindRestart DeploymentKind = "restart"
	// KindStop: the app was deleted; its instances stop, then it is gone.
	KindStop DeploymentKind = "stop"
)

// DeploymentState is where a deployment is in its life:
//
//	running ──(the app reached its target)─────────────────▶ succeeded
//	   │
//	   └──(replaced with force, deleted, rolled back)─────▶ canceled
//
// Only running deployments are kept (store, /v2/deployments); an ended one
// is announced (deployment_success, deployment_failed) and forgotten.
type DeploymentState string

// The states.
const (
	DeploymentRunning   DeploymentState = "running"
	DeploymentSucceeded DeploymentState = "succeeded"
	DeploymentCanceled  DeploymentState = "canceled"
)

// Deployment is one change of one app in progress. At most one runs per
// app: another change waits for it, or cancels it with force.
type Deployment struct {
	ID    string          `json:"id"`
	AppID PathID          `json:"appId"`
	Kind  DeploymentKind  `json:"kind"`
	State DeploymentState `json:"state"`
	// Version is the app version the deployment brings.
	Version string `json:"version"`
	// Original is the app before (nil for a start), Target after (nil
	// for a stop); a rollback deploys Original again.
	Original  *App      `json:"original,omitempty"`
	Target    *App      `json:"target,omitempty"`
	StartedAt time.Time `json:"startedAt"`
	// Plan is the id the API shows. A change of several apps at once (a
	// group, PUT /v2/apps with many) is one plan of several deployments,
	// one per app, that share it; a change of one app is a plan of one.
	// Empty in a deployment stored before plans: its ID is its plan's.
	Plan string `json:"plan,omitempty"`
	// After names the apps of the same plan whose deployments must end
	// before this one acts: the apps it depends on, or, for a stop, the
	// apps that depend on it (they stop first), as Marathon orders a plan.
	After []PathID `json:"after,omitempty"`
	// Steps is the whole plan's steps as /v2/deployments lists them, Step
	// the one (0-based) this app's change is in.
	Steps [][]StepAction `json:"steps,omitempty"`
	Step  int            `json:"step,omitempty"`
	// Group is the group a change through /v2/groups was of: its plan's
	// end is announced as group_change_success (or _failed) too.
	Group PathID `json:"group,omitempty"`
}

// StepAction is one action of a plan's step: what is done to which app.
type StepAction struct {
	Action string `json:"action"`
	App    PathID `json:"app"`
}

// planID is the id the API shows for the deployment's plan.
func (d *Deployment) planID() string {
	if d.Plan != "" {
		return d.Plan
	}
	return d.ID
}

// planSteps is the plan's steps and the 0-based step of this deployment;
// a deployment stored before plans has the steps of its kind.
func (d *Deployment) planSteps() ([][]StepAction, int) {
	if len(d.Steps) > 0 {
		return d.Steps, d.Step
	}
	var out [][]StepAction
	for _, step := range d.steps() {
		var s []StepAction
		for _, a := range step {
			s = append(s, StepAction{Action: a, App: d.AppID})
		}
		out = append(out, s)
	}
	return out, d.currentStep() - 1
}

// Marathon's action names.
const (
	actionStart   = "StartApplication"
	actionScale   = "ScaleApplication"
	actionRestart = "RestartApplication"
	actionStop    = "StopApplication"
)

// steps is the deployment's plan as Marathon lists it: each step a list of
// actions.
func (d *Deployment) steps() [][]string {
	switch d.Kind {
	case KindStart:
		return [][]string{{actionStart}, {actionScale}}
	case KindScale:
		return [][]string{{actionScale}}
	case KindRestart:
		return [][]string{{actionRestart}}
	default:
		return [][]string{{actionStop}}
	}
}

// currentStep is the 1-based step in progress: a start is past its first
// step once the app is stored, which is at once.
func (d *Deployment) currentStep() int { return len(d.steps()) }

// planResult is what an app needs now: instances to launch, instances to
// kill, and whether its deployment reached its target.
type planResult struct {
	launch int
	kill   []*Instance
	done   bool
}

// plan decides, from an app's definition, its instances and its deployment
// (nil: none running), what to do next. It is a pure function, re-run on
// every change (a status update, a kill, a scale), so the app converges on
// its target from wherever it is: after a restart of the framework too.
//
// Without a deployment the app keeps its instance count: lost instances
// are replaced, extra ones killed, whatever config version they run (a
// deployment canceled with force leaves old ones running, as in Marathon).
//
// With one, instances of another config version are "old" and replaced as
// the upgrade strategy says, with N the target count:
//
//	minHealthy = ceil(N x minimumHealthCapacity)    ready instances kept at all times
//	maxCap     = floor(N x (1 + maximumOverCapacity)) instances at most, old and new
//
// Old instances that are not ready go at once (they serve nothing); ready
// ones go as long as the ready count stays at minHealthy or above; new ones
// start as long as the total stays within maxCap. When minHealthy reaches
// maxCap, one instance over it is allowed, or nothing could move. A scale
// is the same rule with no old instances.
func plan(a *App, insts []*Instance, d *Deployment) planResult {
	if d != nil && d.Kind == KindStop {
		var r planResult
		left := 0
		for _, i := range insts {
			if i.active() {
				r.kill = append(r.kill, i)
			}
			if !i.Condition.Terminal() {
				left++
			}
		}
		r.done = left == 0
		return r
	}
	n := a.Instances
	target := a.configVersion()
	isReady := func(i *Instance) bool { return i.ready(a, target) }
	var active, old, fresh []*Instance
	killing := 0
	for _, i := range insts {
		switch {
		case i.Condition == Killing:
			killing++
		case i.active():
			active = append(active, i)
			if i.ConfigVersion == target {
				fresh = append(fresh, i)
			} else {
				old = append(old, i)
			}
		}
	}
	if d == nil {
		var r planResult
		if len(active) < n {
			r.launch = n - len(active)
		} else if len(active) > n {
			r.kill = pickToKill(active, len(active)-n, a.KillSelection, isReady)
		}
		return r
	}

	var r planResult
	minHealthy := int(math.Ceil(float64(n)*a.UpgradeStrategy.MinimumHealthCapacity - 1e-9))
	maxCap := int(math.Floor(float64(n)*(1+a.UpgradeStrategy.MaximumOverCapacity) + 1e-9))
	if len(old) > 0 && maxCap <= minHealthy {
		maxCap = minHealthy + 1
	}
	readyNew, readyOld := 0, 0
	for _, i := range fresh {
		if isReady(i) {
			readyNew++
		}
	}
	var oldReady []*Instance
	for _, i := range old {
		if isReady(i) {
			readyOld++
			oldReady = append(oldReady, i)
		} else {
			r.kill = append(r.kill, i)
		}
	}
	if spare := readyNew + readyOld - minHealthy; spare > 0 {
		r.kill = append(r.kill, pickToKill(oldReady, min(spare, len(oldReady)), a.KillSelection, isReady)...)
	}
	oldLeft := len(old) - len(r.kill)
	if len(fresh) > n {
		extra := pickToKill(fresh, len(fresh)-n, a.KillSelection, isReady)
		r.kill = append(r.kill, extra...)
		fresh = slices.DeleteFunc(slices.Clone(fresh), func(i *Instance) bool { return slices.Contains(extra, i) })
	}
	r.launch = max(0, min(n-len(fresh), maxCap-len(fresh)-oldLeft))
	allReady := true
	for _, i := range fresh {
		allReady = allReady && isReady(i)
	}
	r.done = len(old) == 0 && killing == 0 && len(fresh) == n && allReady && len(r.kill) == 0
	return r
}

// pickToKill chooses k of insts to kill: those not ready first (they serve
// nothing), then by the app's kill selection (the youngest, or the oldest,
// first).
func pickToKill(insts []*Instance, k int, selection string, isReady func(*Instance) bool) []*Instance {
	sorted := slices.Clone(insts)
	slices.SortStableFunc(sorted, func(x, y *Instance) int {
		if rx, ry := isReady(x), isReady(y); rx != ry {
			if rx {
				return 1
			}
			return -1
		}
		c := x.LaunchedAt.Compare(y.LaunchedAt)
		if selection == YoungestFirst {
			c = -c
		}
		return c
	})
	return sorted[:min(k, len(sorted))]
}

// configVersion is the version whose change restarts instances.
func (a *App) configVersion() string {
	if a.VersionInfo != nil && a.VersionInfo.LastConfigChangeAt != "" {
		return a.VersionInfo.LastConfigChangeAt
	}
	return a.Version
}
