package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// TestAgentsFrameworksTeardown: against a real master and agent with a
// running `mesolite run`, `agents` and `frameworks` list them (table and
// --json), and `teardown` ends the framework: its task is killed and the
// run ends.
func TestAgentsFrameworksTeardown(t *testing.T) {
	c := newTestCluster(t)
	c.addAgent(t, "node-a", "cpus:4;mem:4096;disk:100", nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := startRun(ctx, "--master="+c.addr, "--name=sleepy", "--command=sleep 1000", "--resources=cpus:0.5;mem:64")
	r.waitOutput(t, "TASK_RUNNING")
	fwID := r.frameworkID(t)

	cmd := func(f func(context.Context, []string, *bytes.Buffer, *bytes.Buffer) int, args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := f(context.Background(), args, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	agents := func(ctx context.Context, args []string, o, e *bytes.Buffer) int { return Agents(ctx, args, o, e) }
	frameworks := func(ctx context.Context, args []string, o, e *bytes.Buffer) int { return Frameworks(ctx, args, o, e) }
	teardown := func(ctx context.Context, args []string, o, e *bytes.Buffer) int { return Teardown(ctx, args, o, e) }

	code, out, errOut := cmd(agents, "--master="+c.addr)
	if code != 0 || !strings.Contains(out, "node-a") || !strings.Contains(out, "true") || !strings.Contains(out, "0.5/4") {
		t.Fatalf("agents: %d\n%s%s", code, out, errOut)
	}
	code, out, _ = cmd(agents, "--master="+c.addr, "--json")
	var arows []agentRow
	if err := json.Unmarshal([]byte(out), &arows); code != 0 || err != nil || len(arows) != 1 || arows[0].Tasks != 1 || arows[0].Used["mem"] != 64 {
		t.Fatalf("agents --json: %d %v\n%s", code, err, out)
	}

	code, out, errOut = cmd(frameworks, "--master="+c.addr)
	if code != 0 || !strings.Contains(out, fwID) || !strings.Contains(out, "active") {
		t.Fatalf("frameworks: %d\n%s%s", code, out, errOut)
	}

	if code, _, errOut := cmd(teardown, "--master="+c.addr, "no/such/id"); code != exitUsage || !strings.Contains(errOut, "Framework ID") {
		t.Fatalf("teardown of a bad id: %d %s", code, errOut)
	}
	if code, _, errOut := cmd(teardown, "--master="+c.addr); code != exitUsage {
		t.Fatalf("teardown without an id: %d %s", code, errOut)
	}
	code, out, errOut = cmd(teardown, "--master="+c.addr, fwID)
	if code != 0 || !strings.Contains(out, "torn down") {
		t.Fatalf("teardown: %d %s %s", code, out, errOut)
	}
	if code, out, _ := r.wait(t); code == 0 {
		t.Fatalf("the run of a torn down framework exited 0:\n%s", out)
	}
	code, out, _ = cmd(frameworks, "--master="+c.addr, "--all", "--json")
	var frows []frameworkRow
	if err := json.Unmarshal([]byte(out), &frows); code != 0 || err != nil || len(frows) != 1 || !frows[0].Completed {
		t.Fatalf("frameworks --all --json after the teardown: %d %v\n%s", code, err, out)
	}
}
