package apps_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/apps"
	"github.com/mesolite/mesolite/containerizer/fake"
	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/testutil"
)

// fakeCluster is a master with agents on the fake containerizer: tasks are
// launched and stay staging (no executor runs), which is all a test of the
// API's bookkeeping needs.
func fakeCluster(t *testing.T, hosts ...string) *clustertest.Cluster {
	c := clustertest.New(t)
	for _, h := range hosts {
		c.AddAgent(t, clustertest.AgentOptions{Hostname: h, Containerizer: fake.New(fake.Options{})})
	}
	return c
}

type errorBody struct {
	Message string
	Details []struct {
		Path   string
		Errors []string
	}
	Deployments []struct{ ID string }
}

func (s *service) raw(t *testing.T, method, path, contentType, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAPIErrors: Marathon's statuses and error bodies.
func TestAPIErrors(t *testing.T) {
	c := fakeCluster(t, "h1")
	s := startApps(t, c.Addr, t.TempDir())

	var e errorBody
	if code := s.call(t, "POST", "/v2/apps", `{"id":"/a","cmd":"x","upgradeStrategy":{"minimumHealthCapacity":2}}`, &e); code != 422 ||
		e.Message != "Object is not valid" || len(e.Details) != 1 || e.Details[0].Path != "/upgradeStrategy/minimumHealthCapacity" ||
		e.Details[0].Errors[0] != "is greater than 1" {
		t.Fatalf("422: %d %+v", code, e)
	}
	e = errorBody{}
	if code := s.call(t, "POST", "/v2/apps", `{"id":"/a","cpus":"lots"}`, &e); code != 400 || e.Message != "Invalid JSON" || e.Details[0].Path != "/cpus" {
		t.Fatalf("400: %d %+v", code, e)
	}
	if code, body := s.raw(t, "POST", "/v2/apps", "application/x-www-form-urlencoded", `{"id":"/a","cmd":"x"}`); code != 415 {
		t.Fatalf("a form body: %d %s", code, body)
	}
	if code, body := s.raw(t, "POST", "/v2/apps", "application/json", `{"id":"/a","cmd":"`+strings.Repeat("x", 2<<20)+`"}`); code != 413 {
		t.Fatalf("a 2 MiB body: %d %.200s", code, body)
	}
	e = errorBody{}
	if code := s.call(t, "GET", "/v2/apps/nope", "", &e); code != 404 || e.Message != "App '/nope' does not exist" {
		t.Fatalf("404: %d %+v", code, e)
	}
	if code := s.call(t, "GET", "/v2/apps/No_Such", "", nil); code != 404 {
		t.Fatalf("a bad id: %d", code)
	}
	if code := s.call(t, "DELETE", "/v2/apps/prod/nope/tasks/../../etc", "", nil); code != 404 {
		t.Fatalf("a task id that is a path: %d", code)
	}

	s.mustCall(t, http.StatusCreated, "POST", "/v2/apps", `{"id":"/a","cmd":"sleep 100","cpus":0.1,"mem":16,"instances":2}`, nil)
	e = errorBody{}
	if code := s.call(t, "POST", "/v2/apps", `{"id":"/a","cmd":"sleep 100"}`, &e); code != 409 || e.Message != "An app with id [/a] already exists." {
		t.Fatalf("a second POST: %d %+v", code, e)
	}
	// The start deployment never ends here (nothing reaches
	// TASK_RUNNING): the app is locked.
	e = errorBody{}
	if code := s.call(t, "PUT", "/v2/apps/a", `{"instances":3}`, &e); code != 409 || len(e.Deployments) != 1 ||
		!strings.Contains(e.Message, "locked by one or more deployments") {
		t.Fatalf("PUT of a locked app: %d %+v", code, e)
	}
	var res struct{ DeploymentID, Version string }
	s.mustCall(t, http.StatusOK, "PUT", "/v2/apps/a?force=true", `{"instances":3}`, &res)
	var deps []struct {
		ID             string
		AffectedApps   []string
		CurrentActions []struct{ Action, App string }
	}
	s.mustCall(t, http.StatusOK, "GET", "/v2/deployments", "", &deps)
	if len(deps) != 1 || deps[0].ID != res.DeploymentID || deps[0].ID == e.Deployments[0].ID ||
		deps[0].CurrentActions[0].Action != "ScaleApplication" || deps[0].AffectedApps[0] != "/a" {
		t.Fatalf("deployments after a forced scale: %+v", deps)
	}
	if code, _ := s.raw(t, "DELETE", "/v2/deployments/"+res.DeploymentID+"?force=true", "", ""); code != http.StatusAccepted {
		t.Fatalf("DELETE deployment with force: %d", code)
	}
	s.mustCall(t, http.StatusOK, "GET", "/v2/deployments", "", &deps)
	if len(deps) != 0 {
		t.Fatalf("deployments after canceling: %+v", deps)
	}
	if code := s.call(t, "DELETE", "/v2/deployments/nope", "", nil); code != 404 {
		t.Fatalf("DELETE of an unknown deployment: %d", code)
	}
}

// TestAPIVersionsAndRollback: every change is a version; PUT of one
// version brings it back, and DELETE of a deployment rolls it back.
func TestAPIVersionsAndRollback(t *testing.T) {
	c := fakeCluster(t, "h1")
	s := startApps(t, c.Addr, t.TempDir())
	s.mustCall(t, http.StatusCreated, "POST", "/v2/apps", `{"id":"/v","cmd":"sleep 100","cpus":0.1,"mem":16,"instances":1,"labels":{"tier":"back"}}`, nil)
	s.mustCall(t, http.StatusOK, "PUT", "/v2/apps/v?force=true", `{"cmd":"sleep 200"}`, nil)
	var versions struct{ Versions []string }
	s.mustCall(t, http.StatusOK, "GET", "/v2/apps/v/versions", "", &versions)
	if len(versions.Versions) != 2 || versions.Versions[0] <= versions.Versions[1] {
		t.Fatalf("versions %v: want two, newest first", versions.Versions)
	}
	var first appView
	s.mustCall(t, http.StatusOK, "GET", "/v2/apps/v/versions/"+versions.Versions[1], "", &first)
	if first.Cmd != "sleep 100" {
		t.Fatalf("the first version: %+v", first)
	}
	var res struct{ DeploymentID string }
	s.mustCall(t, http.StatusOK, "PUT", "/v2/apps/v?force=true", `{"version":"`+versions.Versions[1]+`"}`, &res)
	if a := s.app(t, "/v"); a.Cmd != "sleep 100" || res.DeploymentID == "" {
		t.Fatalf("after PUT of the first version: %+v", a)
	}
	// A deployment deleted without force is rolled back by a new one.
	var dep struct{ DeploymentID string }
	s.mustCall(t, http.StatusOK, "PUT", "/v2/apps/v?force=true", `{"cmd":"sleep 300"}`, &dep)
	var back struct{ DeploymentID string }
	s.mustCall(t, http.StatusOK, "DELETE", "/v2/deployments/"+dep.DeploymentID, "", &back)
	if a := s.app(t, "/v"); a.Cmd != "sleep 100" || back.DeploymentID == dep.DeploymentID {
		t.Fatalf("after the rollback: %+v", a)
	}
	if code := s.call(t, "GET", "/v2/apps/v/versions/2000-01-01T00:00:00.000Z", "", nil); code != 404 {
		t.Fatalf("an unknown version: %d", code)
	}

	// Filters of the list.
	s.mustCall(t, http.StatusCreated, "POST", "/v2/apps", `{"id":"/other/w","cmd":"true","cpus":0.1,"mem":16,"instances":0}`, nil)
	for q, want := range map[string][]string{
		"":                       {"/other/w", "/v"},
		"?id=other":              {"/other/w"},
		"?cmd=sleep":             {"/v"},
		"?label=tier==back":      {"/v"},
		"?label=tier":            {"/v"},
		"?label=tier!=back":      {"/other/w"},
		"?embed=apps.tasks&id=v": {"/v"},
	} {
		var list struct{ Apps []appView }
		s.mustCall(t, http.StatusOK, "GET", "/v2/apps"+q, "", &list)
		var got []string
		for _, a := range list.Apps {
			got = append(got, a.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("/v2/apps%s: %v, want %v", q, got, want)
		}
		if strings.Contains(q, "embed=apps.tasks") && (len(list.Apps) != 1 || list.Apps[0].Tasks == nil) {
			t.Errorf("embed=apps.tasks: no tasks in %+v", list.Apps)
		}
	}
}

// TestUniqueHostnameAndQueue: UNIQUE hostname places one instance per
// agent; the one that fits nowhere waits in /v2/queue, and the text form
// of /v2/tasks lists the placed ones.
func TestUniqueHostnameAndQueue(t *testing.T) {
	c := fakeCluster(t, "h1", "h2")
	s := startApps(t, c.Addr, t.TempDir())
	s.mustCall(t, http.StatusCreated, "POST", "/v2/apps",
		`{"id":"/u","cmd":"sleep 100","cpus":0.1,"mem":16,"instances":3,"constraints":[["hostname","UNIQUE"]]}`, nil)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool { return len(s.app(t, "/u").Tasks) == 2 }, "two instances placed")
	time.Sleep(500 * time.Millisecond) // more offers come; none may take the third
	a := s.app(t, "/u")
	if len(a.Tasks) != 2 || a.Tasks[0].Host == a.Tasks[1].Host {
		t.Fatalf("tasks %+v: want one on each host", a.Tasks)
	}
	var q struct {
		Queue []struct {
			App   struct{ ID string }
			Count int
		}
	}
	s.mustCall(t, http.StatusOK, "GET", "/v2/queue", "", &q)
	if len(q.Queue) != 1 || q.Queue[0].App.ID != "/u" || q.Queue[0].Count != 1 {
		t.Fatalf("queue %+v", q)
	}
	var tasks struct{ Tasks []taskView }
	s.mustCall(t, http.StatusOK, "GET", "/v2/tasks?status=staging", "", &tasks)
	if len(tasks.Tasks) != 2 {
		t.Fatalf("/v2/tasks?status=staging: %+v", tasks)
	}
	s.mustCall(t, http.StatusOK, "GET", "/v2/tasks?status=running", "", &tasks)
	if len(tasks.Tasks) != 0 {
		t.Fatalf("/v2/tasks?status=running: %+v", tasks)
	}
	req, _ := http.NewRequest("GET", s.url+"/v2/tasks", nil)
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || string(b) != "u\t10000\t\n" {
		t.Fatalf("text tasks (no task running yet): %q %q", resp.Header.Get("Content-Type"), b)
	}
	// A scale down with scale=true through the tasks endpoint.
	var res struct{ DeploymentID string }
	s.mustCall(t, http.StatusOK, "DELETE", "/v2/apps/u/tasks?host=h1&scale=true&force=true", "", &res)
	if a := s.app(t, "/u"); a.Instances != 2 || res.DeploymentID == "" {
		t.Fatalf("after killing h1's instance with scale: %+v", a)
	}
}

// TestEventsOfAChange: a POST is announced on /v2/events as
// api_post_event and deployment_info, with Marathon's fields.
func TestEventsOfAChange(t *testing.T) {
	c := fakeCluster(t, "h1")
	s := startApps(t, c.Addr, t.TempDir())
	evs := s.events(t)
	s.mustCall(t, http.StatusCreated, "POST", "/v2/apps", `{"id":"/e","cmd":"sleep 1","cpus":0.1,"mem":16,"instances":1}`, nil)
	seen := map[string]map[string]any{}
	deadline := time.After(10 * time.Second)
	for len(seen) < 4 {
		select {
		case ev := <-evs:
			seen[ev["eventType"].(string)] = ev
		case <-deadline:
			t.Fatalf("events seen: %v", seen)
		}
	}
	if ev := seen["api_post_event"]; ev["uri"] != "/v2/apps" || ev["appDefinition"].(map[string]any)["id"] != "/e" || ev["clientIp"] != "127.0.0.1" {
		t.Errorf("api_post_event %v", ev)
	}
	if ev := seen["deployment_info"]; ev["plan"].(map[string]any)["id"] == "" || ev["currentStep"] == nil {
		t.Errorf("deployment_info %v", ev)
	}
	if ev := seen["instance_changed_event"]; ev == nil && seen["status_update_event"] == nil {
		t.Errorf("no instance event: %v", seen)
	}
	if _, ok := seen["event_stream_attached"]; !ok {
		t.Errorf("no event_stream_attached: %v", seen)
	}
}

// TestHTTPCredentials: with credentials, everything but /ping asks for
// them, in Marathon's words.
func TestHTTPCredentials(t *testing.T) {
	c := fakeCluster(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := apps.New(ctx, apps.Config{Master: c.Addr, Hostname: "127.0.0.1", WorkDir: t.TempDir(), Logger: clustertest.Logger(),
		Credentials: []httpauth.Credential{{Principal: "ops", Secret: "s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, ln) }()
	defer func() { cancel(); <-done }()
	base := "http://" + ln.Addr().String()
	resp, err := http.Get(base + "/v2/apps")
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Message string }
	json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != 401 || body.Message != "Invalid username or password." || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Fatalf("without credentials: %d %+v", resp.StatusCode, body)
	}
	if code, text := get(t, base+"/ping"); code != 200 || text != "pong" {
		t.Fatalf("/ping: %d %s", code, text)
	}
	req, _ := http.NewRequest("GET", base+"/v2/apps", nil)
	req.SetBasicAuth("ops", "s3cret")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("with credentials: %d", resp.StatusCode)
	}
}
