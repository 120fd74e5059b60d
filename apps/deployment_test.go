package apps

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// simulate runs a deployment to its end with plan: each round, the
// instances launched in the previous round become ready and the kills
// take effect. It returns the ready count after each round.
func simulate(t *testing.T, a *App, insts []*Instance, kind DeploymentKind) []int {
	t.Helper()
	d := &Deployment{Kind: kind}
	var counts []int
	seq := 0
	for round := 0; round < 100; round++ {
		r := plan(a, insts, d)
		if r.done {
			return counts
		}
		for _, k := range r.kill {
			k.Condition = Killing
		}
		insts = slices.DeleteFunc(insts, func(i *Instance) bool { return i.Condition == Killing })
		for _, i := range insts {
			i.Condition = Running
		}
		for range r.launch {
			seq++
			insts = append(insts, &Instance{TaskID: fmt.Sprint("new-", seq), ConfigVersion: a.configVersion(), Condition: Staging,
				LaunchedAt: time.Unix(int64(1000+seq), 0)})
		}
		ready := 0
		for _, i := range insts {
			if i.ready(a, a.configVersion()) {
				ready++
			}
		}
		counts = append(counts, ready)
	}
	t.Fatalf("no end after 100 rounds: %v", counts)
	return nil
}

func running(n int, version string) []*Instance {
	var out []*Instance
	for i := range n {
		out = append(out, &Instance{TaskID: fmt.Sprint("old-", i), ConfigVersion: version, Condition: Running, LaunchedAt: time.Unix(int64(i), 0)})
	}
	return out
}

// TestPlanRollingRestart: a restart never drops the ready instances below
// minimumHealthCapacity x instances, never runs more than
// (1 + maximumOverCapacity) x instances, and ends with only new ones.
func TestPlanRollingRestart(t *testing.T) {
	tests := []struct {
		n          int
		minHealth  float64
		overCap    float64
		wantCounts []int
	}{
		{3, 1, 1, []int{3, 6, 3}},             // all new side by side, then the old go
		{3, 1, 0, []int{3, 4, 3, 4, 3, 4, 3}}, // one over capacity at a time
		{4, 0.5, 0, []int{2, 4, 2, 4}},        // half first, then the other half
		{4, 0, 0, []int{0, 4}},                // all at once
		{2, 0.5, 0.5, []int{1, 3, 2}},         // one old goes, two new come
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("n=%d,min=%v,over=%v", tt.n, tt.minHealth, tt.overCap), func(t *testing.T) {
			a := defaultApp()
			a.Instances = tt.n
			a.UpgradeStrategy = UpgradeStrategy{MinimumHealthCapacity: tt.minHealth, MaximumOverCapacity: tt.overCap}
			a.Version, a.VersionInfo = "v2", &VersionInfo{LastConfigChangeAt: "v2"}
			counts := simulate(t, &a, running(tt.n, "v1"), KindRestart)
			if !slices.Equal(counts, tt.wantCounts) {
				t.Errorf("ready counts %v, want %v", counts, tt.wantCounts)
			}
			minHealthy := int(float64(tt.n)*tt.minHealth + 0.999)
			for _, c := range counts {
				if c < minHealthy {
					t.Errorf("ready count %d below %d", c, minHealthy)
				}
			}
		})
	}
}

func TestPlanScale(t *testing.T) {
	a := defaultApp()
	a.Version = "v1"
	a.Instances = 5
	insts := running(3, "v1")
	if r := plan(&a, insts, nil); r.launch != 2 || len(r.kill) != 0 {
		t.Fatalf("scale up: %+v", r)
	}
	a.Instances = 1
	r := plan(&a, insts, nil)
	if r.launch != 0 || len(r.kill) != 2 || r.kill[0].TaskID != "old-2" || r.kill[1].TaskID != "old-1" {
		t.Fatalf("scale down, youngest first: %+v", r)
	}
	a.KillSelection = OldestFirst
	if r := plan(&a, insts, nil); r.kill[0].TaskID != "old-0" {
		t.Fatalf("oldest first: %+v", r.kill[0])
	}
	// Old config versions are kept without a deployment (one canceled).
	a.Instances = 3
	a.VersionInfo = &VersionInfo{LastConfigChangeAt: "v2"}
	if r := plan(&a, insts, nil); r.launch != 0 || len(r.kill) != 0 {
		t.Fatalf("without a deployment: %+v", r)
	}
	if r := plan(&a, insts, &Deployment{Kind: KindStop}); len(r.kill) != 3 || r.done {
		t.Fatalf("stop: %+v", r)
	}
	if r := plan(&a, nil, &Deployment{Kind: KindStop}); !r.done {
		t.Fatalf("stop without instances: %+v", r)
	}
}

// TestPlanWaitsForHealth: with health checks, a new instance counts only
// once healthy, and a start is done only when every instance is.
func TestPlanWaitsForHealth(t *testing.T) {
	a := defaultApp()
	a.Version = "v1"
	a.Instances = 2
	a.HealthChecks = []HealthCheck{{Protocol: ProtoMesosTCP}}
	insts := running(2, "v1")
	d := &Deployment{Kind: KindStart}
	if r := plan(&a, insts, d); r.done {
		t.Fatal("done before any health result")
	}
	yes := true
	for _, i := range insts {
		i.Healthy = &yes
	}
	if r := plan(&a, insts, d); !r.done {
		t.Fatalf("not done with every instance healthy: %+v", r)
	}
}
