package webui

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/sandbox"
)

// fakeCluster is a master and an agent good enough for the pages: the
// master answers a Mesos-shaped /master/state, the agent serves real
// sandboxes through sandbox.FilesHandler (browse, read, download, stream)
// and a /state, and a writer appends "line N" to one task's stdout.
type fakeCluster struct {
	master, agent *httptest.Server
	layout        sandbox.Layout
	run           sandbox.RunID // the ticking task's run
	rotRun        sandbox.RunID // a task whose stdout rotates quickly
	start         time.Time

	mu       sync.Mutex
	lines    int    // lines written to run's stdout so far
	leader   string // when set, /master/state names this pid as the leader
	noStream bool   // when set, /files/stream fails, as behind a buffering proxy
}

const (
	fakeAgentID = "agent-1"
	fakeFwID    = "fw-1"
	fakeTask    = "ticker"
	fakeRotTask = "rotator"
	fakeGoneEx  = "collected"

	fakeEvilFwID = "fw-evil"
	fakeEvilURL  = "javascript:document.body.dataset.pwned='yes'"
)

func newFakeCluster(t *testing.T) *fakeCluster {
	t.Helper()
	fc := &fakeCluster{
		layout: sandbox.Layout{WorkDir: t.TempDir()},
		run:    sandbox.RunID{AgentID: fakeAgentID, FrameworkID: fakeFwID, ExecutorID: fakeTask, ContainerID: "c-ticker"},
		rotRun: sandbox.RunID{AgentID: fakeAgentID, FrameworkID: fakeFwID, ExecutorID: fakeRotTask, ContainerID: "c-rot"},
		start:  time.Now(),
	}
	for _, id := range []sandbox.RunID{fc.run, fc.rotRun} {
		if _, err := fc.layout.CreateRun(id); err != nil {
			t.Fatal(err)
		}
	}
	dir := fc.layout.RunDir(fc.run)
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "note.txt"), []byte("a note\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A long history, so the viewer opens at the end and can page back.
	var hist strings.Builder
	for i := range 5000 {
		fmt.Fprintf(&hist, "history %05d %s\n", i, strings.Repeat("x", 40))
	}
	if err := os.WriteFile(filepath.Join(dir, "stdout"), []byte(hist.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "stderr"), []byte("warning: <b>not bold</b> & \"quoted\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	files := sandbox.NewFilesHandler(sandbox.FilesOptions{
		Layout:  fc.layout,
		AgentID: fakeAgentID,
		Collected: func(p string) bool {
			return strings.HasPrefix(p, fc.layout.ExecutorDir(fakeAgentID, fakeFwID, fakeGoneEx))
		},
		HeartbeatInterval: time.Second,
	})
	t.Cleanup(func() { files.Close() })

	amux := http.NewServeMux()
	amux.Handle("/files/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fc.mu.Lock()
		refuse := fc.noStream
		fc.mu.Unlock()
		if refuse && strings.HasSuffix(r.URL.Path, "/stream") {
			http.Error(w, "streams are off", http.StatusBadGateway)
			return
		}
		files.ServeHTTP(w, r)
	}))
	amux.HandleFunc("/state", fc.agentState)
	amux.Handle("/", Agent(Options{}))
	fc.agent = httptest.NewServer(amux)
	t.Cleanup(fc.agent.Close)

	mmux := http.NewServeMux()
	mmux.HandleFunc("/master/state", fc.masterState)
	mmux.HandleFunc("/master/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, fc.master.URL+"/", http.StatusTemporaryRedirect)
	})
	mmux.Handle("/", Master(Options{Title: "fake cluster", Refresh: 500 * time.Millisecond}))
	fc.master = httptest.NewServer(mmux)
	t.Cleanup(fc.master.Close)

	stop := make(chan struct{})
	done := make(chan struct{})
	go fc.tick(t, stop, done)
	t.Cleanup(func() { close(stop); <-done })
	return fc
}

// tick appends a line to the ticking task's stdout every 100ms and keeps
// the rotating task's stdout turning over every few lines.
func (fc *fakeCluster) tick(t *testing.T, stop, done chan struct{}) {
	defer close(done)
	f, err := os.OpenFile(filepath.Join(fc.layout.RunDir(fc.run), "stdout"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Error(err)
		return
	}
	defer f.Close()
	rot, err := sandbox.NewRotatingWriter(filepath.Join(fc.layout.RunDir(fc.rotRun), "stdout"), 200, 3)
	if err != nil {
		t.Error(err)
		return
	}
	defer rot.Close()
	tk := time.NewTicker(100 * time.Millisecond)
	defer tk.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tk.C:
		}
		fc.mu.Lock()
		n := fc.lines
		fc.lines++
		fc.mu.Unlock()
		fmt.Fprintf(f, "line %d\n", n)
		fmt.Fprintf(rot, "rot %d %s\n", n, strings.Repeat("r", 30))
	}
}

func (fc *fakeCluster) linesWritten() int {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.lines
}

func (fc *fakeCluster) set(f func(fc *fakeCluster)) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	f(fc)
}

func hostPort(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

type obj = map[string]any

func (fc *fakeCluster) masterState(w http.ResponseWriter, r *http.Request) {
	ts := float64(fc.start.UnixNano()) / 1e9
	pid := "master@" + hostPort(fc.master)
	fc.mu.Lock()
	leader := fc.leader
	fc.mu.Unlock()
	if leader == "" {
		leader = pid
	}
	res := func(cpus, mem float64) obj { return obj{"cpus": cpus, "mem": mem, "disk": 0.0, "gpus": 0.0} }
	status := func(state string, dt float64, extra obj) obj {
		s := obj{"state": state, "timestamp": ts + dt, "source": "SOURCE_EXECUTOR"}
		for k, v := range extra {
			s[k] = v
		}
		return s
	}
	running := func(id, cid string) obj {
		return obj{
			"id": id, "name": id, "framework_id": fakeFwID, "executor_id": "", "slave_id": fakeAgentID,
			"state": "TASK_RUNNING", "resources": obj{"cpus": 0.1, "mem": 32.0, "disk": 0.0, "gpus": 0.0, "ports": "[31000-31000]"},
			"statuses": []obj{
				status("TASK_STARTING", 0.1, nil),
				status("TASK_RUNNING", 0.2, obj{"container_status": obj{
					"container_id":  obj{"value": cid},
					"network_infos": []obj{{"ip_addresses": []obj{{"ip_address": "127.0.0.1"}}}},
				}}),
			},
			"container": obj{"type": "MESOS"},
			"command":   obj{"shell": true, "value": "while true; do echo line; sleep 0.1; done"},
		}
	}
	agentPort := fc.agent.Listener.Addr().String()
	writeJSON(w, obj{
		"version": "1.11.0", "start_time": ts, "elected_time": ts, "id": "master-1", "pid": pid, "hostname": "localhost",
		"cluster": "fake", "leader": leader,
		"leader_info": obj{"id": "master-x", "pid": leader, "hostname": strings.Split(strings.TrimPrefix(leader, "master@"), ":")[0],
			"port": mustPort(leader)},
		"slaves": []obj{{
			"id": fakeAgentID, "pid": "slave(1)@" + agentPort, "hostname": "localhost", "port": mustPort(agentPort),
			"registered_time": ts, "active": true, "version": "1.11.0",
			"resources":         obj{"cpus": 2.0, "mem": 1024.0, "disk": 1024.0, "gpus": 0.0, "ports": "[31000-31100]"},
			"used_resources":    res(0.2, 64),
			"offered_resources": res(1.8, 960),
			"attributes":        obj{"rack": "r1", "os": "debian"},
		}},
		"frameworks": []obj{{
			"id": fakeFwID, "name": "mesolite-run", "user": "tester", "role": "*", "active": true, "hostname": "localhost",
			"registered_time": ts, "capabilities": []string{"TASK_KILLING_STATE", "PARTITION_AWARE"},
			"resources": res(2, 1024), "used_resources": res(0.2, 64), "offered_resources": res(1.8, 960),
			"tasks": []obj{running(fakeTask, fc.run.ContainerID), running(fakeRotTask, fc.rotRun.ContainerID)},
			"completed_tasks": []obj{{
				"id": "broken", "name": "broken", "framework_id": fakeFwID, "slave_id": fakeAgentID, "state": "TASK_FAILED",
				"executor_id": fakeGoneEx, "resources": res(0.1, 32),
				"statuses": []obj{
					status("TASK_STARTING", 0, nil),
					status("TASK_FAILED", 1, obj{"reason": "REASON_COMMAND_EXECUTOR_FAILED", "message": "Command exited with status 3", "source": "SOURCE_EXECUTOR"}),
				},
			}},
			"executors": []obj{},
		}},
		"completed_frameworks": []obj{{
			"id": "fw-old", "name": "old-framework", "user": "tester", "active": false,
			"registered_time": ts - 3600, "unregistered_time": ts - 60, "tasks": []obj{}, "completed_tasks": []obj{},
		}, {
			// An older one of the same name: folded into the newest.
			"id": "fw-older", "name": "old-framework", "user": "tester", "active": false,
			"registered_time": ts - 7200, "unregistered_time": ts - 3700, "tasks": []obj{}, "completed_tasks": []obj{},
		}, {
			// What a master without the server-side check showed: a
			// framework's webui_url is the framework's to choose.
			"id": fakeEvilFwID, "name": "evil", "user": "tester", "active": false, "webui_url": fakeEvilURL,
			"registered_time": ts - 3600, "unregistered_time": ts - 60, "tasks": []obj{}, "completed_tasks": []obj{},
		}},
		"orphan_tasks": []obj{}, "unregistered_frameworks": []string{},
	})
}

func mustPort(hp string) int {
	var port int
	if i := strings.LastIndex(hp, ":"); i >= 0 {
		fmt.Sscanf(hp[i+1:], "%d", &port)
	}
	return port
}

func (fc *fakeCluster) agentState(w http.ResponseWriter, r *http.Request) {
	ex := func(id, cid string) obj {
		return obj{
			"id": id, "name": "Command Executor (Task: " + id + ")", "container": cid, "framework_id": fakeFwID,
			"virtual_directory": sandbox.VirtualLatestPath(fakeFwID, id),
			"tasks":             []obj{{"id": id, "state": "TASK_RUNNING"}}, "queued_tasks": []obj{}, "completed_tasks": []obj{},
		}
	}
	writeJSON(w, obj{
		"id": fakeAgentID, "pid": "slave(1)@" + hostPort(fc.agent), "hostname": "localhost", "version": "1.11.0",
		"start_time": float64(fc.start.Unix()), "master_hostname": hostPort(fc.master),
		"resources":  obj{"cpus": 2.0, "mem": 1024.0, "disk": 1024.0, "gpus": 0.0, "ports": "[31000-31100]"},
		"attributes": obj{"rack": "r1"},
		"frameworks": []obj{{
			"id": fakeFwID, "name": "mesolite-run",
			"executors":           []obj{ex(fakeTask, fc.run.ContainerID), ex(fakeRotTask, fc.rotRun.ContainerID)},
			"completed_executors": []obj{},
		}},
		"completed_frameworks": []obj{},
	})
}
