package apps_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/apps"
	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/internal/testutil"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(haChildEnv); spec != "" {
		os.Exit(haChild(spec))
	}
	clustertest.Main(m)
}

// service is `mesolite apps` run in the test's process against a real
// master.
type service struct {
	url  string
	svc  *apps.Service
	stop func()
}

// startApps starts the apps service on workDir; stop (also at the end of
// the test) stops it as a SIGTERM would.
func startApps(t testing.TB, master, workDir string) *service {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := apps.New(ctx, apps.Config{
		Master: master, Hostname: "127.0.0.1", HTTPPort: port, WorkDir: workDir, Logger: clustertest.Logger().With("process", "apps"),
		Tick: 100 * time.Millisecond, KillRetry: 2 * time.Second,
		DeclineIdle: time.Second, DeclineBusy: 100 * time.Millisecond, MinReviveInterval: 50 * time.Millisecond,
	})
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
					t.Errorf("apps service: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("the apps service did not stop")
			}
		})
	}
	t.Cleanup(stop)
	s := &service{url: "http://" + ln.Addr().String(), svc: svc, stop: stop}
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool { return svc.FrameworkID() != "" }, "apps subscribed")
	return s
}

// call sends a request and decodes a JSON answer into out (when not nil);
// it returns the status.
func (s *service) call(t testing.TB, method, path, body string, out any) int {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, s.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

// mustCall is call that fails the test unless the status is want.
func (s *service) mustCall(t testing.TB, want int, method, path, body string, out any) {
	t.Helper()
	var raw json.RawMessage
	code := s.call(t, method, path, body, &raw)
	if code != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, code, raw, want)
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %s: %v", method, path, raw, err)
		}
	}
}

type taskView struct {
	ID                 string   `json:"id"`
	Host               string   `json:"host"`
	State              string   `json:"state"`
	Ports              []int    `json:"ports"`
	ServicePorts       []int    `json:"servicePorts"`
	Version            string   `json:"version"`
	SlaveID            string   `json:"slaveId"`
	HealthCheckResults []health `json:"healthCheckResults"`
}

type health struct {
	Alive bool `json:"alive"`
}

type appView struct {
	ID             string     `json:"id"`
	Cmd            string     `json:"cmd"`
	Instances      int        `json:"instances"`
	Version        string     `json:"version"`
	Ports          []int      `json:"ports"`
	TasksRunning   int        `json:"tasksRunning"`
	TasksHealthy   int        `json:"tasksHealthy"`
	TasksStaged    int        `json:"tasksStaged"`
	Tasks          []taskView `json:"tasks"`
	Deployments    []struct{ ID string }
	VersionInfo    json.RawMessage `json:"versionInfo"`
	LastTaskFailue json.RawMessage `json:"lastTaskFailure"`
}

func (s *service) app(t testing.TB, id string) appView {
	t.Helper()
	var out struct{ App appView }
	s.mustCall(t, http.StatusOK, "GET", "/v2/apps"+id, "", &out)
	return out.App
}

// settled says whether the app runs want instances, all running (and
// healthy if healthy), with no deployment left.
func (s *service) settled(t testing.TB, id string, want int, healthy bool) bool {
	a := s.app(t, id)
	if len(a.Deployments) > 0 || len(a.Tasks) != want || a.TasksRunning != want {
		return false
	}
	return !healthy || a.TasksHealthy == want
}

func (s *service) waitSettled(t testing.TB, id string, want int, healthy bool) appView {
	t.Helper()
	testutil.Eventually(t, 60*time.Second, 50*time.Millisecond, func() bool { return s.settled(t, id, want, healthy) },
		"%s settled with %d instances", id, want)
	return s.app(t, id)
}

func taskIDs(a appView) []string {
	var ids []string
	for _, t := range a.Tasks {
		ids = append(ids, t.ID)
	}
	slices.Sort(ids)
	return ids
}

// events follows /v2/events, handing every event to the returned channel
// until the test ends.
func (s *service) events(t testing.TB, types ...string) <-chan map[string]any {
	t.Helper()
	q := ""
	for i, typ := range types {
		if i == 0 {
			q += "?"
		} else {
			q += "&"
		}
		q += "event_type=" + typ
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", s.url+"/v2/events"+q, nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("/v2/events: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan map[string]any, 10000)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var typ string
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				typ = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				var ev map[string]any
				if json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &ev) == nil && ev["eventType"] == typ {
					out <- ev
				}
			}
		}
	}()
	return out
}

// webApp is an app whose instances serve HTTP on $PORT0 (busybox httpd)
// with a Mesos HTTP health check.
func webApp(id string, instances int, extra string) string {
	return fmt.Sprintf(`{"id":%q,"cmd":"echo ok > index.html && exec busybox httpd -f -p 127.0.0.1:$PORT0 -h .","cpus":0.1,"mem":32,
		"instances":%d,"healthChecks":[{"protocol":"MESOS_HTTP","portIndex":0,"path":"/","gracePeriodSeconds":10,
		"intervalSeconds":2,"timeoutSeconds":1,"delaySeconds":0,"maxConsecutiveFailures":3}]%s}`, id, instances, extra)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(bytes.TrimSpace(b))
}
