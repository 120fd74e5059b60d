package cli

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/api/v1/mesos"
)

func scalar(name string, v float64) *mesos.Resource {
	return &mesos.Resource{Name: mesos.Ptr(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: mesos.Ptr(v)}}
}

func ranges(name string, rs ...[2]uint64) *mesos.Resource {
	var out []*mesos.Value_Range
	for _, r := range rs {
		out = append(out, &mesos.Value_Range{Begin: mesos.Ptr(r[0]), End: mesos.Ptr(r[1])})
	}
	return &mesos.Resource{Name: mesos.Ptr(name), Type: mesos.Value_RANGES.Enum(), Ranges: &mesos.Value_Ranges{Range: out}}
}

func reserved(r *mesos.Resource, role string) *mesos.Resource {
	r.Reservations = []*mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_STATIC.Enum(), Role: mesos.Ptr(role)}}
	return r
}

func mustResources(t *testing.T, s string) []*mesos.Resource {
	t.Helper()
	rs, err := parseResources(s)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestAllocate(t *testing.T) {
	offer := func() []*mesos.Resource {
		return []*mesos.Resource{
			reserved(scalar("cpus", 0.5), "web"),
			scalar("cpus", 2),
			scalar("mem", 1024),
			ranges("ports", [2]uint64{31000, 31002}, [2]uint64{31010, 31020}),
			{Name: mesos.Ptr("disks"), Type: mesos.Value_SET.Enum(), Set: &mesos.Value_Set{Item: []string{"ssd1", "ssd2"}}},
		}
	}
	tests := []struct {
		name      string
		want      string
		pick      int
		wantUsed  string
		wantPick  []uint64
		wantShort []string
	}{
		{"fits", "cpus:0.1;mem:32", 0, "cpus(web):0.1; mem:32", nil, nil},
		{"scalars span resources of one name", "cpus:2.25", 0, "cpus(web):0.5; cpus:1.75", nil, nil},
		{"fixed-point: 0.1+0.2 fits in 0.3", "cpus:0.1;cpus:0.2", 0, "cpus(web):0.3", nil, nil},
		{"role picks the reservation", "cpus(web):0.5", 0, "cpus(web):0.5", nil, nil},
		{"fixed ports from the ranges", "ports:[31001-31002,31015]", 0, "ports:[31001-31002, 31015-31015]", nil, nil},
		{"picked ports are the lowest free", "ports:[31000]", 3, "ports:[31000-31002, 31010-31010]", []uint64{31001, 31002, 31010}, nil},
		{"set items", "disks:{ssd2}", 0, "disks:{ssd2}", nil, nil},
		{"too little memory", "cpus:0.1;mem:2048", 0, "", nil, []string{"mem: want 2048, offered 1024"}},
		{"more than the reservation", "cpus(web):1", 0, "", nil, []string{"cpus(web): want 1, offered 0.5"}},
		{"port outside the ranges", "ports:[31002-31004]", 0, "", nil, []string{"ports: [31003-31004] not offered (offered [31000-31002, 31010-31020])"}},
		{"no such resource", "gpus:1", 0, "", nil, []string{"gpus: want 1, offered 0"}},
		{"too many ports to pick", "", 20, "", nil, []string{"ports: want 20 more free ports"}},
		{"every shortfall is listed", "mem:4096;gpus:1;disks:{nvme}", 0, "", nil,
			[]string{"mem: want 4096", "gpus: want 1", `disks: "nvme" not offered`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offered := offer()
			used, picked, err := allocate(offered, mustResources(t, tt.want), tt.pick)
			if tt.wantShort != nil {
				if !errors.Is(err, errNoFit) {
					t.Fatalf("error %v, want errNoFit", err)
				}
				for _, s := range tt.wantShort {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q lacks %q", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := describeResources(used); got != tt.wantUsed {
				t.Fatalf("used %s, want %s", got, tt.wantUsed)
			}
			if !slices.Equal(picked, tt.wantPick) {
				t.Fatalf("picked %v, want %v", picked, tt.wantPick)
			}
			if got := describeResources(offered); got != describeResources(offer()) {
				t.Fatalf("allocate changed the offer: %s", got)
			}
		})
	}
}

func TestAllocateKeepsOfferedFields(t *testing.T) {
	cpus := scalar("cpus", 4)
	cpus.AllocationInfo = &mesos.Resource_AllocationInfo{Role: mesos.Ptr("analytics")}
	used, _, err := allocate([]*mesos.Resource{cpus}, mustResources(t, "cpus:1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if used[0].GetAllocationInfo().GetRole() != "analytics" || used[0].GetScalar().GetValue() != 1 {
		t.Fatalf("used %v: the task must carry the offer's allocation_info", used[0])
	}
}

func TestForOffer(t *testing.T) {
	tmpl, err := buildTask(taskSpec{name: "web", taskID: "web-1", dockerImage: "img", resources: "cpus:0.5;mem:64",
		portMappings: []string{"31001:80", "0:443"}})
	if err != nil {
		t.Fatal(err)
	}
	offer := &mesos.Offer{
		Id:          &mesos.OfferID{Value: mesos.Ptr("o1")},
		FrameworkId: &mesos.FrameworkID{Value: mesos.Ptr("fw")},
		AgentId:     &mesos.AgentID{Value: mesos.Ptr("a1")},
		Hostname:    mesos.Ptr("h1"),
		Resources:   []*mesos.Resource{scalar("cpus", 1), scalar("mem", 128), ranges("ports", [2]uint64{31000, 31005})},
	}
	task, err := tmpl.forOffer(offer, "fw")
	if err != nil {
		t.Fatal(err)
	}
	if task.GetAgentId().GetValue() != "a1" || describeResources(task.GetResources()) != "cpus:0.5; mem:64; ports:[31000-31001]" {
		t.Fatalf("task %v resources %s", task, describeResources(task.GetResources()))
	}
	pms := task.GetContainer().GetDocker().GetPortMappings()
	if pms[0].GetHostPort() != 31001 || pms[1].GetHostPort() != 31000 || pms[1].GetContainerPort() != 443 {
		t.Fatalf("port mappings %v", pms)
	}
	if tmpl.task.GetContainer().GetDocker().GetPortMappings()[1].GetHostPort() != 0 {
		t.Fatal("forOffer changed the template")
	}

	small := &mesos.Offer{AgentId: offer.AgentId, Resources: []*mesos.Resource{scalar("cpus", 1), scalar("mem", 128), ranges("ports", [2]uint64{32000, 32005})}}
	if _, err := tmpl.forOffer(small, "fw"); err == nil || !strings.Contains(err.Error(), "31001") {
		t.Fatalf("offer without port 31001: %v", err)
	}

	pinned := *tmpl
	pinned.agentID = "other"
	if _, err := pinned.forOffer(offer, "fw"); err == nil {
		t.Fatal("a pinned task fit an offer from another agent")
	}
}

func TestSubtractUsed(t *testing.T) {
	cpus := scalar("cpus", 2)
	cpus.AllocationInfo = &mesos.Resource_AllocationInfo{Role: mesos.Ptr("analytics")}
	offered := []*mesos.Resource{cpus, reserved(scalar("cpus", 1), "web"), ranges("ports", [2]uint64{31000, 31010})}
	used, _, err := allocate(offered, mustResources(t, "cpus:0.5;cpus(web):1;ports:[31002-31003]"), 1)
	if err != nil {
		t.Fatal(err)
	}
	left := subtractUsed(offered, used)
	if got := describeResources(left); got != "cpus:1.5; cpus(web):0; ports:[31001-31001, 31004-31010]" {
		t.Fatalf("left %s", got)
	}
	if left[0].GetAllocationInfo().GetRole() != "analytics" {
		t.Fatalf("left %v lost the offer's allocation_info", left[0])
	}
	if got := describeResources(offered); got != "cpus:2; cpus(web):1; ports:[31000-31010]" {
		t.Fatalf("subtractUsed changed the offer: %s", got)
	}
}
