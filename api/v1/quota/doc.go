// Package quota is the Go form of Apache Mesos's mesos.v1.quota protobuf
// package: role quotas as the master operator API's quota calls carry
// them. Generated from api/v1/proto/mesos/v1/quota/quota.proto by
// api/v1/gen.sh.
package quota
