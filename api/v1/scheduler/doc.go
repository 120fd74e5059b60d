// Package scheduler is the Go form of Apache Mesos's mesos.v1.scheduler
// protobuf package: the Call a framework POSTs to /api/v1/scheduler, the
// Events the master streams back, and the synchronous Response. Generated
// from api/v1/proto/mesos/v1/scheduler/scheduler.proto by api/v1/gen.sh.
//
// A Call or Event is a union: Type says which sub-message is set, e.g.
// Call{Type: Call_SUBSCRIBE.Enum(), Subscribe: &Call_Subscribe{...}}.
package scheduler
