// Package store keeps the master's registry on disk with bbolt: the agents
// it admitted (id, AgentInfo, address) and the frameworks it gave ids to
// (FrameworkInfo, and whether they were torn down). A restarted master reads
// it back so re-registering agents and re-subscribing frameworks keep their
// ids, and a framework that was torn down stays removed.
//
// Tasks are not stored: agents report them when they re-register, as they do
// to a failed-over Mesos master.
package store
