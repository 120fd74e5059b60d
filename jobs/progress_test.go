package jobs

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestProgress: a data processing job's run reports its progress; the
// counts add up, the message is the latest, both are stored with the run
// and shown by the job's stats; what does not fit is refused with a
// reason.
func TestProgress(t *testing.T) {
	s, st := newTestService(t)
	ctx := context.Background()
	h := s.Handler()
	for _, body := range []string{
		`{"name":"etl","command":"etl.sh","schedule":"R/2030-01-01T00:00:00Z/P1D","dataProcessingJobType":true}`,
		`{"name":"plain","command":"true","schedule":"R/2030-01-01T00:00:00Z/P1D"}`,
	} {
		if code, b := do(t, h, "POST", "/scheduler/iso8601", body); code != 204 {
			t.Fatalf("adding a job: %d %s", code, b)
		}
	}
	// Runs in flight, as an offer would have launched them.
	now := time.Now()
	launch := func(job string) string {
		t.Helper()
		s.mu.Lock()
		defer s.mu.Unlock()
		r := s.newRunLocked(s.jobs[job], 0, "", now)
		r.taskID, r.agentID, r.state, r.startedAt = TaskID(job, 0, now), "agent-1", runRunning, now
		s.runs.byTask[r.taskID] = r
		if err := s.store.Apply(ctx, putRun(r)); err != nil {
			t.Fatal(err)
		}
		return r.taskID
	}
	etl, plain := launch("etl"), launch("plain")
	gone := TaskID("etl", 3, now.Add(-time.Hour))

	steps := []struct {
		path, body string
		code       int
		says       string
	}{
		{"/scheduler/job/etl/task/" + etl + "/progress", `{"numAdditionalElementsProcessed": 5}`, 204, ""},
		{"/v1/scheduler/task/" + strings.ReplaceAll(etl, ":", "%3A") + "/progress", `{"numAdditionalElementsProcessed": 7, "statusMessage": "stage 2 of 3"}`, 204, ""},
		{"/scheduler/task/" + etl + "/progress", `{"statusMessage": "stage 3 of 3: loading"}`, 204, ""},
		{"/scheduler/task/" + etl + "/progress", `{"numAdditionalElementsProcessed": 0}`, 204, ""},
		// Refusals: 400 with Chronos's reasons.
		{"/scheduler/task/x1/progress", `{"numAdditionalElementsProcessed": 1}`, 400, "Invalid task id format"},
		{"/scheduler/job/plain/task/" + etl + "/progress", `{"numAdditionalElementsProcessed": 1}`, 400, "is not a run of job plain"},
		{"/scheduler/task/" + plain + "/progress", `{"numAdditionalElementsProcessed": 1}`, 400, "Job 'plain' is not enabled to track data"},
		{"/scheduler/task/" + TaskID("nosuch", 0, now) + "/progress", `{"numAdditionalElementsProcessed": 1}`, 400, "Job 'nosuch' not found"},
		{"/scheduler/task/" + gone + "/progress", `{"numAdditionalElementsProcessed": 1}`, 400, "is in flight"},
		{"/scheduler/task/" + etl + "/progress", `{"numAdditionalElementsProcessed": -1}`, 400, "must be 0 to"},
		{"/scheduler/task/" + etl + "/progress", `{"numAdditionalElementsProcessed": 2147483648}`, 400, "must be 0 to"},
		{"/scheduler/task/" + etl + "/progress", `{"numAdditionalElementsProcessed": 1.5}`, 400, "not {"},
		{"/scheduler/task/" + etl + "/progress", `{"numAdditionalElementsProcessed": "3"}`, 400, "not {"},
		{"/scheduler/task/" + etl + "/progress", ``, 400, "not {"},
		{"/scheduler/task/" + etl + "/progress", `{"statusMessage": "a\nFAKE LOG LINE"}`, 400, "control character"},
		{"/scheduler/task/" + etl + "/progress", `{"statusMessage": "` + strings.Repeat("x", maxStatusMessage+1) + `"}`, 400, "at most 1024"},
		{"/scheduler/task/" + etl + "/progress", `{"statusMessage": "` + strings.Repeat("x", maxProgressBody) + `"}`, 413, "larger than 4096"},
	}
	for _, step := range steps {
		code, body := do(t, h, "POST", step.path, step.body)
		if code != step.code || !strings.Contains(body, step.says) {
			t.Errorf("POST %s %.60s: %d %q, want %d with %q", step.path, step.body, code, body, step.code, step.says)
		}
	}
	code, body := do(t, h, "POST", "/scheduler/task/"+etl+"/progress", `{}`)
	if code != 204 {
		t.Errorf("an empty report: %d %s", code, body)
	}

	// The stats show the run in flight with its progress.
	var stat struct {
		History []runStat `json:"taskStatHistory"`
	}
	code, body = do(t, h, "GET", "/scheduler/job/stat/etl", "")
	if err := json.Unmarshal([]byte(body), &stat); code != 200 || err != nil {
		t.Fatalf("stat: %d %s %v", code, body, err)
	}
	if len(stat.History) != 1 || stat.History[0].TaskID != etl || stat.History[0].TaskState != "TASK_RUNNING" ||
		stat.History[0].Elements == nil || *stat.History[0].Elements != 12 || stat.History[0].StatusMessage != "stage 3 of 3: loading" {
		t.Fatalf("stat history %s, want the run with 12 elements and the last message", body)
	}

	// Stored with the run: a restart reads it back.
	s2, err := New(ctx, Config{Master: "127.0.0.1:1", Hostname: "jobs.example", Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if r := s2.runs.byTask[etl]; r == nil || r.progress.elements == nil || *r.progress.elements != 12 || r.progress.message != "stage 3 of 3: loading" {
		t.Fatalf("run read back: %+v", r)
	}

	// When the run ends, its progress stays in its stat.
	s.mu.Lock()
	r := s.runs.byTask[etl]
	s.finishRunLocked(ctx, r, s.jobs["etl"], true, "TASK_FINISHED", "")
	s.mu.Unlock()
	_, body = do(t, h, "GET", "/scheduler/job/stat/etl", "")
	if !strings.Contains(body, `"numElementsProcessed":12`) || !strings.Contains(body, `"taskState":"TASK_FINISHED"`) {
		t.Fatalf("stat after the end: %s", body)
	}
	if entries, _ := st.List(ctx, bucketRuns); len(entries) != 1 {
		t.Fatalf("%d runs stored, want plain's only", len(entries))
	}
}
