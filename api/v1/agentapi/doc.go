// Package agentapi is the Go form of Apache Mesos's mesos.v1.agent
// protobuf package: the Call an operator POSTs to /api/v1 on an agent, the
// synchronous Response, and ProcessIO, the record of a nested container
// session's streams. Generated from
// api/v1/proto/mesos/v1/agent/agent.proto by api/v1/gen.sh. (Not agentpb:
// that is mesolite's own master-agent protocol.)
//
// Call and Response are unions: Type says which sub-message is set, e.g.
// Call{Type: Call_GET_STATE.Enum()} is answered by
// Response{Type: Response_GET_STATE.Enum(), GetState: &Response_GetState{...}}.
package agentapi
