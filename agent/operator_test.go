package agent_test

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/sandbox"
	"google.golang.org/protobuf/proto"
)

var operatorCodecs = []codec.Codec{codec.JSON, codec.Protobuf}

// opPost sends call to the agent's /api/v1 encoded with c, asking for an
// answer in accept, with the header's extra fields.
func (ta *testAgent) opPost(t *testing.T, c, accept codec.Codec, call *agentapi.Call, header http.Header) (int, []byte, http.Header) {
	t.Helper()
	body, err := c.Marshal(call)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodPost, ta.url("/api/v1"), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", c.MediaType())
	req.Header.Set("Accept", accept.MediaType())
	resp, err := ta.client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", call.GetType(), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, resp.Header
}

// opCall sends call in c and decodes the Response, which must be a 200 in c.
func (ta *testAgent) opCall(t *testing.T, c codec.Codec, call *agentapi.Call) *agentapi.Response {
	t.Helper()
	status, body, h := ta.opPost(t, c, c, call, nil)
	if status != http.StatusOK {
		t.Fatalf("%s: %d %s", call.GetType(), status, body)
	}
	if ct := h.Get("Content-Type"); ct != c.MediaType() {
		t.Fatalf("%s: Content-Type %q, want %q", call.GetType(), ct, c.MediaType())
	}
	resp := &agentapi.Response{}
	if err := c.Unmarshal(body, resp); err != nil {
		t.Fatalf("%s: %v", call.GetType(), err)
	}
	return resp
}

func callOf(typ agentapi.Call_Type) *agentapi.Call { return &agentapi.Call{Type: typ.Enum()} }

// runningTask launches a command task that writes a file into its sandbox
// (after the links and the directory the tests look at) and sleeps, and
// returns its framework, the task's executor's sandbox (host path) and its
// virtual path.
func runningTask(t *testing.T, c *cluster, ta *testAgent, id string) (fw *framework, dir, virtual string) {
	t.Helper()
	fw = c.subscribe(t, testFramework("operator"))
	fw.launch(ta, commandTask(id, "mkdir sub; ln -s /etc/passwd passwd; ln -s .. up; printf 'hello world' > data.txt; exec sleep 1000"))
	fw.waitState(id, mesos.TaskState_TASK_RUNNING, 20*time.Second)
	es := ta.state(t).executor(fw.ID(), id)
	if es == nil {
		t.Fatalf("no executor %s in /state", id)
	}
	ta.sandboxFile(t, fw.ID(), id, "data.txt")
	return fw, es.Directory, sandbox.VirtualLatestPath(fw.ID(), id)
}

func TestOperatorReadCalls(t *testing.T) {
	c := newCluster(t, nil)
	level := new(slog.LevelVar)
	ta := c.startAgent(t, t.TempDir(), 0, func(cfg *agent.Config) {
		cfg.LoggingLevel = level
		cfg.Flags = map[string]string{"work_dir": cfg.WorkDir, "port": "5051"}
	})
	fw, _, virtual := runningTask(t, c, ta, "reader")
	for _, cd := range operatorCodecs {
		t.Run(cd.MediaType(), func(t *testing.T) {
			if r := ta.opCall(t, cd, callOf(agentapi.Call_GET_HEALTH)); !r.GetGetHealth().GetHealthy() || r.GetType() != agentapi.Response_GET_HEALTH {
				t.Errorf("GET_HEALTH: %v", r)
			}
			flags := ta.opCall(t, cd, callOf(agentapi.Call_GET_FLAGS)).GetGetFlags().GetFlags()
			if len(flags) != 2 || flags[0].GetName() != "port" || flags[0].GetValue() != "5051" {
				t.Errorf("GET_FLAGS: %v", flags)
			}
			if v := ta.opCall(t, cd, callOf(agentapi.Call_GET_VERSION)).GetGetVersion().GetVersionInfo(); v.GetVersion() == "" {
				t.Errorf("GET_VERSION: %v", v)
			}
			metrics := map[string]float64{}
			for _, m := range ta.opCall(t, cd, callOf(agentapi.Call_GET_METRICS)).GetGetMetrics().GetMetrics() {
				metrics[m.GetName()] = m.GetValue()
			}
			if metrics["slave/registered"] != 1 || metrics["slave/tasks_running"] != 1 {
				t.Errorf("GET_METRICS: registered %v, tasks_running %v", metrics["slave/registered"], metrics["slave/tasks_running"])
			}

			// GET_LOGGING_LEVEL follows SET_LOGGING_LEVEL, which reverts.
			set := &agentapi.Call{Type: agentapi.Call_SET_LOGGING_LEVEL.Enum(), SetLoggingLevel: &agentapi.Call_SetLoggingLevel{
				Level: proto.Uint32(2), Duration: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(time.Hour))}}}
			if status, body, _ := ta.opPost(t, cd, cd, set, nil); status != http.StatusOK || len(body) != 0 {
				t.Fatalf("SET_LOGGING_LEVEL: %d %s", status, body)
			}
			if l := ta.opCall(t, cd, callOf(agentapi.Call_GET_LOGGING_LEVEL)).GetGetLoggingLevel().GetLevel(); l != 2 || level.Level() != slog.LevelDebug-1 {
				t.Errorf("after SET_LOGGING_LEVEL 2: GET_LOGGING_LEVEL %d, slog level %v", l, level.Level())
			}
			set.SetLoggingLevel.Level = proto.Uint32(0)
			ta.opPost(t, cd, cd, set, nil)

			st := ta.opCall(t, cd, callOf(agentapi.Call_GET_STATE)).GetGetState()
			if tasks := st.GetGetTasks().GetLaunchedTasks(); len(tasks) != 1 || tasks[0].GetTaskId().GetValue() != "reader" ||
				tasks[0].GetState() != mesos.TaskState_TASK_RUNNING || tasks[0].GetAgentId().GetValue() != ta.ID() {
				t.Errorf("GET_STATE launched tasks: %v", tasks)
			}
			if exs := st.GetGetExecutors().GetExecutors(); len(exs) != 1 || exs[0].GetExecutorInfo().GetExecutorId().GetValue() != "reader" {
				t.Errorf("GET_STATE executors: %v", exs)
			}
			if fws := st.GetGetFrameworks().GetFrameworks(); len(fws) != 1 || fws[0].GetFrameworkInfo().GetId().GetValue() != fw.ID() {
				t.Errorf("GET_STATE frameworks: %v", fws)
			}
			if !proto.Equal(st.GetGetTasks(), ta.opCall(t, cd, callOf(agentapi.Call_GET_TASKS)).GetGetTasks()) {
				t.Error("GET_TASKS differs from GET_STATE's tasks")
			}
			if !proto.Equal(st.GetGetFrameworks(), ta.opCall(t, cd, callOf(agentapi.Call_GET_FRAMEWORKS)).GetGetFrameworks()) {
				t.Error("GET_FRAMEWORKS differs from GET_STATE's frameworks")
			}
			if !proto.Equal(st.GetGetExecutors(), ta.opCall(t, cd, callOf(agentapi.Call_GET_EXECUTORS)).GetGetExecutors()) {
				t.Error("GET_EXECUTORS differs from GET_STATE's executors")
			}
			if ai := ta.opCall(t, cd, callOf(agentapi.Call_GET_AGENT)).GetGetAgent().GetAgentInfo(); ai.GetId().GetValue() != ta.ID() || len(ai.GetResources()) == 0 {
				t.Errorf("GET_AGENT: %v", ai)
			}

			cs := ta.opCall(t, cd, callOf(agentapi.Call_GET_CONTAINERS)).GetGetContainers().GetContainers()
			running := st.GetGetTasks().GetLaunchedTasks()[0].GetStatuses()
			cid := running[len(running)-1].GetContainerStatus().GetContainerId().GetValue()
			if len(cs) != 1 || cs[0].GetContainerId().GetValue() != cid || cid == "" ||
				cs[0].GetFrameworkId().GetValue() != fw.ID() || cs[0].GetExecutorId().GetValue() != "reader" ||
				cs[0].GetContainerStatus().GetExecutorPid() == 0 || cs[0].GetResourceStatistics().GetTimestamp() == 0 ||
				cs[0].GetResourceStatistics().GetMemLimitBytes() == 0 {
				t.Errorf("GET_CONTAINERS (task's container %q): %v", cid, cs)
			}

			list := &agentapi.Call{Type: agentapi.Call_LIST_FILES.Enum(), ListFiles: &agentapi.Call_ListFiles{Path: proto.String(virtual)}}
			var names []string
			for _, fi := range ta.opCall(t, cd, list).GetListFiles().GetFileInfos() {
				names = append(names, strings.TrimPrefix(fi.GetPath(), virtual+"/"))
				if strings.HasSuffix(fi.GetPath(), "/data.txt") && (fi.GetSize() != 11 || fi.GetMode()&0o170000 != 0o100000 || fi.GetUid() == "" || fi.GetMtime() == nil) {
					t.Errorf("LIST_FILES data.txt: %v", fi)
				}
			}
			for _, want := range []string{"data.txt", "passwd", "stderr", "stdout", "sub", "up"} {
				if !slices.Contains(names, want) {
					t.Errorf("LIST_FILES %s: %v, want %s among them", virtual, names, want)
				}
			}

			for _, tc := range []struct {
				offset uint64
				length *uint64
				want   string
			}{
				{0, nil, "hello world"},
				{6, proto.Uint64(3), "wor"},
				{11, nil, ""},
				{50, proto.Uint64(3), ""},
			} {
				read := &agentapi.Call{Type: agentapi.Call_READ_FILE.Enum(), ReadFile: &agentapi.Call_ReadFile{
					Path: proto.String(virtual + "/data.txt"), Offset: proto.Uint64(tc.offset), Length: tc.length}}
				rf := ta.opCall(t, cd, read).GetReadFile()
				if string(rf.GetData()) != tc.want || rf.GetSize() != 11 {
					t.Errorf("READ_FILE at %d: %q (size %d), want %q (size 11)", tc.offset, rf.GetData(), rf.GetSize(), tc.want)
				}
			}
		})
	}
}

// READ_FILE and LIST_FILES refuse what /files/read and /files/browse
// refuse, with the same status: nothing outside a sandbox, no link out of
// it, no directory read.
func TestOperatorFilesRefusals(t *testing.T) {
	c := newCluster(t, nil)
	ta := c.startAgent(t, t.TempDir(), 0, nil)
	_, dir, virtual := runningTask(t, c, ta, "refusals")
	if err := os.Link(filepath.Join(dir, "data.txt"), filepath.Join(dir, "hardlink")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
		want       int
	}{
		{"host file", "/etc/passwd", http.StatusNotFound},
		{"dot dot", virtual + "/../../../../../../../etc/passwd", http.StatusForbidden},
		{"symlink out", virtual + "/passwd", http.StatusForbidden},
		{"through a link up", virtual + "/up/stdout", http.StatusForbidden},
		{"directory", virtual + "/sub", http.StatusBadRequest},
		{"missing", virtual + "/nothing", http.StatusNotFound},
		{"hard link", virtual + "/hardlink", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := ta.client.Get(ta.url("/files/read?offset=0&path=" + tc.path))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			filesStatus := resp.StatusCode
			for _, cd := range operatorCodecs {
				read := &agentapi.Call{Type: agentapi.Call_READ_FILE.Enum(), ReadFile: &agentapi.Call_ReadFile{
					Path: proto.String(tc.path), Offset: proto.Uint64(0)}}
				status, body, _ := ta.opPost(t, cd, cd, read, nil)
				if status != tc.want || status != filesStatus {
					t.Errorf("%s READ_FILE %s: %d %s; /files/read %d; want %d", cd.MediaType(), tc.path, status, body, filesStatus, tc.want)
				}
				if bytes.Contains(body, []byte("root:")) {
					t.Errorf("%s READ_FILE %s answered a host file: %s", cd.MediaType(), tc.path, body)
				}
			}
		})
	}
	// A listing shows a link out as the link, never what it points at.
	list := &agentapi.Call{Type: agentapi.Call_LIST_FILES.Enum(), ListFiles: &agentapi.Call_ListFiles{Path: proto.String(virtual + "/up")}}
	if status, body, _ := ta.opPost(t, codec.JSON, codec.JSON, list, nil); status != http.StatusForbidden {
		t.Errorf("LIST_FILES through a link out: %d %s, want 403", status, body)
	}
	list.ListFiles.Path = proto.String(virtual)
	for _, fi := range ta.opCall(t, codec.JSON, list).GetListFiles().GetFileInfos() {
		if strings.HasSuffix(fi.GetPath(), "/passwd") && fi.GetMode()&0o170000 != 0o120000 {
			t.Errorf("LIST_FILES shows the link passwd as %o, want a symlink", fi.GetMode())
		}
	}
}

// The operator API's state is the one /state shows.
func TestOperatorStateAgreesWithStateJSON(t *testing.T) {
	c := newCluster(t, nil)
	ta := c.startAgent(t, t.TempDir(), 0, nil)
	fw := c.subscribe(t, testFramework("agree"))
	fw.launch(ta, commandTask("done", "true"), commandTask("runs", "exec sleep 1000"))
	fw.waitState("done", mesos.TaskState_TASK_FINISHED, 20*time.Second)
	fw.waitState("runs", mesos.TaskState_TASK_RUNNING, 20*time.Second)
	testutil := func() bool {
		st := ta.state(t)
		tasks := ta.opCall(t, codec.Protobuf, callOf(agentapi.Call_GET_TASKS)).GetGetTasks()
		fromJSON := map[string]string{}
		for _, f := range append(st.Frameworks, st.CompletedFrameworks...) {
			for _, es := range append(f.Executors, f.CompletedExecutors...) {
				for _, ts := range append(append(es.Tasks, es.QueuedTasks...), es.CompletedTasks...) {
					fromJSON[ts.ID] = ts.State
				}
			}
		}
		fromProto := map[string]string{}
		for _, list := range [][]*mesos.Task{tasks.GetQueuedTasks(), tasks.GetLaunchedTasks(), tasks.GetTerminatedTasks(), tasks.GetCompletedTasks()} {
			for _, task := range list {
				fromProto[task.GetTaskId().GetValue()] = task.GetState().String()
			}
		}
		if len(fromJSON) != 2 || len(fromProto) != 2 {
			return false
		}
		for id, s := range fromJSON {
			if fromProto[id] != s {
				return false
			}
		}
		return fromProto["done"] == "TASK_FINISHED" && fromProto["runs"] == "TASK_RUNNING"
	}
	deadline := time.Now().Add(10 * time.Second)
	for !testutil() {
		if time.Now().After(deadline) {
			t.Fatal("GET_TASKS and /state never agreed on the tasks")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestOperatorCallErrors(t *testing.T) {
	c := newCluster(t, nil)
	ta := c.startAgent(t, t.TempDir(), 0, nil)
	post := func(ct, accept, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, ta.url("/api/v1"), strings.NewReader(body))
		req.Header.Set("Content-Type", ct)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := ta.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name, ct, accept, body string
		want                   int
		says                   string
	}{
		{"no type", "application/json", "", `{}`, 400, "'type'"},
		{"unknown type", "application/json", "", `{"type":"NOPE"}`, 400, ""},
		{"missing message", "application/json", "", `{"type":"READ_FILE"}`, 400, "'read_file'"},
		{"missing required field", "application/json", "", `{"type":"READ_FILE","read_file":{"path":"x"}}`, 400, "offset"},
		{"media type", "text/plain", "", `{"type":"GET_HEALTH"}`, 415, ""},
		{"not acceptable", "application/json", "text/html", `{"type":"GET_HEALTH"}`, 406, ""},
		{"not served", "application/json", "", `{"type":"PRUNE_IMAGES","prune_images":{}}`, 501, "PRUNE_IMAGES"},
		{"logging level without duration", "application/json", "", `{"type":"SET_LOGGING_LEVEL","set_logging_level":{"level":1,"duration":{"nanoseconds":0}}}`, 501, "fixed"},
		{"too large", "application/json", "", `{"type":"GET_HEALTH","x":"` + strings.Repeat("a", 5<<20) + `"}`, 413, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := post(tc.ct, tc.accept, tc.body)
			if status != tc.want || !strings.Contains(body, tc.says) {
				t.Errorf("%d %q, want %d saying %q", status, body, tc.want, tc.says)
			}
		})
	}
	resp, err := ta.client.Get(ta.url("/slave(1)/api/v1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
		t.Errorf("GET /slave(1)/api/v1: %d Allow %q, want 405 POST", resp.StatusCode, resp.Header.Get("Allow"))
	}
}

// Reads need the read-only credentials, changes the read-write ones.
func TestOperatorAuthentication(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(creds, []byte(`{"credentials":[{"principal":"ops","secret":"s3cret"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	auth := func(realm string) func(http.Handler) http.Handler {
		a, err := httpauth.New(httpauth.Options{Enabled: true, Realm: realm, CredentialsFile: creds, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return a.Wrap
	}
	c := newCluster(t, nil)
	for _, tc := range []struct {
		name     string
		readonly bool
		readGET  int // GET_HEALTH without credentials
	}{
		{"read-write only", false, http.StatusOK},
		{"both", true, http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ta := c.startAgent(t, t.TempDir(), 0, func(cfg *agent.Config) {
				cfg.LoggingLevel = new(slog.LevelVar)
				cfg.ReadWriteAuth = auth(httpauth.AgentReadwriteRealm)
				if tc.readonly {
					cfg.Wrap = auth(httpauth.AgentReadonlyRealm)
				}
			})
			basic := http.Header{}
			req, _ := http.NewRequest("GET", "/", nil)
			req.SetBasicAuth("ops", "s3cret")
			basic.Set("Authorization", req.Header.Get("Authorization"))
			wrong := http.Header{}
			req.SetBasicAuth("ops", "guess")
			wrong.Set("Authorization", req.Header.Get("Authorization"))
			set := &agentapi.Call{Type: agentapi.Call_SET_LOGGING_LEVEL.Enum(), SetLoggingLevel: &agentapi.Call_SetLoggingLevel{
				Level: proto.Uint32(1), Duration: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(time.Second))}}}
			for _, step := range []struct {
				call   *agentapi.Call
				header http.Header
				want   int
			}{
				{callOf(agentapi.Call_GET_HEALTH), nil, tc.readGET},
				{callOf(agentapi.Call_GET_HEALTH), basic, http.StatusOK},
				{set, nil, http.StatusUnauthorized},
				{set, wrong, http.StatusUnauthorized},
				{set, basic, http.StatusOK},
				// Sessions run, feed and end processes: read-write.
				{sessionCall("s", "c", "id", false), nil, http.StatusUnauthorized},
				{waitCall("s", "c"), nil, http.StatusUnauthorized},
				{waitCall("s", "c"), basic, http.StatusNotFound},
			} {
				status, body, h := ta.opPost(t, codec.JSON, codec.JSON, step.call, step.header)
				if status != step.want {
					t.Errorf("%s with %q: %d %s, want %d", step.call.GetType(), step.header.Get("Authorization"), status, body, step.want)
				}
				if status == http.StatusUnauthorized && !strings.Contains(h.Get("WWW-Authenticate"), "realm=") {
					t.Errorf("401 without a challenge: %v", h)
				}
			}
			if status, body := ta.attachInput(t, "s", nil, stdinRecord("x")); status != http.StatusUnauthorized {
				t.Errorf("ATTACH_CONTAINER_INPUT without credentials: %d %s, want 401", status, body)
			}
			if status, body := ta.attachInput(t, "s", basic, stdinRecord("x")); status != http.StatusNotFound {
				t.Errorf("ATTACH_CONTAINER_INPUT with credentials to nothing: %d %s, want 404", status, body)
			}
		})
	}
}
