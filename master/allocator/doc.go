// Package allocator decides which framework is offered which agent's free
// resources: hierarchical Dominant Resource Fairness, as Mesos's
// HierarchicalDRF allocator does it.
//
// One allocation cycle walks the active agents in a random order. For each
// agent it visits the roles in order of their weighted dominant share, and
// within a role the frameworks in order of their dominant share (the largest
// of cpus, mem, disk and gpus allocated to them, as a fraction of the
// cluster's total), and gives everything the first eligible framework may
// take (unreserved resources plus those reserved for the role) to it. A
// framework is eligible unless it is inactive, has suppressed offers for the
// role, has declined these very resources on this agent with a filter that
// has not expired, or the agent has GPUs and the framework lacks the
// GPU_RESOURCES capability (so GPU machines are kept for the frameworks that
// need them). Shares are updated after every grant, so a cycle over many
// agents spreads them fairly.
//
// The Allocator is not safe for concurrent use: the master calls it under
// its own lock, which keeps offers, tasks and the allocator's books in step.
// Time comes from Options.Now, so tests drive filter expiry with a fake clock.
package allocator
