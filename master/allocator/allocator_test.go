package allocator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/mesolite/mesolite/resources"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) Now() time.Time          { return c.t }
func (c *fakeClock) Advance(d time.Duration) { c.t = c.t.Add(d) }

func newTest(t *testing.T) (*Allocator, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	return New(Options{Now: clk.Now, Rand: rand.New(rand.NewPCG(1, 2))}), clk
}

func agentRes(cpus, mem float64) resources.Resources {
	return resources.Of(
		resources.NewScalar(resources.CPUs, "", cpus),
		resources.NewScalar(resources.Mem, "", mem),
		resources.NewRanges(resources.Ports, "", resources.Range{Begin: 31000, End: 32000}),
	)
}

// grants counts allocations per framework.
func grants(as []Allocation) map[string]int {
	m := map[string]int{}
	for _, a := range as {
		m[a.FrameworkID]++
	}
	return m
}

func TestDRFSpreadsAgentsFairly(t *testing.T) {
	a, _ := newTest(t)
	for i := range 4 {
		a.AddAgent(fmt.Sprint("agent-", i), agentRes(4, 4096), true)
	}
	a.AddFramework("fw-a", Framework{Roles: []string{"*"}, Active: true})
	a.AddFramework("fw-b", Framework{Roles: []string{"*"}, Active: true})
	got := grants(a.Cycle())
	if got["fw-a"] != 2 || got["fw-b"] != 2 {
		t.Fatalf("grants = %v, want 2 each", got)
	}
	if got := a.Cycle(); len(got) != 0 {
		t.Fatalf("second cycle granted %v although everything is allocated", got)
	}
}

func TestDRFLowestDominantShareFirst(t *testing.T) {
	tests := []struct {
		name  string
		useA  resources.Resources // already allocated to fw-a
		useB  resources.Resources
		first string
	}{
		{"a holds more cpu", resources.Of(resources.NewScalar("cpus", "", 3)), resources.Of(resources.NewScalar("cpus", "", 1)), "fw-b"},
		{"b holds more mem", resources.Of(resources.NewScalar("cpus", "", 2)), resources.Of(resources.NewScalar("mem", "", 3000)), "fw-a"},
		{"dominant resource differs", resources.Of(resources.NewScalar("cpus", "", 1), resources.NewScalar("mem", "", 3500)), resources.Of(resources.NewScalar("cpus", "", 3)), "fw-b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _ := newTest(t)
			a.AddAgent("used", agentRes(4, 4096), true)
			a.AddAgent("free", agentRes(4, 4096), true)
			a.AddFramework("fw-a", Framework{Roles: []string{"*"}, Active: true})
			a.AddFramework("fw-b", Framework{Roles: []string{"*"}, Active: true})
			a.Use("fw-a", "used", "*", tt.useA)
			a.Use("fw-b", "used", "*", tt.useB)
			// Leave only the free agent to hand out.
			a.SetAgentActive("used", false)
			got := a.Cycle()
			if len(got) != 1 || got[0].FrameworkID != tt.first {
				t.Fatalf("got %+v, want one grant to %s", got, tt.first)
			}
		})
	}
}

func TestRoleWeights(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	a := New(Options{Now: clk.Now, Rand: rand.New(rand.NewPCG(3, 4)), Weights: map[string]float64{"heavy": 3}})
	for i := range 8 {
		a.AddAgent(fmt.Sprint("agent-", i), agentRes(4, 4096), true)
	}
	a.AddFramework("fw-heavy", Framework{Roles: []string{"heavy"}, Active: true})
	a.AddFramework("fw-light", Framework{Roles: []string{"light"}, Active: true})
	got := grants(a.Cycle())
	if got["fw-heavy"] != 6 || got["fw-light"] != 2 {
		t.Fatalf("grants = %v, want 6 for weight 3 and 2 for weight 1", got)
	}
}

// TestSetWeights: weights changed at run time (UPDATE_WEIGHTS) decide the
// next cycle, for roles known already and roles that come later.
func TestSetWeights(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	a := New(Options{Now: clk.Now, Rand: rand.New(rand.NewPCG(3, 4)), Weights: map[string]float64{"heavy": 3}})
	for i := range 8 {
		a.AddAgent(fmt.Sprint("agent-", i), agentRes(4, 4096), true)
	}
	a.AddFramework("fw-heavy", Framework{Roles: []string{"heavy"}, Active: true})
	a.SetWeights(map[string]float64{"light": 3})
	a.AddFramework("fw-light", Framework{Roles: []string{"light"}, Active: true})
	got := grants(a.Cycle())
	if got["fw-light"] != 6 || got["fw-heavy"] != 2 {
		t.Fatalf("grants = %v, want 6 for light (now 3) and 2 for heavy (now 1)", got)
	}
}

func TestFiltersAndRefuseSeconds(t *testing.T) {
	a, clk := newTest(t)
	a.AddAgent("agent-1", agentRes(4, 4096), true)
	a.AddFramework("fw", Framework{Roles: []string{"*"}, Active: true})
	first := a.Cycle()
	if len(first) != 1 {
		t.Fatalf("first cycle: %+v", first)
	}
	a.Recover("fw", "agent-1", "*", first[0].Resources, 5*time.Second)

	if got := a.Cycle(); len(got) != 0 {
		t.Fatalf("declined resources re-offered within refuse_seconds: %+v", got)
	}
	clk.Advance(4 * time.Second)
	if got := a.Cycle(); len(got) != 0 {
		t.Fatalf("re-offered after 4s of a 5s filter: %+v", got)
	}
	clk.Advance(time.Second)
	got := a.Cycle()
	if len(got) != 1 || !got[0].Resources.Equal(first[0].Resources) {
		t.Fatalf("not re-offered once the filter expired: %+v", got)
	}

	// A filter covers the declined resources only: more resources (a
	// bigger agent after an update) are offered at once.
	a.Recover("fw", "agent-1", "*", got[0].Resources, time.Hour)
	a.UpdateAgent("agent-1", agentRes(8, 4096))
	if got := a.Cycle(); len(got) != 1 || got[0].Resources.Scalar("cpus") != 8 {
		t.Fatalf("grew agent not offered despite the filter: %+v", got)
	}
}

func TestFilterLetsOtherFrameworksIn(t *testing.T) {
	a, _ := newTest(t)
	a.AddAgent("agent-1", agentRes(4, 4096), true)
	a.AddFramework("fw-a", Framework{Roles: []string{"*"}, Active: true})
	a.AddFramework("fw-b", Framework{Roles: []string{"*"}, Active: true})
	first := a.Cycle()
	if len(first) != 1 {
		t.Fatalf("%+v", first)
	}
	declined := first[0].FrameworkID
	a.Recover(declined, "agent-1", "*", first[0].Resources, time.Minute)
	got := a.Cycle()
	if len(got) != 1 || got[0].FrameworkID == declined {
		t.Fatalf("after %s declined, got %+v", declined, got)
	}
}

func TestFiltersDieWithTheirFramework(t *testing.T) {
	a, _ := newTest(t)
	a.AddAgent("agent-1", agentRes(4, 4096), true)
	a.AddFramework("old", Framework{Roles: []string{"*"}, Active: true})
	got := a.Cycle()
	a.Recover("old", "agent-1", "*", got[0].Resources, time.Hour)
	a.RemoveFramework("old")
	// The new framework may reuse the old one's slot; not its filter.
	a.AddFramework("new", Framework{Roles: []string{"*"}, Active: true})
	if got := a.Cycle(); len(got) != 1 || got[0].FrameworkID != "new" {
		t.Fatalf("got %+v", got)
	}
}

func TestSuppressAndRevive(t *testing.T) {
	a, _ := newTest(t)
	a.AddAgent("agent-1", agentRes(4, 4096), true)
	a.AddFramework("fw", Framework{Roles: []string{"*", "web"}, Active: true, Suppressed: []string{"web"}})
	a.Suppress("fw", nil)
	if got := a.Cycle(); len(got) != 0 {
		t.Fatalf("suppressed framework offered %+v", got)
	}
	a.Revive("fw", []string{"web"})
	got := a.Cycle()
	if len(got) != 1 || got[0].Role != "web" {
		t.Fatalf("revived role web: got %+v", got)
	}
	// Revive drops filters too.
	a.Recover("fw", "agent-1", "web", got[0].Resources, time.Hour)
	a.Revive("fw", nil)
	if got := a.Cycle(); len(got) != 1 {
		t.Fatalf("revive kept the filter: %+v", got)
	}
}

func TestGPUAgentsOnlyForGPUFrameworks(t *testing.T) {
	a, _ := newTest(t)
	gpu := agentRes(4, 4096).Add(resources.Of(resources.NewScalar(resources.GPUs, "", 2)))
	a.AddAgent("gpu-agent", gpu, true)
	a.AddFramework("plain", Framework{Roles: []string{"*"}, Active: true})
	if got := a.Cycle(); len(got) != 0 {
		t.Fatalf("GPU agent offered to a framework without GPU_RESOURCES: %+v", got)
	}
	a.AddFramework("gpu-fw", Framework{Roles: []string{"*"}, GPU: true, Active: true})
	got := a.Cycle()
	if len(got) != 1 || got[0].FrameworkID != "gpu-fw" || got[0].Resources.Scalar(resources.GPUs) != 2 {
		t.Fatalf("got %+v", got)
	}
}

func TestReservationsGoToTheirRole(t *testing.T) {
	a, _ := newTest(t)
	total := resources.Of(
		resources.NewScalar("cpus", "", 2), resources.NewScalar("mem", "", 1024),
		resources.NewScalar("cpus", "prod", 2), resources.NewScalar("mem", "prod", 1024),
	)
	a.AddAgent("agent-1", total, true)
	a.AddFramework("dev", Framework{Roles: []string{"dev"}, Active: true})
	got := a.Cycle()
	if len(got) != 1 || got[0].Resources.HasReservations() || got[0].Resources.Scalar("cpus") != 2 {
		t.Fatalf("dev got %+v, want the unreserved half only", got)
	}
	a.AddFramework("prod", Framework{Roles: []string{"prod"}, Active: true})
	got = a.Cycle()
	if len(got) != 1 || got[0].FrameworkID != "prod" || got[0].Resources.Scalar("cpus") != 2 || !got[0].Resources.HasReservations() {
		t.Fatalf("prod got %+v, want its reservation", got)
	}
}

func TestInactiveAndMinimum(t *testing.T) {
	a, _ := newTest(t)
	a.AddAgent("agent-1", agentRes(4, 4096), true)
	a.AddAgent("tiny", resources.Of(resources.NewScalar("cpus", "", 0.001), resources.NewScalar("disk", "", 100)), true)
	a.AddFramework("fw", Framework{Roles: []string{"*"}, Active: false})
	if got := a.Cycle(); len(got) != 0 {
		t.Fatalf("inactive framework offered %+v", got)
	}
	a.SetFrameworkActive("fw", true)
	a.SetAgentActive("agent-1", false)
	if got := a.Cycle(); len(got) != 0 {
		t.Fatalf("inactive agent or sub-minimum agent offered: %+v", got)
	}
	a.SetAgentActive("agent-1", true)
	if got := a.Cycle(); len(got) != 1 || got[0].AgentID != "agent-1" {
		t.Fatalf("got %+v", got)
	}
}

func TestUseAndRecoverBooks(t *testing.T) {
	a, _ := newTest(t)
	a.AddAgent("agent-1", agentRes(4, 4096), true)
	a.AddFramework("fw", Framework{Roles: []string{"*"}, Active: true})
	task := resources.Of(resources.NewScalar("cpus", "", 1), resources.NewScalar("mem", "", 1024))
	a.Use("fw", "agent-1", "*", task)
	if got := a.Available("agent-1").Scalar("cpus"); got != 3 {
		t.Fatalf("available cpus = %v", got)
	}
	if s := a.Share("fw", "*"); s != 0.25 {
		t.Fatalf("share = %v, want 0.25", s)
	}
	a.Recover("fw", "agent-1", "*", task, 0)
	a.Recover("fw", "agent-1", "*", task, 0) // a duplicate must not mint resources
	if got := a.Available("agent-1"); !got.Equal(agentRes(4, 4096)) {
		t.Fatalf("available = %s", got)
	}
	a.RemoveFramework("fw")
	a.RemoveAgent("agent-1")
	if got := a.Cycle(); len(got) != 0 {
		t.Fatalf("%+v", got)
	}
}

func TestFrameworkLeavesRoleWhileHoldingResources(t *testing.T) {
	a, _ := newTest(t)
	a.AddAgent("agent-1", agentRes(4, 4096), true)
	a.AddAgent("agent-2", agentRes(4, 4096), true)
	a.AddFramework("fw", Framework{Roles: []string{"old"}, Active: true})
	a.SetAgentActive("agent-2", false)
	got := a.Cycle()
	if len(got) != 1 {
		t.Fatalf("%+v", got)
	}
	a.AddFramework("fw", Framework{Roles: []string{"new"}, Active: true})
	a.SetAgentActive("agent-2", true)
	got2 := a.Cycle()
	if len(got2) != 1 || got2[0].Role != "new" {
		t.Fatalf("after the role change: %+v", got2)
	}
	a.Recover("fw", "agent-1", "old", got[0].Resources, 0)
	got3 := a.Cycle()
	if len(got3) != 1 || got3[0].Role != "new" || got3[0].AgentID != "agent-1" {
		t.Fatalf("recovered resources of the old role: %+v", got3)
	}
	if _, ok := a.roles["old"]; ok {
		t.Fatal("empty role kept after its last framework left")
	}
}

// BenchmarkAllocationCycle measures one cycle that hands out 10,000 free
// agents to 100 frameworks in 4 roles. Between iterations everything is
// recovered (off the clock), so every cycle does the full work.
func BenchmarkAllocationCycle(b *testing.B) {
	const agents, frameworks = 10_000, 100
	a := New(Options{Rand: rand.New(rand.NewPCG(7, 8))})
	for i := range agents {
		a.AddAgent(fmt.Sprintf("agent-%05d", i), resources.Of(
			resources.NewScalar(resources.CPUs, "", 32),
			resources.NewScalar(resources.Mem, "", 256*1024),
			resources.NewScalar(resources.Disk, "", 1024*1024),
			resources.NewRanges(resources.Ports, "", resources.Range{Begin: 31000, End: 32000}),
		), true)
	}
	roles := []string{"*", "analytics", "web", "batch"}
	for i := range frameworks {
		a.AddFramework(fmt.Sprintf("fw-%03d", i), Framework{Roles: []string{roles[i%len(roles)]}, Active: true})
	}
	var last []Allocation
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		for _, al := range last {
			a.Recover(al.FrameworkID, al.AgentID, al.Role, al.Resources, 0)
		}
		b.StartTimer()
		last = a.Cycle()
		if len(last) != agents {
			b.Fatalf("granted %d agents, want %d", len(last), agents)
		}
	}
	b.StopTimer()
	per := grants(last)
	counts := slices.Collect(func(yield func(int) bool) {
		for _, n := range per {
			if !yield(n) {
				return
			}
		}
	})
	if len(per) != frameworks || slices.Max(counts)-slices.Min(counts) > 1 {
		b.Fatalf("unfair cycle: %d frameworks got offers, spread %d..%d", len(per), slices.Min(counts), slices.Max(counts))
	}
}

// BenchmarkAllocationCycleBusy is the same cluster when most frameworks
// cannot take most agents: half of them have suppressed offers and the
// others declined every agent but one in ten with a long filter, so each
// agent walks far down the framework order before a grant.
func BenchmarkAllocationCycleBusy(b *testing.B) {
	const agents, frameworks = 10_000, 100
	clk := &fakeClock{t: time.Unix(0, 0)}
	a := New(Options{Now: clk.Now, Rand: rand.New(rand.NewPCG(9, 10))})
	total := resources.Of(
		resources.NewScalar(resources.CPUs, "", 32),
		resources.NewScalar(resources.Mem, "", 256*1024),
		resources.NewScalar(resources.Disk, "", 1024*1024),
		resources.NewRanges(resources.Ports, "", resources.Range{Begin: 31000, End: 32000}),
	)
	ids := make([]string, agents)
	for i := range agents {
		ids[i] = fmt.Sprintf("agent-%05d", i)
		a.AddAgent(ids[i], total, true)
	}
	for i := range frameworks {
		id := fmt.Sprintf("fw-%03d", i)
		a.AddFramework(id, Framework{Roles: []string{"*"}, Active: true})
		if i%2 == 0 {
			a.Suppress(id, nil)
			continue
		}
		for j, agentID := range ids {
			if j%10 != (i/2)%10 {
				a.Use(id, agentID, "*", total)
				a.Recover(id, agentID, "*", total, time.Hour)
			}
		}
	}
	var last []Allocation
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		for _, al := range last {
			a.Recover(al.FrameworkID, al.AgentID, al.Role, al.Resources, 0)
		}
		b.StartTimer()
		last = a.Cycle()
		if len(last) != agents {
			b.Fatalf("granted %d agents, want %d", len(last), agents)
		}
	}
}

// TestQuotaLimitsAndGuarantees: a role never holds more than its limit
// (offers are cut to what is left under it), and a role below its
// guarantee is served before a role with a smaller share.
func TestQuotaLimitsAndGuarantees(t *testing.T) {
	a, _ := newTest(t)
	for i := range 4 {
		a.AddAgent(fmt.Sprint("agent-", i), agentRes(4, 4096), true)
	}
	a.SetQuota("capped", Quota{Limits: resources.QuantitiesOf(map[string]float64{"cpus": 6}, nil), HasLimit: [4]bool{true, false, false, false}})
	a.AddFramework("fw-capped", Framework{Roles: []string{"capped"}, Active: true})
	var cpus float64
	for _, g := range a.Cycle() {
		if g.FrameworkID != "fw-capped" {
			t.Fatalf("grant to %s", g.FrameworkID)
		}
		cpus += g.Resources.Scalar("cpus")
	}
	if cpus != 6 {
		t.Fatalf("the capped role got %v cpus, want its limit of 6", cpus)
	}
	if got := a.Cycle(); len(got) != 0 {
		t.Fatalf("more grants past the limit: %+v", got)
	}

	// Guarantees first: "small" holds more share than "big" but is below
	// its guarantee, so it is served first on a single free agent.
	b, _ := newTest(t)
	b.AddAgent("used", agentRes(4, 4096), true)
	b.AddAgent("free", agentRes(4, 4096), true)
	b.AddFramework("fw-big", Framework{Roles: []string{"big"}, Active: true})
	b.AddFramework("fw-small", Framework{Roles: []string{"small"}, Active: true})
	b.Use("fw-small", "used", "small", resources.Of(resources.NewScalar("cpus", "", 3)))
	b.SetAgentActive("used", false)
	b.SetQuota("small", Quota{Guarantees: resources.QuantitiesOf(map[string]float64{"cpus": 6}, nil), HasGuarantee: [4]bool{true, false, false, false}})
	got := b.Cycle()
	if len(got) != 1 || got[0].FrameworkID != "fw-small" {
		t.Fatalf("grants %+v, want the role below its guarantee first", got)
	}
	if q, _ := b.QuotaOf("small"); !q.HasGuarantee[resources.QCPUs] {
		t.Fatal("quota lost")
	}
}
