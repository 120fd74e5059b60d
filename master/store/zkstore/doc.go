// Package zkstore keeps the master's registry in ZooKeeper, so that every
// master of a --zk cluster reads what the previous leader wrote.
//
// # Layout
//
// Under the --zk path (beside the masters' election znodes):
//
//	<path>/registry/epoch                 who leads the registry; its version is the epoch
//	<path>/registry/agents/<agent id>     one agent record (JSON, store.EncodeAgent)
//	<path>/registry/frameworks/<fw id>    one framework record (store.EncodeFramework)
//	<path>/registry/tasks/<fw id>/<task>  one completed task (store.EncodeTask)
//
// Ids are escaped into znode names (%XX for anything outside
// [A-Za-z0-9._-]); records carry their ids, so names are only keys.
//
// # Why one znode per record
//
// A znode holds at most 1 MB (jute.maxbuffer), and a registry of 10,000
// agents or 50 frameworks with 1,000 completed tasks each is tens of
// megabytes. A chunked snapshot with a manifest would bound reads to a few
// znodes but make every change (an agent registering, a task completing)
// rewrite a chunk of up to a megabyte; with one znode per record a change
// writes only its record, and the whole registry is read only once per
// election, with the reads pipelined on one connection.
//
// # Compare-and-set: who may write
//
// A newly elected master calls Load, which first claims the registry: it
// sets the epoch znode with the version it just read (a compare-and-set),
// then reads everything. Every later Apply is one ZooKeeper multi-op
// transaction that starts with a check of the epoch znode's version: when
// another master has claimed the registry since, the whole transaction is
// refused and Apply returns ErrDeposed. Per-record versions could not give
// this guarantee (a deposed leader could still write records the new
// leader has not touched yet); one fencing version checked in the same
// transaction as the write does. A master that gets ErrDeposed is no
// longer the leader and must stop serving.
//
// Records are written with version -1 under that check: within one epoch
// one writer applies ops in order, so a record's own version adds nothing.
package zkstore
