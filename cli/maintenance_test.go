package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMaintenanceCommand: against a real master and agent, a schedule set
// from a file shows in `schedule` and `status` (DRAINING), `down` takes the
// machine down (its agent leaves), `up` brings it back, and `drain` of an
// agent answers.
func TestMaintenanceCommand(t *testing.T) {
	c := newTestCluster(t)
	a := c.addAgent(t, "node-m", "cpus:2;mem:1024;disk:100", nil)
	run := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Maintenance(context.Background(), append([]string{"--master=" + c.addr}, args...), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	if code, _, errOut := run("drain", a.ID(), "--max_grace_period=5s"); code != 0 {
		t.Fatalf("drain: %d %s", code, errOut)
	}
	file := filepath.Join(t.TempDir(), "schedule.json")
	if err := os.WriteFile(file, []byte(`{"windows":[{"machine_ids":[{"hostname":"node-m","ip":"127.0.0.1"}],
	  "unavailability":{"start":{"nanoseconds":1900000000000000000}}}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := run("schedule", file); code != 0 || !strings.Contains(out, "1 window") {
		t.Fatalf("schedule FILE: %d %s %s", code, out, errOut)
	}
	if code, out, _ := run("schedule"); code != 0 || !strings.Contains(out, "node-m=127.0.0.1") || !strings.Contains(out, "forever") {
		t.Fatalf("schedule: %d\n%s", code, out)
	}
	if code, out, _ := run("status"); code != 0 || !strings.Contains(out, "DRAINING") {
		t.Fatalf("status: %d\n%s", code, out)
	}
	if code, out, errOut := run("down", "node-m=127.0.0.1"); code != 0 || !strings.Contains(out, "down") {
		t.Fatalf("down: %d %s %s", code, out, errOut)
	}
	if code, out, _ := run("status", "--json"); code != 0 || !strings.Contains(out, `"down_machines":[{"hostname":"node-m","ip":"127.0.0.1"}]`) {
		t.Fatalf("status --json: %d\n%s", code, out)
	}
	if code, _, errOut := run("up", "node-m=127.0.0.1"); code != 0 {
		t.Fatalf("up: %d %s", code, errOut)
	}
	if code, _, errOut := run("up", "node-m=127.0.0.1"); code != exitFail || !strings.Contains(errOut, "is not down") {
		t.Fatalf("up of a machine that is up: %d %s", code, errOut)
	}
	if code, _, errOut := run("sideways"); code != exitUsage {
		t.Fatalf("unknown subcommand: %d %s", code, errOut)
	}
}
