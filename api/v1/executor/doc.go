// Package executor is the Go form of Apache Mesos's mesos.v1.executor
// protobuf package: the Call an executor POSTs to the agent's
// /api/v1/executor and the Events the agent streams back. Generated from
// api/v1/proto/mesos/v1/executor/executor.proto by api/v1/gen.sh.
package executor
