package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
)

// A Mesos master's and agent's command lines with flags that have no
// counterpart here parse, and those flags are the ones reported; --version
// prints the version as Mesos's daemons do.
func TestMesosFlagsAccepted(t *testing.T) {
	m := newMasterFlags("master")
	m.fs.HelpOutput = nil
	if err := m.fs.Parse([]string{"--work_dir=/tmp/x", "--registry_strict", "--allocator=HierarchicalDRF", "--no-log_auto_initialize", "--quorum=2"}); err != nil {
		t.Fatal(err)
	}
	if got := m.fs.InertSet(); !slices.Equal(got, []string{"--allocator", "--log_auto_initialize", "--registry_strict"}) {
		t.Fatalf("master's inert flags given: %v", got)
	}
	a := newAgentFlags("agent")
	a.fs.HelpOutput = nil
	if err := a.fs.Parse([]string{"--master=127.0.0.1:5050", "--perf_events=cycles", "--systemd_enable_support=false", "--hostname_lookup"}); err != nil {
		t.Fatal(err)
	}
	if got := a.fs.InertSet(); len(got) != 3 {
		t.Fatalf("agent's inert flags given: %v", got)
	}
	for _, main := range []func(context.Context, []string, *bytes.Buffer) int{
		func(ctx context.Context, args []string, out *bytes.Buffer) int {
			return masterMain(ctx, args, out, out)
		},
		func(ctx context.Context, args []string, out *bytes.Buffer) int { return agentMain(ctx, args, out, out) },
	} {
		var out bytes.Buffer
		if code := main(context.Background(), []string{"--version"}, &out); code != 0 || !strings.HasPrefix(out.String(), "mesolite ") {
			t.Fatalf("--version: %d %q", code, out.String())
		}
	}
}
