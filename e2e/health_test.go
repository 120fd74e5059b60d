package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/scheduler"
	"google.golang.org/protobuf/proto"
)

// runTask launches task on the first offer and returns every status update
// of it, acknowledged, until a terminal one (the channel then closes).
func runTask(t *testing.T, ctx context.Context, master string, task *mesos.TaskInfo) <-chan *mesos.TaskStatus {
	t.Helper()
	cl, err := scheduler.Subscribe(ctx, scheduler.Config{Master: master,
		Framework: &mesos.FrameworkInfo{Name: proto.String("e2e-" + task.GetTaskId().GetValue()), User: proto.String("root")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	out := make(chan *mesos.TaskStatus, 64)
	go func() {
		defer close(out)
		launched := false
		for ev := range cl.Events() {
			switch ev.GetType() {
			case schedv1.Event_OFFERS:
				for _, o := range ev.GetOffers().GetOffers() {
					if launched {
						_ = cl.Decline(ctx, nil, o.Id)
						continue
					}
					launched = true
					task.AgentId = o.AgentId
					if err := cl.Launch(ctx, o, task); err != nil {
						t.Errorf("launch: %v", err)
						return
					}
				}
			case schedv1.Event_UPDATE:
				st := ev.GetUpdate().GetStatus()
				_ = cl.Acknowledge(ctx, st)
				out <- st
				if mesos.IsTerminal(st.GetState()) {
					return
				}
			}
		}
	}()
	return out
}

func smallTask(id, cmd string) *mesos.TaskInfo {
	return &mesos.TaskInfo{
		Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)},
		Command: &mesos.CommandInfo{Value: proto.String(cmd)},
		Resources: []*mesos.Resource{
			{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(0.1)}},
			{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(32)}},
		},
	}
}

// TestHealthChecksKillUnhealthyTasks: a COMMAND, an HTTP and a TCP health
// check each see the task healthy, then failing (every failure reported
// as TASK_RUNNING with healthy=false), and kill it after
// consecutive_failures: TASK_KILLED, healthy=false,
// REASON_TASK_HEALTH_CHECK_STATUS_UPDATED.
func TestHealthChecksKillUnhealthyTasks(t *testing.T) {
	_, err := exec.LookPath("busybox")
	testutil.Require(t, err == nil, "the HTTP and TCP checks' task serves with busybox httpd (Debian's busybox-static)")
	c := startCluster(t)
	port := testutil.FreePort(t)
	// The task serves its sandbox over HTTP on port for a second and a
	// half, then stops serving and lives on.
	serveThenStop := fmt.Sprintf("echo ok > index.html; busybox httpd -f -p 127.0.0.1:%d -h . & pid=$!; sleep 1.5; kill $pid; sleep 60", port)
	for _, tt := range []struct {
		name string
		cmd  string
		hc   *mesos.HealthCheck
	}{
		{"command", "touch healthy; sleep 1.5; rm healthy; sleep 60", &mesos.HealthCheck{Type: mesos.HealthCheck_COMMAND.Enum(),
			Command: &mesos.CommandInfo{Value: proto.String("test -f healthy")}}},
		{"http", serveThenStop, &mesos.HealthCheck{Type: mesos.HealthCheck_HTTP.Enum(),
			Http: &mesos.HealthCheck_HTTPCheckInfo{Port: proto.Uint32(uint32(port)), Path: proto.String("/index.html")}}},
		{"tcp", serveThenStop, &mesos.HealthCheck{Type: mesos.HealthCheck_TCP.Enum(),
			Tcp: &mesos.HealthCheck_TCPCheckInfo{Port: proto.Uint32(uint32(port))}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			hc := tt.hc
			hc.DelaySeconds, hc.IntervalSeconds, hc.TimeoutSeconds = proto.Float64(0.2), proto.Float64(0.2), proto.Float64(1)
			hc.GracePeriodSeconds, hc.ConsecutiveFailures = proto.Float64(1), proto.Uint32(3)
			task := smallTask("health-"+tt.name, tt.cmd)
			task.HealthCheck = hc
			var seen []string
			unhealthy := 0
			var last *mesos.TaskStatus
			for st := range runTask(t, ctx, c.masterAddr, task) {
				seen = append(seen, st.GetState().String()+"/healthy="+healthString(st))
				if st.GetState() == mesos.TaskState_TASK_RUNNING && st.Healthy != nil && !st.GetHealthy() {
					unhealthy++
					if st.GetReason() != mesos.TaskStatus_REASON_TASK_HEALTH_CHECK_STATUS_UPDATED {
						t.Errorf("unhealthy update with reason %s", st.GetReason())
					}
				}
				last = st
			}
			if last == nil || last.GetState() != mesos.TaskState_TASK_KILLED || last.Healthy == nil || last.GetHealthy() ||
				last.GetReason() != mesos.TaskStatus_REASON_TASK_HEALTH_CHECK_STATUS_UPDATED {
				t.Fatalf("last update %v; saw %v", last, seen)
			}
			if unhealthy != 3 || !contains(seen, "TASK_RUNNING/healthy=true") {
				t.Fatalf("want one healthy and three unhealthy updates; saw %v", seen)
			}
		})
	}
}

// TestCheckStatusChanges: a task's general check reports its result in
// check_status each time it changes; the task keeps running.
func TestCheckStatusChanges(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	task := smallTask("checked", "echo 0 > code; sleep 1; echo 7 > code; sleep 2; exit 0")
	task.Check = &mesos.CheckInfo{Type: mesos.CheckInfo_COMMAND.Enum(), DelaySeconds: proto.Float64(0.1),
		IntervalSeconds: proto.Float64(0.2), TimeoutSeconds: proto.Float64(1),
		Command: &mesos.CheckInfo_Command{Command: &mesos.CommandInfo{Value: proto.String("exit $(cat code)")}}}
	var codes []string
	var last *mesos.TaskStatus
	for st := range runTask(t, ctx, c.masterAddr, task) {
		if st.GetReason() == mesos.TaskStatus_REASON_TASK_CHECK_STATUS_UPDATED {
			if ec := st.GetCheckStatus().GetCommand().ExitCode; ec != nil {
				codes = append(codes, strconv.Itoa(int(*ec)))
			}
		}
		last = st
	}
	if last.GetState() != mesos.TaskState_TASK_FINISHED {
		t.Fatalf("task ended %v", last)
	}
	if len(codes) < 2 || codes[0] != "0" || codes[len(codes)-1] != "7" {
		t.Fatalf("check exit codes reported %v, want 0 then 7", codes)
	}
}

func healthString(st *mesos.TaskStatus) string {
	if st.Healthy == nil {
		return "unset"
	}
	return strconv.FormatBool(st.GetHealthy())
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
