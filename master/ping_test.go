package master

import (
	"net/http"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

// TestStoppedAgentRemovedAfterMissedPongs: an agent that answers pings and
// then goes silent while its stream stays open (SIGSTOP: the socket buffer
// takes the master's writes) is disconnected and removed once the ping
// budget is spent; its framework hears TASK_LOST. An agent that answers
// in time, and one that never declared answers_pings, stay.
func TestStoppedAgentRemovedAfterMissedPongs(t *testing.T) {
	h := startMaster(t, func(cfg *Config) {
		cfg.AgentPingTimeout = 10 * time.Second
		cfg.MaxAgentPingTimeouts = 3
	})
	pinging := func(host string) *agentpb.Call {
		c := agentRegister(host, 5051)
		c.Register.AnswersPings = proto.Bool(true)
		return c
	}
	frozen := h.registerAgent(pinging("frozen"))
	alive := h.registerAgent(pinging("alive"))
	legacy := h.registerAgent(agentRegister("legacy", 5052))

	fw := h.subscribe(frameworkInfo("fw"), codec.JSON)
	var offer *mesos.Offer
	for _, o := range fw.next(scheduler.Event_OFFERS).GetOffers().GetOffers() {
		if o.GetAgentId().GetValue() == frozen.id {
			offer = o
		}
	}
	if offer == nil {
		t.Fatal("no offer from the agent about to stop")
	}
	fw.launch([]*mesos.OfferID{offer.GetId()}, commandTask("t1", offer.GetAgentId(), 1, 64))
	frozen.next(agentpb.Event_RUN_TASK)
	frozen.update(fw.fwID, "t1", mesos.TaskState_TASK_RUNNING)
	if st := fw.skipUntil(scheduler.Event_UPDATE).GetUpdate().GetStatus(); st.GetState() != mesos.TaskState_TASK_RUNNING {
		t.Fatalf("first update: %v", st)
	}

	pong := func(a *fakeAgent) {
		t.Helper()
		if code, body := a.call(&agentpb.Call{Type: agentpb.Call_PONG.Enum()}); code != http.StatusAccepted {
			t.Fatalf("PONG: %d %s", code, body)
		}
	}
	// 25 s of silence from "frozen" (under the 30 s budget) changes nothing.
	for range 5 {
		h.advance(5 * time.Second)
		pong(alive)
	}
	if !h.connected(frozen.id) {
		t.Fatal("agent disconnected inside its ping budget")
	}
	for range 2 {
		h.advance(5 * time.Second)
		pong(alive)
	}
	if h.connected(frozen.id) {
		t.Fatal("agent silent for 35 s is still connected")
	}
	if st := fw.skipUntil(scheduler.Event_UPDATE).GetUpdate().GetStatus(); st.GetState() != mesos.TaskState_TASK_LOST || st.GetReason() != mesos.TaskStatus_REASON_AGENT_REMOVED {
		t.Fatalf("framework after the stopped agent's removal: %v", st)
	}
	if !h.connected(alive.id) || !h.connected(legacy.id) {
		t.Fatal("an agent that answered, or one that never promised to, was disconnected")
	}
	if n := getJSON(t, h.base+"/metrics/snapshot")["master/slave_removals/reason_unhealthy"]; n != 1.0 {
		t.Fatalf("master/slave_removals/reason_unhealthy = %v", n)
	}
}

func (h *harness) connected(agentID string) bool {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	a := h.m.agents[agentID]
	return a != nil && a.connected
}
