package jobs

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestParsePeriod(t *testing.T) {
	tests := []struct {
		in   string
		want Period
	}{
		{"PT5M", Period{Clock: 5 * time.Minute}},
		{"P1DT2H", Period{Days: 1, Clock: 2 * time.Hour}},
		{"P10M", Period{Months: 10}},
		{"PT10M", Period{Clock: 10 * time.Minute}},
		{"P1Y12M12D", Period{Years: 1, Months: 12, Days: 12}},
		{"P12DT12M", Period{Days: 12, Clock: 12 * time.Minute}},
		{"P1Y2M3DT4H5M6S", Period{Years: 1, Months: 2, Days: 3, Clock: 4*time.Hour + 5*time.Minute + 6*time.Second}},
		{"P2W", Period{Days: 14}},
		{"PT1.5S", Period{Clock: 1500 * time.Millisecond}},
		{"PT0,5S", Period{Clock: 500 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParsePeriod(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("ParsePeriod(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			back, err := ParsePeriod(got.String())
			if err != nil || back != got {
				t.Fatalf("round trip through %q: %+v, %v", got.String(), back, err)
			}
		})
	}
	for _, in := range []string{"", "P", "PT", "T5M", "5M", "PT5", "P5H", "PT5D", "PM5", "P1.5D", "PT5M3H", "P1D1Y", "PTT5M", "P-1D", "PT5X", "pt5m", "P99999999Y"} {
		t.Run("bad "+in, func(t *testing.T) {
			if p, err := ParsePeriod(in); !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("ParsePeriod(%q) = %+v, %v; want ErrInvalid", in, p, err)
			}
		})
	}
}

func TestParseSchedule(t *testing.T) {
	now := mustTime(t, "2026-12-02T15:00:00Z")
	tests := []struct {
		in, tz    string
		repeat    int
		start     string
		period    Period
		startZone string
	}{
		{in: "R/2015-01-16T05:00:00Z/PT5M", repeat: Forever, start: "2015-01-16T05:00:00Z", period: Period{Clock: 5 * time.Minute}},
		{in: "R5/2026-12-02T10:00:00Z/P1DT2H", repeat: 5, start: "2026-12-02T10:00:00Z", period: Period{Days: 1, Clock: 2 * time.Hour}},
		{in: "R0/2026-12-02T10:00:00Z/PT1H", repeat: 0, start: "2026-12-02T10:00:00Z", period: Period{Clock: time.Hour}},
		{in: "R//PT2S", repeat: Forever, start: "2026-12-02T15:00:00Z", period: Period{Clock: 2 * time.Second}},
		{in: "R10/2012-10-01T05:52:00Z/PT2S", repeat: 10, start: "2012-10-01T05:52:00Z", period: Period{Clock: 2 * time.Second}},
		{in: "R/2014-03-08T20:00:00.000Z/PT2H", repeat: Forever, start: "2014-03-08T20:00:00Z", period: Period{Clock: 2 * time.Hour}},
		{in: "R/1997-07-16T19:20:30.45+01:00/P1D", repeat: Forever, start: "1997-07-16T18:20:30.45Z", period: Period{Days: 1}},
		{in: "R/2026-12-02T10:00:00/PT1H", repeat: Forever, start: "2026-12-02T10:00:00Z", period: Period{Clock: time.Hour}},
		// scheduleTimeZone wins over the zone in start: 18:32 is read in
		// Los Angeles (UTC-8 in December).
		{in: "R/2026-12-10T18:32:00Z/PT60M", tz: "America/Los_Angeles", repeat: Forever, start: "2026-12-11T02:32:00Z", period: Period{Clock: time.Hour}, startZone: "America/Los_Angeles"},
	}
	for _, tt := range tests {
		t.Run(tt.in+" "+tt.tz, func(t *testing.T) {
			sc, err := ParseSchedule(tt.in, tt.tz, now)
			if err != nil {
				t.Fatal(err)
			}
			if sc.Repeat != tt.repeat || !sc.Start.Equal(mustTime(t, tt.start)) || sc.Period != tt.period {
				t.Fatalf("got %+v, want repeat %d start %s period %+v", sc, tt.repeat, tt.start, tt.period)
			}
			if tt.startZone != "" && sc.Start.Location().String() != tt.startZone {
				t.Fatalf("start zone %s, want %s", sc.Start.Location(), tt.startZone)
			}
			back, err := ParseSchedule(sc.String(), tt.tz, now)
			if err != nil || back.Repeat != sc.Repeat || !back.Start.Equal(sc.Start) || back.Period != sc.Period {
				t.Fatalf("round trip through %q: %+v, %v", sc.String(), back, err)
			}
		})
	}
	bad := []struct{ in, tz, says string }{
		{"", "", "0 fields"},
		{"R/PT5M", "", "parts"},
		{"R/2015-01-16T05:00:00Z/PT5M/x", "", "parts"},
		{"X/2015-01-16T05:00:00Z/PT5M", "", "or a cron expression"},
		{"R-1/2015-01-16T05:00:00Z/PT5M", "", "count"},
		{"R+1/2015-01-16T05:00:00Z/PT5M", "", "count"},
		{"Rx/2015-01-16T05:00:00Z/PT5M", "", "count"},
		{"R/2015-13-16T05:00:00Z/PT5M", "", "start"},
		{"R/yesterday/PT5M", "", "start"},
		{"R/2015-01-16T05:00:00Z/", "", "period"},
		{"R/2015-01-16T05:00:00Z/5M", "", "period"},
		{"R/2015-01-16T05:00:00Z/PT0S", "", "zero"},
		{"R/2015-01-16T05:00:00Z/PT0.5S", "", "under a second"},
		{"R/2015-01-16T05:00:00Z/PT5M", "Mars/Olympus", "scheduleTimeZone"},
		{"R/2015-01-16T05:00:00Z/PT5M", "../../etc/passwd", "scheduleTimeZone"},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.in+" "+tt.tz, func(t *testing.T) {
			sc, err := ParseSchedule(tt.in, tt.tz, now)
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("ParseSchedule(%q, %q) = %+v, %v; want ErrInvalid saying %q", tt.in, tt.tz, sc, err, tt.says)
			}
		})
	}
}

func TestScheduleNext(t *testing.T) {
	now := mustTime(t, "2026-12-02T15:00:00Z")
	tests := []struct {
		sched, tz, at string
		want          string // "" : none left
		k, left       int
	}{
		{"R/2015-01-16T05:00:00Z/PT5M", "", "2015-01-16T04:00:00Z", "2015-01-16T05:00:00Z", 0, Forever},
		{"R/2015-01-16T05:00:00Z/PT5M", "", "2015-01-16T05:00:00Z", "2015-01-16T05:00:00Z", 0, Forever},
		{"R/2015-01-16T05:00:00Z/PT5M", "", "2015-01-16T05:00:01Z", "2015-01-16T05:05:00Z", 1, Forever},
		{"R/2015-01-16T05:00:00Z/PT5M", "", "2026-12-02T15:02:00Z", "2026-12-02T15:05:00Z", 1249465, Forever},
		{"R5/2026-12-02T10:00:00Z/P1DT2H", "", "2026-12-02T10:00:00Z", "2026-12-02T10:00:00Z", 0, 5},
		{"R5/2026-12-02T10:00:00Z/P1DT2H", "", "2026-12-03T11:00:00Z", "2026-12-03T12:00:00Z", 1, 4},
		{"R5/2026-12-02T10:00:00Z/P1DT2H", "", "2026-12-06T17:59:59Z", "2026-12-06T18:00:00Z", 4, 1},
		{"R5/2026-12-02T10:00:00Z/P1DT2H", "", "2026-12-06T18:00:01Z", "", 5, 0},
		{"R0/2026-12-02T10:00:00Z/PT1H", "", "2020-01-01T00:00:00Z", "", 0, 0},
		{"R/2026-01-31T00:00:00Z/P1M", "", "2026-02-01T00:00:00Z", "2026-03-03T00:00:00Z", 1, Forever},
		{"R/2000-02-29T12:00:00Z/P1Y", "", "2026-06-01T00:00:00Z", "2027-03-01T12:00:00Z", 27, Forever},
		// P1D in a zone keeps the wall clock over the DST change of
		// 2026-03-08 in Los Angeles: 09:00 local is 17:00Z, then 16:00Z.
		{"R/2026-03-07T09:00:00/P1D", "America/Los_Angeles", "2026-03-07T18:00:00Z", "2026-03-08T16:00:00Z", 1, Forever},
	}
	for _, tt := range tests {
		t.Run(tt.sched+" at "+tt.at, func(t *testing.T) {
			sc, err := ParseSchedule(tt.sched, tt.tz, now)
			if err != nil {
				t.Fatal(err)
			}
			at := mustTime(t, tt.at)
			got, k, ok := sc.Next(at)
			if tt.want == "" {
				if ok {
					t.Fatalf("Next = %s (k %d), want none", got, k)
				}
			} else if !ok || !got.Equal(mustTime(t, tt.want)) || k != tt.k {
				t.Fatalf("Next = %s, %d, %v; want %s, %d", got.UTC(), k, ok, tt.want, tt.k)
			}
			if left := sc.RunsLeft(at); left != tt.left {
				t.Fatalf("RunsLeft = %d, want %d", left, tt.left)
			}
		})
	}
}
