package jobs

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/httpauth"
)

// newTestService is a Service on a store in a temporary directory, not
// running: its API works, nothing is launched.
func newTestService(t *testing.T) (*Service, *frameworks.LocalStore) {
	t.Helper()
	st, err := frameworks.OpenLocalStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := New(context.Background(), Config{Master: "127.0.0.1:1", Hostname: "jobs.example", Store: st})
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

func do(t *testing.T, h http.Handler, method, path, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	b, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(b)
}

func TestAPI(t *testing.T) {
	s, st := newTestService(t)
	h := s.Handler()
	steps := []struct {
		method, path, body string
		code               int
		says               string
	}{
		{"GET", "/ping", "", 200, "pong"},
		{"GET", "/scheduler/jobs", "", 200, "[]"},
		{"POST", "/scheduler/iso8601", `{"name":"a","command":"echo a","schedule":"R/2030-01-01T00:00:00Z/PT5M","owner":"bob@example.com"}`, 204, ""},
		{"POST", "/v1/scheduler/iso8601", `{"name":"b.x_1-2","command":"echo b","schedule":"R5//P1D","cpus":"0.5","mem":"64"}`, 204, ""},
		{"POST", "/scheduler/dependency", `{"name":"c","command":"echo c","parents":["a","b.x_1-2"]}`, 204, ""},
		{"PUT", "/v1/scheduler/dependency", `{"name":"d","command":"echo d","parents":["c"]}`, 204, ""},
		// Refusals, as Chronos answers them: 400 with the reason.
		{"POST", "/scheduler/iso8601", `{"name":"../x","command":"echo","schedule":"R//PT5M"}`, 400, "not allowed"},
		{"POST", "/scheduler/iso8601", `{"name":"..","command":"echo","schedule":"R//PT5M"}`, 400, "not allowed"},
		{"POST", "/scheduler/iso8601", `{"name":"e","command":"echo","schedule":"R/tomorrow/PT5M"}`, 400, "start"},
		{"POST", "/scheduler/iso8601", `{"name":"e","command":"echo","schedule":"R//PT5M","epsilon":"5m"}`, 400, "epsilon"},
		{"POST", "/scheduler/iso8601", `{"name":"e","command":"echo","parents":["a"]}`, 400, "needs a schedule"},
		{"POST", "/scheduler/dependency", `{"name":"e","command":"echo","parents":["nope"]}`, 400, "does not exist"},
		{"POST", "/scheduler/dependency", `{"name":"a","command":"echo","parents":["d"]}`, 400, "cycle"},
		{"POST", "/scheduler/dependency", `{"name":"e","command":"echo"}`, 400, "needs parents"},
		{"POST", "/scheduler/iso8601", `{"name":"e",`, 400, "not valid JSON"},
		{"POST", "/scheduler/iso8601", `{"name":"e","command":"echo","schedule":"R//PT5M","constraints":[["rack","NEAR","x"]]}`, 400, "EQUALS"},
		{"POST", "/scheduler/iso8601", `{"name":"e","command":"echo","schedule":"R//PT5M","constraints":[["rack","LIKE","("]]}`, 400, "regular expression"},
		{"DELETE", "/scheduler/job/nope", "", 400, "not found"},
		{"PUT", "/v1/scheduler/job/success/nope", "", 400, "not found"},
		{"PUT", "/v1/scheduler/job/success/a", "", 200, "true"},
		{"PUT", "/scheduler/job/nope", "", 400, "not found"},
		{"DELETE", "/scheduler/job/a", "", 400, "parent of [c]"},
		{"GET", "/scheduler/jobs/search?name=B.X", "", 200, `"name":"b.x_1-2"`},
		{"GET", "/scheduler/jobs/search?command=echo&limit=1&offset=1", "", 200, `"name":"b.x_1-2"`},
		{"GET", "/scheduler/jobs/search?any=zzz", "", 200, "[]"},
		{"GET", "/scheduler/jobs/search?limit=-1", "", 400, "limit"},
		{"GET", "/v1/scheduler/leader", "", 200, `{"leader":"jobs.example:8081"}`},
		{"GET", "/v1/scheduler/graph/dot", "", 200, "  \"a\" [fillcolor=green];\n  \"b.x_1-2\" [fillcolor=white];\n  \"c\" [fillcolor=white];\n  \"d\" [fillcolor=white];\n  \"a\" -> \"c\";\n  \"b.x_1-2\" -> \"c\";\n  \"c\" -> \"d\";\n}"},
		{"GET", "/scheduler/jobs/summary", "", 200, `{"jobs":[{"name":"a","status":"success","state":"idle","schedule":"R/2030-01-01T00:00:00.000Z/PT5M","parents":[],"disabled":false},`},
		{"PUT", "/scheduler/job/d", "", 204, ""},
		{"GET", "/scheduler/jobs/summary", "", 200, `{"name":"d","status":"fresh","state":"queued","schedule":"","parents":["c"],"disabled":false}`},
		{"DELETE", "/scheduler/job/d", "", 204, ""},
		{"GET", "/scheduler/bogus", "", 404, ""},
	}
	for _, st := range steps {
		code, body := do(t, h, st.method, st.path, st.body)
		if code != st.code || !strings.Contains(body, st.says) {
			t.Fatalf("%s %s %s: %d %q; want %d with %q", st.method, st.path, st.body, code, body, st.code, st.says)
		}
	}
	// A form body is not JSON: refused before it changes anything.
	req := httptest.NewRequest("POST", "/scheduler/iso8601", strings.NewReader(`{"name":"f","command":"x","schedule":"R//PT5M"}`))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnsupportedMediaType {
		t.Fatalf("form body: %d", rec.Code)
	}
	big := `{"name":"g","command":"` + strings.Repeat("x", 2<<20) + `","schedule":"R//PT5M"}`
	if code, _ := do(t, h, "POST", "/scheduler/iso8601", big); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 MiB body: %d", code)
	}

	_, body := do(t, h, "GET", "/scheduler/jobs", "")
	var jobs []map[string]any
	if err := json.Unmarshal([]byte(body), &jobs); err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 3 {
		t.Fatalf("jobs: %s", body)
	}
	a, b := jobs[0], jobs[1]
	if a["name"] != "a" || a["shell"] != true || a["retries"] != 2.0 || a["cpus"] != 0.1 || a["epsilon"] != "PT60S" || a["owner"] != "bob@example.com" {
		t.Fatalf("defaults of a: %v", a)
	}
	if args, ok := a["arguments"].([]any); !ok || len(args) != 0 {
		t.Fatalf("arguments of a: %v, want []", a["arguments"])
	}
	if a["successCount"] != 1.0 || a["lastSuccess"] == "" {
		t.Fatalf("a marked successful: %v", a)
	}
	if b["cpus"] != 0.5 || b["mem"] != 64.0 || !strings.HasPrefix(b["schedule"].(string), "R5/20") {
		t.Fatalf("b: %v (an empty start is resolved to now)", b)
	}

	// The jobs survive a restart.
	s2, err := New(context.Background(), Config{Master: "127.0.0.1:1", Hostname: "h", Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if j, ok := s2.Job("c"); !ok || len(j.Parents) != 2 {
		t.Fatalf("after a restart, c = %+v, %v", j, ok)
	}
}

// TestListJSON: GET /scheduler/jobs, built from each job's kept JSON, is
// what encoding the jobs afresh gives, before and after jobs change.
func TestListJSON(t *testing.T) {
	s, _ := newTestService(t)
	ctx := context.Background()
	check := func() {
		t.Helper()
		want, _ := json.Marshal(s.sortedJobs())
		code, got := do(t, s.Handler(), "GET", "/scheduler/jobs", "")
		if code != 200 || got != string(want) {
			t.Fatalf("GET /scheduler/jobs: %d\n%s\nwant\n%s", code, got, want)
		}
	}
	check()
	for _, name := range []string{"b", "a", "c"} {
		j, _ := DecodeJob([]byte(`{"name":"` + name + `","command":"echo <a&b>","schedule":"R/2030-01-01T00:00:00Z/PT5M"}`))
		if err := s.AddJob(ctx, j, true); err != nil {
			t.Fatal(err)
		}
	}
	check()
	if err := s.MarkSuccess(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	check()
	if err := s.DeleteJob(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	check()
}

// TestCredentials: with --http_credentials every path but /ping, the page
// among them, wants HTTP Basic with them.
func TestCredentials(t *testing.T) {
	st, err := frameworks.OpenLocalStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := New(context.Background(), Config{Master: "127.0.0.1:1", Hostname: "jobs.example", Store: st,
		Credentials: []httpauth.Credential{{Principal: "ops", Secret: "s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, user, pass string
		code             int
	}{
		{"/ping", "", "", 200},
		{"/scheduler/jobs", "", "", 401},
		{"/v1/scheduler/jobs", "ops", "wrong", 401},
		{"/", "", "", 401},
		{"/scheduler/jobs", "ops", "s3cret", 200},
		{"/", "ops", "s3cret", 200},
	} {
		req := httptest.NewRequest("GET", c.path, nil)
		if c.user != "" {
			req.SetBasicAuth(c.user, c.pass)
		}
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != c.code {
			t.Errorf("GET %s as %q: %d, want %d", c.path, c.user, rec.Code, c.code)
		}
		if c.code == 401 && rec.Header().Get("WWW-Authenticate") != `Basic realm="chronos"` {
			t.Errorf("GET %s: challenge %q", c.path, rec.Header().Get("WWW-Authenticate"))
		}
	}
}

// Job names as Chronos allows them, spaces and '#' among them, go through
// the API (escaped in paths as any client escapes them) and come back in
// task ids; tabs, line breaks and ':' (the task id's separator) are
// refused.
func TestJobNamesWithSpacesAndHash(t *testing.T) {
	s, _ := newTestService(t)
	h := s.Handler()
	const name = "nightly backup #2"
	if code, b := do(t, h, "POST", "/scheduler/iso8601", `{"name":"`+name+`","command":"true","schedule":"R/2030-01-01T00:00:00Z/P1D"}`); code != 204 {
		t.Fatalf("POST: %d %s", code, b)
	}
	if code, b := do(t, h, "GET", "/scheduler/jobs/search?name="+url.QueryEscape("backup #2"), ""); code != 200 || !strings.Contains(b, `"name":"`+name+`"`) {
		t.Fatalf("search: %d %s", code, b)
	}
	if code, b := do(t, h, "GET", "/scheduler/job/stat/"+url.PathEscape(name), ""); code != 200 {
		t.Fatalf("stat: %d %s", code, b)
	}
	id := TaskID(name, 1, time.Now())
	if job, attempt, ok := ParseTaskID(id); !ok || job != name || attempt != 1 {
		t.Errorf("ParseTaskID(%q) = %q, %d, %v", id, job, attempt, ok)
	}
	if code, b := do(t, h, "DELETE", "/scheduler/job/"+url.PathEscape(name), ""); code != 204 {
		t.Fatalf("DELETE: %d %s", code, b)
	}
	for _, bad := range []string{`tab\there`, `line\nbreak`, `colon:name`, `slash/name`} {
		if code, b := do(t, h, "POST", "/scheduler/iso8601", `{"name":"`+bad+`","command":"true","schedule":"R//P1D"}`); code != 400 || !strings.Contains(b, "not allowed") {
			t.Errorf("name %q: %d %s, want 400", bad, code, b)
		}
	}
}
