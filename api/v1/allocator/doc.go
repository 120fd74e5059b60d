// Package allocator is the Go form of Apache Mesos's mesos.v1.allocator
// protobuf package: the status of an inverse offer, which the maintenance
// status reports. Generated from api/v1/proto/mesos/v1/allocator/
// allocator.proto by api/v1/gen.sh.
package allocator
