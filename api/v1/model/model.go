// Package model writes Mesos objects as the state endpoints of a Mesos
// master and agent write them (/master/state, /state, /master/tasks). That
// JSON is not the protobuf JSON mapping the v1 APIs use: labels are a plain
// array, enums are names, and some fields are left out when unset. Tools
// that scrape state (mesos_exporter, mesos-dns, the web UI) decode exactly
// this shape, so master and agent write it through here, once.
package model

import (
	"encoding/json"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// Labels is a plain array of {"key","value"}; value is left out when unset.
func Labels(l *mesos.Labels) []map[string]string {
	out := make([]map[string]string, 0, len(l.GetLabels()))
	for _, kv := range l.GetLabels() {
		e := map[string]string{"key": kv.GetKey()}
		if kv.Value != nil {
			e["value"] = kv.GetValue()
		}
		out = append(out, e)
	}
	return out
}

// TaskStatus is one entry of a task's "statuses".
func TaskStatus(s *mesos.TaskStatus) map[string]any {
	sj := map[string]any{"state": s.GetState().String(), "timestamp": s.GetTimestamp()}
	if s.Reason != nil {
		sj["reason"] = s.GetReason().String()
	}
	if s.Message != nil {
		sj["message"] = s.GetMessage()
	}
	if s.Source != nil {
		sj["source"] = s.GetSource().String()
	}
	if s.Healthy != nil {
		sj["healthy"] = s.GetHealthy()
	}
	if s.Labels != nil {
		sj["labels"] = Labels(s.GetLabels())
	}
	if s.ContainerStatus != nil {
		sj["container_status"] = Proto(s.GetContainerStatus())
	}
	if s.CheckStatus != nil {
		sj["check_status"] = Proto(s.GetCheckStatus())
	}
	return sj
}

// TaskStatuses is a task's "statuses", never null.
func TaskStatuses(ss []*mesos.TaskStatus) []map[string]any {
	out := make([]map[string]any, 0, len(ss))
	for _, s := range ss {
		out = append(out, TaskStatus(s))
	}
	return out
}

// Proto embeds a message in its protobuf JSON form, as Mesos embeds
// container, discovery and container_status. A message missing a required
// field shows the error as a string rather than failing the whole page.
func Proto(msg proto.Message) json.RawMessage {
	data, err := codec.JSON.Marshal(msg)
	if err != nil {
		if data, err = json.Marshal(err.Error()); err != nil {
			return json.RawMessage("null")
		}
	}
	return data
}
