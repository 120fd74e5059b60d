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
	err = jobs.RunHA(ctx, jobs.Config{
		Master: c.Master, Hostname: "127.0.0.1", HTTPPort: c.Port, Logger: log, Tick: 100 * time.Millisecond,
		RetryBackoff: 200 * time.Millisecond, DeclineIdle: time.Second, DeclineBusy: 100 * time.Millisecond, MinReviveInterval: 50 * time.Millisecond,
	}, h, ln)
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

func startHAJobs(t *testing.T, master, zkURL, logPath string) *haProc {
	t.Helper()
	port := testutil.FreePort(t)
	spec, _ := json.Marshal(haChildConfig{Master: master, ZK: zkURL, Log: logPath, Port: port})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), haChildEnv+"="+string(spec))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &haProc{service: &service{url: "http://127.0.0.1:" + strconv.Itoa(port)}, port: port, cmd: cmd, done: make(chan struct{})}
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
	resp, err := http.Get(p.url + "/scheduler/leader")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v struct{ Leader string }
	json.NewDecoder(resp.Body).Decode(&v)
	return v.Leader
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// get answers GET path on p without following redirects: the code and the
// Location.
func get(t *testing.T, p *haProc, path string) (int, string) {
	t.Helper()
	resp, err := noRedirect.Get(p.url + path)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// TestHATakeover: two instances on one ZooKeeper. The standby answers 307
// to the leader (the seed's curl check); the leader is killed with a run
// in flight; the standby takes over with the same framework and the same
// jobs, and the schedule goes on with every run made exactly once.
func TestHATakeover(t *testing.T) {
	zk := zktest.Start(t)
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{})
	zkURL := zk.URL("/chronos/state")
	logPath := filepath.Join(t.TempDir(), "jobs.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("instances' log:\n%s", b)
		}
	})
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

	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool { return leaderOf(b) == b.hostPort() }, "the standby takes over")
	t.Logf("taken over %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	if code, _ := get(t, b, "/scheduler/jobs"); code != 200 {
		t.Fatalf("new leader: %d", code)
	}
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
