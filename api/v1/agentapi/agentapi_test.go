package agentapi_test

import (
	"testing"

	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/api/v1/codec"
	"google.golang.org/protobuf/proto"
)

// The call types are Mesos's, by name and number: a renumbered value
// would decode as another call from a Mesos client's protobuf.
func TestTypesAreMesos(t *testing.T) {
	calls := map[string]int32{
		"UNKNOWN": 0, "GET_HEALTH": 1, "GET_FLAGS": 2, "GET_VERSION": 3, "GET_METRICS": 4,
		"GET_LOGGING_LEVEL": 5, "SET_LOGGING_LEVEL": 6, "LIST_FILES": 7, "READ_FILE": 8,
		"GET_STATE": 9, "GET_CONTAINERS": 10, "GET_FRAMEWORKS": 11, "GET_EXECUTORS": 12,
		"GET_OPERATIONS": 31, "GET_TASKS": 13, "GET_AGENT": 20, "GET_RESOURCE_PROVIDERS": 26,
		"LAUNCH_NESTED_CONTAINER": 14, "WAIT_NESTED_CONTAINER": 15, "KILL_NESTED_CONTAINER": 16,
		"REMOVE_NESTED_CONTAINER": 21, "LAUNCH_NESTED_CONTAINER_SESSION": 17,
		"ATTACH_CONTAINER_INPUT": 18, "ATTACH_CONTAINER_OUTPUT": 19, "LAUNCH_CONTAINER": 22,
		"WAIT_CONTAINER": 23, "KILL_CONTAINER": 24, "REMOVE_CONTAINER": 25,
		"ADD_RESOURCE_PROVIDER_CONFIG": 27, "UPDATE_RESOURCE_PROVIDER_CONFIG": 28,
		"REMOVE_RESOURCE_PROVIDER_CONFIG": 29, "MARK_RESOURCE_PROVIDER_GONE": 32, "PRUNE_IMAGES": 30,
	}
	if len(agentapi.Call_Type_name) != len(calls) {
		t.Errorf("Call.Type has %d values, want %d", len(agentapi.Call_Type_name), len(calls))
	}
	for name, num := range calls {
		if got, ok := agentapi.Call_Type_value[name]; !ok || got != num {
			t.Errorf("Call.%s = %d (present %v), want %d", name, got, ok, num)
		}
	}
	responses := map[string]int32{
		"UNKNOWN": 0, "GET_HEALTH": 1, "GET_FLAGS": 2, "GET_VERSION": 3, "GET_METRICS": 4,
		"GET_LOGGING_LEVEL": 5, "LIST_FILES": 6, "READ_FILE": 7, "GET_STATE": 8,
		"GET_CONTAINERS": 9, "GET_FRAMEWORKS": 10, "GET_EXECUTORS": 11, "GET_OPERATIONS": 17,
		"GET_TASKS": 12, "GET_AGENT": 14, "GET_RESOURCE_PROVIDERS": 16,
		"WAIT_NESTED_CONTAINER": 13, "WAIT_CONTAINER": 15,
	}
	for name, num := range responses {
		if got, ok := agentapi.Response_Type_value[name]; !ok || got != num {
			t.Errorf("Response.%s = %d (present %v), want %d", name, got, ok, num)
		}
	}
}

// The examples of Mesos's agent API documentation decode, and survive a
// round trip through both encodings.
func TestMesosExamplesDecode(t *testing.T) {
	for name, body := range map[string]string{
		"session": `{"type":"LAUNCH_NESTED_CONTAINER_SESSION","launch_nested_container_session":{"container_id":{"parent":{"value":"134bae93"},"value":"e193a755"},` +
			`"command":{"environment":{"variables":[{"name":"ENV_VAR_KEY","type":"VALUE","value":"env_var_value"}]},"shell":true,"value":"echo hi"}}}`,
		"input id":   `{"type":"ATTACH_CONTAINER_INPUT","attach_container_input":{"type":"CONTAINER_ID","container_id":{"value":"da737efb"}}}`,
		"input data": `{"type":"ATTACH_CONTAINER_INPUT","attach_container_input":{"type":"PROCESS_IO","process_io":{"type":"DATA","data":{"type":"STDIN","data":"dGVzdAo="}}}}`,
		"heartbeat":  `{"type":"ATTACH_CONTAINER_INPUT","attach_container_input":{"type":"PROCESS_IO","process_io":{"type":"CONTROL","control":{"type":"HEARTBEAT","heartbeat":{"interval":{"nanoseconds":30000000000}}}}}}`,
		"wait":       `{"type":"WAIT_NESTED_CONTAINER","wait_nested_container":{"container_id":{"parent":{"value":"p"},"value":"c"}}}`,
		"read":       `{"type":"READ_FILE","read_file":{"length":6,"offset":1,"path":"myname"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			c := &agentapi.Call{}
			if err := codec.JSON.Unmarshal([]byte(body), c); err != nil {
				t.Fatalf("decode: %v", err)
			}
			for _, cd := range []codec.Codec{codec.JSON, codec.Protobuf} {
				b, err := cd.Marshal(c)
				if err != nil {
					t.Fatalf("%s marshal: %v", cd.MediaType(), err)
				}
				back := &agentapi.Call{}
				if err := cd.Unmarshal(b, back); err != nil {
					t.Fatalf("%s unmarshal: %v", cd.MediaType(), err)
				}
				if !proto.Equal(c, back) {
					t.Errorf("%s round trip changed the call:\n%v\n%v", cd.MediaType(), c, back)
				}
			}
		})
	}
}
