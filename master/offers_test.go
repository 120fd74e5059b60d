package master

import (
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

func TestOfferContents(t *testing.T) {
	tests := []struct {
		name      string
		info      *mesos.FrameworkInfo
		wantAlloc string // "" = no allocation_info anywhere
	}{
		{"single role", frameworkInfo("plain"), ""},
		{"MULTI_ROLE", func() *mesos.FrameworkInfo {
			i := frameworkInfo("multi", mesos.FrameworkInfo_Capability_MULTI_ROLE)
			i.Roles = []string{"web"}
			return i
		}(), "web"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startMaster(t)
			a := h.registerAgent(agentRegister("node1", 5051))
			sc := h.subscribe(tt.info, codec.JSON)
			o := sc.offer()
			if o.GetId().GetValue() == "" || o.GetFrameworkId().GetValue() != sc.fwID || o.GetAgentId().GetValue() != a.id || o.GetHostname() != "node1" {
				t.Fatalf("offer %v", o)
			}
			if o.GetUrl().GetAddress().GetPort() != 5051 || o.GetUrl().GetScheme() != "http" {
				t.Errorf("url %v", o.GetUrl())
			}
			if len(o.GetAttributes()) != 1 || o.GetAttributes()[0].GetText().GetValue() != "r1" {
				t.Errorf("attributes %v", o.GetAttributes())
			}
			res, err := resources.FromProto(o.GetResources())
			if err != nil || res.Scalar("cpus") != 4 || res.Scalar("mem") != 4096 {
				t.Fatalf("resources %s %v", res, err)
			}
			if p, ok := res.Get("ports", "*"); !ok || p.ValueString() != "[31000-32000]" {
				t.Errorf("ports %v", p)
			}
			for _, r := range o.GetResources() {
				if got := r.GetAllocationInfo().GetRole(); (r.AllocationInfo != nil) != (tt.wantAlloc != "") || got != tt.wantAlloc {
					t.Errorf("resource %s allocation_info %v, want role %q", r.GetName(), r.AllocationInfo, tt.wantAlloc)
				}
			}
			if (o.AllocationInfo != nil) != (tt.wantAlloc != "") || o.GetAllocationInfo().GetRole() != tt.wantAlloc {
				t.Errorf("offer allocation_info %v, want role %q", o.AllocationInfo, tt.wantAlloc)
			}
		})
	}
}

func TestDRFOverHTTP(t *testing.T) {
	h := startMaster(t)
	h.registerAgent(agentRegister("node1", 5051))
	h.registerAgent(agentRegister("node2", 5052))
	f1 := h.subscribe(frameworkInfo("one"), codec.JSON)
	// Alone, framework one is offered both agents.
	var offers []*mesos.Offer
	for len(offers) < 2 {
		offers = append(offers, f1.next(scheduler.Event_OFFERS).GetOffers().GetOffers()...)
	}
	// Framework two has the lower dominant share, so the agent one gives
	// back goes to it, not back to one.
	f2 := h.subscribe(frameworkInfo("two"), codec.JSON)
	f1.decline(offers[0], 0)
	o2 := f2.offer()
	if o2.GetAgentId().GetValue() != offers[0].GetAgentId().GetValue() {
		t.Fatalf("framework two was offered %s, want %s", o2.GetAgentId().GetValue(), offers[0].GetAgentId().GetValue())
	}
	f1.quiet(scheduler.Event_OFFERS, 100*time.Millisecond)
}

func TestDeclineFiltersWithRefuseSeconds(t *testing.T) {
	h := startMaster(t)
	h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("decliner"), codec.Protobuf)

	o := sc.offer()
	sc.decline(o, 30)
	sc.quiet(scheduler.Event_OFFERS, 150*time.Millisecond)
	h.advance(29 * time.Second)
	sc.quiet(scheduler.Event_OFFERS, 150*time.Millisecond)
	h.advance(2 * time.Second)
	o = sc.offer()

	// No filters given: refuse_seconds defaults to 5.
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_DECLINE.Enum(), Decline: &scheduler.Call_Decline{OfferIds: []*mesos.OfferID{o.GetId()}}})
	h.advance(4 * time.Second)
	sc.quiet(scheduler.Event_OFFERS, 150*time.Millisecond)
	h.advance(time.Second)
	o = sc.offer()

	// REVIVE drops the filter at once.
	sc.decline(o, 3600)
	sc.quiet(scheduler.Event_OFFERS, 100*time.Millisecond)
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_REVIVE.Enum()})
	o = sc.offer()

	// SUPPRESS stops offers until REVIVE.
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_SUPPRESS.Enum()})
	sc.decline(o, 0)
	sc.quiet(scheduler.Event_OFFERS, 150*time.Millisecond)
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_REVIVE.Enum()})
	sc.offer()
}

func TestOfferTimeoutRescinds(t *testing.T) {
	h := startMaster(t, func(cfg *Config) { cfg.OfferTimeout = 10 * time.Second })
	h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("slow"), codec.JSON)
	o := sc.offer()
	h.advance(9 * time.Second)
	sc.quiet(scheduler.Event_RESCIND, 100*time.Millisecond)
	h.advance(2 * time.Second)
	ev := sc.next(scheduler.Event_RESCIND)
	if ev.GetRescind().GetOfferId().GetValue() != o.GetId().GetValue() {
		t.Fatalf("rescinded %v, want %s", ev.GetRescind(), o.GetId().GetValue())
	}
	// The resources come back in a new offer; the old one is void.
	o2 := sc.offer()
	if o2.GetId().GetValue() == o.GetId().GetValue() {
		t.Fatal("offer id reused")
	}
	sc.launch([]*mesos.OfferID{o.GetId()}, commandTask("late", o.GetAgentId(), 1, 128))
	st := sc.next(scheduler.Event_UPDATE).GetUpdate().GetStatus()
	if st.GetState() != mesos.TaskState_TASK_LOST || st.GetReason() != mesos.TaskStatus_REASON_INVALID_OFFERS {
		t.Fatalf("launch on a rescinded offer: %v", st)
	}
}

func TestAgentDisconnectRescindsOffers(t *testing.T) {
	h := startMaster(t)
	a := h.registerAgent(agentRegister("node1", 5051))
	sc := h.subscribe(frameworkInfo("watcher"), codec.JSON)
	o := sc.offer()
	a.disconnect(h.m)
	ev := sc.next(scheduler.Event_RESCIND)
	if ev.GetRescind().GetOfferId().GetValue() != o.GetId().GetValue() {
		t.Fatalf("rescind %v", ev)
	}
	sc.quiet(scheduler.Event_OFFERS, 100*time.Millisecond)
	// Back on a new connection: offered again.
	call := agentRegister("node1", 5051)
	call.AgentId = &mesos.AgentID{Value: proto.String(a.id)}
	a2 := h.registerAgent(call)
	if a2.id != a.id {
		t.Fatalf("re-registered as %s, want %s", a2.id, a.id)
	}
	sc.offer()
}
