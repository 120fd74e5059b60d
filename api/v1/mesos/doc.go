// Package mesos is the Go form of Apache Mesos's mesos.v1 protobuf package:
// IDs, FrameworkInfo, Offer, TaskInfo, TaskStatus, Resource and the rest of
// the types the v1 scheduler and executor APIs carry. The code is generated
// from api/v1/proto/mesos/v1/mesos.proto by api/v1/gen.sh; only the small
// helper files (ptr.go) are written by hand.
//
// Field names and numbers are Mesos's, so these messages interoperate with
// Mesos frameworks and executors in both encodings. proto2 optional fields
// are pointers: set them with Ptr, or with the generated Enum method for
// enum values (TaskState_TASK_RUNNING.Enum()).
package mesos
