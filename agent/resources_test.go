package agent

import (
	"testing"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

func mustParse(t *testing.T, s string) []*mesos.Resource {
	t.Helper()
	rs, err := resources.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestDetectResourcesKeepsGiven(t *testing.T) {
	rs := DetectResources(mustParse(t, "cpus:0.5"), t.TempDir())
	if v := scalarOf(rs, "cpus"); v != 0.5 {
		t.Fatalf("cpus %v", v)
	}
	if scalarOf(rs, "mem") <= 0 || scalarOf(rs, "disk") <= 0 {
		t.Fatalf("mem/disk not detected: %s", resources.Format(rs))
	}
	if _, err := resources.FromProto(rs); err != nil {
		t.Fatalf("detected resources the master would refuse: %v", err)
	}
}

func TestSubtractResources(t *testing.T) {
	tests := []struct {
		name       string
		executor   string // the executor's and its tasks' resources
		task       string // the finished task's
		want       string // Format of what is left
		allocation string // allocation role put on the executor's resources
	}{
		{name: "ports leave the rest of the range",
			executor: "cpus:1.5;mem:192;ports:[31000-31010]", task: "cpus:1;mem:64;ports:[31003-31004]",
			want: "cpus:0.5; mem:128; ports:[31000-31002, 31005-31010]"},
		{name: "fixed point", executor: "cpus:0.3", task: "cpus:0.1;cpus:0.2", want: ""},
		{name: "set items", executor: "gpus:2;devices:{a,b,c}", task: "gpus:1;devices:{b}", want: "devices:{a, c}; gpus:1"},
		{name: "reservations stay apart", executor: "cpus(web):1;cpus:1", task: "cpus(web):0.25", want: "cpus:1; cpus(web):0.75"},
		{name: "allocation role kept", executor: "cpus(web):1;ports:[80-81]", task: "ports:[80-80]",
			want: "cpus(web):1; ports:[81-81]", allocation: "web"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			have := mustParse(t, tt.executor)
			for _, r := range have {
				if tt.allocation != "" {
					r.AllocationInfo = &mesos.Resource_AllocationInfo{Role: proto.String(tt.allocation)}
				}
			}
			left := subtractResources(have, mustParse(t, tt.task))
			if got := resources.Format(left); got != tt.want {
				t.Fatalf("left %q, want %q", got, tt.want)
			}
			for _, r := range left {
				if got := r.GetAllocationInfo().GetRole(); got != tt.allocation {
					t.Fatalf("%s has allocation role %q, want %q", r.GetName(), got, tt.allocation)
				}
			}
		})
	}

	// What the agent cannot read it keeps, rather than lift the limits.
	odd := []*mesos.Resource{{Name: proto.String("cpus"), Type: mesos.Value_TEXT.Enum()}}
	if got := subtractResources(odd, mustParse(t, "cpus:1")); len(got) != 1 || got[0] == nil || got[0].GetName() != "cpus" {
		t.Fatalf("invalid resources not kept: %v", got)
	}
}
