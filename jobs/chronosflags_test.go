package jobs

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

// TestJobDefaults: --mesos_task_cpu, --mesos_task_mem, --mesos_task_disk
// and --task_epsilon fill what a job leaves out, through the API as
// Chronos does; what a job says stays; no defaults at all are Chronos's.
func TestJobDefaults(t *testing.T) {
	st, err := frameworks.OpenLocalStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := New(context.Background(), Config{Master: "127.0.0.1:1", Hostname: "jobs.example", Store: st,
		Defaults: JobDefaults{CPUs: 0.5, Mem: 64, Disk: 0, Epsilon: "PT30S"}})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	for _, body := range []string{
		`{"name":"bare","command":"true","schedule":"R/2030-01-01T00:00:00Z/PT5M"}`,
		`{"name":"own","command":"true","schedule":"R/2030-01-01T00:00:00Z/PT5M","cpus":2,"mem":512,"disk":10,"epsilon":"PT5M"}`,
	} {
		if code, b := do(t, h, "POST", "/scheduler/iso8601", body); code != http.StatusNoContent {
			t.Fatalf("POST %s: %d %s", body, code, b)
		}
	}
	_, b := do(t, h, "GET", "/scheduler/jobs", "")
	var list []Job
	if err := json.Unmarshal([]byte(b), &list); err != nil {
		t.Fatal(err)
	}
	got := map[string]Job{}
	for _, j := range list {
		got[j.Name] = j
	}
	for _, c := range []struct {
		name            string
		cpus, mem, disk float64
		epsilon         string
	}{
		{"bare", 0.5, 64, 0, "PT30S"},
		{"own", 2, 512, 10, "PT5M"},
	} {
		j := got[c.name]
		if float64(j.CPUs) != c.cpus || float64(j.Mem) != c.mem || float64(j.Disk) != c.disk || j.Epsilon != c.epsilon {
			t.Errorf("job %s: cpus %v mem %v disk %v epsilon %q, want %v %v %v %q", c.name, j.CPUs, j.Mem, j.Disk, j.Epsilon, c.cpus, c.mem, c.disk, c.epsilon)
		}
	}
	if j, err := DecodeJob([]byte(`{"name":"x","command":"true","schedule":"R//PT5M"}`)); err != nil || j.CPUs != DefaultCPUs || j.Mem != DefaultMem || j.Disk != DefaultDisk || j.Epsilon != DefaultEpsilon {
		t.Errorf("Chronos's defaults: %+v, %v", j, err)
	}
}

// TestChatAndWebhookNotices: a failed run is posted to Slack's and
// Mattermost's incoming webhooks as a message ({"text": ...}) naming the
// cluster, the job, the task and the failure, and to the notification URL
// as JSON with --http_notification_credentials (HTTP Basic) and the
// cluster; a webhook that refuses (4xx) is not asked again, and the log
// names its host, never its URL (a chat webhook's URL is its secret).
func TestChatAndWebhookNotices(t *testing.T) {
	type post struct {
		path, user, password string
		body                 map[string]any
	}
	var mu sync.Mutex
	var posts []post
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		p := post{path: r.URL.Path}
		p.user, p.password, _ = r.BasicAuth()
		json.Unmarshal(b, &p.body)
		mu.Lock()
		posts = append(posts, p)
		mu.Unlock()
		if r.URL.Path == "/refusing/T000/B000/secret-token" {
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	t.Cleanup(hooks.Close)
	s, logs := noticeService(t, Config{
		NotificationURL: hooks.URL + "/chronos", NotificationUser: "hook", NotificationPassword: "p4ss",
		SlackURL: hooks.URL + "/services/T000/B000/XXXX", MattermostURL: hooks.URL + "/refusing/T000/B000/secret-token",
		ClusterName: "prod-eu",
	}, `{"name":"nightly","command":"false","schedule":"R/2030-01-01T00:00:00Z/P1D","retries":0,"owner":"ops@example.com, dev@example.com"}`)
	taskID := failRun(t, s, "nightly", "exit status 1")
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(posts) == 3
	}, "three posts")
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		return strings.Contains(logs.String(), `msg="failure notice not delivered" component=jobs sink=mattermost`)
	}, "the refused chat notice given up:\n%s", logs)
	if l := logs.String(); !strings.Contains(l, `sink=mattermost job=nightly task_id=`+taskID+` attempts=1 err="127.0.0.1:`) {
		t.Errorf("the refused chat notice was tried again, or the log does not name its host:\n%s", l)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range posts {
		switch p.path {
		case "/chronos":
			if p.user != "hook" || p.password != "p4ss" {
				t.Errorf("webhook credentials %q:%q, want hook:p4ss", p.user, p.password)
			}
			if p.body["job"] != "nightly" || p.body["taskId"] != taskID || p.body["cluster"] != "prod-eu" {
				t.Errorf("webhook notice %v", p.body)
			}
		default:
			text, _ := p.body["text"].(string)
			for _, want := range []string{"[prod-eu] [Chronos] job 'nightly' failed!", "Task: " + taskID, "State: TASK_FAILED", "Message: exit status 1",
				"Owners: ops@example.com, dev@example.com", "http://jobs.example:8081/#/job/nightly"} {
				if !strings.Contains(text, want) {
					t.Errorf("chat message to %s lacks %q:\n%s", p.path, want, text)
				}
			}
			if p.user != "" {
				t.Errorf("chat webhook %s got credentials %q", p.path, p.user)
			}
		}
	}
	if strings.Contains(logs.String(), "secret-token") {
		t.Errorf("the log shows a webhook's URL:\n%s", logs)
	}
}

// TestNoticeConfigRefused: a cluster name that would end a mail's Subject
// header, and webhook URLs that are not http(s), are refused at start.
func TestNoticeConfigRefused(t *testing.T) {
	for _, cfg := range []Config{
		{ClusterName: "prod\r\nBcc: everyone@example.com"},
		{ClusterName: strings.Repeat("x", maxClusterName+1)},
		{SlackURL: "file:///etc/passwd"},
		{MattermostURL: "hooks.example/x"},
		{WebUIURL: "javascript:alert(1)"},
		{Defaults: JobDefaults{Epsilon: "60"}},
		{Defaults: JobDefaults{CPUs: -1}},
	} {
		cfg.Master, cfg.WorkDir = "127.0.0.1:1", t.TempDir()
		if _, err := New(context.Background(), cfg); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
}

// TestExecutorTaskInfo: a job with an executor gives its runs to a custom
// executor the same for every run (one id per job and version of it, no
// per-run value in its ExecutorInfo: an agent refuses a task whose
// ExecutorInfo differs from its running executor's), with "executorFlags|command" as the
// task's data, as Chronos; taskInfoData replaces that data, with or
// without an executor; dataJob is taken as dataProcessingJobType.
func TestExecutorTaskInfo(t *testing.T) {
	s, _ := newTestService(t)
	offer := &mesos.Offer{AgentId: &mesos.AgentID{Value: proto.String("a1")}, Hostname: proto.String("node1"),
		Resources: []*mesos.Resource{scalar("cpus", 4), scalar("mem", 4096), scalar("disk", 4096)}}
	decode := func(body string) *Job {
		t.Helper()
		j, err := DecodeJob([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	// One time for every placement: two runs of a job placed in one
	// offers pass get two task ids all the same.
	now := time.Now()
	place := func(j *Job, args string) *mesos.TaskInfo {
		t.Helper()
		s.mu.Lock()
		r := s.newRunLocked(j, 0, args, now)
		s.mu.Unlock()
		s.mu.Lock()
		defer s.mu.Unlock()
		task, _, ok := s.place(j, r, offer, offer.GetResources(), now)
		if !ok {
			t.Fatal("the job does not fit the offer")
		}
		s.runs.byTask[task.GetTaskId().GetValue()] = r // as Offers does
		return task
	}
	j := decode(`{"name":"wrapped","command":"make report","executor":"/usr/local/bin/shell-wrapper","executorFlags":"-v","runAsUser":"batch","schedule":"R//P1D"}`)
	first, second := place(j, ""), place(j, "--again")
	if first.Command != nil || first.Executor == nil || string(first.GetData()) != "-v|make report" {
		t.Fatalf("task %v: want no command, an executor and data -v|make report", first)
	}
	ex := first.GetExecutor()
	if !strings.HasPrefix(ex.GetExecutorId().GetValue(), "chronos-executor-wrapped-") || ex.GetCommand().GetValue() != "/usr/local/bin/shell-wrapper" || ex.GetCommand().GetUser() != "batch" {
		t.Errorf("executor %v", ex)
	}
	if !proto.Equal(ex, second.GetExecutor()) {
		t.Errorf("two runs' executors differ:\n%v\n%v", ex, second.GetExecutor())
	}
	if first.GetTaskId().GetValue() == second.GetTaskId().GetValue() {
		t.Error("two runs with one task id")
	}
	// The job changed: its runs go to another executor.
	changed := decode(`{"name":"wrapped","command":"make report","executor":"/usr/local/bin/shell-wrapper","executorFlags":"-v","runAsUser":"batch","mem":256,"schedule":"R//P1D"}`)
	if id := place(changed, "").GetExecutor().GetExecutorId().GetValue(); id == ex.GetExecutorId().GetValue() {
		t.Errorf("a changed job's runs keep executor %s", id)
	}

	for _, c := range []struct{ body, data string }{
		{`{"name":"d1","command":"x","executor":"/bin/exec","taskInfoData":"{\"k\":1}","schedule":"R//P1D"}`, `{"k":1}`},
		{`{"name":"d2","command":"true","taskInfoData":"payload","schedule":"R//P1D"}`, "payload"},
	} {
		if task := place(decode(c.body), ""); string(task.GetData()) != c.data {
			t.Errorf("%s: data %q, want %q", c.body, task.GetData(), c.data)
		}
	}
	if j := decode(`{"name":"dj","command":"true","dataJob":true,"schedule":"R//P1D"}`); !j.DataProcessingJob || j.DataJob {
		t.Errorf("dataJob: %+v", j)
	}
}

// TestRemoteExecutableCommand: a command that is an http(s) URL is fetched
// into the sandbox as an executable and run from there, as Chronos's
// "remote executables"; a command that only starts with "http" stays a
// command, and so does an ftp URL (the fetcher has no ftp).
func TestRemoteExecutableCommand(t *testing.T) {
	for _, c := range []struct {
		command, value, uri string
	}{
		{"https://artifacts.example/bin/report.sh", "'./report.sh'", "https://artifacts.example/bin/report.sh"},
		{"http://artifacts.example/it's", `'./it'\''s'`, "http://artifacts.example/it's"},
		{"ftp://files.example/nightly", "ftp://files.example/nightly", ""},
		{"httpd -k graceful", "httpd -k graceful", ""},
		{"http://host.example/", "http://host.example/", ""},
		{"https://artifacts.example/bin/report.sh --full", "https://artifacts.example/bin/report.sh --full", ""},
	} {
		j, err := DecodeJob([]byte(`{"name":"r","schedule":"R//P1D","command":` + strconv.Quote(c.command) + `}`))
		if err != nil {
			t.Fatal(err)
		}
		ci := command(j, &run{}, "ct:1:0:r:", "node1")
		var uris []string
		for _, u := range ci.GetUris() {
			if !u.GetExecutable() {
				t.Errorf("%s: URI %s not executable", c.command, u.GetValue())
			}
			uris = append(uris, u.GetValue())
		}
		if ci.GetValue() != c.value || strings.Join(uris, " ") != c.uri || !ci.GetShell() {
			t.Errorf("%s: value %q uris %v shell %v, want %q %q", c.command, ci.GetValue(), uris, ci.GetShell(), c.value, c.uri)
		}
	}
}

// TestChatTextEscaped: what a task or a job says cannot mention @channel
// or dress up a link in Slack's markup; the notice the other sinks get
// keeps its owners as they were.
func TestChatTextEscaped(t *testing.T) {
	s, _ := newTestService(t)
	n := Notice{Job: "nightly", Owners: []string{"<!channel>", "ops@example.com"}, TaskID: "ct:1:0:nightly:", TaskState: "TASK_FAILED",
		Message: "see <https://evil.example|the dashboard> & <!here>", Cluster: "prod<eu>"}
	text := s.chatText(n)
	for _, bad := range []string{"<!channel>", "<!here>", "<https://evil.example|", "prod<eu>"} {
		if strings.Contains(text, bad) {
			t.Errorf("chat text holds %q:\n%s", bad, text)
		}
	}
	if !strings.Contains(text, "&lt;!channel&gt;") || !strings.Contains(text, "&amp; &lt;!here&gt;") {
		t.Errorf("chat text not escaped as Slack says:\n%s", text)
	}
	if n.Owners[0] != "<!channel>" {
		t.Errorf("the shared notice's owners changed: %v", n.Owners)
	}
}
