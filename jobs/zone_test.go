package jobs

import (
	"errors"
	"testing"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// TestLoadZone: scheduleTimeZone in each form Chronos (Java's
// TimeZone.getTimeZone) reads: tz database names, Java's three-letter ids
// and GMT offsets; what Java does not know (it would answer GMT, which
// Chronos refuses) and what would reach outside the zoneinfo directories
// are refused.
func TestLoadZone(t *testing.T) {
	july := time.Date(2024, 7, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		tz     string
		offset int // in July 2024, seconds east of UTC
	}{
		{"UTC", 0},
		{"GMT", 0},
		{"America/Los_Angeles", -7 * 3600},
		{"PST", -7 * 3600}, // America/Los_Angeles, with its summer time
		{"EST", -5 * 3600}, // fixed, no summer time
		{"MST", -7 * 3600},
		{"HST", -10 * 3600},
		{"IST", 5*3600 + 1800},
		{"ECT", 2 * 3600},
		{"GMT+2", 2 * 3600},
		{"GMT-08", -8 * 3600},
		{"GMT+0530", 5*3600 + 1800},
		{"GMT+530", 5*3600 + 1800},
		{"GMT+05:30", 5*3600 + 1800},
		{"GMT-9:30", -(9*3600 + 1800)},
		{"Etc/GMT+5", -5 * 3600},
		{"EST5EDT", -4 * 3600},
	} {
		l, err := LoadZone(c.tz)
		if err != nil {
			t.Errorf("LoadZone(%q): %v", c.tz, err)
			continue
		}
		if _, off := july.In(l).Zone(); off != c.offset {
			t.Errorf("LoadZone(%q): offset %d in July, want %d", c.tz, off, c.offset)
		}
	}
	for _, tz := range []string{"BOGUS", "Local", "GMT+24", "GMT+1:5", "GMT+12345", "GMT+160", "GMT+ab", "GMT+", "../../../etc/passwd", "/etc/localtime",
		"America/../../etc/passwd", "XYZ"} {
		if l, err := LoadZone(tz); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("LoadZone(%q) = %v, %v; want refused", tz, l, err)
		}
	}
	// A schedule in PST runs at the wall-clock time it names there.
	sc, err := ParseSchedule("R/2024-07-01T09:00:00Z/P1D", "PST", july)
	if err != nil {
		t.Fatal(err)
	}
	if got := sc.At(0).UTC(); !got.Equal(time.Date(2024, 7, 1, 16, 0, 0, 0, time.UTC)) {
		t.Errorf("09:00 PST in July = %v UTC, want 16:00", got)
	}
}
