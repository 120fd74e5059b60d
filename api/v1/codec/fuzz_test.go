package codec_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

// FuzzJSONDecodeCall feeds arbitrary bodies to the scheduler Call decoder,
// the first thing an untrusted framework reaches. It must never panic, and
// whatever it accepts must re-encode and decode to the same Call.
func FuzzJSONDecodeCall(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "scheduler_call_*.json"))
	for _, s := range seeds {
		if b, err := os.ReadFile(s); err == nil {
			f.Add(b)
		}
	}
	for _, s := range []string{
		`{}`, `null`, `[]`, `{"type":null}`, `{"type":3,"accept":{"offer_ids":[null]}}`,
		`{"accept":{"operations":[{"launch":{"task_infos":[{"limits":{"cpus":"Infinity"}}]}}]}}`,
		`{"framework_id":{"value":"\ud800"}}`, `{"x":1e999999}`, `{"acknowledge":{"uuid":"-_8"}}`,
		`{"reconcile":{"tasks":[{"task_id":{"value":"t"}}]}}`, `{"type":"SUBSCRIBE"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var call scheduler.Call
		if err := codec.JSON.Unmarshal(data, &call); err != nil {
			return
		}
		b, err := codec.JSON.Marshal(&call)
		if err != nil {
			t.Fatalf("re-encoding an accepted Call: %v", err)
		}
		var back scheduler.Call
		if err := codec.JSON.Unmarshal(b, &back); err != nil {
			t.Fatalf("decoding our own encoding %s: %v", b, err)
		}
		if !proto.Equal(&call, &back) {
			t.Fatalf("round trip changed the Call:\n%v\n%v", &call, &back)
		}
	})
}
