package apps

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// A plan is one change of several apps (POST/PUT/DELETE /v2/groups, PUT
// /v2/apps with many): a Deployment per app, sharing the plan's id and
// version, ordered by the apps' dependencies as Marathon orders them: an
// app starts (scales, restarts) only once the deployments of the apps it
// depends on have ended, that is once those run their target count of
// ready instances; an app stops only once the apps that depend on it
// have stopped.

// planCtx collects the deployments of the plan a batch builds.
type planCtx struct {
	id      string
	version string
	parts   []*Deployment
	// group is the group a /v2/groups change is of, "" otherwise.
	group PathID
}

// versionFor is the version a change made in tx gives its app: the
// plan's when it is one of several, a new one otherwise.
func (e *engine) versionFor(tx *txn) string {
	if tx.plan != nil {
		return tx.plan.version
	}
	return e.newVersion(tx.now)
}

// beginPlan starts collecting the deployments of one plan in tx.
func (e *engine) beginPlan(tx *txn) {
	tx.plan = &planCtx{id: newDeploymentID(), version: e.newVersion(tx.now)}
}

// finishPlan orders the plan's deployments by the apps' dependencies,
// gives each its step, announces the plan and ends the collecting. A plan
// that changed nothing is announced as begun and ended at once, as
// Marathon does with an empty plan.
func (e *engine) finishPlan(tx *txn) *DeploymentResult {
	p := tx.plan
	tx.plan = nil
	res := &DeploymentResult{DeploymentID: p.id, Version: p.version}
	if len(p.parts) == 0 {
		empty := &Deployment{ID: p.id, Plan: p.id, Version: p.version, AppID: Root, Steps: [][]StepAction{}}
		tx.event(EventDeploymentInfo, map[string]any{"plan": deploymentPlan([]*Deployment{empty}), "currentStep": map[string]any{"actions": []any{}}})
		tx.event(EventDeploymentSuccess, map[string]any{"id": p.id, "plan": deploymentPlan([]*Deployment{empty})})
		if p.group != "" {
			tx.event(EventGroupChangeSuccess, map[string]any{"groupId": p.group, "version": p.version})
		}
		return res
	}
	all := e.currentApps(nil)
	inPlan := map[PathID]*Deployment{}
	// The apps being stopped, as they were, for the order of the stops.
	before := maps.Clone(all)
	for _, d := range p.parts {
		inPlan[d.AppID] = d
		if d.Kind == KindStop {
			before[d.AppID] = d.Original
		}
	}
	for _, d := range p.parts {
		d.After = nil
		if d.Kind == KindStop {
			// Those that depend on it stop first.
			for _, o := range p.parts {
				if o.Kind == KindStop && o != d && slices.Contains(dependencies(o.Original, before, e.groups), d.AppID) {
					d.After = append(d.After, o.AppID)
				}
			}
			continue
		}
		for _, dep := range dependencies(e.apps[d.AppID].app, all, e.groups) {
			if o := inPlan[dep]; o != nil && o.Kind != KindStop {
				d.After = append(d.After, dep)
			}
		}
	}
	steps, step := orderSteps(p.parts)
	for _, d := range p.parts {
		d.Steps, d.Step, d.Group = steps, step[d.AppID], p.group
		e.log.Info("deployment started", "deployment_id", p.id, "app_id", d.AppID, "kind", d.Kind, "version", d.Version,
			"step", d.Step+1, "after", d.After)
	}
	tx.event(EventDeploymentInfo, map[string]any{"plan": deploymentPlan(p.parts), "currentStep": map[string]any{"actions": planActions(p.parts)}})
	return res
}

// orderSteps lays a plan's deployments out in steps: first the apps
// that are new (StartApplication, with no instances yet), then one step
// per level of dependencies. The After relation has no cycle (checked
// before a plan is made).
func orderSteps(parts []*Deployment) ([][]StepAction, map[PathID]int) {
	byApp := map[PathID]*Deployment{}
	for _, d := range parts {
		byApp[d.AppID] = d
	}
	level := map[PathID]int{}
	var depth func(id PathID, seen map[PathID]bool) int
	depth = func(id PathID, seen map[PathID]bool) int {
		if l, ok := level[id]; ok {
			return l
		}
		if seen[id] {
			return 0
		}
		seen[id] = true
		l := 0
		for _, a := range byApp[id].After {
			if byApp[a] != nil {
				l = max(l, depth(a, seen)+1)
			}
		}
		level[id] = l
		return l
	}
	var steps [][]StepAction
	var starts []StepAction
	ids := slices.Sorted(maps.Keys(byApp))
	for _, id := range ids {
		if byApp[id].Kind == KindStart {
			starts = append(starts, StepAction{Action: actionStart, App: id})
		}
	}
	offset := 0
	if len(starts) > 0 {
		steps = append(steps, starts)
		offset = 1
	}
	step := map[PathID]int{}
	for _, id := range ids {
		l := depth(id, map[PathID]bool{}) + offset
		for len(steps) <= l {
			steps = append(steps, nil)
		}
		action := map[DeploymentKind]string{KindStart: actionScale, KindScale: actionScale, KindRestart: actionRestart, KindStop: actionStop}[byApp[id].Kind]
		steps[l] = append(steps[l], StepAction{Action: action, App: id})
		step[id] = l
	}
	return steps, step
}

// currentApps is every app not being deleted, as id -> definition, with
// the definitions in over laid on top (nil: the app is gone).
func (e *engine) currentApps(over map[PathID]*App) map[PathID]*App {
	out := map[PathID]*App{}
	for id, st := range e.apps {
		if !st.deleted {
			out[id] = st.app
		}
	}
	for id, a := range over {
		if a == nil {
			delete(out, id)
		} else {
			out[id] = a
		}
	}
	return out
}

// dependencies is the apps a depends on among all: its own dependencies
// (relative to its group) and those of every group it is in (relative to
// that group's parent). A dependency on a group is one on every app in
// it; one on nothing that exists is none.
func dependencies(a *App, all map[PathID]*App, groups map[PathID]*Group) []PathID {
	if a == nil {
		return nil
	}
	self := PathID(a.ID)
	var out []PathID
	add := func(dep string, base PathID) {
		id, err := ParsePathID(dep, base)
		if err != nil {
			return
		}
		if _, ok := all[id]; ok {
			if id != self && !slices.Contains(out, id) {
				out = append(out, id)
			}
			return
		}
		for other := range all {
			if other != self && id.Contains(other) && !id.Contains(self) && !slices.Contains(out, other) {
				out = append(out, other)
			}
		}
	}
	for _, dep := range a.Dependencies {
		add(dep, self.Parent())
	}
	for g := self.Parent(); ; g = g.Parent() {
		if gd := groups[g]; gd != nil {
			for _, dep := range gd.Dependencies {
				add(dep, g.Parent())
			}
		}
		if g == Root {
			break
		}
	}
	slices.Sort(out)
	return out
}

// checkCycles refuses a set of apps whose dependencies form a cycle
// (422, as Marathon's root group validation).
func checkCycles(all map[PathID]*App, groups map[PathID]*Group) error {
	const (
		white = iota
		grey
		black
	)
	color := map[PathID]int{}
	deps := map[PathID][]PathID{}
	for id, a := range all {
		if len(a.Dependencies) > 0 || hasGroupDependencies(id, groups) {
			deps[id] = dependencies(a, all, groups)
		}
	}
	var cycle []PathID
	var visit func(id PathID) bool
	visit = func(id PathID) bool {
		color[id] = grey
		for _, d := range deps[id] {
			switch color[d] {
			case grey:
				cycle = append(cycle, d, id)
				return true
			case white:
				if visit(d) {
					cycle = append(cycle, id)
					return true
				}
			}
		}
		color[id] = black
		return false
	}
	for _, id := range slices.Sorted(maps.Keys(deps)) {
		if color[id] == white && visit(id) {
			slices.Reverse(cycle)
			var names []string
			for _, c := range cycle {
				names = append(names, string(c))
			}
			return (violations{{Path: "/", Errors: []string{
				fmt.Sprintf("Dependency graph has cyclic dependencies. (%s)", strings.Join(names, " -> "))}}}).err()
		}
	}
	return nil
}

func hasGroupDependencies(id PathID, groups map[PathID]*Group) bool {
	for g := id.Parent(); ; g = g.Parent() {
		if gd := groups[g]; gd != nil && len(gd.Dependencies) > 0 {
			return true
		}
		if g == Root {
			return false
		}
	}
}
