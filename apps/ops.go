package apps

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
)

// The API's changes. Each runs in the engine's loop (do), so it reads and
// changes the state it validated against: two concurrent PUTs of one app
// are one after the other, and the second sees the first's deployment.

// DeploymentResult is what a change that starts a deployment answers.
type DeploymentResult struct {
	DeploymentID string `json:"deploymentId"`
	Version      string `json:"version"`
}

func resultOf(d *Deployment) *DeploymentResult {
	return &DeploymentResult{DeploymentID: d.planID(), Version: d.Version}
}

// origin says who asked, for api_post_event.
type origin struct {
	remoteIP, uri string
}

func (e *engine) apiPostEvent(tx *txn, o origin, a *App) {
	tx.event(EventAPIPost, map[string]any{"clientIp": o.remoteIP, "uri": o.uri, "appDefinition": a})
}

// lockedBy is the error for an app a deployment holds.
func lockedBy(st *appState) error {
	return &LockedError{Deployments: []string{st.deployment.planID()}}
}

// createApp creates an app (POST /v2/apps) from a checked definition.
func (e *engine) createApp(ctx context.Context, a *App, o origin) (*App, *DeploymentResult, error) {
	var res *DeploymentResult
	var out *App
	err := e.do(ctx, func(tx *txn) error {
		id := PathID(a.ID)
		if st := e.apps[id]; st != nil {
			if st.deleted {
				return lockedBy(st)
			}
			return fmt.Errorf("An app with id [%s] already exists.: %w", id, errdefs.ErrConflict)
		}
		if err := checkCycles(e.currentApps(map[PathID]*App{id: a}), e.groups); err != nil {
			return err
		}
		d, err := e.create(tx, a)
		if err != nil {
			return err
		}
		e.apiPostEvent(tx, o, a)
		res, out = resultOf(d), a.clone()
		return nil
	})
	return out, res, err
}

func (e *engine) create(tx *txn, a *App) (*Deployment, error) {
	if err := e.assignServicePorts(a); err != nil {
		return nil, err
	}
	v := e.versionFor(tx)
	a.Version = v
	a.VersionInfo = &VersionInfo{LastScalingAt: v, LastConfigChangeAt: v}
	st := &appState{app: a, instances: map[string]*Instance{}, constraints: parseConstraints(a)}
	id := PathID(a.ID)
	e.apps[id] = st
	e.addVersion(tx, st)
	return e.startDeployment(tx, st, KindStart, nil, a.clone(), v), nil
}

// addVersion stores the app's current definition as a version, dropping
// the oldest past MaxVersions.
func (e *engine) addVersion(tx *txn, st *appState) {
	id := st.app.ID
	tx.apps[PathID(id)] = true
	tx.ops = append(tx.ops, frameworks.Put(bucketVersions, id+"@"+st.app.Version, mustJSON(st.app)))
	st.versions = append(st.versions, st.app.Version)
	for len(st.versions) > e.cfg.MaxVersions {
		tx.ops = append(tx.ops, frameworks.Delete(bucketVersions, id+"@"+st.versions[0]))
		st.versions = st.versions[1:]
	}
}

// putApp is PUT and PATCH of /v2/apps/{id}: a partial update merges the
// body into the current definition (Marathon's PUT without
// partialUpdate=false, and PATCH); a full one replaces it. An app that
// does not exist is created.
func (e *engine) putApp(ctx context.Context, id PathID, body []byte, partial, force bool, o origin) (*DeploymentResult, bool, error) {
	var res *DeploymentResult
	var created bool
	err := e.do(ctx, func(tx *txn) error {
		st := e.apps[id]
		if st != nil && st.deleted {
			return lockedBy(st)
		}
		base := body
		if st != nil && partial {
			merged, err := mergeApp(st.app, body)
			if err != nil {
				return err
			}
			base = merged
		}
		a, err := decodeApp(base, defaultApp())
		if err != nil {
			return err
		}
		if a.ID == "" {
			a.ID = string(id)
		}
		if err := a.check(); err != nil {
			return err
		}
		if PathID(a.ID) != id {
			return (violations{{Path: "/id", Errors: []string{fmt.Sprintf("the id in the body (%s) is not the one in the URL (%s)", a.ID, id)}}}).err()
		}
		if err := checkCycles(e.currentApps(map[PathID]*App{id: a}), e.groups); err != nil {
			return err
		}
		if st == nil {
			d, err := e.create(tx, a)
			if err != nil {
				return err
			}
			e.apiPostEvent(tx, o, a)
			res, created = resultOf(d), true
			return nil
		}
		if st.deployment != nil && !force {
			return lockedBy(st)
		}
		d, err := e.replace(tx, st, a, nil)
		if err != nil {
			return err
		}
		e.apiPostEvent(tx, o, a)
		res = resultOf(d)
		return nil
	})
	return res, created, err
}

// replace makes a the app's definition and deploys it: a scale when only
// the instance count changed, a restart otherwise. configVersion, when
// set, is the config version a takes (a rollback to it) instead of a new
// one.
func (e *engine) replace(tx *txn, st *appState, a *App, configVersion *string) (*Deployment, error) {
	old := st.app
	if err := e.assignServicePorts(a); err != nil {
		return nil, err
	}
	v := e.versionFor(tx)
	a.Version = v
	cv := v
	switch {
	case configVersion != nil:
		cv = *configVersion
	case sameConfig(old, a):
		cv = old.configVersion()
	}
	a.VersionInfo = &VersionInfo{LastScalingAt: v, LastConfigChangeAt: cv}
	if cv != old.configVersion() {
		st.failures, st.delayUntil = 0, time.Time{}
	}
	st.app = a
	st.constraints = parseConstraints(a)
	e.addVersion(tx, st)
	kind := KindScale
	for _, i := range st.instances {
		if i.active() && i.ConfigVersion != cv {
			kind = KindRestart
		}
	}
	return e.startDeployment(tx, st, kind, old, a.clone(), v), nil
}

// sameConfig says whether two definitions differ in nothing but the
// instance count (and their versions): a change that restarts nothing.
func sameConfig(a, b *App) bool {
	x, y := a.clone(), b.clone()
	x.Instances, y.Instances = 0, 0
	x.Version, y.Version = "", ""
	x.VersionInfo, y.VersionInfo = nil, nil
	return bytes.Equal(mustJSON(x), mustJSON(y))
}

// mergeApp lays a partial definition over the current one, field by
// field at the top level. A deprecated field and its replacement go
// together: a body with portDefinitions drops the current ports, and the
// other way round.
func mergeApp(cur *App, body []byte) ([]byte, error) {
	var patch map[string]json.RawMessage
	if err := json.Unmarshal(body, &patch); err != nil {
		return nil, jsonError(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(mustJSON(cur), &m); err != nil {
		return nil, err
	}
	delete(m, "version")
	delete(m, "versionInfo")
	pairs := [][2]string{{"ports", "portDefinitions"}, {"uris", "fetch"}}
	for _, p := range pairs {
		if _, ok := patch[p[0]]; ok {
			delete(m, p[1])
		}
		if _, ok := patch[p[1]]; ok {
			delete(m, p[0])
		}
	}
	if _, ok := patch["container"]; ok {
		// A new container brings its own networking.
		delete(m, "portDefinitions")
		delete(m, "ports")
	}
	for k, v := range patch {
		if k == "version" {
			continue
		}
		m[k] = v
	}
	return json.Marshal(m)
}

// rollbackTo deploys an earlier version of an app (PUT with only
// "version"): its definition, and its config version, so instances that
// run it stay.
func (e *engine) rollbackTo(ctx context.Context, id PathID, old *App, force bool, o origin) (*DeploymentResult, error) {
	var res *DeploymentResult
	err := e.do(ctx, func(tx *txn) error {
		st := e.apps[id]
		if st == nil || st.deleted {
			return appNotFound(id)
		}
		if st.deployment != nil && !force {
			return lockedBy(st)
		}
		a := old.clone()
		cv := a.configVersion()
		d, err := e.replace(tx, st, a, &cv)
		if err != nil {
			return err
		}
		e.apiPostEvent(tx, o, a)
		res = resultOf(d)
		return nil
	})
	return res, err
}

// deleteApp stops an app: it is gone for the API at once, and from the
// store once its instances have ended.
func (e *engine) deleteApp(ctx context.Context, id PathID, force bool) (*DeploymentResult, error) {
	var res *DeploymentResult
	err := e.do(ctx, func(tx *txn) error {
		st := e.apps[id]
		if st == nil || st.deleted {
			return appNotFound(id)
		}
		if st.deployment != nil && !force {
			return lockedBy(st)
		}
		st.deleted = true
		d := e.startDeployment(tx, st, KindStop, st.app.clone(), nil, e.newVersion(tx.now))
		res = resultOf(d)
		return nil
	})
	return res, err
}

// restartApp replaces every instance (POST /v2/apps/{id}/restart).
func (e *engine) restartApp(ctx context.Context, id PathID, force bool) (*DeploymentResult, error) {
	var res *DeploymentResult
	err := e.do(ctx, func(tx *txn) error {
		st := e.apps[id]
		if st == nil || st.deleted {
			return appNotFound(id)
		}
		if st.deployment != nil && !force {
			return lockedBy(st)
		}
		old := st.app
		a := old.clone()
		v := e.newVersion(tx.now)
		a.Version = v
		a.VersionInfo = &VersionInfo{LastScalingAt: v, LastConfigChangeAt: v}
		st.app = a
		st.failures, st.delayUntil = 0, time.Time{}
		e.addVersion(tx, st)
		res = resultOf(e.startDeployment(tx, st, KindRestart, old.clone(), a.clone(), v))
		return nil
	})
	return res, err
}

// killInstances kills the app's instances that pick selects; with scale,
// the app's instance count goes down by as many (a deployment), else they
// are replaced.
func (e *engine) killInstances(ctx context.Context, id PathID, pick func(*Instance) bool, scale, force bool) ([]Instance, *DeploymentResult, error) {
	var killed []Instance
	var res *DeploymentResult
	err := e.do(ctx, func(tx *txn) error {
		st := e.apps[id]
		if st == nil || st.deleted {
			return appNotFound(id)
		}
		var victims []*Instance
		for _, i := range st.instances {
			if i.active() && pick(i) {
				victims = append(victims, i)
			}
		}
		slices.SortFunc(victims, func(a, b *Instance) int { return a.LaunchedAt.Compare(b.LaunchedAt) })
		if scale && st.deployment != nil && !force {
			return lockedBy(st)
		}
		for _, i := range victims {
			e.kill(tx, i, "asked through the API")
			killed = append(killed, *i)
		}
		if scale {
			a := st.app.clone()
			a.Instances = max(0, a.Instances-len(victims))
			d, err := e.replace(tx, st, a, nil)
			if err != nil {
				return err
			}
			res = resultOf(d)
		}
		return nil
	})
	return killed, res, err
}

// deleteDeployment cancels a deployment plan. With force it only stops
// it (the apps stay as they are; stops go through, their instances
// killed); without, a new plan rolls every app of it back to where it
// was.
func (e *engine) deleteDeployment(ctx context.Context, id string, force bool) (*DeploymentResult, error) {
	var res *DeploymentResult
	err := e.do(ctx, func(tx *txn) error {
		parts := e.planParts(id)
		if len(parts) == 0 {
			return fmt.Errorf("DeploymentPlan %s does not exist: %w", id, errdefs.ErrNotFound)
		}
		if force {
			e.cancelPlan(tx, id, nil)
			return nil
		}
		for _, d := range parts {
			e.endDeployment(tx, e.apps[d.AppID], DeploymentCanceled)
		}
		tx.plan = &planCtx{id: newDeploymentID(), version: e.newVersion(tx.now)}
		defer func() { tx.plan = nil }()
		for _, d := range parts {
			st := e.apps[d.AppID]
			switch d.Kind {
			case KindStart:
				st.deleted = true
				e.startDeployment(tx, st, KindStop, st.app.clone(), nil, tx.plan.version)
			default:
				st.deleted = false
				a := d.Original.clone()
				cv := a.configVersion()
				if _, err := e.replace(tx, st, a, &cv); err != nil {
					return err
				}
			}
		}
		res = e.finishPlan(tx)
		return nil
	})
	return res, err
}

// planParts is the running deployments of a plan, by app id.
func (e *engine) planParts(planID string) []*Deployment {
	var out []*Deployment
	for _, d := range e.deployments {
		if d.planID() == planID {
			out = append(out, d)
		}
	}
	slices.SortFunc(out, func(a, b *Deployment) int { return strings.Compare(string(a.AppID), string(b.AppID)) })
	return out
}

// resetDelay ends an app's launch backoff (DELETE /v2/queue/{id}/delay).
func (e *engine) resetDelay(ctx context.Context, id PathID) error {
	return e.do(ctx, func(tx *txn) error {
		st := e.apps[id]
		if st == nil || st.deleted {
			return appNotFound(id)
		}
		st.failures, st.delayUntil = 0, time.Time{}
		tx.revive = true
		tx.converge[id] = true
		return nil
	})
}

// Service ports: Marathon gives each port of an app a cluster-wide one
// (load balancers listen on it) from [ServicePortMin, ServicePortMax].

func (a *App) servicePorts() []*int {
	var out []*int
	if a.bridged() {
		for i := range a.Container.PortMappings {
			out = append(out, &a.Container.PortMappings[i].ServicePort)
		}
		if a.Container.Docker != nil {
			for i := range a.Container.Docker.PortMappings {
				out = append(out, &a.Container.Docker.PortMappings[i].ServicePort)
			}
		}
		return out
	}
	for i := range a.PortDefinitions {
		out = append(out, &a.PortDefinitions[i].Port)
	}
	return out
}

func (e *engine) claimServicePorts(a *App) {
	for _, p := range a.servicePorts() {
		if *p != 0 {
			e.servicePorts[*p] = PathID(a.ID)
		}
	}
}

func (e *engine) releaseServicePorts(id PathID) {
	for p, owner := range e.servicePorts {
		if owner == id {
			delete(e.servicePorts, p)
		}
	}
}

// assignServicePorts gives every port 0 of a a free service port, and
// refuses one another app has (with requirePorts, the ports are host
// ports, which apps on other hosts may share).
func (e *engine) assignServicePorts(a *App) error {
	id := PathID(a.ID)
	var vs violations
	taken := map[int]bool{}
	for _, p := range a.servicePorts() {
		if *p == 0 {
			continue
		}
		if owner, ok := e.servicePorts[*p]; ok && owner != id && !a.RequirePorts {
			vs.add("/portDefinitions", "Requested service port %d conflicts with a service port in use by %s", *p, owner)
		}
		taken[*p] = true
	}
	if err := vs.err(); err != nil {
		return err
	}
	next := e.cfg.ServicePortMin
	for _, p := range a.servicePorts() {
		if *p != 0 {
			continue
		}
		for next <= e.cfg.ServicePortMax {
			if owner, used := e.servicePorts[next]; (!used || owner == id) && !taken[next] {
				break
			}
			next++
		}
		if next > e.cfg.ServicePortMax {
			return fmt.Errorf("no service port left in %d-%d: %w", e.cfg.ServicePortMin, e.cfg.ServicePortMax, errdefs.ErrUnavailable)
		}
		*p = next
		taken[next] = true
		next++
	}
	e.releaseServicePorts(id)
	e.claimServicePorts(a)
	a.Ports = nil
	if !a.bridged() {
		a.Ports = make([]int, len(a.PortDefinitions))
		for i, p := range a.PortDefinitions {
			a.Ports[i] = p.Port
		}
	} else {
		a.Ports = []int{}
	}
	return nil
}
