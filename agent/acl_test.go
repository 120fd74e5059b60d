package agent_test

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/acls"
	"github.com/mesolite/mesolite/sandbox"
	"google.golang.org/protobuf/proto"
)

// TestAgentACLs: with --acls on the agent, access_sandboxes decides who
// reads a task's sandbox (files API and READ_FILE) and
// launch_nested_containers_sessions who runs commands in its container,
// by the user the task runs as.
func TestAgentACLs(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(creds, []byte(`{"credentials":[{"principal":"ops","secret":"o"},{"principal":"dev","secret":"d"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	auth := func(realm string) func(http.Handler) http.Handler {
		a, err := httpauth.New(httpauth.Options{Enabled: true, Realm: realm, CredentialsFile: creds, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return a.Wrap
	}
	rules, err := acls.Parse(`{
	  "access_sandboxes": [{"principals": {"values": ["dev"]}, "users": {"type": "NONE"}}],
	  "launch_nested_containers_sessions": [{"principals": {"values": ["dev"]}, "users": {"type": "NONE"}}]
	}`)
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, nil)
	ta := c.startAgent(t, t.TempDir(), 0, func(cfg *agent.Config) {
		cfg.Wrap = auth(httpauth.AgentReadonlyRealm)
		cfg.ReadWriteAuth = auth(httpauth.AgentReadwriteRealm)
		cfg.ACLs = rules
	})
	// As runningTask, without /state (which now wants credentials).
	fw := c.subscribe(t, testFramework("guarded"))
	fw.launch(ta, commandTask("guarded", "printf 'hello' > data.txt; exec sleep 1000"))
	fw.waitState("guarded", mesos.TaskState_TASK_RUNNING, 20*time.Second)
	ta.sandboxFile(t, fw.ID(), "guarded", "data.txt")
	virtual := sandbox.VirtualLatestPath(fw.ID(), "guarded")
	basic := func(p, s string) http.Header {
		req, _ := http.NewRequest("GET", "/", nil)
		req.SetBasicAuth(p, s)
		return http.Header{"Authorization": {req.Header.Get("Authorization")}}
	}
	ops, dev := basic("ops", "o"), basic("dev", "d")
	read := func(h http.Header) int {
		req, _ := http.NewRequest(http.MethodGet, ta.url("/files/read?path="+url.QueryEscape(virtual+"/data.txt")+"&offset=0"), nil)
		for k, v := range h {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := read(ops); code != http.StatusOK {
		t.Errorf("/files/read by ops: %d", code)
	}
	if code := read(dev); code != http.StatusForbidden {
		t.Errorf("/files/read by dev: %d", code)
	}
	rf := &agentapi.Call{Type: agentapi.Call_READ_FILE.Enum(), ReadFile: &agentapi.Call_ReadFile{Path: proto.String(virtual + "/data.txt"), Offset: proto.Uint64(0)}}
	if code, body, _ := ta.opPost(t, codec.JSON, codec.JSON, rf, dev); code != http.StatusForbidden {
		t.Errorf("READ_FILE by dev: %d %s", code, body)
	}
	code, body, _ := ta.opPost(t, codec.JSON, codec.JSON, &agentapi.Call{Type: agentapi.Call_GET_CONTAINERS.Enum()}, ops)
	resp := &agentapi.Response{}
	if err := codec.JSON.Unmarshal(body, resp); code != http.StatusOK || err != nil || len(resp.GetGetContainers().GetContainers()) != 1 {
		t.Fatalf("GET_CONTAINERS: %d %v %s", code, err, body)
	}
	cid := resp.GetGetContainers().GetContainers()[0].GetContainerId().GetValue()
	if code, body, _ := ta.opPost(t, codec.JSON, codec.JSON, sessionCall("acl-s", cid, "true", false), dev); code != http.StatusForbidden {
		t.Errorf("session by dev: %d %s", code, body)
	}
}
