// Package v1 holds mesolite's wire types for the Mesos v1 HTTP API and
// nothing else; it is the one layer every other package may import, and it
// imports none of ours but errdefs.
//
// Layout:
//
//	proto/     the .proto sources: Mesos's own message names, field numbers and
//	           enum values (mesos/v1, mesos/v1/scheduler, mesos/v1/executor,
//	           mesos/v1/master and the quota, maintenance and allocator
//	           packages it imports) and mesolite's master-agent protocol
//	           (mesolite/agent/v1)
//	mesos/     generated Go for mesos.v1 (package mesos), plus small helpers
//	scheduler/ generated Go for mesos.v1.scheduler: Call, Event, Response
//	executor/  generated Go for mesos.v1.executor: Call, Event
//	master/    generated Go for mesos.v1.master, the master operator API:
//	           Call, Response, Event; quota/, maintenance/ and allocator/
//	           hold the mesos.v1 packages it imports
//	agentpb/   generated Go for mesolite.agent.v1
//	codec/     the application/json and application/x-protobuf encodings and
//	           content negotiation
//	recordio/  the RecordIO framing of streaming responses
//
// The generated files are committed; after editing a .proto run
// api/v1/gen.sh (needs protoc and protoc-gen-go) and commit the result.
package v1
