package jobs

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTickEpsilonAndRepeats(t *testing.T) {
	s, _ := newTestService(t)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	add := func(name, sched, eps string) {
		t.Helper()
		j, err := DecodeJob([]byte(`{"name":"` + name + `","command":"true","schedule":"` + sched + `","epsilon":"` + eps + `"}`))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.AddJob(ctx, j, true); err != nil {
			t.Fatal(err)
		}
	}
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	add("due", "R3/"+at(-10*time.Second)+"/PT1M", "PT1M")
	add("missed", "R/"+at(-10*time.Minute)+"/PT3M", "PT30S")
	add("later", "R/"+at(time.Hour)+"/PT1M", "PT1M")
	add("done", "R0/"+at(-time.Second)+"/PT1M", "PT1M")
	s.tick(ctx, now)

	queued := map[string]int{}
	for _, r := range s.runs.queue {
		queued[r.job]++
	}
	if queued["due"] != 1 || len(queued) != 1 {
		t.Fatalf("queued %v, want one run of due", queued)
	}
	check := func(name, want string) {
		t.Helper()
		j, _ := s.Job(name)
		if !strings.HasPrefix(j.Schedule, want) {
			t.Fatalf("%s: schedule %s, want %s...", name, j.Schedule, want)
		}
	}
	check("due", "R2/"+now.Add(50*time.Second).Format("2006-01-02T15:04:05"))
	// Missed by more than epsilon: skipped to the next run, at +2m.
	check("missed", "R/"+now.Add(2*time.Minute).Format("2006-01-02T15:04:05"))
	check("later", "R/"+now.Add(time.Hour).Format("2006-01-02T15:04:05"))
	check("done", "R0/")

	// Due again while its run is still queued: it waits (no second run).
	s.tick(ctx, now.Add(51*time.Second))
	if len(s.runs.queue) != 1 {
		t.Fatalf("%d runs queued, want the one", len(s.runs.queue))
	}
	check("due", "R2/")
}

func TestTaskID(t *testing.T) {
	if got := TaskID("nightly", 1, time.UnixMilli(1428515194358)); got != "ct:1428515194358:1:nightly:" {
		t.Fatal(got)
	}
	for id, want := range map[string]string{
		"ct:1428515194358:1:nightly:": "nightly/1",
		"ct:1:0:a.b_c-d:":             "a.b_c-d/0",
		"ct:x:0:a:":                   "",
		"ct:1:0:a":                    "",
		"ct:1:0:a:b:":                 "",
		"ct:1:-1:a:":                  "",
		"ct:1:0:..:":                  "",
		"app.1234":                    "",
	} {
		job, attempt, ok := ParseTaskID(id)
		if got := job + "/" + strconv.Itoa(attempt); ok != (want != "") || ok && got != want {
			t.Errorf("ParseTaskID(%q) = %s, %v; want %q", id, got, ok, want)
		}
	}
}

func TestRetryBackoff(t *testing.T) {
	s := &Service{cfg: Config{RetryBackoff: 10 * time.Second}}
	for attempt, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 3: 40 * time.Second, 6: 320 * time.Second, 7: MaxRetryBackoff, 60: MaxRetryBackoff} {
		if got := s.retryBackoff(attempt); got != want {
			t.Errorf("retryBackoff(%d) = %s, want %s", attempt, got, want)
		}
	}
}
