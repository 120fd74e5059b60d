// Package zkstore is a frameworks.Store in ZooKeeper, so that several
// instances of a framework (apps, jobs) electing a leader share one state:
// the new leader reads what the old one wrote.
//
// # Layout
//
// Under the store's path (for apps: <--zk path>/state; for jobs:
// <--zk_path>/state):
//
//	<path>/<bucket>/<key>        one value, the key escaped into a znode name
//	<path>/TXN/<n>/<chunk>       a large Apply being written (see below)
//	<path>/TXN/<n>/commit        ... and its commit mark
//
// Keys are escaped (%XX for every byte outside [A-Za-z0-9_.-], and for
// the dots of "." and ".."), so a key is never a path and never a name
// ZooKeeper refuses. Bucket names are lowercase (frameworks' rule), so
// TXN is never a bucket.
//
// # Atomic Apply
//
// An Apply is one ZooKeeper multi when its requests fit in one ZooKeeper
// packet (jute.maxbuffer, 1 MB by default, of which maxTxnBytes is used).
// A larger one (frameworks allows 1,000 values of up to 512 KiB each) is
// written as a journal: its ops in chunk znodes, then a commit znode
// created in one request, then the ops applied in several multis, then
// the journal deleted. Whoever opens the store next, or the same store's
// next Apply, rolls a committed journal forward and drops an uncommitted
// one, so an Apply is still all or nothing.
//
// # Fencing
//
// Fence names a znode (the leader's ephemeral election znode) that every
// later write checks in the same multi: once the leader's session has
// expired its znode is gone and its writes fail with ErrDeposed, so a
// deposed leader that has not noticed yet cannot overwrite what its
// successor writes.
//
// # Reads are bounded
//
// A value read back is refused when it is larger than
// frameworks.MaxValueBytes, and the client's read buffer is bounded, so a
// corrupted or hostile znode cannot make a framework allocate without
// bound.
//
// # Connection loss
//
// go-zookeeper reconnects by itself (within the session, and with a new
// session after expiry, re-sending the digest credentials). While it is
// disconnected a call waits up to the operation timeout, retrying with
// backoff, and then fails with errdefs.ErrUnavailable naming the servers
// and the connection's state.
package zkstore
