package codec_test

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func TestForContentType(t *testing.T) {
	tests := []struct {
		header string
		want   codec.Codec // nil: unsupported
	}{
		{"application/json", codec.JSON},
		{"application/json; charset=utf-8", codec.JSON},
		{"Application/JSON;charset=UTF-8", codec.JSON},
		{"  application/json  ", codec.JSON},
		{"application/x-protobuf", codec.Protobuf},
		{"application/x-protobuf; proto=mesos.v1.scheduler.Call", codec.Protobuf},
		{"", nil},
		{"text/plain", nil},
		{"application/protobuf", nil},
		{"application/recordio", nil},
		{"application/*", nil},
		{"*/*", nil},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			got, err := codec.ForContentType(tt.header)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("got %v, want an error", got.MediaType())
				}
				if !errors.Is(err, codec.ErrUnsupportedMediaType) || !errors.Is(err, errdefs.ErrInvalid) {
					t.Errorf("error %v does not wrap ErrUnsupportedMediaType and ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got.MediaType(), tt.want.MediaType())
			}
		})
	}
}

func TestForAccept(t *testing.T) {
	tests := []struct {
		name   string
		header string
		def    codec.Codec
		want   codec.Codec // nil: not acceptable
	}{
		{"missing gives default json", "", codec.JSON, codec.JSON},
		{"missing gives default protobuf", "", codec.Protobuf, codec.Protobuf},
		{"nil default is json", "", nil, codec.JSON},
		{"json", "application/json", codec.Protobuf, codec.JSON},
		{"protobuf", "application/x-protobuf", codec.JSON, codec.Protobuf},
		{"case and spaces", " Application/X-Protobuf ", codec.JSON, codec.Protobuf},
		{"star star is default", "*/*", codec.Protobuf, codec.Protobuf},
		{"bare star", "*", codec.Protobuf, codec.Protobuf},
		{"application star is default", "application/*", codec.Protobuf, codec.Protobuf},
		{"browser", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", codec.Protobuf, codec.Protobuf},
		{"q prefers protobuf", "application/json;q=0.5, application/x-protobuf", codec.JSON, codec.Protobuf},
		{"q prefers json", "application/json, application/x-protobuf;q=0.1", codec.Protobuf, codec.JSON},
		{"tie goes to default", "application/json, application/x-protobuf", codec.Protobuf, codec.Protobuf},
		{"specific beats wildcard", "application/json;q=0, */*", codec.JSON, codec.Protobuf},
		{"q zero excludes", "application/x-protobuf;q=0, application/json", codec.Protobuf, codec.JSON},
		{"Q upper case", "application/json;Q=0.2, application/x-protobuf;q=0.3", codec.JSON, codec.Protobuf},
		{"malformed q ignored", "application/x-protobuf;q=abc, application/json;q=0.1", codec.Protobuf, codec.JSON},
		{"only garbage gives default", "garbage", codec.Protobuf, codec.Protobuf},
		{"json with charset", "application/json; charset=utf-8", codec.Protobuf, codec.JSON},
		{"text only", "text/html", codec.JSON, nil},
		{"everything refused", "application/json;q=0, application/x-protobuf;q=0", codec.JSON, nil},
		{"wildcard refused", "*/*;q=0", codec.JSON, nil},
		{"recordio", "application/recordio", codec.JSON, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := codec.ForAccept(tt.header, tt.def)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("got %s, want an error", got.MediaType())
				}
				if !errors.Is(err, codec.ErrNotAcceptable) || !errors.Is(err, errdefs.ErrInvalid) {
					t.Errorf("error %v does not wrap ErrNotAcceptable and ErrInvalid", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got.MediaType(), tt.want.MediaType())
			}
		})
	}
}

func TestMediaTypes(t *testing.T) {
	if got := codec.JSON.MediaType(); got != "application/json" {
		t.Errorf("JSON media type %q", got)
	}
	if got := codec.Protobuf.MediaType(); got != "application/x-protobuf" {
		t.Errorf("Protobuf media type %q", got)
	}
}

// TestJSONEncodingIsMesos pins the exact bytes of the JSON form.
func TestJSONEncodingIsMesos(t *testing.T) {
	tests := []struct {
		name string
		msg  proto.Message
		want string
	}{
		{
			name: "64-bit integers are numbers",
			msg: &mesos.Value_Ranges{Range: []*mesos.Value_Range{
				{Begin: mesos.Ptr[uint64](31000), End: mesos.Ptr[uint64](32000)},
				{Begin: mesos.Ptr[uint64](math.MaxUint64 - 1), End: mesos.Ptr[uint64](math.MaxUint64)},
			}},
			want: `{"range":[{"begin":31000,"end":32000},{"begin":18446744073709551614,"end":18446744073709551615}]}`,
		},
		{
			name: "negative int64",
			msg:  &mesos.TimeInfo{Nanoseconds: mesos.Ptr[int64](math.MinInt64)},
			want: `{"nanoseconds":-9223372036854775808}`,
		},
		{
			name: "status update",
			msg: &mesos.TaskStatus{
				TaskId:    &mesos.TaskID{Value: mesos.Ptr("web-1")},
				State:     mesos.TaskState_TASK_FAILED.Enum(),
				Message:   mesos.Ptr("oom \"killed\"\n"),
				Source:    mesos.TaskStatus_SOURCE_AGENT.Enum(),
				Reason:    mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY.Enum(),
				Uuid:      []byte{0xde, 0xad, 0xbe, 0xef},
				Timestamp: mesos.Ptr(1700000000.25),
				Healthy:   mesos.Ptr(false),
			},
			want: `{"task_id":{"value":"web-1"},"state":"TASK_FAILED","message":"oom \"killed\"\n",` +
				`"source":"SOURCE_AGENT","reason":"REASON_CONTAINER_LIMITATION_MEMORY",` +
				`"timestamp":1700000000.25,"uuid":"3q2+7w==","healthy":false}`,
		},
		{
			name: "unset optional fields and empty lists are omitted",
			msg:  &mesos.Offer_Operation{Type: mesos.Offer_Operation_LAUNCH.Enum(), Launch: &mesos.Offer_Operation_Launch{}},
			want: `{"type":"LAUNCH","launch":{}}`,
		},
		{
			name: "non-finite doubles and map order",
			msg: &mesos.TaskInfo{
				Name:    mesos.Ptr("t"),
				TaskId:  &mesos.TaskID{Value: mesos.Ptr("t")},
				AgentId: &mesos.AgentID{Value: mesos.Ptr("a")},
				Limits: map[string]*mesos.Value_Scalar{
					"mem":  {Value: mesos.Ptr(512.0)},
					"cpus": {Value: mesos.Ptr(math.Inf(1))},
					"gpus": {Value: mesos.Ptr(1e-7)},
				},
			},
			want: `{"name":"t","task_id":{"value":"t"},"agent_id":{"value":"a"},` +
				`"limits":{"cpus":{"value":"Infinity"},"gpus":{"value":1e-7},"mem":{"value":512}}}`,
		},
		{
			name: "escaping",
			msg:  &mesos.Label{Key: mesos.Ptr("k\t\u0001<&>\u2028"), Value: mesos.Ptr("bad \xff utf8")},
			want: `{"key":"k\t\u0001<&>\u2028","value":"bad \ufffd utf8"}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := codec.JSON.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestJSONDecodeLeniency(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want proto.Message
	}{
		{
			name: "int64 as string and as number, exponent form",
			in:   `{"range":[{"begin":"18446744073709551615","end":18446744073709551615},{"begin":1e3,"end":"2.0"}]}`,
			want: &mesos.Value_Ranges{Range: []*mesos.Value_Range{
				{Begin: mesos.Ptr[uint64](math.MaxUint64), End: mesos.Ptr[uint64](math.MaxUint64)},
				{Begin: mesos.Ptr[uint64](1000), End: mesos.Ptr[uint64](2)},
			}},
		},
		{
			name: "null for every kind of field",
			in: `{"framework_id":null,"type":"DECLINE","subscribe":null,` +
				`"decline":{"offer_ids":null,"filters":{"refuse_seconds":null}}}`,
			want: &scheduler.Call{Type: scheduler.Call_DECLINE.Enum(), Decline: &scheduler.Call_Decline{Filters: &mesos.Filters{}}},
		},
		{
			name: "null elements are skipped",
			in:   `{"type":"DECLINE","decline":{"offer_ids":[null,{"value":"o1"},null]}}`,
			want: &scheduler.Call{Type: scheduler.Call_DECLINE.Enum(), Decline: &scheduler.Call_Decline{
				OfferIds: []*mesos.OfferID{{Value: mesos.Ptr("o1")}},
			}},
		},
		{
			name: "unknown keys of every shape are ignored",
			in:   `{"type":"REVIVE","x":{"y":[1,{"z":null}],"w":"s"},"v":[[]],"u":true,"revive":{"roles":["a"],"q":1}}`,
			want: &scheduler.Call{Type: scheduler.Call_REVIVE.Enum(), Revive: &scheduler.Call_Revive{Roles: []string{"a"}}},
		},
		{
			name: "unknown enum name is dropped, number is kept",
			in:   `{"type":"NOT_A_CALL_TYPE","suppress":{}}`,
			want: &scheduler.Call{Suppress: &scheduler.Call_Suppress{}},
		},
		{
			name: "enum by number, lowerCamel names",
			in:   `{"type":12,"frameworkId":{"value":"f"}}`,
			want: &scheduler.Call{Type: scheduler.Call_SUPPRESS.Enum(), FrameworkId: &mesos.FrameworkID{Value: mesos.Ptr("f")}},
		},
		{
			name: "bytes in url base64 without padding",
			in:   `{"data":"-_8"}`,
			want: &executor.Event_Message{Data: []byte{0xfb, 0xff}},
		},
		{
			name: "scalar shorthand",
			in:   `{"name":"t","task_id":{"value":"t"},"agent_id":{"value":"a"},"limits":{"cpus":"Infinity","mem":512,"disk":{"value":1}}}`,
			want: &mesos.TaskInfo{
				Name:    mesos.Ptr("t"),
				TaskId:  &mesos.TaskID{Value: mesos.Ptr("t")},
				AgentId: &mesos.AgentID{Value: mesos.Ptr("a")},
				Limits: map[string]*mesos.Value_Scalar{
					"cpus": {Value: mesos.Ptr(math.Inf(1))},
					"mem":  {Value: mesos.Ptr(512.0)},
					"disk": {Value: mesos.Ptr(1.0)},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.want.ProtoReflect().New().Interface()
			if err := codec.JSON.Unmarshal([]byte(tt.in), got); err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		c       codec.Codec
		in      string
		into    proto.Message
		mention []string
	}{
		{"empty body", codec.JSON, ``, &scheduler.Call{}, []string{"syntax error"}},
		{"not an object", codec.JSON, `[]`, &scheduler.Call{}, []string{"want a JSON object"}},
		{"top-level null", codec.JSON, `null`, &scheduler.Call{}, []string{"want a JSON object"}},
		{"trailing data", codec.JSON, `{} {}`, &scheduler.Call{}, []string{"after the top-level object"}},
		{"truncated", codec.JSON, `{"type":"SUBSCRIBE"`, &scheduler.Call{}, []string{"syntax error"}},
		{"negative uint64", codec.JSON, `{"begin":-1,"end":1}`, &mesos.Value_Range{}, []string{"begin"}},
		{"fractional int", codec.JSON, `{"nanoseconds":1.5}`, &mesos.TimeInfo{}, []string{"nanoseconds"}},
		{"int32 overflow", codec.JSON, `{"port":4294967296}`, &mesos.Address{}, []string{"port"}},
		{"huge exponent", codec.JSON, `{"nanoseconds":1e999999999}`, &mesos.TimeInfo{}, []string{"nanoseconds"}},
		{"bad base64", codec.JSON, `{"data":"!!"}`, &executor.Event_Message{}, []string{"data", "base64"}},
		{"string for bool", codec.JSON, `{"checkpoint":"true","user":"u","name":"n"}`, &mesos.FrameworkInfo{}, []string{"checkpoint"}},
		{
			"missing required field named by path", codec.JSON,
			`{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"n"}}}`, &scheduler.Call{},
			[]string{`"subscribe.framework_info.user"`, "mesos.v1.FrameworkInfo.user"},
		},
		{
			"missing required in list element", codec.JSON,
			`{"type":"ACCEPT","accept":{"operations":[{"type":"LAUNCH","launch":{"task_infos":[{"name":"t","task_id":{"value":"t"},"agent_id":{"value":"a"}},{"name":"u","task_id":{}}]}}]}}`,
			&scheduler.Call{},
			[]string{`"accept.operations[0].launch.task_infos[1].task_id.value"`},
		},
		{
			"missing required executor ids", codec.JSON,
			`{"type":"SUBSCRIBE"}`, &executor.Call{},
			[]string{`"executor_id"`},
		},
		{"garbage protobuf", codec.Protobuf, "\xff\xff\xff", &scheduler.Call{}, []string{"protobuf"}},
		{"protobuf missing required", codec.Protobuf, "", &executor.Call{}, []string{`"executor_id"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Unmarshal([]byte(tt.in), tt.into)
			if err == nil {
				t.Fatalf("decoded %q without error: %v", tt.in, tt.into)
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("error %v does not wrap errdefs.ErrInvalid", err)
			}
			for _, s := range tt.mention {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestMarshalRejectsMissingRequired(t *testing.T) {
	call := &scheduler.Call{
		Type:      scheduler.Call_SUBSCRIBE.Enum(),
		Subscribe: &scheduler.Call_Subscribe{FrameworkInfo: &mesos.FrameworkInfo{User: mesos.Ptr("u")}},
	}
	for _, c := range []codec.Codec{codec.JSON, codec.Protobuf} {
		_, err := c.Marshal(call)
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), `"subscribe.framework_info.name"`) {
			t.Errorf("%s: got %v, want an invalid-argument error naming subscribe.framework_info.name", c.MediaType(), err)
		}
	}
	if err := codec.CheckRequired(&scheduler.Call{}); err != nil {
		t.Errorf("a Call has no required fields of its own, got %v", err)
	}
}

// TestJSONAgreesWithProtojson: what protojson writes (64-bit integers as
// strings, lowerCamel names) we read to the same message.
func TestJSONAgreesWithProtojson(t *testing.T) {
	for _, m := range populatedMessages(t) {
		for _, opts := range []protojson.MarshalOptions{{}, {UseProtoNames: true}} {
			b, err := opts.Marshal(m)
			if err != nil {
				t.Fatalf("protojson %s: %v", m.ProtoReflect().Descriptor().FullName(), err)
			}
			back := m.ProtoReflect().New().Interface()
			if err := codec.JSON.Unmarshal(b, back); err != nil {
				t.Fatalf("decoding protojson's %s: %v\n%s", m.ProtoReflect().Descriptor().FullName(), err, b)
			}
			if !proto.Equal(m, back) {
				t.Errorf("%s: protojson output decoded differently", m.ProtoReflect().Descriptor().FullName())
			}
		}
	}
}
