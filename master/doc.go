// Package master is the mesolite master: the Mesos v1 scheduler HTTP API
// (POST /api/v1/scheduler), the master side of mesolite's agent protocol
// (POST /api/v1/agent, docs/agent-protocol.md), a hierarchical DRF
// allocator (package allocator) over exact resource arithmetic (package
// resources), a registry of agents and frameworks on disk (package store)
// or, with --zk, in ZooKeeper shared by every master (package zkstore),
// leader election through ZooKeeper (package detector), and Mesos's
// read-only endpoints (/master/state, /master/frameworks, /master/slaves,
// /master/tasks, /metrics/snapshot) plus Prometheus /metrics.
//
// # Concurrency
//
// One mutex guards the master's books (frameworks, agents, tasks, offers,
// the allocator). Handlers take it for the time it takes to change the
// books and queue events; nothing under it blocks on the network. Every
// subscriber (a framework's SUBSCRIBE, an agent's REGISTER) has an event
// stream: the master appends encoded events to it, and the HTTP handler
// that owns the connection writes them out, with a write deadline so a
// peer that stopped reading is noticed. Registry writes (bbolt and fsync,
// or a ZooKeeper transaction) happen outside the lock: handlers queue ops
// under it, in the order they change the books, and one writer applies
// the queue in that order (registry.go); a handler that must not answer
// before the write waits for it after unlocking.
//
// # Leadership
//
// follower → recovering (elected; the registry is claimed and read, calls
// get 503) → leading; a registry write refused because another master
// claimed the registry makes it deposed, and Run returns. See masterRole.
//
// # A task's life, as the master sees it
//
//	ACCEPT ──validate──▶ TASK_ERROR / TASK_LOST|DROPPED (master-made, no uuid)
//	   │ valid
//	   ▼
//	STAGING ──RUN_TASK──▶ agent ──UPDATE(uuid)──▶ master ──UPDATE──▶ framework
//	   │                                  ▲                               │
//	   │                                  └──────ACKNOWLEDGE(uuid)────────┘
//	   ▼
//	STARTING ─▶ RUNNING ─▶ FINISHED | FAILED | KILLED | ...   (resources recovered
//	                                                          when the latest state
//	                                                          is terminal; the task
//	                                                          is completed when its
//	                                                          terminal update is
//	                                                          acknowledged)
//	agent gone past its timeout: TASK_LOST (TASK_UNREACHABLE if PARTITION_AWARE)
//	agent back without the task: TASK_LOST (TASK_GONE if PARTITION_AWARE)
//
// # Time
//
// Offer timeouts, offer filters, framework failover timeouts and agent
// removal are deadlines compared with Config.Clock, checked every 250 ms
// and at each allocation cycle, so tests move a fake clock instead of
// sleeping.
package master
