// Package master is the Go form of Apache Mesos's mesos.v1.master protobuf
// package: the Call an operator POSTs to /api/v1 on the master, the
// synchronous Response, and the Events of a SUBSCRIBE stream. Generated
// from api/v1/proto/mesos/v1/master/master.proto by api/v1/gen.sh.
//
// Call, Response and Event are unions: Type says which sub-message is
// set, e.g. Call{Type: Call_GET_STATE.Enum()} is answered by
// Response{Type: Response_GET_STATE.Enum(), GetState: &Response_GetState{...}}.
package master
