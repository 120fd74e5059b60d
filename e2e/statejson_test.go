package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/scheduler"
	"google.golang.org/protobuf/proto"
)

// mesosLabel and the structs below are what state scrapers (Prometheus's
// mesos_exporter, mesos-dns) decode, written from Mesos's documented
// shapes: labels are plain arrays, statistics carry their limits.
type mesosLabel struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type mesosStatus struct {
	State           string       `json:"state"`
	Timestamp       float64      `json:"timestamp"`
	Labels          []mesosLabel `json:"labels"`
	ContainerStatus struct {
		ContainerID struct {
			Value string `json:"value"`
		} `json:"container_id"`
		NetworkInfos []struct {
			IPAddresses []struct {
				IPAddress string `json:"ip_address"`
			} `json:"ip_addresses"`
		} `json:"network_infos"`
	} `json:"container_status"`
}

type mesosTask struct {
	ID       string        `json:"id"`
	State    string        `json:"state"`
	Labels   []mesosLabel  `json:"labels"`
	Statuses []mesosStatus `json:"statuses"`
}

// TestStateAsScrapersReadIt runs a labelled command task and reads the
// master's and the agent's state, statistics, metrics, flags and version
// the way exporters and service discovery do.
func TestStateAsScrapersReadIt(t *testing.T) {
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl, err := scheduler.Subscribe(ctx, scheduler.Config{Master: c.masterAddr,
		Framework: &mesos.FrameworkInfo{Name: proto.String("scraped"), User: proto.String("root")}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	labels := &mesos.Labels{Labels: []*mesos.Label{{Key: proto.String("tier"), Value: proto.String("web")}}}
	var running *mesos.TaskStatus
	launched := false
	for running == nil {
		var ev *schedv1.Event
		select {
		case ev = <-cl.Events():
		case <-ctx.Done():
			t.Fatal("no TASK_RUNNING")
		}
		switch ev.GetType() {
		case schedv1.Event_OFFERS:
			o := ev.GetOffers().GetOffers()[0]
			if launched {
				_ = cl.Decline(ctx, nil, o.Id)
				continue
			}
			launched = true
			if err := cl.Launch(ctx, o, &mesos.TaskInfo{
				Name: proto.String("scraped"), TaskId: &mesos.TaskID{Value: proto.String("scraped")}, AgentId: o.AgentId,
				Command: &mesos.CommandInfo{Value: proto.String("sleep 60")}, Labels: labels,
				Resources: []*mesos.Resource{
					{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(0.25)}},
					{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(32)}},
				},
			}); err != nil {
				t.Fatal(err)
			}
		case schedv1.Event_UPDATE:
			st := ev.GetUpdate().GetStatus()
			_ = cl.Acknowledge(ctx, st)
			if st.GetState() == mesos.TaskState_TASK_RUNNING {
				running = st
			}
		}
	}
	// The update names the container and where the task is reachable.
	cs := running.GetContainerStatus()
	if cs.GetContainerId().GetValue() == "" || len(cs.GetNetworkInfos()) == 0 ||
		cs.GetNetworkInfos()[0].GetIpAddresses()[0].GetIpAddress() != "127.0.0.1" {
		t.Fatalf("TASK_RUNNING's container_status: %v", cs)
	}

	var master struct {
		Frameworks []struct {
			Tasks []mesosTask `json:"tasks"`
		} `json:"frameworks"`
	}
	mustJSON(t, "http://"+c.masterAddr+"/master/state", &master)
	mt := master.Frameworks[0].Tasks[0]
	if len(mt.Labels) != 1 || mt.Labels[0] != (mesosLabel{"tier", "web"}) || len(mt.Statuses) == 0 ||
		mt.Statuses[len(mt.Statuses)-1].ContainerStatus.ContainerID.Value != cs.GetContainerId().GetValue() {
		t.Fatalf("master's task: %+v", mt)
	}

	var agent struct {
		Frameworks []struct {
			Executors []struct {
				Tasks []mesosTask `json:"tasks"`
			} `json:"executors"`
		} `json:"frameworks"`
	}
	mustJSON(t, "http://"+c.agentAddr+"/state", &agent)
	at := agent.Frameworks[0].Executors[0].Tasks[0]
	if len(at.Labels) != 1 || at.Labels[0] != (mesosLabel{"tier", "web"}) || len(at.Statuses) == 0 ||
		len(at.Statuses[len(at.Statuses)-1].ContainerStatus.NetworkInfos) == 0 {
		t.Fatalf("agent's task: %+v", at)
	}

	var stats []struct {
		ExecutorID string `json:"executor_id"`
		Statistics struct {
			CPUsLimit     float64 `json:"cpus_limit"`
			MemLimitBytes uint64  `json:"mem_limit_bytes"`
			Timestamp     float64 `json:"timestamp"`
		} `json:"statistics"`
	}
	mustJSON(t, "http://"+c.agentAddr+"/monitor/statistics", &stats)
	if len(stats) != 1 || stats[0].Statistics.CPUsLimit < 0.25 || stats[0].Statistics.MemLimitBytes < 32<<20 {
		t.Fatalf("/monitor/statistics: %+v", stats)
	}

	var metrics map[string]float64
	mustJSON(t, "http://"+c.agentAddr+"/metrics/snapshot", &metrics)
	for _, k := range []string{"slave/cpus_percent", "slave/mem_percent", "slave/disk_used", "slave/gpus_total",
		"slave/executors_terminated", "slave/executors_registering", "slave/valid_status_updates",
		"slave/invalid_status_updates", "slave/tasks_lost", "slave/tasks_gone", "slave/container_launch_errors",
		"system/load_1min", "system/mem_total_bytes", "system/cpus_total", "containerizer/mesos/container_destroy_errors"} {
		if _, ok := metrics[k]; !ok {
			t.Errorf("agent /metrics/snapshot lacks %s", k)
		}
	}
	if metrics["slave/valid_status_updates"] < 1 || metrics["slave/cpus_used"] < 0.25 || metrics["slave/cpus_percent"] <= 0 {
		t.Errorf("agent metrics: valid_status_updates %v, cpus_used %v, cpus_percent %v",
			metrics["slave/valid_status_updates"], metrics["slave/cpus_used"], metrics["slave/cpus_percent"])
	}

	var flags struct {
		Flags map[string]string `json:"flags"`
	}
	mustJSON(t, "http://"+c.agentAddr+"/slave(1)/flags", &flags)
	if flags.Flags["work_dir"] != c.agentDir {
		t.Errorf("/slave(1)/flags work_dir = %q", flags.Flags["work_dir"])
	}
	var version struct {
		Version string `json:"version"`
		GitTag  string `json:"git_tag"`
	}
	mustJSON(t, "http://"+c.agentAddr+"/version", &version)
	if version.Version == "" || version.GitTag == "" {
		t.Errorf("agent /version: %+v", version)
	}
}

func mustJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, resp.Status, data)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("GET %s does not decode as Mesos's shape: %v\n%s", url, err, data)
	}
}
