package main

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
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
	if err := a.fs.Parse([]string{"--master=127.0.0.1:5050", "--perf_events=cycles", "--systemd_enable_support=false", "--logbufsecs=0", "--hostname_lookup=false"}); err != nil {
		t.Fatal(err)
	}
	// --hostname_lookup is the agent's own flag now, not an inert one.
	if got := a.fs.InertSet(); !slices.Equal(got, []string{"--logbufsecs", "--perf_events", "--systemd_enable_support"}) || *a.hostnameLookup {
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

func TestParseExecutorEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "env.json")
	if err := os.WriteFile(file, []byte(`{"PATH":"/bin","LANG":"C.UTF-8"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, value, wantErr string
		want                 map[string]string
	}{
		{name: "unset", value: ""},
		{name: "object", value: `{"PATH":"/usr/bin:/bin","A":"b"}`, want: map[string]string{"PATH": "/usr/bin:/bin", "A": "b"}},
		{name: "file", value: "file://" + file, want: map[string]string{"PATH": "/bin", "LANG": "C.UTF-8"}},
		{name: "missing file", value: "file:///nonexistent/env.json", wantErr: "no such file"},
		{name: "not an object", value: `["PATH=/bin"]`, wantErr: "JSON object"},
		{name: "number value", value: `{"N":1}`, wantErr: "JSON object"},
		{name: "agent's variable", value: `{"MESOS_SANDBOX":"/tmp"}`, wantErr: "set by the agent"},
		{name: "agent's own variable", value: `{"MESOLITE_CONTAINER_ID":"x"}`, wantErr: "set by the agent"},
		{name: "bad name", value: `{"A=B":"c"}`, wantErr: "not a variable name"},
		{name: "nul in value", value: `{"A":"b\u0000c"}`, wantErr: "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseExecutorEnv(tt.value)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
