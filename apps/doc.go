// Package apps is `mesolite apps`: a framework that keeps long-running
// apps running, and serves Marathon's REST API (/v2/apps, /v2/tasks,
// /v2/deployments, /v2/queue, /v2/events, /v2/info, ...) so the tools
// written for Marathon (curl scripts, client libraries, load balancers and
// service discovery reading /v2/apps and /v2/events) work unchanged.
//
// An app is a definition (App: command or container, resources,
// instances, ports, health check, constraints, upgrade strategy) and its
// instances (Instance: one Mesos task each). Every change of a definition
// is a Deployment, at most one per app at a time: a start, a scale, a
// restart (a new config: the instances are replaced as the upgrade
// strategy allows) or a stop. What to do next is always decided by one
// pure function, plan, from the definition, the instances and the
// deployment, re-run on every change; so the framework converges from
// wherever it is, after its own restart as after a lost instance.
//
// The engine owns the state and changes it in one goroutine: each batch
// of changes is made in memory, written to the store (frameworks.Store)
// in one atomic Apply, and only then acted on (kills, launches, events)
// and answered. An instance is stored before its task is launched, so the
// framework never has a task it does not know of; a restarted framework
// reads its instances back and reconciles them with the master through
// frameworks.Driver, killing nothing that still runs.
//
// RunHA runs one of several instances on ZooKeeper (--zk) through
// frameworks/ha: a standby proxies the API to the leader (ha.Proxy, with
// Marathon's X-Marathon-Via) and answers /ping, /metrics and /v2/leader
// itself, the leader builds a Service from the state in ZooKeeper for
// each term of leadership, and DELETE /v2/leader abdicates.
//
// A change of several apps (groups, PUT /v2/apps of many) is one plan:
// a Deployment per app sharing the plan's id, each waiting for those of
// the apps it depends on (plan.go, groups.go); a change through
// /v2/groups keeps a version of the group, which PUT {"version"} rolls
// back to. HTTP, HTTPS and TCP health checks and readiness checks are
// probed by the service itself, only ever on the task's own host and
// host ports (probe.go). The
// framework is PARTITION_AWARE: an unreachable instance is kept, replaced
// and expunged as its app's unreachableStrategy says (engine.tick).
//
// What Marathon does that this package does not do yet: pods,
// persistent volumes, secrets. The web page at / is ui/ (ui.go).
// docs/apps.md has the detail.
package apps
