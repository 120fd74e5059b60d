package master

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/allocator"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/maintenance"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

func machine(host, ip string) *mesos.MachineID {
	return &mesos.MachineID{Hostname: proto.String(host), Ip: proto.String(ip)}
}

// TestMaintenance: a schedule makes a machine DRAINING: offers of its
// agent carry the unavailability, the framework with a task there gets an
// inverse offer and its answer shows in the status; START_MAINTENANCE
// takes the machine DOWN (its agent removed and refused), STOP brings it
// UP and out of the schedule; the schedule survives a master restart.
func TestMaintenance(t *testing.T) {
	work := t.TempDir()
	h := startMaster(t, func(cfg *Config) { cfg.WorkDir = work })
	agent := h.registerAgent(agentRegister("node1", 5051))
	fw := h.subscribe(frameworkInfo("fw"), codec.JSON)
	o := fw.offer()
	if o.GetUnavailability() != nil {
		t.Fatalf("offer with an unavailability before any schedule: %v", o.GetUnavailability())
	}
	fw.launch([]*mesos.OfferID{o.GetId()}, commandTask("t1", o.GetAgentId(), 1, 64))
	agent.next(agentpb.Event_RUN_TASK)
	agent.update(fw.fwID, "t1", mesos.TaskState_TASK_RUNNING)
	fw.next(scheduler.Event_UPDATE)

	start := time.Unix(1_900_000_000, 0)
	sched := &maintenance.Schedule{Windows: []*maintenance.Window{{MachineIds: []*mesos.MachineID{machine("node1", "127.0.0.1")},
		Unavailability: &mesos.Unavailability{Start: &mesos.TimeInfo{Nanoseconds: proto.Int64(start.UnixNano())}}}}}
	update := func(s *maintenance.Schedule) (int, string) {
		code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, &masterpb.Call{Type: masterpb.Call_UPDATE_MAINTENANCE_SCHEDULE.Enum(),
			UpdateMaintenanceSchedule: &masterpb.Call_UpdateMaintenanceSchedule{Schedule: s}}, nil)
		return code, string(body)
	}
	twice := proto.Clone(sched).(*maintenance.Schedule)
	twice.Windows = append(twice.Windows, proto.Clone(sched.Windows[0]).(*maintenance.Window))
	if code, body := update(twice); code != http.StatusBadRequest || !strings.Contains(body, "more than one window") {
		t.Fatalf("a machine in two windows: %d %s", code, body)
	}
	if code, body := update(sched); code != http.StatusOK {
		t.Fatalf("UPDATE_MAINTENANCE_SCHEDULE: %d %s", code, body)
	}
	inv := fw.skipUntil(scheduler.Event_INVERSE_OFFERS).GetInverseOffers().GetInverseOffers()
	if len(inv) != 1 || inv[0].GetAgentId().GetValue() != agent.id || inv[0].GetUnavailability().GetStart().GetNanoseconds() != start.UnixNano() {
		t.Fatalf("inverse offers %v", inv)
	}
	// Offers made before the schedule were rescinded; the next carries it.
	o = fw.offer()
	for o.GetUnavailability() == nil {
		o = fw.offer()
	}
	if o.GetUnavailability().GetStart().GetNanoseconds() != start.UnixNano() {
		t.Fatalf("offer of a draining agent with the wrong unavailability: %v", o)
	}
	fw.mustCall(&scheduler.Call{Type: scheduler.Call_DECLINE_INVERSE_OFFERS.Enum(), DeclineInverseOffers: &scheduler.Call_DeclineInverseOffers{InverseOfferIds: []*mesos.OfferID{inv[0].GetId()}}})
	st := opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_MAINTENANCE_STATUS)).GetGetMaintenanceStatus().GetStatus()
	if len(st.GetDrainingMachines()) != 1 || len(st.GetDrainingMachines()[0].GetStatuses()) != 1 ||
		st.GetDrainingMachines()[0].GetStatuses()[0].GetStatus() != allocator.InverseOfferStatus_DECLINE {
		t.Fatalf("maintenance status %v", st)
	}

	// Down: the agent goes, its task is lost to the framework, and it may
	// not come back while down.
	stop := &masterpb.Call{Type: masterpb.Call_STOP_MAINTENANCE.Enum(), StopMaintenance: &masterpb.Call_StopMaintenance{Machines: []*mesos.MachineID{machine("node1", "127.0.0.1")}}}
	if code, body, _ := opPost(t, h.base+"/api/v1", codec.JSON, codec.JSON, stop, nil); code != http.StatusBadRequest {
		t.Fatalf("STOP of a machine that is not down: %d %s", code, body)
	}
	mustOp(t, h.base, &masterpb.Call{Type: masterpb.Call_START_MAINTENANCE.Enum(), StartMaintenance: &masterpb.Call_StartMaintenance{Machines: []*mesos.MachineID{machine("node1", "127.0.0.1")}}}, nil)
	if upd := fw.skipUntil(scheduler.Event_UPDATE).GetUpdate().GetStatus(); upd.GetTaskId().GetValue() != "t1" || !mesos.IsTerminal(upd.GetState()) {
		t.Fatalf("task on a machine taken down: %v", upd)
	}
	call := agentRegister("node1", 5051)
	call.AgentId = agentIDOf(agent.id)
	resp, cancel := openRegister(t, h.base, call, nil)
	cancel()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("REGISTER from a down machine: %s", resp.Status)
	}
	st = opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_MAINTENANCE_STATUS)).GetGetMaintenanceStatus().GetStatus()
	if len(st.GetDownMachines()) != 1 || len(st.GetDrainingMachines()) != 0 {
		t.Fatalf("status with the machine down: %v", st)
	}
	if code, body := update(&maintenance.Schedule{}); code != http.StatusBadRequest || !strings.Contains(body, "is down") {
		t.Fatalf("dropping a down machine from the schedule: %d %s", code, body)
	}

	// The book survives a restart; then the machine comes up.
	h.stop()
	h = startMaster(t, func(cfg *Config) { cfg.WorkDir = work })
	if code, body := do(t, http.MethodGet, h.base+"/master/maintenance/status", "", "", nil); code != 200 || !strings.Contains(body, `"down_machines":[{"hostname":"node1","ip":"127.0.0.1"}]`) {
		t.Fatalf("/master/maintenance/status after a restart: %d %s", code, body)
	}
	if code, body := do(t, http.MethodPost, h.base+"/master/machine/up", "application/json", `[{"hostname":"node1","ip":"127.0.0.1"}]`, nil); code != 200 {
		t.Fatalf("/master/machine/up: %d %s", code, body)
	}
	if s := opCall(t, h.base, codec.JSON, opType(masterpb.Call_GET_MAINTENANCE_SCHEDULE)).GetGetMaintenanceSchedule().GetSchedule(); len(s.GetWindows()) != 0 {
		t.Fatalf("schedule after the machine came up: %v", s)
	}
	h.registerAgent(call)
}
