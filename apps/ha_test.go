package apps_test

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

	"github.com/mesolite/mesolite/apps"
	"github.com/mesolite/mesolite/detector/zktest"
	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/frameworks/ha"
	"github.com/mesolite/mesolite/internal/testutil"
)

// haChildEnv makes the test binary a `mesolite apps --zk` process: its
// value is the instance's haChildConfig as JSON.
const haChildEnv = "MESOLITE_TEST_APPS_HA_CHILD"

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
	log := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug})).With("process", "apps:"+strconv.Itoa(c.Port))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.Port)))
	if err != nil {
		log.Error("listen", "error", err)
		return 1
	}
	h, err := ha.New(ha.Config{ZK: c.ZK, Hostname: "127.0.0.1", Port: c.Port, SessionTimeout: 2 * time.Second, Logger: log})
	if err != nil {
		log.Error("ha", "error", err)
		return 1
	}
	err = apps.RunHA(ctx, apps.Config{
		Master: c.Master, Hostname: "127.0.0.1", HTTPPort: c.Port, Logger: log, Tick: 100 * time.Millisecond, KillRetry: 2 * time.Second,
		DeclineIdle: time.Second, DeclineBusy: 100 * time.Millisecond, MinReviveInterval: 50 * time.Millisecond,
	}, h, ln)
	if err != nil {
		log.Error("apps stopped", "error", err)
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

func startHAApps(t *testing.T, master, zkURL, logPath string) *haProc {
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
		code, _ := get(t, p.url+"/ping")
		return code == 200
	}, "apps instance on :%d answers", port)
	return p
}

// leaderOf asks an instance who leads.
func leaderOf(p *haProc) string {
	resp, err := http.Get(p.url + "/v2/leader")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var v struct{ Leader string }
	json.NewDecoder(resp.Body).Decode(&v)
	return v.Leader
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// status answers method path on p without following redirects: the code
// and the Location.
func status(t *testing.T, p *haProc, method, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, p.url+path, nil)
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Location")
}

// serving waits until p leads and serves the API.
func serving(t *testing.T, p *haProc) {
	t.Helper()
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		code, _ := status(t, p, "GET", "/v2/apps")
		return leaderOf(p) == p.hostPort() && code == 200
	}, "%s leads", p.hostPort())
}

// answerOf is method path on p without following redirects: the status,
// the headers and the body.
func answerOf(t *testing.T, p *haProc, method, path, body string, header ...string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, p.url+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// proxiedBy says whether an answer came from the leader through standby.
func proxiedBy(h http.Header, standby, leader *haProc) bool {
	return slices.Contains(h.Values("X-Marathon-Via"), "1.1 "+standby.hostPort()) &&
		h.Get("X-Marathon-Leader") == "http://"+leader.hostPort()
}

// TestHATakeover: two instances on one ZooKeeper. The standby proxies
// the API to the leader (a client of either sees one Marathon), answers
// /ping, /metrics and /v2/leader itself and refuses a request proxied
// already; the leader is killed; the standby takes over with the same app
// and the same running tasks (none relaunched). Then it abdicates, and a
// third instance takes over the same way.
func TestHATakeover(t *testing.T) {
	zk := zktest.Start(t)
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{Hostname: "127.0.0.1"})
	zkURL := zk.URL("/marathon")
	logPath := filepath.Join(t.TempDir(), "apps.log")
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("instances' log:\n%s", b)
		}
	})
	a := startHAApps(t, c.Addr, zkURL, logPath)
	serving(t, a)
	b := startHAApps(t, c.Addr, zkURL, logPath)
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool { return leaderOf(b) == a.hostPort() }, "the standby knows the leader")

	// The event stream through the standby carries what the leader does.
	events := b.events(t, "api_post_event")
	code, h, body := answerOf(t, b, "POST", "/v2/apps", `{"id":"/sleeper","cmd":"sleep 600","cpus":0.1,"mem":32,"instances":2}`)
	if code != http.StatusCreated || !proxiedBy(h, b, a) || h.Get("Location") == "" {
		t.Fatalf("standby POST /v2/apps: %d %v %s", code, h, body)
	}
	select {
	case ev := <-events:
		if ev["appDefinition"].(map[string]any)["id"] != "/sleeper" {
			t.Fatalf("event %v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no api_post_event through the standby")
	}
	before := taskIDs(a.waitSettled(t, "/sleeper", 2, false))
	var viaStandby struct{ Apps []appView }
	b.mustCall(t, http.StatusOK, "GET", "/v2/apps?embed=apps.tasks", "", &viaStandby)
	if len(viaStandby.Apps) != 1 || !slices.Equal(taskIDs(viaStandby.Apps[0]), before) {
		t.Fatalf("standby GET /v2/apps?embed=apps.tasks: %+v, want the tasks %v", viaStandby.Apps, before)
	}
	if code, _, body := answerOf(t, b, "GET", "/v2/apps", "", "X-Marathon-Via", "1.1 127.0.0.1:1"); code != http.StatusBadGateway || !strings.Contains(body, "Detected proxying loop.") {
		t.Fatalf("standby, a request proxied already: %d %s", code, body)
	}
	if code, h, body := answerOf(t, b, "GET", "/ping", ""); code != 200 || strings.TrimSpace(body) != "pong" || h.Get("X-Marathon-Via") != "" {
		t.Fatalf("standby /ping: %d %s %v", code, body, h)
	}
	var metrics struct {
		Gauges map[string]struct{ Value float64 }
	}
	if code, h, body := answerOf(t, b, "GET", "/metrics", ""); code != 200 || h.Get("X-Marathon-Via") != "" || json.Unmarshal([]byte(body), &metrics) != nil ||
		metrics.Gauges["marathon.leadership.elected.gauge"].Value != 0 {
		t.Fatalf("standby /metrics: %d %s", code, body)
	}
	if code, _, body := answerOf(t, a, "GET", "/metrics", ""); code != 200 || json.Unmarshal([]byte(body), &metrics) != nil ||
		metrics.Gauges["marathon.leadership.elected.gauge"].Value != 1 || metrics.Gauges["marathon.instances.running.gauge"].Value != 2 {
		t.Fatalf("leader /metrics: %d %s", code, body)
	}
	if code, h, _ := answerOf(t, a, "GET", "/v2/apps", ""); code != 200 || h.Get("X-Marathon-Via") != "" {
		t.Fatalf("leader GET /v2/apps: %d %v", code, h)
	}

	var info struct{ FrameworkID string }
	a.mustCall(t, http.StatusOK, "GET", "/v2/info", "", &info)
	fw := info.FrameworkID

	killedAt := time.Now()
	a.kill()
	serving(t, b)
	t.Logf("taken over %s after the kill", time.Since(killedAt).Round(time.Millisecond))
	b.mustCall(t, http.StatusOK, "GET", "/v2/info", "", &info)
	if info.FrameworkID != fw {
		t.Fatalf("framework %s after the takeover, want %s", info.FrameworkID, fw)
	}
	// Long enough for reconciliation and a few rounds of the engine.
	time.Sleep(2 * time.Second)
	if after := taskIDs(b.waitSettled(t, "/sleeper", 2, false)); !slices.Equal(after, before) {
		t.Fatalf("tasks %v after the takeover, want %v", after, before)
	}
	if running := slices.Sorted(slices.Values(c.RunningTasks(t, fw))); !slices.Equal(running, before) {
		t.Fatalf("the master runs %v, want %v", running, before)
	}

	// DELETE /v2/leader, sent to the new standby: proxied, b abdicates,
	// the new instance takes over, b stands by and proxies to it.
	d := startHAApps(t, c.Addr, zkURL, logPath)
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool { return leaderOf(d) == b.hostPort() }, "the new standby knows the leader")
	if code, h, body := answerOf(t, d, "DELETE", "/v2/leader", ""); code != 200 || !proxiedBy(h, d, b) {
		t.Fatalf("DELETE /v2/leader through the standby: %d %v %s", code, h, body)
	}
	serving(t, d)
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool {
		code, h, _ := answerOf(t, b, "GET", "/v2/apps", "")
		return code == 200 && proxiedBy(h, b, d)
	}, "the abdicated instance proxies to the new leader")
	time.Sleep(2 * time.Second)
	if after := taskIDs(d.waitSettled(t, "/sleeper", 2, false)); !slices.Equal(after, before) {
		t.Fatalf("tasks %v after the abdication, want %v", after, before)
	}
	// The new leader acts on the app: a scale up launches one more.
	d.mustCall(t, http.StatusOK, "PUT", "/v2/apps/sleeper", `{"instances":3}`, nil)
	d.waitSettled(t, "/sleeper", 3, false)
}
