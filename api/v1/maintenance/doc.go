// Package maintenance is the Go form of Apache Mesos's mesos.v1.maintenance
// protobuf package: maintenance schedules and the cluster's maintenance
// status, as the master operator API's maintenance calls carry them.
// Generated from api/v1/proto/mesos/v1/maintenance/maintenance.proto by
// api/v1/gen.sh.
package maintenance
