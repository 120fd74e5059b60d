package agent

import (
	"testing"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/validate"
)

// FuzzExecutorCall feeds the executor API's decode and validation with
// arbitrary bodies in both codecs: no panic, and a call that passes never
// carries an id that could become a path.
func FuzzExecutorCall(f *testing.F) {
	for _, s := range []string{
		`{"type":"SUBSCRIBE","framework_id":{"value":"f"},"executor_id":{"value":"e"},"subscribe":{}}`,
		`{"type":"UPDATE","framework_id":{"value":"f"},"executor_id":{"value":"e"},"update":{"status":{"task_id":{"value":"../../x"},"state":"TASK_RUNNING","uuid":"AAECAwQFBgcICQoLDA0ODw=="}}}`,
		`{"type":"MESSAGE","framework_id":{"value":".."},"executor_id":{"value":"e"},"message":{"data":"aGk="}}`,
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, body []byte, proto bool) {
		c := codec.JSON
		if proto {
			c = codec.Protobuf
		}
		call := &executor.Call{}
		if c.Unmarshal(body, call) != nil {
			return
		}
		if validateExecutorCall(call) != nil {
			return
		}
		for _, id := range []string{call.GetFrameworkId().GetValue(), call.GetExecutorId().GetValue()} {
			if err := validate.ID("id", id); err != nil {
				t.Fatalf("accepted call with id %q: %v", id, err)
			}
		}
		if call.GetType() == executor.Call_UPDATE {
			if err := validate.ID("task id", call.GetUpdate().GetStatus().GetTaskId().GetValue()); err != nil {
				t.Fatalf("accepted update with task id %q", call.GetUpdate().GetStatus().GetTaskId().GetValue())
			}
		}
	})
}
