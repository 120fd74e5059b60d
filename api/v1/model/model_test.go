package model

import (
	"encoding/json"
	"testing"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

func TestTaskStatusShape(t *testing.T) {
	st := &mesos.TaskStatus{
		TaskId: &mesos.TaskID{Value: proto.String("t")}, State: mesos.TaskState_TASK_RUNNING.Enum(),
		Timestamp: proto.Float64(12.5), Healthy: proto.Bool(true),
		Labels: &mesos.Labels{Labels: []*mesos.Label{{Key: proto.String("k"), Value: proto.String("v")}, {Key: proto.String("bare")}}},
		ContainerStatus: &mesos.ContainerStatus{ContainerId: &mesos.ContainerID{Value: proto.String("c1")},
			NetworkInfos: []*mesos.NetworkInfo{{IpAddresses: []*mesos.NetworkInfo_IPAddress{{IpAddress: proto.String("10.0.0.2")}}}}},
	}
	data, err := json.Marshal(TaskStatus(st))
	if err != nil {
		t.Fatal(err)
	}
	// The struct a scraper decodes into: labels as a plain array.
	var got struct {
		State           string  `json:"state"`
		Timestamp       float64 `json:"timestamp"`
		Healthy         bool    `json:"healthy"`
		Labels          []struct{ Key, Value string }
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
	if err := json.Unmarshal(data, &got); err != nil {
		t.Fatalf("%s: %v", data, err)
	}
	if got.State != "TASK_RUNNING" || got.Timestamp != 12.5 || !got.Healthy || len(got.Labels) != 2 ||
		got.Labels[0].Key != "k" || got.Labels[0].Value != "v" || got.Labels[1].Value != "" ||
		got.ContainerStatus.ContainerID.Value != "c1" || got.ContainerStatus.NetworkInfos[0].IPAddresses[0].IPAddress != "10.0.0.2" {
		t.Fatalf("%s", data)
	}
	if string(mustJSON(t, Labels(nil))) != "[]" || string(mustJSON(t, TaskStatuses(nil))) != "[]" {
		t.Fatal("empty labels or statuses are not []")
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
