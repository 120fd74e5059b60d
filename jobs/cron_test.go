package jobs

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// TestCronNext: the next run of UNIX cron expressions as Chronos 3 takes
// them, in UTC and in a job's zone: steps, ranges, lists, names, the two
// day fields (either matching when both are restricted), nicknames, and
// the days the clocks change (a wall-clock time that repeats runs once).
func TestCronNext(t *testing.T) {
	ny, err := LoadZone("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	saoPaulo, err := LoadZone("America/Sao_Paulo")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		expr  string
		loc   *time.Location
		after string
		want  []string // the next runs, in order
	}{
		{"* * * * *", time.UTC, "2026-12-02T15:00:30Z", []string{"2026-12-02T15:01:00Z", "2026-12-02T15:02:00Z"}},
		{"*/15 * * * *", time.UTC, "2026-12-02T15:00:00Z", []string{"2026-12-02T15:15:00Z", "2026-12-02T15:30:00Z", "2026-12-02T15:45:00Z", "2026-12-02T16:00:00Z"}},
		{"5/20 9-10 * * *", time.UTC, "2026-12-02T09:30:00Z", []string{"2026-12-02T09:45:00Z", "2026-12-02T10:05:00Z", "2026-12-02T10:25:00Z", "2026-12-02T10:45:00Z", "2026-12-03T09:05:00Z"}},
		{"0 0 1,15 * *", time.UTC, "2026-12-02T00:00:00Z", []string{"2026-12-15T00:00:00Z", "2027-01-01T00:00:00Z"}},
		{"30 8 * * MON-FRI", time.UTC, "2026-12-04T09:00:00Z", []string{"2026-12-07T08:30:00Z", "2026-12-08T08:30:00Z"}}, // Friday, then Monday
		{"0 12 * * 7", time.UTC, "2026-12-02T00:00:00Z", []string{"2026-12-06T12:00:00Z"}},                               // 7 is Sunday
		{"0 0 13 * FRI", time.UTC, "2026-11-01T00:00:00Z", []string{"2026-11-06T00:00:00Z", "2026-11-13T00:00:00Z", "2026-11-20T00:00:00Z"}},
		{"0 6 * FEB,mar *", time.UTC, "2026-12-02T00:00:00Z", []string{"2027-02-01T06:00:00Z"}},
		{"@daily", time.UTC, "2026-12-02T15:00:00Z", []string{"2026-12-03T00:00:00Z"}},
		{"@hourly", time.UTC, "2026-12-02T15:00:00Z", []string{"2026-12-02T16:00:00Z"}},
		{"0 0 29 2 *", time.UTC, "2026-12-02T00:00:00Z", []string{"2028-02-29T00:00:00Z"}},
		{"0 9 * * *", ny, "2026-12-02T15:00:00Z", []string{"2026-12-03T14:00:00Z"}}, // 09:00 EST
		{"0 9 * * *", ny, "2026-07-02T14:00:00Z", []string{"2026-07-03T13:00:00Z"}}, // 09:00 EDT
		// 01:30 comes twice on 2026-11-01 in New York; a fixed time runs
		// at the first.
		{"30 1 * * *", ny, "2026-11-01T04:00:00Z", []string{"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		// Through the repeated hour, the others run on the clock as it
		// goes: 01:40 EDT, 01:00 EST, 01:20 EST...
		{"*/20 * * * *", ny, "2026-11-01T05:30:00Z", []string{"2026-11-01T05:40:00Z", "2026-11-01T06:00:00Z", "2026-11-01T06:20:00Z"}},
		{"0 * * * *", ny, "2026-11-01T05:00:00Z", []string{"2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z"}},
		// 02:30 does not come on 2026-03-08 in New York: a fixed time runs
		// just after the change, at 03:30 EDT; hourly skips the hour.
		{"30 2 * * *", ny, "2026-03-07T12:00:00Z", []string{"2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z"}},
		{"0 * * * *", ny, "2026-03-08T06:30:00Z", []string{"2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"}},
		// Midnight did not come on 2018-11-04 in São Paulo: 01:00 -02 then.
		{"0 0 * * *", saoPaulo, "2018-11-03T12:00:00Z", []string{"2018-11-04T03:00:00Z", "2018-11-05T02:00:00Z"}},
	} {
		after, err := time.Parse(time.RFC3339, c.after)
		if err != nil {
			t.Fatal(err)
		}
		cr, err := ParseCron(c.expr)
		if err != nil {
			t.Errorf("ParseCron(%q): %v", c.expr, err)
			continue
		}
		for _, w := range c.want {
			next, ok := cr.Next(after, c.loc)
			if !ok || !next.UTC().Equal(mustTime(t, w)) {
				t.Errorf("%q after %s = %s (%v), want %s", c.expr, after.UTC().Format(time.RFC3339), next.UTC().Format(time.RFC3339), ok, w)
				break
			}
			after = next
		}
	}
	if _, ok := mustCron(t, "0 0 30 2 *").Next(time.Now(), time.UTC); ok {
		t.Error("February 30th has a next run")
	}
}

func mustCron(t *testing.T, s string) *Cron {
	t.Helper()
	c, err := ParseCron(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestCronRefused: malformed cron expressions are refused saying what is
// wrong, as is one that names no time at all.
func TestCronRefused(t *testing.T) {
	now := time.Now()
	for _, c := range []struct{ expr, says string }{
		{"* * * *", "4 fields"},
		{"* * * * * *", "6 fields"},
		{"60 * * * *", "minute"},
		{"* 24 * * *", "hour"},
		{"* * 0 * *", "day of month"},
		{"* * * 13 *", "month"},
		{"* * * * 8", "day of week"},
		{"*/0 * * * *", "step"},
		{"5-1 * * * *", "backwards"},
		{"* * * FOO *", "month"},
		{"+5 * * * *", "minute"},
		{"@reboot", "nickname"},
		{"0 0 30 2 *", "no time"},
		{strings.Repeat("1,", 150) + "1 * * * *", "longer than"},
	} {
		_, err := ParseSchedule(c.expr, "", now)
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("ParseSchedule(%q) = %v, want ErrInvalid saying %q", c.expr, err, c.says)
		}
	}
}

// TestTickCron: a job with a cron schedule runs at the times it names, its
// schedule text staying as given and its next run kept in nextCronRun; a
// run missed by more than epsilon is skipped to the next time after now;
// an update that keeps the schedule keeps the next run; a service that
// starts again on the same store (a restart, a new leader) neither repeats
// nor loses the run due. (Concurrent, so that a run still queued does
// not hold the next back.)
func TestTickCron(t *testing.T) {
	s, st := newTestService(t)
	ctx := context.Background()
	j, err := DecodeJob([]byte(`{"name":"every5","command":"true","schedule":"*/5 * * * *","epsilon":"PT1M","concurrent":true}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddJob(ctx, j, true); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Job("every5")
	first, err := time.Parse(time.RFC3339Nano, got.NextCronRun)
	if err != nil || got.Schedule != "*/5 * * * *" || first.Minute()%5 != 0 || first.Second() != 0 || !first.After(time.Now().Add(-time.Second)) {
		t.Fatalf("after adding: schedule %q, nextCronRun %q (%v)", got.Schedule, got.NextCronRun, err)
	}
	// An update of its command keeps the next run.
	j2, _ := DecodeJob([]byte(`{"name":"every5","command":"echo updated","schedule":"*/5 * * * *","epsilon":"PT1M","concurrent":true}`))
	if err := s.AddJob(ctx, j2, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Job("every5"); got.NextCronRun != first.UTC().Format(timeFormat) {
		t.Fatalf("nextCronRun after an update %q, want %s", got.NextCronRun, first.UTC().Format(timeFormat))
	}

	s.tick(ctx, first.Add(-time.Second))
	if len(s.runs.queue) != 0 {
		t.Fatalf("%d runs queued before the first is due", len(s.runs.queue))
	}
	s.tick(ctx, first.Add(time.Second))
	if len(s.runs.queue) != 1 {
		t.Fatalf("%d runs queued when the first is due, want 1", len(s.runs.queue))
	}
	got, _ = s.Job("every5")
	if got.Schedule != "*/5 * * * *" || got.NextCronRun != first.Add(5*time.Minute).UTC().Format(timeFormat) {
		t.Fatalf("after the first run: schedule %q, nextCronRun %q", got.Schedule, got.NextCronRun)
	}

	// A new service on the same store (as after a restart) takes the next
	// run from the store: not due before it, due at it.
	s2, err := New(ctx, Config{Master: "127.0.0.1:1", Hostname: "jobs.example", Store: st})
	if err != nil {
		t.Fatal(err)
	}
	second := first.Add(5 * time.Minute)
	s2.tick(ctx, second.Add(-time.Second))
	queuedOf := func(s *Service) int {
		n := 0
		for _, r := range s.runs.queue {
			if r.job == "every5" {
				n++
			}
		}
		return n
	}
	before := queuedOf(s2) // the first run, restored from the store
	s2.tick(ctx, second.Add(30*time.Second))
	if queuedOf(s2) != before+1 {
		t.Fatalf("runs of every5 queued at its second time: %d, want %d", queuedOf(s2), before+1)
	}
	// Missed by more than epsilon (a minute): skipped to the next time.
	third := second.Add(5 * time.Minute)
	late := third.Add(7 * time.Minute)
	n := queuedOf(s2)
	s2.tick(ctx, late)
	if queuedOf(s2) != n {
		t.Fatalf("a run missed by 7 minutes was queued")
	}
	if got, _ := s2.Job("every5"); got.NextCronRun != third.Add(10*time.Minute).UTC().Format(timeFormat) {
		t.Fatalf("after a missed run: nextCronRun %q, want %s", got.NextCronRun, third.Add(10*time.Minute).UTC().Format(timeFormat))
	}
}
