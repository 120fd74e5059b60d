package jobs_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/jobs"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(haChildEnv); spec != "" {
		os.Exit(haChild(spec))
	}
	clustertest.Main(m)
}

// service is `mesolite jobs` run in the test's process against a real
// master.
type service struct {
	url  string
	svc  *jobs.Service
	stop func()
	// user and password, when set, go with every call (HTTP Basic).
	user, password string
}

// startJobs starts the jobs service on workDir; stop (also at the end of
// the test) stops it as a SIGTERM would.
func startJobs(t testing.TB, master, workDir string, opts ...func(*jobs.Config)) *service {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := jobs.Config{
		Master: master, Hostname: "127.0.0.1", HTTPPort: ln.Addr().(*net.TCPAddr).Port, WorkDir: workDir,
		Logger: clustertest.Logger().With("process", "jobs"), Tick: 100 * time.Millisecond, RetryBackoff: 200 * time.Millisecond,
		DeclineIdle: time.Second, DeclineBusy: 100 * time.Millisecond, MinReviveInterval: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(&cfg)
	}
	svc, err := jobs.New(ctx, cfg)
	if err != nil {
		cancel()
		ln.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, ln) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("jobs service: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("the jobs service did not stop")
			}
		})
	}
	t.Cleanup(stop)
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool { return svc.FrameworkID() != "" }, "jobs subscribed")
	return &service{url: "http://" + ln.Addr().String(), svc: svc, stop: stop}
}

func (s *service) call(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if s.user != "" {
		req.SetBasicAuth(s.user, s.password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (s *service) mustCall(t *testing.T, want int, method, path, body string) string {
	t.Helper()
	code, b := s.call(t, method, path, body)
	if code != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, code, b, want)
	}
	return b
}

// job reads a job through the API (as a client does).
func (s *service) job(t *testing.T, name string) jobs.Job {
	t.Helper()
	var list []jobs.Job
	if err := json.Unmarshal([]byte(s.mustCall(t, 200, "GET", "/v1/scheduler/jobs/search?name="+name, "")), &list); err != nil {
		t.Fatal(err)
	}
	for _, j := range list {
		if j.Name == name {
			return j
		}
	}
	t.Fatalf("no job %s", name)
	return jobs.Job{}
}

// tasksOf is the ids of the master's tasks (live and completed) of job.
func tasksOf(t *testing.T, c *clustertest.Cluster, fwID, job string) []string {
	t.Helper()
	f := c.Framework(t, fwID)
	if f == nil {
		return nil
	}
	var out []string
	for _, task := range append(f.Tasks, f.CompletedTasks...) {
		if strings.HasSuffix(task.ID, ":"+job+":") && strings.HasPrefix(task.ID, "ct:") {
			out = append(out, task.ID)
		}
	}
	return out
}

func TestJobsOnARealCluster(t *testing.T) {
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{})
	s := startJobs(t, c.Addr, t.TempDir())
	fw := s.svc.FrameworkID()
	if f := c.Framework(t, fw); f == nil || f.Name != "chronos" {
		t.Fatalf("framework %+v, want chronos", f)
	}

	s.mustCall(t, 204, "POST", "/v1/scheduler/iso8601", `{"name":"every2s","command":"true","schedule":"R//PT2S","epsilon":"PT30S","owner":"ops@example.com"}`)
	s.mustCall(t, 204, "POST", "/scheduler/iso8601", `{"name":"manual","command":"true","schedule":"R/2099-01-01T00:00:00Z/P1D"}`)
	s.mustCall(t, 204, "POST", "/scheduler/iso8601", `{"name":"parent","command":"true","schedule":"R1//PT1H"}`)
	s.mustCall(t, 204, "POST", "/scheduler/dependency", `{"name":"child","command":"true","parents":["parent"]}`)
	s.mustCall(t, 204, "POST", "/scheduler/iso8601", `{"name":"failing","command":"exit 3","schedule":"R1//PT1H","retries":2}`)
	s.mustCall(t, 204, "PUT", "/scheduler/job/manual", "")
	// Not a shell: arguments are argv, and ?arguments= adds to them.
	s.mustCall(t, 204, "POST", "/scheduler/iso8601", `{"name":"args","shell":false,"command":"/bin/sh","arguments":["-c","test \"$1\" = ok","sh"],"retries":0,"schedule":"R/2099-01-01T00:00:00Z/P1D"}`)
	s.mustCall(t, 204, "PUT", "/scheduler/job/args?arguments=ok", "")

	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
		return s.job(t, "every2s").SuccessCount >= 2
	}, "every2s ran twice")
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() bool {
		return s.job(t, "manual").SuccessCount == 1
	}, "manual ran once, started by PUT")
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() bool {
		return s.job(t, "child").SuccessCount == 1
	}, "child ran after its parent")
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() bool {
		return s.job(t, "args").SuccessCount == 1
	}, "args ran with ?arguments=ok")
	p, ch := s.job(t, "parent"), s.job(t, "child")
	if p.SuccessCount != 1 || ch.LastSuccess < p.LastSuccess {
		t.Fatalf("parent %d at %s, child at %s: the child must run after its parent succeeded", p.SuccessCount, p.LastSuccess, ch.LastSuccess)
	}
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
		return s.job(t, "failing").ErrorCount == 1
	}, "failing recorded its error")
	if f := s.job(t, "failing"); f.SuccessCount != 0 || f.ErrorsSinceSuccess != 1 || f.LastError == "" {
		t.Fatalf("failing: %+v", f)
	}
	if runs := tasksOf(t, c, fw, "failing"); len(runs) != 3 {
		t.Fatalf("failing ran as %v, want 3 tasks (2 retries)", runs)
	}

	// Statistics of the runs, as Chronos's UI and scripts read them.
	var stat struct {
		Histogram struct {
			Count  int     `json:"count"`
			Median float64 `json:"median"`
			P99    float64 `json:"99thPercentile"`
		} `json:"histogram"`
		History []struct {
			TaskID    string `json:"taskId"`
			TaskState string `json:"taskState"`
		} `json:"taskStatHistory"`
	}
	if err := json.Unmarshal([]byte(s.mustCall(t, 200, "GET", "/scheduler/job/stat/every2s", "")), &stat); err != nil {
		t.Fatal(err)
	}
	if stat.Histogram.Count < 2 || stat.Histogram.P99 < stat.Histogram.Median || len(stat.History) < 2 ||
		stat.History[0].TaskState != "TASK_FINISHED" || !strings.HasPrefix(stat.History[0].TaskID, "ct:") {
		t.Fatalf("job stat of every2s: %+v", stat)
	}
	if err := json.Unmarshal([]byte(s.mustCall(t, 200, "GET", "/v1/scheduler/job/stat/failing", "")), &stat); err != nil {
		t.Fatal(err)
	}
	if stat.Histogram.Count != 0 || len(stat.History) != 3 || stat.History[2].TaskState != "TASK_FAILED" {
		t.Fatalf("job stat of failing (3 failed attempts, none timed as a success): %+v", stat)
	}
	var ranked []struct {
		Job  string  `json:"jobNameLabel"`
		Time float64 `json:"time"`
	}
	if err := json.Unmarshal([]byte(s.mustCall(t, 200, "GET", "/scheduler/stats/99thPercentile", "")), &ranked); err != nil {
		t.Fatal(err)
	}
	if len(ranked) < 4 || !slices.IsSortedFunc(ranked, func(a, b struct {
		Job  string  `json:"jobNameLabel"`
		Time float64 `json:"time"`
	}) int {
		return cmp.Compare(b.Time, a.Time)
	}) {
		t.Fatalf("stats/99thPercentile: %+v", ranked)
	}
	if code, _ := s.call(t, "GET", "/scheduler/stats/fastest", ""); code != 404 {
		t.Fatalf("an unknown statistic: %d", code)
	}
	if csv := s.mustCall(t, 200, "GET", "/scheduler/graph/csv", ""); !strings.Contains(csv, "node,child,success,idle\n") ||
		!strings.Contains(csv, "link,parent,child\n") || !strings.Contains(csv, "node,failing,failure,idle\n") {
		t.Fatalf("graph/csv:\n%s", csv)
	}
	if m := s.mustCall(t, 200, "GET", "/metrics", ""); !strings.Contains(m, `"runs.succeeded"`) || !strings.Contains(m, `"jobs.count":{"value":6}`) {
		t.Fatalf("metrics: %s", m)
	}

	// DELETE stops it: no more runs.
	s.mustCall(t, 204, "DELETE", "/v1/scheduler/job/every2s", "")
	time.Sleep(500 * time.Millisecond) // a run launched just before ends
	before := len(tasksOf(t, c, fw, "every2s"))
	time.Sleep(4 * time.Second)
	if after := len(tasksOf(t, c, fw, "every2s")); after != before {
		t.Fatalf("every2s ran %d more times after DELETE", after-before)
	}
	if code, _ := s.call(t, "PUT", "/scheduler/job/every2s", ""); code != 400 {
		t.Fatalf("starting a deleted job: %d", code)
	}
}

// TestRestartAdoptsRunningRun: a jobs service restarted while a run is in
// flight adopts it (reconciliation names it), counts its end, and starts
// no second run.
func TestRestartAdoptsRunningRun(t *testing.T) {
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{})
	dir := t.TempDir()
	s := startJobs(t, c.Addr, dir)
	fw := s.svc.FrameworkID()
	s.mustCall(t, 204, "POST", "/scheduler/iso8601", `{"name":"slow","command":"sleep 3","schedule":"R1//PT1H"}`)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		return len(c.RunningTasks(t, fw)) == 1
	}, "slow running")
	s.stop()
	s = startJobs(t, c.Addr, dir)
	if s.svc.FrameworkID() != fw {
		t.Fatalf("framework %s after the restart, want %s (failover)", s.svc.FrameworkID(), fw)
	}
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() bool {
		return s.job(t, "slow").SuccessCount == 1
	}, "the adopted run counted")
	if runs := tasksOf(t, c, fw, "slow"); len(runs) != 1 {
		t.Fatalf("slow ran as %v, want one task", runs)
	}
}

// TestStoredRunsSurviveRestart: runs are kept in the store. A queued run
// is queued again after a restart, and a run stored as launched whose
// launch never reached the master (reconciliation answers TASK_LOST) is
// queued again rather than counted a failure: each runs once.
func TestStoredRunsSurviveRestart(t *testing.T) {
	c := clustertest.New(t)
	dir := t.TempDir()
	s := startJobs(t, c.Addr, dir)
	fw := s.svc.FrameworkID()
	s.mustCall(t, 204, "POST", "/scheduler/iso8601", `{"name":"queued","command":"true","schedule":"R/2099-01-01T00:00:00Z/P1D"}`)
	s.mustCall(t, 204, "POST", "/scheduler/iso8601", `{"name":"ghost","command":"true","retries":0,"schedule":"R/2099-01-01T00:00:00Z/P1D"}`)
	// No agent: the run waits in the queue.
	s.mustCall(t, 204, "PUT", "/scheduler/job/queued", "")
	s.stop()

	st, err := frameworks.OpenLocalStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	runs, err := st.List(context.Background(), "runs")
	if err != nil || len(runs) != 1 {
		t.Fatalf("stored runs: %d, %v; want the queued one", len(runs), err)
	}
	ghost := fmt.Sprintf(`{"job":"ghost","attempt":0,"queuedAt":%q,"taskId":"ct:1:0:ghost:","agentId":"nowhere"}`, time.Now().UTC().Format(time.RFC3339))
	if err := st.Apply(context.Background(), frameworks.Put("runs", "1-1:ghost", []byte(ghost))); err != nil {
		t.Fatal(err)
	}
	st.Close()

	c.AddAgent(t, clustertest.AgentOptions{})
	s = startJobs(t, c.Addr, dir)
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
		return s.job(t, "queued").SuccessCount == 1 && s.job(t, "ghost").SuccessCount == 1
	}, "both stored runs made")
	time.Sleep(time.Second)
	for _, name := range []string{"queued", "ghost"} {
		if j := s.job(t, name); j.SuccessCount != 1 || j.ErrorCount != 0 {
			t.Errorf("%s: %d successes, %d errors; want one success", name, j.SuccessCount, j.ErrorCount)
		}
		if ids := tasksOf(t, c, fw, name); len(ids) != 1 {
			t.Errorf("%s ran as %v, want one task", name, ids)
		}
	}
}

// TestAsyncSoftErrorAndFailures: an async job's run lasts until the job
// reports it (PUT /scheduler/task/{id}), and no second run starts
// meanwhile; a softError job's failure starts its dependents; a job that
// keeps failing is disabled after --disable_after_failures, and its
// owners are told of each failure at --http_notification_url.
func TestAsyncSoftErrorAndFailures(t *testing.T) {
	var mu sync.Mutex
	var notices []jobs.Notice
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var n jobs.Notice
		if err := json.NewDecoder(r.Body).Decode(&n); err != nil {
			t.Errorf("notice: %v", err)
		}
		mu.Lock()
		notices = append(notices, n)
		mu.Unlock()
	}))
	defer hook.Close()
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{})
	s := startJobs(t, c.Addr, t.TempDir(), func(cfg *jobs.Config) {
		cfg.DisableAfterFailures = 2
		cfg.NotificationURL = hook.URL
	})
	fw := s.svc.FrameworkID()

	// async: the task finishes, the run does not, until reported.
	s.mustCall(t, 204, "POST", "/scheduler/iso8601", `{"name":"async","command":"true","async":true,"schedule":"R//PT1S"}`)
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() bool {
		return strings.Contains(s.mustCall(t, 200, "GET", "/scheduler/jobs/summary", ""), `"name":"async","status":"fresh","state":"1 running"`) &&
			len(tasksOf(t, c, fw, "async")) == 1
	}, "the async run's task ran and the run waits")
	time.Sleep(2500 * time.Millisecond)
	runs := tasksOf(t, c, fw, "async")
	if len(runs) != 1 || s.job(t, "async").SuccessCount != 0 {
		t.Fatalf("async ran %v, %d successes, while its first run awaited completion", runs, s.job(t, "async").SuccessCount)
	}
	if code, _ := s.call(t, "PUT", "/scheduler/task/ct:1:0:nope:", `{"statusCode":0}`); code != 404 {
		t.Fatalf("completing an unknown task: %d", code)
	}
	if code, _ := s.call(t, "PUT", "/v1/scheduler/task/"+url.PathEscape(runs[0]), `{}`); code != 400 {
		t.Fatalf("a completion without statusCode: %d", code)
	}
	s.mustCall(t, 204, "PUT", "/v1/scheduler/task/"+url.PathEscape(runs[0]), `{"statusCode":0}`)
	if j := s.job(t, "async"); j.SuccessCount != 1 {
		t.Fatalf("async after its report: %+v", j)
	}
	s.mustCall(t, 204, "DELETE", "/scheduler/job/async", "")

	// softError: the parent fails, its child runs anyway.
	s.mustCall(t, 204, "POST", "/scheduler/iso8601", `{"name":"soft","command":"exit 1","softError":true,"retries":0,"schedule":"R1//PT1H","owner":"a@example.com, b@example.com"}`)
	s.mustCall(t, 204, "POST", "/scheduler/dependency", `{"name":"after-soft","command":"true","parents":["soft"]}`)
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() bool {
		return s.job(t, "after-soft").SuccessCount == 1
	}, "the child of a softError job ran after its parent failed")

	// Two failures in a row disable the job; each is notified.
	s.mustCall(t, 204, "POST", "/scheduler/iso8601", `{"name":"flaky","command":"exit 2","retries":0,"schedule":"R//PT1S","owner":"ops@example.com","ownerName":"Ops"}`)
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() bool { return s.job(t, "flaky").Disabled }, "flaky disabled after 2 failures")
	time.Sleep(2 * time.Second)
	if j := s.job(t, "flaky"); j.ErrorCount != 2 {
		t.Fatalf("flaky ran on after it was disabled: %+v", j)
	}
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(notices) >= 3
	}, "three failure notices")
	mu.Lock()
	defer mu.Unlock()
	byJob := map[string][]jobs.Notice{}
	for _, n := range notices {
		byJob[n.Job] = append(byJob[n.Job], n)
	}
	if n := byJob["soft"]; len(n) != 1 || len(n[0].Owners) != 2 || n[0].TaskState != "TASK_FAILED" {
		t.Fatalf("notices of soft: %+v", n)
	}
	if n := byJob["flaky"]; len(n) != 2 || n[0].Disabled || !n[1].Disabled || n[1].Failures != 2 || n[1].OwnerName != "Ops" {
		t.Fatalf("notices of flaky: %+v", n)
	}
}

// A job with a custom executor (Chronos's executor, executorFlags and
// taskInfoData) runs through it on a real agent: the executor (installed on
// the agent, here the example executor) gets the job's environment and
// runs the task's data, and both runs of the job go to the one executor of
// the job. (Fetching an executor with the job's URIs is the agent's
// fetcher's, tested with it.)
func TestCustomExecutorJob(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "executor"), "../examples/executor").CombinedOutput(); err != nil {
		t.Fatalf("build the example executor: %v\n%s", err, out)
	}
	c := clustertest.New(t)
	a := c.AddAgent(t, clustertest.AgentOptions{})
	s := startJobs(t, c.Addr, t.TempDir())
	s.mustCall(t, 204, "POST", "/scheduler/iso8601", `{"name":"custom","executor":"`+filepath.Join(dir, "executor")+`","executorFlags":"-v","command":"echo unused",
		"taskInfoData":"test \"$CHRONOS_JOB_NAME\" = custom","schedule":"R/2099-01-01T00:00:00Z/P1D","retries":0,"concurrent":true}`)
	s.mustCall(t, 204, "PUT", "/scheduler/job/custom", "")
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() bool { return s.job(t, "custom").SuccessCount == 1 },
		"the first run through the custom executor")
	s.mustCall(t, 204, "PUT", "/scheduler/job/custom", "")
	testutil.Eventually(t, 60*time.Second, 100*time.Millisecond, func() bool { return s.job(t, "custom").SuccessCount == 2 },
		"the second run through the custom executor")
	if j := s.job(t, "custom"); j.ErrorCount != 0 {
		t.Fatalf("custom: %d errors", j.ErrorCount)
	}
	// The agent's state: each executor with the tasks it ran.
	var state struct {
		Frameworks []struct {
			Executors []struct {
				ID        string            `json:"id"`
				Tasks     []json.RawMessage `json:"tasks"`
				Completed []json.RawMessage `json:"completed_tasks"`
			} `json:"executors"`
		} `json:"frameworks"`
	}
	resp, err := http.Get("http://" + a.Endpoint() + "/state")
	if err != nil {
		t.Fatal(err)
	}
	err = json.NewDecoder(resp.Body).Decode(&state)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	execs := map[string]int{}
	for _, f := range state.Frameworks {
		for _, e := range f.Executors {
			execs[e.ID] += len(e.Tasks) + len(e.Completed)
		}
	}
	if len(execs) != 1 {
		t.Errorf("the runs' executors on the agent: %v, want both on one", execs)
	}
	for id, n := range execs {
		if !strings.HasPrefix(id, "chronos-executor-custom-") || n != 2 {
			t.Errorf("executor %s ran %d tasks, want chronos-executor-custom-... with both", id, n)
		}
	}
}
