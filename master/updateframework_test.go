package master

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"google.golang.org/protobuf/proto"
)

// TestUpdateFramework: UPDATE_FRAMEWORK changes a subscribed framework's
// name, roles and failover timeout in place: offers made for a role it
// left are rescinded, the next ones come for its new role, the state shows
// the change; changing user, checkpoint or principal, or another
// framework's id, is refused with 400 and changes nothing.
func TestUpdateFramework(t *testing.T) {
	h := startMaster(t)
	h.registerAgent(agentRegister("node1", 5051))
	info := frameworkInfo("before", mesos.FrameworkInfo_Capability_MULTI_ROLE)
	info.Roles = []string{"blue"}
	sc := h.subscribe(info, codec.JSON)
	first := sc.offer()
	if first.GetAllocationInfo().GetRole() != "blue" {
		t.Fatalf("first offer for role %q", first.GetAllocationInfo().GetRole())
	}

	update := func(mutate func(*mesos.FrameworkInfo)) (int, string) {
		t.Helper()
		ni := proto.Clone(info).(*mesos.FrameworkInfo)
		ni.Id = &mesos.FrameworkID{Value: proto.String(sc.fwID)}
		mutate(ni)
		return sc.call(&scheduler.Call{Type: scheduler.Call_UPDATE_FRAMEWORK.Enum(),
			UpdateFramework: &scheduler.Call_UpdateFramework{FrameworkInfo: ni}})
	}
	for _, tt := range []struct {
		name   string
		mutate func(*mesos.FrameworkInfo)
		want   string
	}{
		{"user", func(i *mesos.FrameworkInfo) { i.User = proto.String("root") }, "'FrameworkInfo.user' is unsupported"},
		{"checkpoint", func(i *mesos.FrameworkInfo) { i.Checkpoint = proto.Bool(true) }, "'FrameworkInfo.checkpoint' is unsupported"},
		{"principal", func(i *mesos.FrameworkInfo) { i.Principal = proto.String("mallory") }, "'FrameworkInfo.principal' is unsupported"},
		{"other id", func(i *mesos.FrameworkInfo) { i.Id.Value = proto.String("someone-else") }, "must be the framework's id"},
		{"bad role", func(i *mesos.FrameworkInfo) { i.Roles = []string{"has space"} }, "invalid role"},
	} {
		if code, body := update(tt.mutate); code != http.StatusBadRequest || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %s", tt.name, code, body)
		}
	}

	if code, body := update(func(i *mesos.FrameworkInfo) {
		i.Name = proto.String("after")
		i.Roles = []string{"green"}
		i.FailoverTimeout = proto.Float64(120)
	}); code != http.StatusAccepted {
		t.Fatalf("UPDATE_FRAMEWORK: %d %s", code, body)
	}
	resc := sc.skipUntil(scheduler.Event_RESCIND)
	if resc.GetRescind().GetOfferId().GetValue() != first.GetId().GetValue() {
		t.Fatalf("rescinded %v, want the blue offer %s", resc.GetRescind(), first.GetId().GetValue())
	}
	if o := sc.offer(); o.GetAllocationInfo().GetRole() != "green" {
		t.Fatalf("offer after the update for role %q", o.GetAllocationInfo().GetRole())
	}
	fw, _ := frameworkState(t, h.base, sc.fwID)
	roles, _ := fw["roles"].([]any)
	if fw["name"] != "after" || len(roles) != 1 || roles[0] != "green" || fw["failover_timeout"] != 120.0 || fw["user"] != "tester" {
		t.Fatalf("state after the update: %s", fmtJSON(fw))
	}
}
