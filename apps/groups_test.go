package apps_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/internal/testutil"
)

type deploymentView struct {
	ID           string
	Version      string
	AffectedApps []string
	CurrentStep  int
	TotalSteps   int
	Steps        []struct {
		Actions []struct{ Action, App string }
	}
}

type groupView struct {
	ID           string
	Apps         []appView
	Groups       []groupView
	Dependencies []string
	Version      string
}

// sleeper is an app whose instances only sleep.
func sleeper(id string, instances int, extra string) string {
	return fmt.Sprintf(`{"id":%q,"cmd":"sleep 1000","cpus":0.01,"mem":8,"instances":%d%s}`, id, instances, extra)
}

// TestGroupsAPI: Marathon's answers to group changes, on agents whose
// tasks never run (so every deployment stays in progress): nested ids,
// one plan for a group's apps ordered by their dependencies, 409 for a
// group that exists or apps a deployment holds, force, 422 with field
// paths and for cyclic dependencies, dryRun, scaleBy, DELETE, and PUT of
// many apps in one deployment.
func TestGroupsAPI(t *testing.T) {
	c := fakeCluster(t, "h1")
	s := startApps(t, c.Addr, t.TempDir())

	group := `{"id":"/prod","dependencies":[],"apps":[` + sleeper("web", 2, `,"dependencies":["db"]`) + `],
		"groups":[{"id":"db","apps":[` + sleeper("mysql", 1, "") + `]},{"id":"empty"}]}`
	var dry struct {
		Steps []struct {
			Actions []struct{ Action, App string }
		}
	}
	s.mustCall(t, http.StatusOK, "PUT", "/v2/groups/prod?dryRun=true", group, &dry)
	if got := fmt.Sprint(dry.Steps); got != "[{[{StartApplication /prod/db/mysql} {StartApplication /prod/web}]} {[{ScaleApplication /prod/db/mysql}]} {[{ScaleApplication /prod/web}]}]" {
		t.Fatalf("dry run steps %s", got)
	}
	var none groupView
	if code := s.call(t, "GET", "/v2/groups/prod", "", &none); code != http.StatusNotFound {
		t.Fatalf("a dry run made the group: %d %+v", code, none)
	}

	var res struct{ DeploymentID, Version string }
	s.mustCall(t, http.StatusCreated, "POST", "/v2/groups", group, &res)
	if res.DeploymentID == "" || res.Version == "" {
		t.Fatalf("POST answered %+v", res)
	}
	var deps []deploymentView
	s.mustCall(t, http.StatusOK, "GET", "/v2/deployments", "", &deps)
	if len(deps) != 1 || deps[0].ID != res.DeploymentID || !slices.Equal(deps[0].AffectedApps, []string{"/prod/db/mysql", "/prod/web"}) ||
		deps[0].TotalSteps != 3 || deps[0].CurrentStep != 2 {
		t.Fatalf("deployments %+v", deps)
	}
	// web waits for mysql, whose task never runs: web has no task yet.
	time.Sleep(500 * time.Millisecond)
	if a := s.app(t, "/prod/web"); len(a.Tasks) != 0 || len(a.Deployments) != 1 || a.Deployments[0].ID != res.DeploymentID {
		t.Fatalf("web started before its dependency was deployed: %+v", a)
	}
	if a := s.app(t, "/prod/db/mysql"); len(a.Tasks) != 1 {
		t.Fatalf("mysql: %+v", a)
	}
	var g groupView
	s.mustCall(t, http.StatusOK, "GET", "/v2/groups/prod", "", &g)
	if g.ID != "/prod" || len(g.Apps) != 1 || g.Apps[0].ID != "/prod/web" || len(g.Groups) != 2 || g.Groups[0].ID != "/prod/db" ||
		g.Groups[1].ID != "/prod/empty" || g.Version != res.Version {
		t.Fatalf("group %+v", g)
	}

	var e errorBody
	if code := s.call(t, "POST", "/v2/groups", `{"id":"/prod"}`, &e); code != http.StatusConflict || !strings.Contains(e.Message, "already created") {
		t.Fatalf("POST of an existing group: %d %+v", code, e)
	}
	// Changing a locked app: 409 with the deployment, then force.
	e = errorBody{}
	if code := s.call(t, "PUT", "/v2/groups/prod", `{"scaleBy":2}`, &e); code != http.StatusConflict || len(e.Deployments) != 1 ||
		e.Deployments[0].ID != res.DeploymentID {
		t.Fatalf("scaleBy of a locked group: %d %+v", code, e)
	}
	var scaled struct{ DeploymentID string }
	s.mustCall(t, http.StatusOK, "PUT", "/v2/groups/prod?force=true", `{"scaleBy":2}`, &scaled)
	if a := s.app(t, "/prod/web"); a.Instances != 4 || len(a.Deployments) != 1 || a.Deployments[0].ID != scaled.DeploymentID {
		t.Fatalf("web after scaleBy 2: %+v", a)
	}
	if a := s.app(t, "/prod/db/mysql"); a.Instances != 2 {
		t.Fatalf("mysql after scaleBy 2: %+v", a)
	}

	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		where, what              string
	}{
		{"cycle", "POST", "/v2/groups", `{"id":"/cyc","apps":[` + sleeper("a", 1, `,"dependencies":["b"]`) + `,` + sleeper("b", 1, `,"dependencies":["a"]`) + `]}`,
			422, "/", "cyclic"},
		{"cycle through a group's dependency", "POST", "/v2/groups", `{"id":"/cyc","dependencies":["/prod"],"apps":[` + sleeper("a", 1, "") + `]}` /* fine alone */, 201, "", ""},
		{"closing the cycle", "PUT", "/v2/apps/prod/web", `{"dependencies":["/cyc/a"]}`, 422, "/", "cyclic"},
		{"app not a child", "POST", "/v2/groups", `{"id":"/g","apps":[` + sleeper("/other/a", 1, "") + `]}`, 422, "/apps(0)/id", "not child of /g"},
		{"nested app invalid", "POST", "/v2/groups", `{"id":"/g","groups":[{"id":"x","apps":[{"id":"a","cmd":"x","cpus":-1}]}]}`, 422, "/groups(0)/apps(0)/cpus", ""},
		{"bad json", "POST", "/v2/groups", `{"id":5}`, 400, "/id", "error.expected.jsstring"},
		{"missing group", "DELETE", "/v2/groups/nope", "", 404, "", "does not exist"},
		{"many apps, one invalid", "PUT", "/v2/apps", `[{"id":"/m1","cmd":"x"},{"id":"/m2","mem":-5,"cmd":"x"}]`, 422, "/(1)/mem", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e errorBody
			code := s.call(t, tc.method, tc.path, tc.body, &e)
			if code != tc.code {
				t.Fatalf("%d %+v, want %d", code, e, tc.code)
			}
			if tc.where == "" && tc.what == "" {
				return
			}
			all := e.Message
			found := tc.where == ""
			for _, d := range e.Details {
				all += " " + d.Path + ": " + strings.Join(d.Errors, ",")
				found = found || d.Path == tc.where
			}
			if !found || !strings.Contains(all, tc.what) {
				t.Fatalf("%d %s, want %s %q", code, all, tc.where, tc.what)
			}
		})
	}

	// PUT /v2/apps of many: one deployment for all of them, created or
	// changed.
	var many struct{ DeploymentID string }
	s.mustCall(t, http.StatusOK, "PUT", "/v2/apps", `[`+sleeper("/m1", 1, "")+`,`+sleeper("/m2", 1, "")+`]`, &many)
	if a, b := s.app(t, "/m1"), s.app(t, "/m2"); len(a.Deployments) != 1 || len(b.Deployments) != 1 ||
		a.Deployments[0].ID != many.DeploymentID || b.Deployments[0].ID != many.DeploymentID {
		t.Fatalf("m1 %+v m2 %+v", a.Deployments, b.Deployments)
	}
	s.mustCall(t, http.StatusOK, "PATCH", "/v2/apps?force=true", `[{"id":"/m1","instances":3},{"id":"/m2","instances":0}]`, &many)
	// (m2's part may be over already: its one task is killed at once.)
	if a, b := s.app(t, "/m1"), s.app(t, "/m2"); a.Instances != 3 || b.Instances != 0 || a.Cmd != "sleep 1000" ||
		len(a.Deployments) != 1 || a.Deployments[0].ID != many.DeploymentID || len(b.Deployments) > 1 ||
		len(b.Deployments) == 1 && b.Deployments[0].ID != many.DeploymentID {
		t.Fatalf("after PATCH: m1 %+v m2 %+v", a, b)
	}

	// DELETE of a group stops its apps; its subgroups are gone.
	var del struct{ DeploymentID string }
	s.mustCall(t, http.StatusOK, "DELETE", "/v2/groups/prod?force=true", "", &del)
	if code := s.call(t, "GET", "/v2/apps/prod/web", "", nil); code != http.StatusNotFound {
		t.Fatalf("web after DELETE of its group: %d", code)
	}
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		return s.call(t, "GET", "/v2/groups/prod", "", nil) == http.StatusNotFound
	}, "/prod gone")
}

// TestGroupDependenciesOrderDeployments: on a real cluster, an app of a
// group starts only once the apps it depends on run healthy; scaleBy
// scales the whole group; deleting the group stops the dependent app
// before the one it depends on.
func TestGroupDependenciesOrderDeployments(t *testing.T) {
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{Hostname: "127.0.0.1"})
	s := startApps(t, c.Addr, t.TempDir())
	evs := s.events(t, "instance_changed_event", "health_status_changed_event", "deployment_success", "group_change_success")

	db := webApp("db", 2, "")
	web := sleeper("web", 1, `,"dependencies":["/shop/db"]`)
	var res struct{ DeploymentID string }
	s.mustCall(t, http.StatusCreated, "POST", "/v2/groups", `{"id":"/shop","apps":[`+db+`,`+web+`]}`, &res)

	healthy := map[string]bool{}
	var order []string
	deadline := time.After(90 * time.Second)
	for done, groupDone := false, false; !done || !groupDone; {
		select {
		case ev := <-evs:
			switch ev["eventType"] {
			case "health_status_changed_event":
				if ev["appId"] == "/shop/db" {
					healthy[ev["instanceId"].(string)] = ev["alive"].(bool)
				}
			case "instance_changed_event":
				if ev["runSpecId"] == "/shop/web" && ev["condition"] == "Provisioned" {
					n := 0
					for _, h := range healthy {
						if h {
							n++
						}
					}
					order = append(order, fmt.Sprintf("web launched with %d db healthy", n))
				}
			case "deployment_success":
				done = done || ev["id"] == res.DeploymentID
			case "group_change_success":
				groupDone = groupDone || ev["groupId"] == "/shop"
			}
		case <-deadline:
			t.Fatalf("the group's deployment did not end: %v", order)
		}
	}
	if len(order) != 1 || order[0] != "web launched with 2 db healthy" {
		t.Fatalf("web launched %v", order)
	}
	s.waitSettled(t, "/shop/web", 1, false)

	var scaled struct{ DeploymentID string }
	s.mustCall(t, http.StatusOK, "PUT", "/v2/groups/shop", `{"scaleBy":1.5}`, &scaled)
	s.waitSettled(t, "/shop/db", 3, true)
	s.waitSettled(t, "/shop/web", 2, false)

	// The group's definition PUT back unchanged changes nothing.
	var g json.RawMessage
	s.mustCall(t, http.StatusOK, "GET", "/v2/groups/shop", "", &g)
	b := []byte(g)
	var same struct{ DeploymentID string }
	s.mustCall(t, http.StatusOK, "PUT", "/v2/groups/shop", string(b), &same)
	var deps []deploymentView
	s.mustCall(t, http.StatusOK, "GET", "/v2/deployments", "", &deps)
	if len(deps) != 0 {
		t.Fatalf("an unchanged group deployed %+v", deps)
	}

	// Deleting the group stops web before db.
	evs = s.events(t, "instance_changed_event")
	s.mustCall(t, http.StatusOK, "DELETE", "/v2/groups/shop", "", nil)
	var ends []string
	for len(ends) < 5 {
		select {
		case ev := <-evs:
			if ev["condition"] == "Killing" {
				ends = append(ends, ev["runSpecId"].(string))
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("instances killed: %v", ends)
		}
	}
	if !slices.Equal(ends, []string{"/shop/web", "/shop/web", "/shop/db", "/shop/db", "/shop/db"}) {
		t.Fatalf("kill order %v", ends)
	}
}

// TestGroupRollback: PUT /v2/groups/{id} with only {"version": ...} makes
// the group what it was at that version (a change through /v2/groups):
// its apps' definitions back, apps added since stopped, apps removed
// since started again; GET .../versions lists the kept versions, newest
// first, also after a restart; an unknown version is 404, and a deleted
// group's versions go.
func TestGroupRollback(t *testing.T) {
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{Hostname: "127.0.0.1"})
	dir := t.TempDir()
	s := startApps(t, c.Addr, dir)

	var v1, v2, v3 struct{ DeploymentID, Version string }
	s.mustCall(t, http.StatusCreated, "POST", "/v2/groups", `{"id":"/rb","dependencies":[],"apps":[`+sleeper("a", 1, "")+`,`+sleeper("b", 1, "")+`],
		"groups":[{"id":"sub","apps":[`+sleeper("x", 1, `,"dependencies":["/rb/a"]`)+`]}]}`, &v1)
	s.waitSettled(t, "/rb/a", 1, false)
	s.waitSettled(t, "/rb/b", 1, false)
	s.waitSettled(t, "/rb/sub/x", 1, false)
	s.mustCall(t, http.StatusOK, "PUT", "/v2/groups/rb", `{"id":"/rb","apps":[`+
		strings.Replace(sleeper("a", 2, ""), "sleep 1000", "sleep 2000", 1)+`,`+sleeper("c", 1, "")+`]}`, &v2)
	s.waitSettled(t, "/rb/a", 2, false)
	s.waitSettled(t, "/rb/c", 1, false)
	if s.call(t, "GET", "/v2/apps/rb/b", "", nil) != http.StatusNotFound || s.call(t, "GET", "/v2/groups/rb/sub", "", nil) != http.StatusNotFound {
		t.Fatal("b or /rb/sub still there after the PUT without them")
	}
	// The versions are kept across a restart of the service.
	s.stop()
	s = startApps(t, c.Addr, dir)
	var versions []string
	s.mustCall(t, http.StatusOK, "GET", "/v2/groups/rb/versions", "", &versions)
	if !slices.Equal(versions, []string{v2.Version, v1.Version}) {
		t.Fatalf("versions %v, want %v", versions, []string{v2.Version, v1.Version})
	}

	for _, bad := range []string{"2020-01-01T00:00:00.000Z", "junk"} {
		var e errorBody
		if code := s.call(t, "PUT", "/v2/groups/rb", `{"version":"`+bad+`"}`, &e); code != http.StatusNotFound || !strings.Contains(e.Message, "no version") {
			t.Fatalf("rollback to %s: %d %+v", bad, code, e)
		}
	}
	var dry struct {
		Steps []struct {
			Actions []struct{ Action, App string }
		}
	}
	s.mustCall(t, http.StatusOK, "PUT", "/v2/groups/rb?dryRun=true", `{"version":"`+v1.Version+`"}`, &dry)
	if len(dry.Steps) == 0 {
		t.Fatalf("a dry run of the rollback: %+v", dry)
	}

	// A scaleBy beside the version is ignored, as in Marathon.
	s.mustCall(t, http.StatusOK, "PUT", "/v2/groups/rb", `{"version":"`+v1.Version+`","scaleBy":3}`, &v3)
	if v3.DeploymentID == "" || v3.Version <= v2.Version {
		t.Fatalf("rollback answered %+v", v3)
	}
	a := s.waitSettled(t, "/rb/a", 1, false)
	if a.Cmd != "sleep 1000" {
		t.Fatalf("a after the rollback: %q", a.Cmd)
	}
	s.waitSettled(t, "/rb/b", 1, false)
	x := s.waitSettled(t, "/rb/sub/x", 1, false)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		return s.call(t, "GET", "/v2/apps/rb/c", "", nil) == http.StatusNotFound
	}, "c gone after the rollback")
	var g groupView
	s.mustCall(t, http.StatusOK, "GET", "/v2/groups/rb", "", &g)
	if len(g.Apps) != 2 || len(g.Groups) != 1 || g.Groups[0].ID != "/rb/sub" {
		t.Fatalf("group after the rollback: %+v", g)
	}
	var full struct {
		App struct{ Dependencies []string }
	}
	s.mustCall(t, http.StatusOK, "GET", "/v2/apps/rb/sub/x", "", &full)
	if !slices.Equal(full.App.Dependencies, []string{"/rb/a"}) || x.Version != v3.Version {
		t.Fatalf("x after the rollback: %+v, version %s, want %s", full.App, x.Version, v3.Version)
	}
	s.mustCall(t, http.StatusOK, "GET", "/v2/groups/rb/versions", "", &versions)
	if !slices.Equal(versions, []string{v3.Version, v2.Version, v1.Version}) {
		t.Fatalf("versions after the rollback %v", versions)
	}

	s.mustCall(t, http.StatusOK, "DELETE", "/v2/groups/rb", "", nil)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		return s.call(t, "GET", "/v2/groups/rb/versions", "", nil) == http.StatusNotFound
	}, "the versions of a deleted group gone")
	if code := s.call(t, "PUT", "/v2/groups/rb", `{"version":"`+v1.Version+`"}`, nil); code != http.StatusNotFound {
		t.Fatalf("rollback of a deleted group: %d", code)
	}
}
