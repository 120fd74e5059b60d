// Package frameworks is what mesolite's built-in frameworks (apps, the
// Marathon-compatible service runner, and jobs, the Chronos-compatible
// one) share below their own APIs: they reach the master only through the
// v1 scheduler API, as any third-party framework does.
//
//   - Driver holds the framework's subscription (through package
//     scheduler's client): it subscribes with the framework id kept in the
//     Store, so a restarted framework fails over to its own tasks instead
//     of starting a second framework; it reconciles on every
//     (re)subscription, explicitly for the tasks the framework knows and
//     then implicitly, as Mesos's reconciliation docs recommend; it hands
//     offers to the framework's Scheduler and launches what it decides,
//     declining the rest with filters; it revives offers when the
//     Scheduler says it has work and suppresses them when it has none; it
//     acknowledges a status update only after the Scheduler has acted on
//     it (recorded it in its store), so an update is never lost to a crash.
//   - Store is the framework's durable state: a few buckets of keys and
//     values, changed atomically. OpenLocalStore keeps it under the
//     framework's --work_dir with bbolt (fsync on every commit);
//     frameworks/zkstore keeps it in ZooKeeper for several instances
//     electing a leader, with the same limits (frameworks/storetest is
//     the suite both pass).
//   - frameworks/ha is that election: one instance leads (runs the
//     framework from the ZooKeeper store, fenced on its election znode),
//     the others redirect the API to it and take over when it dies.
//   - Constraint places tasks by hostname and agent attributes with
//     Marathon's operators (UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE,
//     MAX_PER, IS); offer arithmetic itself is resources.Allocate.
//
// A Driver never kills a task because it (re)started: tasks the store
// knows are reconciled and kept. What to kill is the Scheduler's decision.
package frameworks
