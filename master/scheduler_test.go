package master

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/detector"
	"google.golang.org/protobuf/proto"
)

func TestSubscribeStreams(t *testing.T) {
	for _, c := range []codec.Codec{codec.JSON, codec.Protobuf} {
		t.Run(c.MediaType(), func(t *testing.T) {
			h := startMaster(t, func(cfg *Config) { cfg.HeartbeatInterval = 50 * time.Millisecond })
			sc := openSubscribe(t, h.base, frameworkInfo("streamer"), c)
			resp := sc.resp
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %s", resp.Status)
			}
			if got := resp.Header.Get("Content-Type"); got != c.MediaType() {
				t.Errorf("Content-Type %q, want exactly %q", got, c.MediaType())
			}
			if resp.ContentLength != -1 || resp.Header.Get("Content-Length") != "" {
				t.Errorf("Content-Length set on a stream: %d", resp.ContentLength)
			}
			if len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
				t.Errorf("Transfer-Encoding %v, want chunked", resp.TransferEncoding)
			}
			if sc.streamID == "" {
				t.Error("no Mesos-Stream-Id")
			}
			ev := sc.next(scheduler.Event_SUBSCRIBED)
			sub := ev.GetSubscribed()
			if ok, _ := regexp.MatchString("^"+h.m.ID()+"-0000$", sub.GetFrameworkId().GetValue()); !ok {
				t.Errorf("framework id %q, want %s-0000", sub.GetFrameworkId().GetValue(), h.m.ID())
			}
			if sub.GetHeartbeatIntervalSeconds() != 0.05 {
				t.Errorf("heartbeat_interval_seconds %v", sub.GetHeartbeatIntervalSeconds())
			}
			mi := sub.GetMasterInfo()
			if mi.GetId() != h.m.ID() || mi.GetPort() == 0 || mi.GetIp() != detector.IPToUint32("127.0.0.1") || mi.GetAddress().GetIp() != "127.0.0.1" {
				t.Errorf("master_info %v", mi)
			}
			sc.fwID = sub.GetFrameworkId().GetValue()
			sc.next(scheduler.Event_HEARTBEAT)
			sc.next(scheduler.Event_HEARTBEAT)
		})
	}
}

func TestSchedulerCallErrors(t *testing.T) {
	h := startMaster(t)
	sc := h.subscribe(frameworkInfo("errors"), codec.JSON)
	url := h.base + "/api/v1/scheduler"
	fw := sc.fwID
	stream := http.Header{"Mesos-Stream-Id": {sc.streamID}}
	pb := func(c *scheduler.Call) string {
		data, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	tests := []struct {
		name        string
		method      string
		contentType string
		accept      string
		body        string
		header      http.Header
		want        int
		wantBody    string
	}{
		{name: "GET", method: http.MethodGet, want: http.StatusMethodNotAllowed},
		{name: "no content type", body: `{}`, want: http.StatusUnsupportedMediaType},
		{name: "text/plain", contentType: "text/plain", body: `{}`, want: http.StatusUnsupportedMediaType},
		{name: "not acceptable", contentType: "application/json", accept: "text/html",
			body: `{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n"}}}`, want: http.StatusNotAcceptable},
		{name: "malformed JSON", contentType: "application/json", body: `{"type":`, want: http.StatusBadRequest, wantBody: "Failed to parse"},
		{name: "malformed protobuf", contentType: "application/x-protobuf", body: "\xff\xff\xff", want: http.StatusBadRequest, wantBody: "Failed to parse"},
		{name: "unknown call type", contentType: "application/json", body: `{"type":"DANCE"}`, want: http.StatusBadRequest},
		{name: "explicit UNKNOWN", contentType: "application/json", body: `{"type":"UNKNOWN","framework_id":{"value":"` + fw + `"}}`, want: http.StatusBadRequest, wantBody: "Unknown call type"},
		{name: "no type", contentType: "application/json", body: `{}`, want: http.StatusBadRequest, wantBody: "Expecting 'type'"},
		{name: "subscribe without subscribe", contentType: "application/json", body: `{"type":"SUBSCRIBE"}`, want: http.StatusBadRequest, wantBody: "'subscribe'"},
		{name: "subscribe missing user", contentType: "application/json", body: `{"type":"SUBSCRIBE","subscribe":{"framework_info":{"name":"n"}}}`, want: http.StatusBadRequest, wantBody: "user"},
		{name: "subscribe with stream id", contentType: "application/json", header: stream,
			body: `{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n"}}}`, want: http.StatusBadRequest, wantBody: "Mesos-Stream-Id"},
		{name: "multi-role with role", contentType: "application/json",
			body: `{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n","role":"x","capabilities":[{"type":"MULTI_ROLE"}]}}}`, want: http.StatusBadRequest, wantBody: "role"},
		{name: "roles without multi-role", contentType: "application/json",
			body: `{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n","roles":["a"]}}}`, want: http.StatusBadRequest, wantBody: "MULTI_ROLE"},
		{name: "bad role", contentType: "application/json",
			body: `{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n","role":"../etc"}}}`, want: http.StatusBadRequest, wantBody: "role"},
		{name: "negative failover timeout", contentType: "application/json",
			body: `{"type":"SUBSCRIBE","subscribe":{"framework_info":{"user":"u","name":"n","failover_timeout":-1}}}`, want: http.StatusBadRequest, wantBody: "failover_timeout"},
		{name: "before subscribe", contentType: "application/json", header: http.Header{"Mesos-Stream-Id": {"x"}},
			body: `{"type":"REVIVE","framework_id":{"value":"nobody-0000"}}`, want: http.StatusForbidden},
		{name: "no framework id", contentType: "application/json", header: stream, body: `{"type":"REVIVE"}`, want: http.StatusBadRequest, wantBody: "framework_id"},
		{name: "no stream id", contentType: "application/json", body: `{"type":"REVIVE","framework_id":{"value":"` + fw + `"}}`, want: http.StatusBadRequest, wantBody: "Mesos-Stream-Id"},
		{name: "wrong stream id", contentType: "application/json", header: http.Header{"Mesos-Stream-Id": {"not-mine"}},
			body: `{"type":"REVIVE","framework_id":{"value":"` + fw + `"}}`, want: http.StatusBadRequest, wantBody: "stream ID"},
		{name: "accept without accept", contentType: "application/json", header: stream, body: `{"type":"ACCEPT","framework_id":{"value":"` + fw + `"}}`, want: http.StatusBadRequest, wantBody: "'accept'"},
		{name: "kill without task id", contentType: "application/json", header: stream, body: `{"type":"KILL","framework_id":{"value":"` + fw + `"},"kill":{}}`, want: http.StatusBadRequest, wantBody: "task_id"},
		{name: "ack with bad uuid", contentType: "application/json", header: stream,
			body: `{"type":"ACKNOWLEDGE","framework_id":{"value":"` + fw + `"},"acknowledge":{"agent_id":{"value":"a"},"task_id":{"value":"t"},"uuid":"AAEC"}}`, want: http.StatusBadRequest, wantBody: "UUID"},
		{name: "revive foreign role", contentType: "application/json", header: stream, body: `{"type":"REVIVE","framework_id":{"value":"` + fw + `"},"revive":{"roles":["nope"]}}`, want: http.StatusBadRequest},
		{name: "decline nothing", contentType: "application/json", header: stream, body: `{"type":"DECLINE","framework_id":{"value":"` + fw + `"},"decline":{"offer_ids":null}}`, want: http.StatusAccepted},
		{name: "revive", contentType: "application/x-protobuf", header: stream,
			body: pb(&scheduler.Call{Type: scheduler.Call_REVIVE.Enum(), FrameworkId: &mesos.FrameworkID{Value: proto.String(fw)}}), want: http.StatusAccepted},
		{name: "request", contentType: "application/json", header: stream, body: `{"type":"REQUEST","framework_id":{"value":"` + fw + `"},"request":{}}`, want: http.StatusAccepted},
		{name: "reconcile operations", contentType: "application/json", header: stream,
			body: `{"type":"RECONCILE_OPERATIONS","framework_id":{"value":"` + fw + `"},"reconcile_operations":{}}`, want: http.StatusOK, wantBody: "RECONCILE_OPERATIONS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req, _ := http.NewRequest(method, url, strings.NewReader(tt.body))
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			if tt.accept != "" {
				req.Header.Set("Accept", tt.accept)
			}
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			buf := new(strings.Builder)
			_, _ = ioCopy(buf, resp)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.want, buf)
			}
			if !strings.Contains(buf.String(), tt.wantBody) {
				t.Fatalf("body %q does not mention %q", buf, tt.wantBody)
			}
			if tt.want == http.StatusAccepted && buf.Len() != 0 {
				t.Fatalf("202 with a body: %q", buf)
			}
		})
	}
	// None of that disturbed the subscription.
	sc.mustCall(&scheduler.Call{Type: scheduler.Call_RECONCILE.Enum(), Reconcile: &scheduler.Call_Reconcile{}})
	if !h.m.isLeader() {
		t.Fatal("master lost its mind")
	}
}

func TestRedirectWhenNotLeader(t *testing.T) {
	h := startMaster(t)
	h.m.mu.Lock()
	h.m.role = roleFollower
	h.m.leader = detector.MasterInfo{ID: "other", IP: "10.0.0.7", Hostname: "leader.example", Port: 5050, PID: "master@10.0.0.7:5050"}
	h.m.mu.Unlock()
	tests := []struct {
		path, method string
		want         int
		location     string
	}{
		{"/api/v1/scheduler", http.MethodPost, http.StatusTemporaryRedirect, "//leader.example:5050/api/v1/scheduler"},
		{"/api/v1/agent", http.MethodPost, http.StatusTemporaryRedirect, "//leader.example:5050/api/v1/agent"},
		{"/master/redirect", http.MethodGet, http.StatusTemporaryRedirect, "//leader.example:5050"},
		{"/redirect", http.MethodGet, http.StatusTemporaryRedirect, "//leader.example:5050"},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			status, body, hdr := post(t, h.base+tt.path, "application/json", []byte(`{"type":"SUBSCRIBE"}`), nil)
			if tt.method == http.MethodGet {
				client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
				resp, err := client.Get(h.base + tt.path)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				status, hdr = resp.StatusCode, resp.Header
			}
			if status != tt.want || hdr.Get("Location") != tt.location {
				t.Fatalf("%d Location %q (%s), want %d %q", status, hdr.Get("Location"), body, tt.want, tt.location)
			}
		})
	}
	st := getJSON(t, h.base+"/master/state")
	if st["leader"] != "master@10.0.0.7:5050" || st["elected"] != false {
		t.Fatalf("state leader %v elected %v", st["leader"], st["elected"])
	}
	h.m.mu.Lock()
	h.m.leader = detector.MasterInfo{}
	h.m.mu.Unlock()
	if status, _, _ := post(t, h.base+"/api/v1/scheduler", "application/json", []byte(`{}`), nil); status != http.StatusServiceUnavailable {
		t.Fatalf("no leader: %d, want 503", status)
	}
	h.m.mu.Lock()
	h.m.role = roleLeading
	h.m.leader = h.m.self
	h.m.mu.Unlock()
}
