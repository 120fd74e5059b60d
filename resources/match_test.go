package resources

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

func mustParse(t *testing.T, s string) []*mesos.Resource {
	t.Helper()
	if s == "" {
		return nil
	}
	rs, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func TestAllocate(t *testing.T) {
	offer := func(t *testing.T) []*mesos.Resource {
		return mustParse(t, "cpus(web):0.5;cpus:2;mem:1024;ports:[31000-31002,31010-31020];disks:{ssd1,ssd2}")
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
		{"a scalar spans resources of one name", "cpus:2.25", 0, "cpus(web):0.5; cpus:1.75", nil, nil},
		{"fixed point: 0.1+0.2 fits in 0.3", "cpus:0.1;cpus:0.2", 0, "cpus(web):0.3", nil, nil},
		{"a role picks the reservation", "cpus(web):0.5", 0, "cpus(web):0.5", nil, nil},
		{"fixed ports", "ports:[31001-31002,31015]", 0, "ports:[31001-31002, 31015-31015]", nil, nil},
		{"picked ports are the lowest free", "ports:[31000]", 3, "ports:[31000-31002, 31010-31010]", []uint64{31001, 31002, 31010}, nil},
		{"set items", "disks:{ssd2}", 0, "disks:{ssd2}", nil, nil},
		{"too little memory", "mem:2048", 0, "", nil, []string{"mem: want 2048, offered 1024"}},
		{"more than the reservation", "cpus(web):1", 0, "", nil, []string{"cpus(web): want 1, offered 0.5"}},
		{"a port outside the ranges", "ports:[31002-31004]", 0, "", nil, []string{"ports: [31003-31004] not offered"}},
		{"too many ports to pick", "", 20, "", nil, []string{"ports: want 20 more free ports"}},
		{"every shortfall is listed", "mem:4096;gpus:1;disks:{nvme}", 0, "", nil,
			[]string{"mem: want 4096", "gpus: want 1", `disks: "nvme" not offered`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			offered := offer(t)
			used, picked, err := Allocate(offered, mustParse(t, tt.want), tt.pick)
			if tt.wantShort != nil {
				if !errors.Is(err, ErrNoFit) {
					t.Fatalf("error %v, want ErrNoFit", err)
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
			if got := Format(used); got != tt.wantUsed {
				t.Errorf("used %s, want %s", got, tt.wantUsed)
			}
			if !slices.Equal(picked, tt.wantPick) {
				t.Errorf("picked %v, want %v", picked, tt.wantPick)
			}
			if got, want := Format(offered), Format(offer(t)); got != want {
				t.Errorf("Allocate changed the offer: %s", got)
			}
		})
	}
}

// TestRemaining: what one task took is gone for the next, and what the
// master put on the offered messages stays.
func TestRemaining(t *testing.T) {
	offered := mustParse(t, "cpus:2;cpus(web):1;ports:[31000-31010]")
	offered[0].AllocationInfo = &mesos.Resource_AllocationInfo{Role: proto.String("analytics")}
	used, _, err := Allocate(offered, mustParse(t, "cpus:0.5;cpus(web):1;ports:[31002-31003]"), 1)
	if err != nil {
		t.Fatal(err)
	}
	left := Remaining(offered, used)
	if got := Format(left); got != "cpus:1.5; cpus(web):0; ports:[31001-31001, 31004-31010]" {
		t.Fatalf("left %s", got)
	}
	if left[0].GetAllocationInfo().GetRole() != "analytics" {
		t.Fatalf("left %v lost the offer's allocation_info", left[0])
	}
	if _, _, err := Allocate(left, mustParse(t, "cpus(web):0.1"), 0); !errors.Is(err, ErrNoFit) {
		t.Fatalf("the reservation was taken already: %v", err)
	}
}
