package master_test

import (
	"testing"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/master"
)

// The call and event types are Mesos's, by name and number: a renumbered
// value would decode as another call from a Mesos client's protobuf.
func TestTypesAreMesos(t *testing.T) {
	calls := map[string]int32{
		"UNKNOWN": 0, "GET_HEALTH": 1, "GET_FLAGS": 2, "GET_VERSION": 3, "GET_METRICS": 4,
		"GET_LOGGING_LEVEL": 5, "SET_LOGGING_LEVEL": 6, "LIST_FILES": 7, "READ_FILE": 8,
		"GET_STATE": 9, "GET_AGENTS": 10, "GET_FRAMEWORKS": 11, "GET_EXECUTORS": 12,
		"GET_OPERATIONS": 33, "GET_TASKS": 13, "GET_ROLES": 14, "GET_WEIGHTS": 15,
		"UPDATE_WEIGHTS": 16, "GET_MASTER": 17, "SUBSCRIBE": 18, "RESERVE_RESOURCES": 19,
		"UNRESERVE_RESOURCES": 20, "CREATE_VOLUMES": 21, "DESTROY_VOLUMES": 22,
		"GROW_VOLUME": 34, "SHRINK_VOLUME": 35, "GET_MAINTENANCE_STATUS": 23,
		"GET_MAINTENANCE_SCHEDULE": 24, "UPDATE_MAINTENANCE_SCHEDULE": 25,
		"START_MAINTENANCE": 26, "STOP_MAINTENANCE": 27, "DRAIN_AGENT": 37,
		"DEACTIVATE_AGENT": 38, "REACTIVATE_AGENT": 39, "GET_QUOTA": 28, "UPDATE_QUOTA": 36,
		"SET_QUOTA": 29, "REMOVE_QUOTA": 30, "TEARDOWN": 31, "MARK_AGENT_GONE": 32,
	}
	if len(master.Call_Type_name) != len(calls) {
		t.Errorf("Call.Type has %d values, want %d", len(master.Call_Type_name), len(calls))
	}
	for name, num := range calls {
		if got, ok := master.Call_Type_value[name]; !ok || got != num {
			t.Errorf("Call.%s = %d (present %v), want %d", name, got, ok, num)
		}
	}
	events := map[string]int32{
		"UNKNOWN": 0, "SUBSCRIBED": 1, "TASK_ADDED": 2, "TASK_UPDATED": 3, "AGENT_ADDED": 4,
		"AGENT_REMOVED": 5, "FRAMEWORK_ADDED": 6, "FRAMEWORK_UPDATED": 7, "FRAMEWORK_REMOVED": 8,
		"HEARTBEAT": 9,
	}
	for name, num := range events {
		if got, ok := master.Event_Type_value[name]; !ok || got != num {
			t.Errorf("Event.%s = %d (present %v), want %d", name, got, ok, num)
		}
	}
}

// Every call type decodes from Mesos's JSON, with its sub-message where
// the example of Mesos's operator API documentation has one.
func TestCallsDecodeFromJSON(t *testing.T) {
	bodies := map[master.Call_Type]string{
		master.Call_SET_LOGGING_LEVEL: `{"type":"SET_LOGGING_LEVEL","set_logging_level":{"duration":{"nanoseconds":60000000000},"level":1}}`,
		master.Call_DRAIN_AGENT:       `{"type":"DRAIN_AGENT","drain_agent":{"agent_id":{"value":"a"},"max_grace_period":{"nanoseconds":600},"mark_gone":false}}`,
		master.Call_UPDATE_QUOTA:      `{"type":"UPDATE_QUOTA","update_quota":{"force":false,"quota_configs":[{"role":"dev","limits":{"cpus":{"value":10},"mem":{"value":2048}}}]}}`,
		master.Call_TEARDOWN:          `{"type":"TEARDOWN","teardown":{"framework_id":{"value":"f"}}}`,
		master.Call_MARK_AGENT_GONE:   `{"type":"MARK_AGENT_GONE","mark_agent_gone":{"agent_id":{"value":"a"}}}`,
		master.Call_RESERVE_RESOURCES: `{"type":"RESERVE_RESOURCES","reserve_resources":{"agent_id":{"value":"a"},"source":[{"type":"SCALAR","name":"cpus","scalar":{"value":1.0}}],` +
			`"resources":[{"type":"SCALAR","name":"cpus","scalar":{"value":1.0},"reservations":[{"type":"DYNAMIC","role":"role","principal":"p"}]}]}}`,
	}
	for num, name := range master.Call_Type_name {
		typ := master.Call_Type(num)
		body, ok := bodies[typ]
		if !ok {
			body = `{"type":"` + name + `"}`
		}
		for _, c := range []codec.Codec{codec.JSON, codec.Protobuf} {
			call := &master.Call{}
			data := []byte(body)
			if c == codec.Protobuf {
				if err := codec.JSON.Unmarshal(data, call); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				var err error
				if data, err = c.Marshal(call); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				call = &master.Call{}
			}
			if err := c.Unmarshal(data, call); err != nil {
				t.Errorf("%s (%s): %v", name, c.MediaType(), err)
				continue
			}
			if call.GetType() != typ {
				t.Errorf("%s (%s): decoded as %s", name, c.MediaType(), call.GetType())
			}
		}
	}
}
