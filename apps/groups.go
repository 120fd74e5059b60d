package apps

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
)

// Group is a group made through /v2/groups, as the store keeps it: its
// id, dependencies and version. Its apps and subgroups are found by their
// ids; a group nobody made exists while an app is in it.
type Group struct {
	ID           PathID   `json:"id"`
	Dependencies []string `json:"dependencies"`
	Version      string   `json:"version,omitempty"`
}

// groupBody is a group as POST and PUT /v2/groups take it
// (types/group.raml): apps and groups with ids relative to it, or only
// scaleBy, or only version.
type groupBody struct {
	ID           *string           `json:"id"`
	Apps         []json.RawMessage `json:"apps"`
	Groups       []groupBody       `json:"groups"`
	Dependencies []string          `json:"dependencies"`
	ScaleBy      *float64          `json:"scaleBy"`
	Version      *string           `json:"version"`
	Pods         []json.RawMessage `json:"pods"`
}

// groupSpec is a checked group body: every app and group in it by id.
type groupSpec struct {
	id     PathID
	apps   map[PathID]*App
	groups map[PathID]*Group
}

// Bounds on a group body, user input like an app's.
const (
	maxGroupDepth = 16
	maxGroupApps  = 1000
)

// decodeGroup reads and checks a group body; base is the group the URL
// names, against which the body's id is read. Violations carry
// Marathon's paths ("/groups(0)/apps(1)/cmd").
func decodeGroup(body []byte, base PathID) (*groupBody, *groupSpec, error) {
	b := new(groupBody)
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(b); err != nil {
		return nil, nil, jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, &InvalidError{Message: "Invalid JSON", Syntax: true, Violations: []Violation{{Path: "/", Errors: []string{"error.expected.eof"}}}}
	}
	id := base
	var vs violations
	if b.ID != nil {
		p, err := ParsePathID(*b.ID, base)
		if err != nil {
			vs.add("/id", "%s", errPathID)
		}
		id = p
	}
	spec := &groupSpec{id: id, apps: map[PathID]*App{}, groups: map[PathID]*Group{}}
	if err := vs.err(); err != nil {
		return nil, nil, err
	}
	spec.walk(b, id, "", 0, &vs)
	if len(b.Pods) > 0 {
		vs.add("/pods", "pods are not supported")
	}
	return b, spec, vs.err()
}

// walk adds group g (whose id is id) with its apps and subgroups.
func (spec *groupSpec) walk(g *groupBody, id PathID, path string, depth int, vs *violations) {
	if depth > maxGroupDepth {
		vs.add(path+"/groups", "groups nest at most %d deep", maxGroupDepth)
		return
	}
	deps := []string{}
	for i, d := range g.Dependencies {
		if _, err := ParsePathID(d, id.Parent()); err != nil {
			vs.add(fmt.Sprintf("%s/dependencies(%d)", path, i), "%s", errPathID)
		}
		deps = append(deps, d)
	}
	spec.groups[id] = &Group{ID: id, Dependencies: deps}
	for i, raw := range g.Apps {
		p := fmt.Sprintf("%s/apps(%d)", path, i)
		if len(spec.apps) >= maxGroupApps {
			vs.add(p, "at most %d apps in one change", maxGroupApps)
			return
		}
		a, err := decodeApp(raw, defaultApp())
		if err != nil {
			var inv *InvalidError
			if errors.As(err, &inv) {
				for _, v := range inv.Violations {
					vs.add(p+v.Path, "%s", strings.Join(v.Errors, ", "))
				}
			}
			continue
		}
		if a.ID == "" {
			vs.add(p+"/id", "error.path.missing")
			continue
		}
		aid, err := ParsePathID(a.ID, id)
		if err != nil {
			vs.add(p+"/id", "%s", errPathID)
			continue
		}
		if aid.Parent() != id {
			vs.add(p+"/id", "identifier %s is not child of %s. Hint: use relative paths.", aid, id)
			continue
		}
		a.ID = string(aid)
		if err := a.check(); err != nil {
			var inv *InvalidError
			if errors.As(err, &inv) {
				for _, v := range inv.Violations {
					vs.add(p+v.Path, "%s", strings.Join(v.Errors, ", "))
				}
			}
			continue
		}
		if _, dup := spec.apps[aid]; dup {
			vs.add(p+"/id", "app %s is given twice", aid)
			continue
		}
		spec.apps[aid] = a
	}
	for i := range g.Groups {
		sub := &g.Groups[i]
		p := fmt.Sprintf("%s/groups(%d)", path, i)
		if sub.ID == nil {
			vs.add(p+"/id", "error.path.missing")
			continue
		}
		sid, err := ParsePathID(*sub.ID, id)
		if err != nil {
			vs.add(p+"/id", "%s", errPathID)
			continue
		}
		if sid.Parent() != id {
			vs.add(p+"/id", "identifier %s is not child of %s. Hint: use relative paths.", sid, id)
			continue
		}
		if _, dup := spec.groups[sid]; dup {
			vs.add(p+"/id", "group %s is given twice", sid)
			continue
		}
		if len(sub.Pods) > 0 {
			vs.add(p+"/pods", "pods are not supported")
		}
		spec.walk(sub, sid, p, depth+1, vs)
	}
	for aid := range spec.apps {
		if _, clash := spec.groups[aid]; clash {
			vs.add(path+"/id", "%s is both an app and a group", aid)
		}
	}
}

// groupExists says whether id is a group: the root, one made through
// /v2/groups, or one an app is in.
func (e *engine) groupExists(id PathID) bool {
	if id == Root || e.groups[id] != nil {
		return true
	}
	for aid, st := range e.apps {
		if !st.deleted && aid != id && id.Contains(aid) {
			return true
		}
	}
	return false
}

// change is what one request does to the apps and groups: definitions
// to deploy (new or changed apps), apps to stop, groups to write and to
// forget.
type change struct {
	// group is the group changed through /v2/groups, "" for PUT /v2/apps.
	group      PathID
	put        map[PathID]*App
	stop       []PathID
	groups     map[PathID]*Group
	dropGroups []PathID
	// keep records a version of group once the plan is made (a change
	// through /v2/groups); forget drops the kept versions of a group and
	// its subgroups (it is deleted).
	keep   bool
	forget bool
}

// planView is what a dry run answers: the steps the change would take.
type planView struct {
	Steps []stepJSON `json:"steps"`
}

// apply makes c one plan, after checking locks (409 unless force) and
// the dependencies (422 on a cycle). With dryRun it changes nothing and
// says what the plan would be.
func (e *engine) apply(tx *txn, c *change, force, dryRun bool, o origin) (*DeploymentResult, *planView, error) {
	var locked []string
	for _, id := range slices.Concat(slices.Collect(maps.Keys(c.put)), c.stop) {
		if st := e.apps[id]; st != nil && st.deployment != nil && !slices.Contains(locked, st.deployment.planID()) {
			locked = append(locked, st.deployment.planID())
		}
	}
	if len(locked) > 0 && !force {
		slices.Sort(locked)
		return nil, nil, &LockedError{Deployments: locked}
	}
	over := map[PathID]*App{}
	for id, a := range c.put {
		over[id] = a
	}
	for _, id := range c.stop {
		over[id] = nil
	}
	groups := maps.Clone(e.groups)
	for _, g := range c.dropGroups {
		delete(groups, g)
	}
	maps.Copy(groups, c.groups)
	if err := checkCycles(e.currentApps(over), groups); err != nil {
		return nil, nil, err
	}
	if dryRun {
		var parts []*Deployment
		for _, id := range slices.Sorted(maps.Keys(c.put)) {
			kind := KindStart
			if st := e.apps[id]; st != nil && !st.deleted {
				kind = KindRestart
				if sameConfig(st.app, c.put[id]) {
					kind = KindScale
				}
			}
			parts = append(parts, &Deployment{AppID: id, Kind: kind,
				After: slices.DeleteFunc(dependencies(c.put[id], e.currentApps(over), groups), func(d PathID) bool { return c.put[d] == nil })})
		}
		for _, id := range c.stop {
			parts = append(parts, &Deployment{AppID: id, Kind: KindStop})
		}
		steps, _ := orderSteps(parts)
		return nil, &planView{Steps: viewSteps(steps)}, nil
	}

	e.beginPlan(tx)
	tx.plan.group = c.group
	for _, g := range c.dropGroups {
		delete(e.groups, g)
		tx.ops = append(tx.ops, frameworks.Delete(bucketGroups, string(g)))
	}
	for _, id := range slices.Sorted(maps.Keys(c.groups)) {
		g := c.groups[id]
		g.Version = tx.plan.version
		e.groups[id] = g
		tx.ops = append(tx.ops, frameworks.Put(bucketGroups, string(id), mustJSON(g)))
	}
	for _, id := range c.stop {
		st := e.apps[id]
		if st == nil || st.deleted {
			continue
		}
		if st.deployment != nil {
			e.cancelPlan(tx, st.deployment.planID(), st)
		}
		st.deleted = true
		e.startDeployment(tx, st, KindStop, st.app.clone(), nil, tx.plan.version)
	}
	for _, id := range slices.Sorted(maps.Keys(c.put)) {
		a := c.put[id]
		st := e.apps[id]
		if st != nil && st.deleted {
			// Being stopped (force was checked): it goes, and comes
			// back as a new app.
			e.dropApp(tx, st)
			st = nil
		}
		var err error
		if st == nil {
			_, err = e.create(tx, a)
		} else {
			_, err = e.replace(tx, st, a, nil)
		}
		if err != nil {
			// Only a service port taken meanwhile gets here; what is
			// done stays done, as a partly applied plan in Marathon.
			e.log.Warn("an app of a plan could not be deployed", "app_id", id, "err", err)
			continue
		}
		e.apiPostEvent(tx, o, a)
	}
	if c.forget {
		e.forgetGroupVersions(tx, c.group)
	}
	if c.keep {
		e.keepGroupVersion(tx, c.group, tx.plan.version)
	}
	return e.finishPlan(tx), nil, nil
}

// maxGroupVersions bounds the versions kept of one group.
const maxGroupVersions = 20

// keepGroupVersion stores group id as it is now (its apps' definitions,
// its subgroups and their dependencies) as its version v, the oldest
// going past maxGroupVersions. A group too large for one stored value
// (hundreds of apps) is not kept, and cannot be rolled back to v.
func (e *engine) keepGroupVersion(tx *txn, id PathID, v string) {
	g, ok := buildGroup(e.apps, e.groups, id)
	if !ok {
		return
	}
	g.Version = v
	b := mustJSON(g)
	if len(b) > frameworks.MaxValueBytes {
		e.log.Warn("a version of a group too large to keep; it cannot be rolled back to", "group", id, "version", v, "bytes", len(b))
		return
	}
	tx.ops = append(tx.ops, frameworks.Put(bucketGroupVersions, string(id)+"@"+v, b))
	vs := append(e.groupVersions[id], v)
	for len(vs) > maxGroupVersions {
		tx.ops = append(tx.ops, frameworks.Delete(bucketGroupVersions, string(id)+"@"+vs[0]))
		vs = vs[1:]
	}
	e.groupVersions[id] = vs
}

// forgetGroupVersions drops the kept versions of id's subgroups, and of
// id unless it is the root.
func (e *engine) forgetGroupVersions(tx *txn, id PathID) {
	for g, vs := range e.groupVersions {
		if g == Root || !id.Contains(g) {
			continue
		}
		for _, v := range vs {
			tx.ops = append(tx.ops, frameworks.Delete(bucketGroupVersions, string(g)+"@"+v))
		}
		delete(e.groupVersions, g)
	}
}

// keepServicePorts gives a new definition of an app the service ports
// the current one was assigned where it says 0 and has as many ports: a
// definition sent back unchanged is unchanged.
func keepServicePorts(cur, a *App) {
	have, want := cur.servicePorts(), a.servicePorts()
	if len(have) != len(want) || a.bridged() != cur.bridged() {
		return
	}
	for k, p := range want {
		if *p == 0 {
			*p = *have[k]
		}
	}
	if !a.bridged() {
		a.Ports = make([]int, len(a.PortDefinitions))
		for i, p := range a.PortDefinitions {
			a.Ports[i] = p.Port
		}
	}
}

// unchanged says whether a deploys nothing new over the app's current
// definition.
func (e *engine) unchanged(id PathID, a *App) bool {
	st := e.apps[id]
	return st != nil && !st.deleted && st.app.Instances == a.Instances && sameConfig(st.app, a)
}

// createGroup is POST /v2/groups: a group that does not exist yet, with
// its apps and subgroups.
func (e *engine) createGroup(ctx context.Context, spec *groupSpec, force, dryRun bool, o origin) (*DeploymentResult, *planView, error) {
	var res *DeploymentResult
	var pv *planView
	err := e.do(ctx, func(tx *txn) error {
		if e.groupExists(spec.id) {
			return fmt.Errorf("Group %s is already created. Use PUT to change this group.: %w", spec.id, errdefs.ErrConflict)
		}
		c := &change{group: spec.id, put: map[PathID]*App{}, groups: spec.groups, keep: true}
		for id, a := range spec.apps {
			if st := e.apps[id]; st != nil && !st.deleted {
				return fmt.Errorf("An app with id [%s] already exists.: %w", id, errdefs.ErrConflict)
			}
			c.put[id] = a
		}
		var err error
		res, pv, err = e.apply(tx, c, force, dryRun, o)
		return err
	})
	return res, pv, err
}

// updateGroup is PUT /v2/groups[/{id}]: the group becomes what the body
// says (apps not in it stop, new ones start, changed ones restart or
// scale), or, with only scaleBy, every app in it scales by that factor.
func (e *engine) updateGroup(ctx context.Context, b *groupBody, spec *groupSpec, force, dryRun bool, o origin) (*DeploymentResult, *planView, error) {
	var res *DeploymentResult
	var pv *planView
	err := e.do(ctx, func(tx *txn) error {
		c := &change{group: spec.id, put: map[PathID]*App{}, groups: map[PathID]*Group{}, keep: true}
		onlyScale := b.ScaleBy != nil && len(b.Apps) == 0 && len(b.Groups) == 0
		switch {
		case b.Version != nil && len(b.Apps) == 0 && len(b.Groups) == 0:
			// The API reads the version's definition first (groupVersion).
			return (violations{{Path: "/version", Errors: []string{"a rollback is a PUT of the group's definition at that version"}}}).err()
		case onlyScale:
			if !e.groupExists(spec.id) {
				return groupNotFound(spec.id)
			}
			if *b.ScaleBy < 0 || math.IsNaN(*b.ScaleBy) || math.IsInf(*b.ScaleBy, 0) {
				return (violations{{Path: "/scaleBy", Errors: []string{"must be a number of 0 or more"}}}).err()
			}
			for id, st := range e.apps {
				if st.deleted || !spec.id.Contains(id) {
					continue
				}
				a := st.app.clone()
				a.Instances = int(math.Ceil(float64(a.Instances)**b.ScaleBy - 1e-9))
				if a.Instances > maxInstances {
					return (violations{{Path: "/scaleBy", Errors: []string{fmt.Sprintf("%s would have more than %d instances", id, maxInstances)}}}).err()
				}
				if a.Instances != st.app.Instances {
					c.put[id] = a
				}
			}
		default:
			c.groups = spec.groups
			for id, st := range e.apps {
				if !st.deleted && spec.id.Contains(id) && id != spec.id && spec.apps[id] == nil {
					c.stop = append(c.stop, id)
				}
			}
			slices.Sort(c.stop)
			for g := range e.groups {
				if g != spec.id && spec.id.Contains(g) && spec.groups[g] == nil {
					c.dropGroups = append(c.dropGroups, g)
				}
			}
			for id, a := range spec.apps {
				if st := e.apps[id]; st != nil && !st.deleted {
					keepServicePorts(st.app, a)
				}
				if !e.unchanged(id, a) {
					c.put[id] = a
				}
			}
		}
		var err error
		res, pv, err = e.apply(tx, c, force, dryRun, o)
		return err
	})
	return res, pv, err
}

// deleteGroup is DELETE /v2/groups[/{id}]: every app in the group stops
// and its groups are forgotten (the root group itself stays, empty).
func (e *engine) deleteGroup(ctx context.Context, id PathID, force bool, o origin) (*DeploymentResult, error) {
	var res *DeploymentResult
	err := e.do(ctx, func(tx *txn) error {
		if !e.groupExists(id) {
			return groupNotFound(id)
		}
		c := &change{group: id, forget: true, keep: id == Root}
		for aid, st := range e.apps {
			if !st.deleted && id.Contains(aid) {
				c.stop = append(c.stop, aid)
			}
		}
		slices.Sort(c.stop)
		for g := range e.groups {
			if id.Contains(g) && g != Root {
				c.dropGroups = append(c.dropGroups, g)
			}
		}
		var err error
		res, _, err = e.apply(tx, c, force, false, o)
		return err
	})
	return res, err
}

// putApps is PUT and PATCH /v2/apps: several apps changed (or created)
// in one plan; partial merges each body into its app's definition.
func (e *engine) putApps(ctx context.Context, bodies []json.RawMessage, partial, force bool, o origin) (*DeploymentResult, error) {
	var res *DeploymentResult
	err := e.do(ctx, func(tx *txn) error {
		c := &change{put: map[PathID]*App{}}
		var vs violations
		for k, body := range bodies {
			p := fmt.Sprintf("/(%d)", k)
			var head struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(body, &head); err != nil || head.ID == "" {
				vs.add(p+"/id", "error.path.missing")
				continue
			}
			id, err := ParsePathID(head.ID, Root)
			if err != nil {
				vs.add(p+"/id", "%s", errPathID)
				continue
			}
			base := []byte(body)
			st := e.apps[id]
			if st != nil && st.deleted {
				return lockedBy(st)
			}
			if st != nil && partial {
				if base, err = mergeApp(st.app, body); err != nil {
					return err
				}
			}
			a, err := decodeApp(base, defaultApp())
			if err == nil {
				err = a.check()
			}
			var inv *InvalidError
			if errors.As(err, &inv) {
				for _, v := range inv.Violations {
					vs.add(p+v.Path, "%s", strings.Join(v.Errors, ", "))
				}
				continue
			} else if err != nil {
				return err
			}
			if _, dup := c.put[id]; dup {
				vs.add(p+"/id", "app %s is given twice", id)
				continue
			}
			if st != nil {
				keepServicePorts(st.app, a)
			}
			if !e.unchanged(id, a) {
				c.put[id] = a
			}
		}
		if err := vs.err(); err != nil {
			return err
		}
		var err error
		res, _, err = e.apply(tx, c, force, false, o)
		return err
	})
	return res, err
}

func groupNotFound(id PathID) error {
	return fmt.Errorf("Group '%s' does not exist: %w", id, errdefs.ErrNotFound)
}

// groupVersion is the kept version v of group id, as a body PUT
// /v2/groups takes: a rollback to it is that PUT.
func (s *Service) groupVersion(ctx context.Context, id PathID, v string) ([]byte, error) {
	if _, err := ParseTime(v); err != nil {
		return nil, fmt.Errorf("Group '%s' has no version %.40q: %w", id, v, errdefs.ErrNotFound)
	}
	b, err := s.store.Get(ctx, bucketGroupVersions, string(id)+"@"+v)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("Group '%s' has no version %s (the versions kept are those of its last %d changes through /v2/groups): %w", id, v, maxGroupVersions, errdefs.ErrNotFound)
	}
	return b, err
}
