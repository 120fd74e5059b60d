package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/detector/zktest"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/frameworks/ha"
	"github.com/mesolite/mesolite/frameworks/zkstore"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/jobs"
)

// haChildEnv makes the test binary a `mesolite jobs --zk_hosts` process:
// its value is the instance's haChildConfig as JSON.
const haChildEnv = "MESOLITE_TEST_JOBS_HA_CHILD"

// haSession is the instances' ZooKeeper session timeout: a killed leader
// is replaced after about this long.
const haSession = 2 * time.Second

type haChildConfig struct {
	Master, ZK, Log string
	Port            int
	// Credentials is --http_credentials, user:password; empty: none.
	Credentials string
}

// haChild runs one HA instance until SIGTERM, as cmd/mesolite does.
func haChild(spec string) int {
	var c haChildConfig
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	logf, err := os.OpenFile(c.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("process", "jobs:"+strconv.Itoa(c.Port))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)))
	if err != nil {
		log.Error("listen", "error", err)
		return 1
	}
	h, err := ha.New(ha.Config{ZK: c.ZK, Hostname: "127.0.0.1", Port: c.Port, SessionTimeout: haSession, Logger: log})
	if err != nil {
		log.Error("ha", "error", err)
		return 1
	}
	cfg := jobs.Config{
		Master: c.Master, Hostname: "127.0.0.1", HTTPPort: c.Port, Logger: log, Tick: 100 * time.Millisecond,
		RetryBackoff: 200 * time.Millisecond, DeclineIdle: time.Second, DeclineBusy: 100 * time.Millisecond, MinReviveInterval: 50 * time.Millisecond,
	}
	if user, password, ok := strings.Cut(c.Credentials, ":"); ok {
		cfg.Credentials = []httpauth.Credential{{Principal: user, Secret: password}}
	}
	err = jobs.RunHA(ctx, cfg, h, ln)
	if err != nil {
		log.Error("jobs stopped", "error", err)
		return 1
	}
	return 0
}

// haProc is one instance, a process of its own.
type haProc struct {
	*service
	port int
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *haProc) hostPort() string { return "127.0.0.1:" + strconv.Itoa(p.port) }

// kill ends the process as kill -9 would: its ZooKeeper session is left to
// expire.
func (p *haProc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// terminate stops the process as a service manager does, with SIGTERM,
// and waits for it to exit.
func (p *haProc) terminate(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.kill()
		t.Fatalf("jobs instance on :%d did not stop with SIGTERM", p.port)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("jobs instance on :%d exited with %d after SIGTERM, want 0", p.port, code)
	}
}

// startHAJobs starts an instance; with credentials ("user:password") it
// requires them (--http_credentials) and the test's calls send them.
func startHAJobs(t *testing.T, master, zkURL, logPath string, credentials ...string) *haProc {
	t.Helper()
	port := testutil.FreePort(t)
	cc := haChildConfig{Master: master, ZK: zkURL, Log: logPath, Port: port}
	if len(credentials) > 0 {
		cc.Credentials = credentials[0]
	}
	spec, _ := json.Marshal(cc)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), haChildEnv+"="+string(spec))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &haProc{service: &service{url: "http://127.0.0.1:" + strconv.Itoa(port)}, port: port, cmd: cmd, done: make(chan struct{})}
	p.user, p.password, _ = strings.Cut(cc.Credentials, ":")
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.kill()
		}
	})
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		resp, err := http.Get(p.url + "/ping")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	}, "jobs instance on :%d answers", port)
	return p
}

// leaderOf asks an instance who leads.
func leaderOf(p *haProc) string {
	req, _ := http.NewRequest("GET", p.url+"/scheduler/leader", nil)
	if p.user != "" {
		req.SetBasicAuth(p.user, p.password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v struct{ Leader string }
	json.NewDecoder(resp.Body).Decode(&v)
	return v.Leader
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// get answers GET path on p without following redirects, with p's
// credentials: the code and the Location.
func get(t *testing.T, p *haProc, path string) (int, string) {
	t.Helper()
	resp := request(t, p, "GET", path, "", p.user, p.password)
	return resp.StatusCode, resp.Header.Get("Location")
}

// request is method path on p as user (none when empty), without
// following redirects; its body is read and closed.
func request(t *testing.T, p *haProc, method, path, body, user, password string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, p.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// haCluster is a cluster of one agent and a ZooKeeper for jobs instances,
// whose shared log (logPath) is shown when the test fails.
func haCluster(t *testing.T) (c *clustertest.Cluster, zkURL, logPath string) {
	t.Helper()
	zk := zktest.Start(t)
	c = clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{})
	zkURL = zk.URL("/chronos/state")
	logPath = filepath.Join(t.TempDir(), "jobs.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("instances' log:\n%s", b)
		}
	})
	return c, zkURL, logPath
}

// TestHATakeover: two instances on one ZooKeeper. The standby answers 307
// to the leader (the seed's curl check); the leader is killed with a run
// in flight; the standby takes over with the same framework and the same
// jobs, and the schedule goes on with every run made exactly once.
func TestHATakeover(t *testing.T) {
	c, zkURL, logPath := haCluster(t)
	a := startHAJobs(t, c.Addr, zkURL, logPath)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool { return leaderOf(a) == a.hostPort() }, "the first instance leads")
	b := startHAJobs(t, c.Addr, zkURL, logPath)
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool { return leaderOf(b) == a.hostPort() }, "the standby knows the leader")

	// The seed's check: curl /scheduler/jobs -w '%{http_code}:%{redirect_url}'.
	if code, loc := get(t, a, "/scheduler/jobs"); code != 200 || loc != "" {
		t.Fatalf("leader: %d:%s, want 200:", code, loc)
	}
	if code, loc := get(t, b, "/scheduler/jobs"); code != 307 || loc != "http://"+a.hostPort()+"/scheduler/jobs" {
		t.Fatalf("standby: %d:%s, want 307:http://%s/scheduler/jobs", code, loc, a.hostPort())
	}
	if code, loc := get(t, b, "/v1/scheduler/jobs/search?name=x&limit=2"); code != 307 || loc != "http://"+a.hostPort()+"/v1/scheduler/jobs/search?name=x&limit=2" {
		t.Fatalf("standby, with a query: %d:%s", code, loc)
	}
	if code, _ := get(t, b, "/ping"); code != 200 {
		t.Fatalf("standby /ping: %d", code)
	}

	// Twelve runs a second apart, each taking a while, so that one is in
	// flight when the leader dies.
	const runs = 12
	start := time.Now().Add(time.Second).UTC().Format(time.RFC3339)
	a.mustCall(t, 204, "POST", "/scheduler/iso8601", fmt.Sprintf(`{"name":"tick","command":"sleep 0.4","schedule":"R%d/%s/PT1S","epsilon":"PT5M"}`, runs, start))
	st, err := zkstore.Open(context.Background(), zkstore.Config{URL: zkURL + "/state"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	id, err := st.Get(context.Background(), frameworks.BucketFramework, "id")
	if err != nil {
		t.Fatalf("the framework id in ZooKeeper: %v", err)
	}
	fw := string(id)
	testutil.Eventually(t, 30*time.Second, 20*time.Millisecond, func() bool {
		return a.job(t, "tick").SuccessCount >= 3 && len(c.RunningTasks(t, fw)) == 1
	}, "three runs done and one in flight")
	killedAt := time.Now()
	a.kill()

	// Elected, it answers 503 until its term has started.
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		code, _ := get(t, b, "/scheduler/jobs")
		return leaderOf(b) == b.hostPort() && code == 200
	}, "the standby takes over")
	t.Logf("taken over %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	testutil.Eventually(t, 60*time.Second, 100*time.Millisecond, func() bool {
		return b.job(t, "tick").SuccessCount == runs
	}, "all %d runs made", runs)
	time.Sleep(2 * time.Second) // a doubled run would show by now
	j := b.job(t, "tick")
	ids := tasksOf(t, c, fw, "tick")
	slices.Sort(ids)
	if j.SuccessCount != runs || j.ErrorCount != 0 || len(ids) != runs || len(slices.Compact(slices.Clone(ids))) != runs {
		t.Fatalf("after the takeover: %d successes, %d errors, tasks %v; want exactly %d runs", j.SuccessCount, j.ErrorCount, ids, runs)
	}
	if !strings.HasPrefix(j.Schedule, "R0/") {
		t.Fatalf("schedule %s: want no repetition left", j.Schedule)
	}
	var before, after int
	for _, id := range ids {
		ms, _ := strconv.ParseInt(strings.Split(id, ":")[1], 10, 64)
		if time.UnixMilli(ms).Before(killedAt) {
			before++
		} else {
			after++
		}
	}
	if before < 4 || after == 0 {
		t.Fatalf("%d runs launched by the old leader, %d by the new: want at least 4 and 1", before, after)
	}
}

// TestHACredentials: two instances on one ZooKeeper, both with
// --http_credentials. Without the credentials, or with wrong ones, the
// leader and the standby alike answer 401 in realm chronos (the standby
// names no leader then) and /ping stays open. With them the leader
// answers and the standby answers 307 with the leader's URL (the seed's
// check: curl -u ... /scheduler/jobs -w '%{http_code}:%{redirect_url}'
// gives 307:http://<leader>/scheduler/jobs), a POST too, and a client
// that follows it with the credentials reaches the leader. The leader is
// stopped with SIGTERM: the standby takes over with the old leader's
// jobs, still wants the credentials, and with them accepts a job and
// runs it.
func TestHACredentials(t *testing.T) {
	c, zkURL, logPath := haCluster(t)
	const user, password = "ops", "s3cret"
	a := startHAJobs(t, c.Addr, zkURL, logPath, user+":"+password)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool { return leaderOf(a) == a.hostPort() }, "the first instance leads")
	b := startHAJobs(t, c.Addr, zkURL, logPath, user+":"+password)
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool { return leaderOf(b) == a.hostPort() }, "the standby knows the leader")

	const before = `{"name":"before","command":"true","schedule":"R/2030-01-01T00:00:00Z/P1D","epsilon":"PT5M"}`
	unauthorized := func(p *haProc, role string) {
		t.Helper()
		for _, who := range [][2]string{{"", ""}, {user, "wrong"}, {"someone", password}} {
			for _, call := range [][3]string{
				{"GET", "/scheduler/jobs", ""}, {"GET", "/v1/scheduler/jobs", ""}, {"GET", "/scheduler/leader", ""}, {"GET", "/", ""},
				{"POST", "/scheduler/iso8601", before},
			} {
				resp := request(t, p, call[0], call[1], call[2], who[0], who[1])
				if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Basic realm="chronos"` || resp.Header.Get("Location") != "" {
					t.Errorf("%s, %s %s as %q:%q: %d, challenge %q, Location %q; want 401 in realm chronos, no Location", role,
						call[0], call[1], who[0], who[1], resp.StatusCode, resp.Header.Get("WWW-Authenticate"), resp.Header.Get("Location"))
				}
			}
		}
		if resp := request(t, p, "GET", "/ping", "", "", ""); resp.StatusCode != 200 {
			t.Errorf("%s, /ping without credentials: %d, want 200", role, resp.StatusCode)
		}
	}
	unauthorized(a, "leader")
	unauthorized(b, "standby")

	// With the credentials, the seed's check.
	if code, loc := get(t, a, "/scheduler/jobs"); code != 200 || loc != "" {
		t.Fatalf("leader: %d:%s, want 200:", code, loc)
	}
	if code, loc := get(t, b, "/scheduler/jobs"); code != 307 || loc != "http://"+a.hostPort()+"/scheduler/jobs" {
		t.Fatalf("standby: %d:%s, want 307:http://%s/scheduler/jobs", code, loc, a.hostPort())
	}
	resp := request(t, b, "POST", "/scheduler/iso8601", before, user, password)
	if loc := resp.Header.Get("Location"); resp.StatusCode != 307 || loc != "http://"+a.hostPort()+"/scheduler/iso8601" {
		t.Fatalf("standby, POST: %d:%s, want 307:http://%s/scheduler/iso8601", resp.StatusCode, loc, a.hostPort())
	}
	// A client that follows the redirect with the credentials (Go's
	// sends them on to the same host, as a browser asked once would)
	// posts the job on the leader.
	req, _ := http.NewRequest("POST", b.url+"/scheduler/iso8601", strings.NewReader(before))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(user, password)
	followed, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	followed.Body.Close()
	if followed.StatusCode != 204 || followed.Request.URL.Host != a.hostPort() {
		t.Fatalf("standby, POST followed: %d from %s, want 204 from the leader %s", followed.StatusCode, followed.Request.URL.Host, a.hostPort())
	}
	if j := a.job(t, "before"); j.Command != "true" {
		t.Fatalf("the leader's job: %+v", j)
	}

	stoppedAt := time.Now()
	a.terminate(t)
	// Elected, it answers 503 until its term has started.
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		code, _ := get(t, b, "/scheduler/jobs")
		return leaderOf(b) == b.hostPort() && code == 200
	}, "the standby takes over")
	t.Logf("taken over %s after the stop", time.Since(stoppedAt).Round(time.Millisecond))
	unauthorized(b, "new leader")
	if j := b.job(t, "before"); j.Command != "true" {
		t.Fatalf("the old leader's job on the new: %+v", j)
	}
	start := time.Now().Add(time.Second).UTC().Format(time.RFC3339)
	b.mustCall(t, 204, "POST", "/scheduler/iso8601", fmt.Sprintf(`{"name":"after","command":"true","schedule":"R1/%s/PT1S","epsilon":"PT5M"}`, start))
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool { return b.job(t, "after").SuccessCount == 1 }, "the new leader runs the job")
	var list []jobs.Job
	if err := json.Unmarshal([]byte(b.mustCall(t, 200, "GET", "/scheduler/jobs", "")), &list); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, j := range list {
		names = append(names, j.Name)
	}
	slices.Sort(names)
	if strings.Join(names, ",") != "after,before" {
		t.Fatalf("jobs %v, want after and before: the unauthenticated POSTs must have made none", names)
	}
}
