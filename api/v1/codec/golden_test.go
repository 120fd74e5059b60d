package codec_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
)

var p = mesos.Ptr[string]

func fwID(v string) *mesos.FrameworkID  { return &mesos.FrameworkID{Value: p(v)} }
func agentID(v string) *mesos.AgentID   { return &mesos.AgentID{Value: p(v)} }
func taskID(v string) *mesos.TaskID     { return &mesos.TaskID{Value: p(v)} }
func execID(v string) *mesos.ExecutorID { return &mesos.ExecutorID{Value: p(v)} }
func offerID(v string) *mesos.OfferID   { return &mesos.OfferID{Value: p(v)} }
func opID(v string) *mesos.OperationID  { return &mesos.OperationID{Value: p(v)} }
func rpID(v string) *mesos.ResourceProviderID {
	return &mesos.ResourceProviderID{Value: p(v)}
}

// b64 decodes the docs' base64 strings the way protojson does: with or
// without padding.
func b64(t *testing.T, s string) []byte {
	t.Helper()
	enc := base64.StdEncoding
	if len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	out, err := enc.DecodeString(s)
	if err != nil {
		t.Fatalf("bad base64 in test: %v", err)
	}
	return out
}

func scalar(name string, v float64) *mesos.Resource {
	return &mesos.Resource{
		Name:           p(name),
		Type:           mesos.Value_SCALAR.Enum(),
		Scalar:         &mesos.Value_Scalar{Value: mesos.Ptr(v)},
		Role:           p("*"),
		AllocationInfo: &mesos.Resource_AllocationInfo{Role: p("engineering")},
	}
}

// TestGoldenMesosDocs decodes every JSON example of Mesos's scheduler and
// executor HTTP API docs (testdata/) and compares the result field by field.
func TestGoldenMesosDocs(t *testing.T) {
	const fid = "12220-3440-12532-2345"
	tests := []struct {
		file string
		into proto.Message
		// want(t) builds the expected message; nil when wantErr is set.
		want func(t *testing.T) proto.Message
		// wantErr: substrings of the expected error, for examples the docs
		// get wrong.
		wantErr []string
		// fix, for a wrong example, rewrites its generic JSON into the shape
		// Mesos really uses; the result must then decode to want.
		fix func(doc map[string]any)
	}{
		{
			file: "scheduler_call_subscribe.json", into: &scheduler.Call{},
			// offer_constraints (Mesos 1.11) is not in our protos: ignored.
			want: func(*testing.T) proto.Message {
				return &scheduler.Call{
					Type: scheduler.Call_SUBSCRIBE.Enum(),
					Subscribe: &scheduler.Call_Subscribe{
						FrameworkInfo: &mesos.FrameworkInfo{
							User:  p("foo"),
							Name:  p("Example HTTP Framework"),
							Roles: []string{"test1", "test2"},
							Capabilities: []*mesos.FrameworkInfo_Capability{
								{Type: mesos.FrameworkInfo_Capability_MULTI_ROLE.Enum()},
							},
						},
						SuppressedRoles: []string{"test2"},
					},
				}
			},
		},
		{
			file: "scheduler_event_subscribed.json", into: &scheduler.Event{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Event{
					Type: scheduler.Event_SUBSCRIBED.Enum(),
					Subscribed: &scheduler.Event_Subscribed{
						FrameworkId:              fwID(fid),
						HeartbeatIntervalSeconds: mesos.Ptr(15.0),
					},
				}
			},
		},
		{
			file: "scheduler_call_teardown.json", into: &scheduler.Call{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Call{FrameworkId: fwID(fid), Type: scheduler.Call_TEARDOWN.Enum()}
			},
		},
		{
			file: "scheduler_call_accept.json", into: &scheduler.Call{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Call{
					FrameworkId: fwID(fid),
					Type:        scheduler.Call_ACCEPT.Enum(),
					Accept: &scheduler.Call_Accept{
						OfferIds: []*mesos.OfferID{offerID("12220-3440-12532-O12")},
						Operations: []*mesos.Offer_Operation{{
							Type: mesos.Offer_Operation_LAUNCH.Enum(),
							Launch: &mesos.Offer_Operation_Launch{TaskInfos: []*mesos.TaskInfo{{
								Name:    p("My Task"),
								TaskId:  taskID("12220-3440-12532-my-task"),
								AgentId: agentID("12220-3440-12532-S1233"),
								Executor: &mesos.ExecutorInfo{
									Command:    &mesos.CommandInfo{Shell: mesos.Ptr(true), Value: p("sleep 1000")},
									ExecutorId: execID("12214-23523-my-executor"),
								},
								Resources: []*mesos.Resource{scalar("cpus", 1), scalar("mem", 128)},
								Limits: map[string]*mesos.Value_Scalar{
									"cpus": {Value: mesos.Ptr(math.Inf(1))},
									"mem":  {Value: mesos.Ptr(512.0)},
								},
							}}},
						}},
						Filters: &mesos.Filters{RefuseSeconds: mesos.Ptr(5.0)},
					},
				}
			},
		},
		{
			file: "scheduler_call_decline.json", into: &scheduler.Call{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Call{
					FrameworkId: fwID(fid),
					Type:        scheduler.Call_DECLINE.Enum(),
					Decline: &scheduler.Call_Decline{
						OfferIds: []*mesos.OfferID{offerID("12220-3440-12532-O12"), offerID("12220-3440-12532-O13")},
						Filters:  &mesos.Filters{RefuseSeconds: mesos.Ptr(5.0)},
					},
				}
			},
		},
		{
			// The docs write "role", but Revive's field is "roles": the unknown
			// key is ignored and the call revives every role, as Mesos does.
			file: "scheduler_call_revive.json", into: &scheduler.Call{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Call{
					FrameworkId: fwID(fid),
					Type:        scheduler.Call_REVIVE.Enum(),
					Revive:      &scheduler.Call_Revive{},
				}
			},
		},
		{
			file: "scheduler_call_kill.json", into: &scheduler.Call{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Call{
					FrameworkId: fwID(fid),
					Type:        scheduler.Call_KILL.Enum(),
					Kill: &scheduler.Call_Kill{
						TaskId:  taskID("12220-3440-12532-my-task"),
						AgentId: agentID("12220-3440-12532-S1233"),
					},
				}
			},
		},
		{
			file: "scheduler_call_shutdown.json", into: &scheduler.Call{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Call{
					FrameworkId: fwID(fid),
					Type:        scheduler.Call_SHUTDOWN.Enum(),
					Shutdown: &scheduler.Call_Shutdown{
						ExecutorId: execID("123450-2340-1232-my-executor"),
						AgentId:    agentID("12220-3440-12532-S1233"),
					},
				}
			},
		},
		{
			// The uuid is unpadded base64; it must still decode.
			file: "scheduler_call_acknowledge.json", into: &scheduler.Call{},
			want: func(t *testing.T) proto.Message {
				return &scheduler.Call{
					FrameworkId: fwID(fid),
					Type:        scheduler.Call_ACKNOWLEDGE.Enum(),
					Acknowledge: &scheduler.Call_Acknowledge{
						AgentId: agentID("12220-3440-12532-S1233"),
						TaskId:  taskID("12220-3440-12532-my-task"),
						Uuid:    b64(t, "jhadf73jhakdlfha723adf"),
					},
				}
			},
		},
		{
			// The docs give operation_id as a string; it is an OperationID
			// message, and Mesos rejects this body too.
			file: "scheduler_call_acknowledge_operation_status.json", into: &scheduler.Call{},
			wantErr: []string{"acknowledge_operation_status.operation_id"},
			fix: func(doc map[string]any) {
				a := doc["acknowledge_operation_status"].(map[string]any)
				a["operation_id"] = map[string]any{"value": a["operation_id"]}
			},
			want: func(t *testing.T) proto.Message {
				return &scheduler.Call{
					FrameworkId: fwID(fid),
					Type:        scheduler.Call_ACKNOWLEDGE_OPERATION_STATUS.Enum(),
					AcknowledgeOperationStatus: &scheduler.Call_AcknowledgeOperationStatus{
						AgentId:            agentID("12220-3440-12532-S1233"),
						ResourceProviderId: rpID("12220-3440-12532-rp"),
						Uuid:               b64(t, "jhadf73jhakdlfha723adf"),
						OperationId:        opID("73jhakdlfha723adf"),
					},
				}
			},
		},
		{
			file: "scheduler_call_reconcile.json", into: &scheduler.Call{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Call{
					FrameworkId: fwID(fid),
					Type:        scheduler.Call_RECONCILE.Enum(),
					Reconcile: &scheduler.Call_Reconcile{Tasks: []*scheduler.Call_Reconcile_Task{
						{TaskId: taskID("312325"), AgentId: agentID("123535")},
					}},
				}
			},
		},
		{
			file: "scheduler_call_reconcile_operations.json", into: &scheduler.Call{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Call{
					FrameworkId: fwID(fid),
					Type:        scheduler.Call_RECONCILE_OPERATIONS.Enum(),
					ReconcileOperations: &scheduler.Call_ReconcileOperations{
						Operations: []*scheduler.Call_ReconcileOperations_Operation{{
							OperationId:        opID("312325"),
							AgentId:            agentID("123535"),
							ResourceProviderId: rpID("927695"),
						}},
					},
				}
			},
		},
		{
			file: "scheduler_call_message.json", into: &scheduler.Call{},
			want: func(t *testing.T) proto.Message {
				return &scheduler.Call{
					FrameworkId: fwID(fid),
					Type:        scheduler.Call_MESSAGE.Enum(),
					Message: &scheduler.Call_Message{
						AgentId:    agentID("12220-3440-12532-S1233"),
						ExecutorId: execID("my-framework-executor"),
						Data:       b64(t, "adaf838jahd748jnaldf"),
					},
				}
			},
		},
		{
			// "requests" belongs inside "request"; at the top level it is an
			// unknown key.
			file: "scheduler_call_request.json", into: &scheduler.Call{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Call{FrameworkId: fwID(fid), Type: scheduler.Call_REQUEST.Enum()}
			},
		},
		{
			file: "scheduler_call_suppress.json", into: &scheduler.Call{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Call{
					FrameworkId: fwID(fid),
					Type:        scheduler.Call_SUPPRESS.Enum(),
					Suppress:    &scheduler.Call_Suppress{Roles: []string{"test2"}},
				}
			},
		},
		{
			// The docs' example lacks a comma after "suppressed_roles".
			file: "scheduler_call_update_framework.json", into: &scheduler.Call{},
			wantErr: []string{"syntax error"},
		},
		{
			// The docs put the offers array directly under "offers"; the field
			// is an Offers message whose own "offers" holds the array.
			file: "scheduler_event_offers.json", into: &scheduler.Event{},
			wantErr: []string{"offers: want an object"},
			fix: func(doc map[string]any) {
				doc["offers"] = map[string]any{"offers": doc["offers"]}
			},
			want: func(*testing.T) proto.Message {
				return &scheduler.Event{
					Type: scheduler.Event_OFFERS.Enum(),
					Offers: &scheduler.Event_Offers{Offers: []*mesos.Offer{{
						AllocationInfo: &mesos.Resource_AllocationInfo{Role: p("engineering")},
						Id:             offerID("12214-23523-O235235"),
						FrameworkId:    fwID("12124-235325-32425"),
						AgentId:        agentID("12325-23523-S23523"),
						Hostname:       p("agent.host"),
						Resources:      []*mesos.Resource{scalar("cpus", 2)},
						Attributes: []*mesos.Attribute{{
							Name: p("os"),
							Type: mesos.Value_TEXT.Enum(),
							Text: &mesos.Value_Text{Value: p("ubuntu16.04")},
						}},
						ExecutorIds: []*mesos.ExecutorID{execID("12214-23523-my-executor")},
					}}},
				}
			},
		},
		{
			file: "scheduler_event_rescind.json", into: &scheduler.Event{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Event{
					Type:    scheduler.Event_RESCIND.Enum(),
					Rescind: &scheduler.Event_Rescind{OfferId: offerID("12214-23523-O235235")},
				}
			},
		},
		{
			// "bytes" is not a TaskStatus field (the docs mean "data").
			file: "scheduler_event_update.json", into: &scheduler.Event{},
			want: func(t *testing.T) proto.Message {
				return &scheduler.Event{
					Type: scheduler.Event_UPDATE.Enum(),
					Update: &scheduler.Event_Update{Status: &mesos.TaskStatus{
						TaskId: taskID("12344-my-task"),
						State:  mesos.TaskState_TASK_RUNNING.Enum(),
						Source: mesos.TaskStatus_SOURCE_EXECUTOR.Enum(),
						Uuid:   b64(t, "adfadfadbhgvjayd23r2uahj"),
					}},
				}
			},
		},
		{
			// The docs give uuid as bytes, but OperationStatus.uuid is a UUID
			// message.
			file: "scheduler_event_update_operation_status.json", into: &scheduler.Event{},
			wantErr: []string{"update_operation_status.status.uuid"},
			fix: func(doc map[string]any) {
				st := doc["update_operation_status"].(map[string]any)["status"].(map[string]any)
				st["uuid"] = map[string]any{"value": st["uuid"]}
			},
			want: func(t *testing.T) proto.Message {
				return &scheduler.Event{
					Type: scheduler.Event_UPDATE_OPERATION_STATUS.Enum(),
					UpdateOperationStatus: &scheduler.Event_UpdateOperationStatus{Status: &mesos.OperationStatus{
						OperationId:        opID("operation-1234"),
						State:              mesos.OperationState_OPERATION_FAILED.Enum(),
						Uuid:               &mesos.UUID{Value: b64(t, "adfadfadbhgvjayd23r2uahj")},
						AgentId:            agentID("12214-23523-S235235"),
						ResourceProviderId: rpID("83978-17885-1089645"),
					}},
				}
			},
		},
		{
			file: "scheduler_event_message.json", into: &scheduler.Event{},
			want: func(t *testing.T) proto.Message {
				return &scheduler.Event{
					Type: scheduler.Event_MESSAGE.Enum(),
					Message: &scheduler.Event_Message{
						AgentId:    agentID("12214-23523-S235235"),
						ExecutorId: execID("12214-23523-my-executor"),
						Data:       b64(t, "adfadf3t2wa3353dfadf"),
					},
				}
			},
		},
		{
			file: "scheduler_event_failure.json", into: &scheduler.Event{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Event{
					Type: scheduler.Event_FAILURE.Enum(),
					Failure: &scheduler.Event_Failure{
						AgentId:    agentID("12214-23523-S235235"),
						ExecutorId: execID("12214-23523-my-executor"),
						Status:     mesos.Ptr[int32](1),
					},
				}
			},
		},
		{
			// The docs put the text in "message" (Event.message is the
			// executor-message sub-message) instead of error.message.
			file: "scheduler_event_error.json", into: &scheduler.Event{},
			wantErr: []string{"message: want an object"},
			fix: func(doc map[string]any) {
				doc["error"] = map[string]any{"message": doc["message"]}
				delete(doc, "message")
			},
			want: func(*testing.T) proto.Message {
				return &scheduler.Event{
					Type:  scheduler.Event_ERROR.Enum(),
					Error: &scheduler.Event_Error{Message: p("Framework is not authorized")},
				}
			},
		},
		{
			file: "scheduler_event_heartbeat.json", into: &scheduler.Event{},
			want: func(*testing.T) proto.Message {
				return &scheduler.Event{Type: scheduler.Event_HEARTBEAT.Enum()}
			},
		},
		{
			// framework_id inside an update is not a Call.Update field: ignored.
			file: "executor_call_subscribe.json", into: &executor.Call{},
			want: func(t *testing.T) proto.Message {
				return &executor.Call{
					Type:        executor.Call_SUBSCRIBE.Enum(),
					ExecutorId:  execID("387aa966-8fc5-4428-a794-5a868a60d3eb"),
					FrameworkId: fwID("49154f1b-8cf6-4421-bf13-8bd11dccd1f1"),
					Subscribe: &executor.Call_Subscribe{
						UnacknowledgedTasks: []*mesos.TaskInfo{{
							Name:    p("dummy-task"),
							TaskId:  taskID("d40f3f3e-bbe3-44af-a230-4cb1eae72f67"),
							AgentId: agentID("f1c9cdc5-195e-41a7-a0d7-adaa9af07f81"),
							Command: &mesos.CommandInfo{Value: p("ls"), Arguments: []string{"-l", "/tmp"}},
						}},
						UnacknowledgedUpdates: []*executor.Call_Update{{Status: &mesos.TaskStatus{
							Source: mesos.TaskStatus_SOURCE_EXECUTOR.Enum(),
							TaskId: taskID("d40f3f3e-bbe3-44af-a230-4cb1eae72f67"),
							State:  mesos.TaskState_TASK_RUNNING.Enum(),
							Uuid:   b64(t, "ZDQwZjNmM2UtYmJlMy00NGFmLWEyMzAtNGNiMWVhZTcyZjY3Cg=="),
						}}},
					},
				}
			},
		},
		{
			// The docs' agent_info has "host" where the required field is
			// "hostname": the error must name the missing field's path.
			file: "executor_event_subscribed.json", into: &executor.Event{},
			wantErr: []string{`"subscribed.agent_info.hostname"`, "mesos.v1.AgentInfo.hostname"},
			fix: func(doc map[string]any) {
				ai := doc["subscribed"].(map[string]any)["agent_info"].(map[string]any)
				ai["hostname"] = ai["host"]
			},
			// subscribed.agent_id is not a Subscribed field: ignored.
			want: func(*testing.T) proto.Message {
				return &executor.Event{
					Type: executor.Event_SUBSCRIBED.Enum(),
					Subscribed: &executor.Event_Subscribed{
						ExecutorInfo: &mesos.ExecutorInfo{
							ExecutorId:  execID("387aa966-8fc5-4428-a794-5a868a60d3eb"),
							Command:     &mesos.CommandInfo{Value: p("/path/to/executor")},
							FrameworkId: fwID("49154f1b-8cf6-4421-bf13-8bd11dccd1f1"),
						},
						FrameworkInfo: &mesos.FrameworkInfo{User: p("foo"), Name: p("my_framework")},
						AgentInfo:     &mesos.AgentInfo{Hostname: p("agenthost"), Port: mesos.Ptr[int32](5051)},
					},
				}
			},
		},
		{
			file: "executor_call_update.json", into: &executor.Call{},
			want: func(t *testing.T) proto.Message {
				return &executor.Call{
					ExecutorId:  execID("387aa966-8fc5-4428-a794-5a868a60d3eb"),
					FrameworkId: fwID("9aaa9d0d-e00d-444f-bfbd-23dd197939a0-0000"),
					Type:        executor.Call_UPDATE.Enum(),
					Update: &executor.Call_Update{Status: &mesos.TaskStatus{
						ExecutorId: execID("387aa966-8fc5-4428-a794-5a868a60d3eb"),
						Source:     mesos.TaskStatus_SOURCE_EXECUTOR.Enum(),
						State:      mesos.TaskState_TASK_RUNNING.Enum(),
						TaskId:     taskID("66724cec-2609-4fa0-8d93-c5fb2099d0f8"),
						Uuid:       b64(t, "ZDQwZjNmM2UtYmJlMy00NGFmLWEyMzAtNGNiMWVhZTcyZjY3Cg=="),
					}},
				}
			},
		},
		{
			// "data" belongs inside "message"; at the top level it is ignored.
			file: "executor_call_message.json", into: &executor.Call{},
			want: func(*testing.T) proto.Message {
				return &executor.Call{
					ExecutorId:  execID("387aa966-8fc5-4428-a794-5a868a60d3eb"),
					FrameworkId: fwID("9aaa9d0d-e00d-444f-bfbd-23dd197939a0-0000"),
					Type:        executor.Call_MESSAGE.Enum(),
				}
			},
		},
		{
			// framework_info is not a Launch field: ignored.
			file: "executor_event_launch.json", into: &executor.Event{},
			want: func(*testing.T) proto.Message {
				return &executor.Event{
					Type: executor.Event_LAUNCH.Enum(),
					Launch: &executor.Event_Launch{Task: &mesos.TaskInfo{
						Name:    p("dummy-task"),
						TaskId:  taskID("d40f3f3e-bbe3-44af-a230-4cb1eae72f67"),
						AgentId: agentID("f1c9cdc5-195e-41a7-a0d7-adaa9af07f81"),
						Command: &mesos.CommandInfo{Value: p("sleep"), Arguments: []string{"100"}},
					}},
				}
			},
		},
		{
			file: "executor_event_kill.json", into: &executor.Event{},
			want: func(*testing.T) proto.Message {
				return &executor.Event{
					Type: executor.Event_KILL.Enum(),
					Kill: &executor.Event_Kill{TaskId: taskID("d40f3f3e-bbe3-44af-a230-4cb1eae72f67")},
				}
			},
		},
		{
			file: "executor_event_acknowledged.json", into: &executor.Event{},
			want: func(t *testing.T) proto.Message {
				return &executor.Event{
					Type: executor.Event_ACKNOWLEDGED.Enum(),
					Acknowledged: &executor.Event_Acknowledged{
						TaskId: taskID("d40f3f3e-bbe3-44af-a230-4cb1eae72f67"),
						Uuid:   b64(t, "ZDQwZjNmM2UtYmJlMy00NGFmLWEyMzAtNGNiMWVhZTcyZjY3Cg=="),
					},
				}
			},
		},
		{
			file: "executor_event_message.json", into: &executor.Event{},
			want: func(*testing.T) proto.Message {
				return &executor.Event{
					Type:    executor.Event_MESSAGE.Enum(),
					Message: &executor.Event_Message{Data: []byte("sample data")},
				}
			},
		},
		{
			file: "executor_event_shutdown.json", into: &executor.Event{},
			want: func(*testing.T) proto.Message {
				return &executor.Event{Type: executor.Event_SHUTDOWN.Enum()}
			},
		},
		{
			file: "executor_event_error.json", into: &executor.Event{},
			want: func(*testing.T) proto.Message {
				return &executor.Event{
					Type:  executor.Event_ERROR.Enum(),
					Error: &executor.Event_Error{Message: p("Unrecoverable error")},
				}
			},
		},
	}

	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		t.Run(strings.TrimSuffix(tt.file, ".json"), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			err = codec.JSON.Unmarshal(data, tt.into)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("decoded without error to %v; the docs' example is wrong and must fail", tt.into)
				}
				if !errors.Is(err, errdefs.ErrInvalid) {
					t.Errorf("error %v does not wrap errdefs.ErrInvalid", err)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				if tt.fix == nil {
					return
				}
				data = fixJSON(t, data, tt.fix)
				if err = codec.JSON.Unmarshal(data, tt.into); err != nil {
					t.Fatalf("decoding the corrected example %s: %v", data, err)
				}
			} else if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if want := tt.want(t); !proto.Equal(want, tt.into) {
				t.Errorf("decoded message differs\ngot:\n%s\nwant:\n%s",
					prototext.Format(tt.into), prototext.Format(want))
			}
			assertRoundTrip(t, tt.into)
		})
	}

	// Every fixture must be covered by the table.
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("testdata/%s has no entry in the table", filepath.Base(f))
		}
	}
}

// fixJSON applies fix to the generic form of data.
func fixJSON(t *testing.T, data []byte, fix func(map[string]any)) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("the example is not JSON, it cannot be corrected: %v", err)
	}
	fix(doc)
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// assertRoundTrip checks that m survives both codecs unchanged.
func assertRoundTrip(t *testing.T, m proto.Message) {
	t.Helper()
	for _, c := range []codec.Codec{codec.JSON, codec.Protobuf} {
		b, err := c.Marshal(m)
		if err != nil {
			t.Fatalf("%s marshal: %v", c.MediaType(), err)
		}
		back := m.ProtoReflect().New().Interface()
		if err := c.Unmarshal(b, back); err != nil {
			t.Fatalf("%s unmarshal of %s: %v", c.MediaType(), b, err)
		}
		if !proto.Equal(m, back) {
			t.Errorf("%s round trip changed the message:\n%v\n%v", c.MediaType(), m, back)
		}
	}
}
