package jobs

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// Period is an ISO 8601 duration (PnYnMnWnDTnHnMnS). The calendar part
// (years, months, days; a week is seven days) is added with
// time.AddDate, in the schedule's zone, so P1D keeps the wall-clock time
// across a daylight saving change; the clock part is an exact duration.
type Period struct {
	Years, Months, Days int
	Clock               time.Duration
}

// IsZero says whether p adds nothing.
func (p Period) IsZero() bool { return p == Period{} }

// AddTo returns t plus n times p.
func (p Period) AddTo(t time.Time, n int) time.Time {
	return t.AddDate(n*p.Years, n*p.Months, n*p.Days).Add(time.Duration(n) * p.Clock)
}

// approx is p as a duration, for estimating how many periods fit in a
// span; never exact for calendar periods.
func (p Period) approx() time.Duration {
	const day = 24 * time.Hour
	return time.Duration(p.Years)*365*day + time.Duration(p.Years)*6*time.Hour +
		time.Duration(p.Months)*30*day + time.Duration(p.Months)*10*time.Hour +
		time.Duration(p.Days)*day + p.Clock
}

// ParsePeriod parses an ISO 8601 duration such as PT5M, P1DT2H or
// P1Y2M3DT4H5M6.5S (a fraction only on the seconds). It is the form of a
// schedule's period and of a job's epsilon.
func ParsePeriod(s string) (Period, error) {
	bad := func(why string) (Period, error) {
		return Period{}, fmt.Errorf("period %q: %s (want an ISO 8601 duration like PT5M or P1DT2H): %w", s, why, errdefs.ErrInvalid)
	}
	if !strings.HasPrefix(s, "P") {
		return bad("does not start with P")
	}
	rest := s[1:]
	if rest == "" {
		return bad("no amount after P")
	}
	var p Period
	inClock := false
	order := "YMWD" // designators allowed next, in order
	any := false
	for rest != "" {
		if rest[0] == 'T' {
			if inClock {
				return bad("T twice")
			}
			inClock, order, rest = true, "HMS", rest[1:]
			if rest == "" {
				return bad("nothing after T")
			}
			continue
		}
		i := 0
		for i < len(rest) && (rest[i] >= '0' && rest[i] <= '9' || rest[i] == '.' || rest[i] == ',') {
			i++
		}
		if i == 0 || i == len(rest) {
			return bad("a number must be followed by a designator")
		}
		num, unit := strings.ReplaceAll(rest[:i], ",", "."), rest[i]
		rest = rest[i+1:]
		at := strings.IndexByte(order, unit)
		if at < 0 {
			return bad(fmt.Sprintf("designator %q out of place (%s)", unit, map[bool]string{false: "Y, M, W, D before T", true: "H, M, S after T"}[inClock]))
		}
		order = order[at+1:]
		any = true
		if unit == 'S' && inClock {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil || f > 1e9 {
				return bad("seconds " + num + " is not a number")
			}
			p.Clock += time.Duration(f * float64(time.Second))
			continue
		}
		n, err := strconv.Atoi(num)
		if err != nil || n > 1_000_000 {
			return bad(num + " is not a whole number (a fraction is allowed on seconds only) or is too large")
		}
		switch {
		case !inClock && unit == 'Y':
			p.Years = n
		case !inClock && unit == 'M':
			p.Months = n
		case !inClock && unit == 'W':
			p.Days += 7 * n
		case !inClock && unit == 'D':
			p.Days += n
		case unit == 'H':
			p.Clock += time.Duration(n) * time.Hour
		case unit == 'M':
			p.Clock += time.Duration(n) * time.Minute
		}
	}
	if !any {
		return bad("no amount")
	}
	return p, nil
}

// Forever is Schedule.Repeat for R with no count.
const Forever = -1

// Schedule is a Chronos schedule: an ISO 8601 repeating interval
// R[n]/[start]/period, or a cron expression (Cron set; cron.go). Run k
// (from 0) is due at Start plus k periods, or at the k-th time after Start
// the cron expression names; with Repeat n ≥ 0 only runs 0..n-1 exist
// (R0: none left), with Forever (always so for cron) all do.
type Schedule struct {
	Repeat int
	Start  time.Time
	Period Period
	// Cron and Loc, for a cron schedule: its expression and the zone its
	// times are read in.
	Cron *Cron
	Loc  *time.Location
}

// startLayouts are the start forms accepted: RFC 3339 (with or without a
// fraction of a second) and, without a zone, local time of the schedule's
// zone (UTC unless scheduleTimeZone names one).
var startLayouts = []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04"}

// ParseSchedule parses R[n]/[start]/period. An empty start means now.
// tz, when not empty, is a zone as LoadZone reads it (scheduleTimeZone) and takes
// precedence over a zone in start: start's wall-clock time is read in tz,
// as Chronos does, and periods are added in that zone.
func ParseSchedule(s, tz string, now time.Time) (Schedule, error) {
	bad := func(format string, a ...any) (Schedule, error) {
		return Schedule{}, fmt.Errorf("schedule %q: %s (want R[n]/[start]/period, like R/2015-01-16T05:00:00Z/PT5M): %w", s, fmt.Sprintf(format, a...), errdefs.ErrInvalid)
	}
	loc := time.UTC
	if tz != "" {
		l, err := LoadZone(tz)
		if err != nil {
			return Schedule{}, fmt.Errorf("schedule %q: %w", s, err)
		}
		loc = l
	}
	if !isoSchedule(s) {
		// Chronos 3 reads anything else as a cron expression. Its first
		// run is the first time after now it names (the scheduler keeps
		// the next one in Job.NextCronRun from then on).
		c, err := ParseCron(s)
		if err != nil {
			return Schedule{}, err
		}
		first, ok := c.Next(now, loc)
		if !ok {
			return bad("the cron expression names no time in the next five years")
		}
		return Schedule{Repeat: Forever, Start: first, Cron: c, Loc: loc}, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return bad("%d parts separated by /, want 3", len(parts))
	}
	var sc Schedule
	r := parts[0]
	switch {
	case !strings.HasPrefix(r, "R"):
		return bad("the repetitions %q do not start with R", r)
	case r == "R":
		sc.Repeat = Forever
	default:
		n, err := strconv.Atoi(r[1:])
		if err != nil || n < 0 || r[1] == '+' {
			return bad("the repetitions %q are not R followed by a count", r)
		}
		sc.Repeat = n
	}
	if parts[1] == "" {
		sc.Start = now.In(loc)
	} else {
		var err error
		for _, layout := range startLayouts {
			var t time.Time
			if t, err = time.ParseInLocation(layout, parts[1], loc); err == nil {
				sc.Start = t
				break
			}
		}
		if err != nil {
			return bad("start %q is not an ISO 8601 date and time like 2015-01-16T05:00:00Z", parts[1])
		}
		if tz != "" {
			t := sc.Start
			sc.Start = time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), loc)
		}
	}
	p, err := ParsePeriod(parts[2])
	if err != nil {
		return Schedule{}, fmt.Errorf("schedule %q: %w", s, err)
	}
	if p.IsZero() {
		return bad("the period is zero")
	}
	if p.Years == 0 && p.Months == 0 && p.Days == 0 && p.Clock < time.Second {
		return bad("the period is under a second")
	}
	sc.Period = p
	return sc, nil
}

// isoSchedule says whether s is meant as R[n]/[start]/period: Chronos's
// test (R, digits, '/', anything, '/P'), loosened to anything starting
// with R and holding a '/' so that a mistyped one is told what is wrong
// with it as such, not as a cron expression.
func isoSchedule(s string) bool {
	return strings.HasPrefix(s, "R") && strings.Contains(s, "/")
}

// At is the due time of run k.
func (s Schedule) At(k int) time.Time {
	if s.Cron != nil {
		t := s.Start
		for ; k > 0; k-- {
			n, ok := s.Cron.Next(t, s.Loc)
			if !ok {
				return time.Time{}
			}
			t = n
		}
		return t
	}
	return s.Period.AddTo(s.Start, k)
}

// Next returns the first run due at or after t and its index k; ok is
// false when no run is left.
func (s Schedule) Next(t time.Time) (at time.Time, k int, ok bool) {
	if s.Cron != nil {
		if !t.After(s.Start) {
			return s.Start, 0, true
		}
		// The first at or after t: after the instant just before it.
		at, ok = s.Cron.Next(t.Add(-time.Nanosecond), s.Loc)
		return at, 1, ok
	}
	k = 0
	if t.After(s.Start) {
		k = int(t.Sub(s.Start) / s.Period.approx())
		// The estimate is near; step back below t, then forward.
		for k > 0 && !s.At(k).Before(t) {
			k--
		}
		for s.At(k).Before(t) {
			k++
		}
	}
	if s.Repeat != Forever && k >= s.Repeat {
		return time.Time{}, k, false
	}
	return s.At(k), k, true
}

// RunsLeft is how many runs are due at or after t: Forever for R.
func (s Schedule) RunsLeft(t time.Time) int {
	if s.Repeat == Forever {
		return Forever
	}
	_, k, _ := s.Next(t)
	return max(0, s.Repeat-k)
}

// String is the schedule in Chronos's form, the start in RFC 3339 with
// its zone (UTC unless scheduleTimeZone set one).
func (s Schedule) String() string {
	if s.Cron != nil {
		return s.Cron.String()
	}
	r := "R"
	if s.Repeat != Forever {
		r += strconv.Itoa(s.Repeat)
	}
	return r + "/" + s.Start.Format("2006-01-02T15:04:05.000Z07:00") + "/" + s.Period.String()
}

// String is p in ISO 8601 form.
func (p Period) String() string {
	var b strings.Builder
	b.WriteString("P")
	if p.Years != 0 {
		fmt.Fprintf(&b, "%dY", p.Years)
	}
	if p.Months != 0 {
		fmt.Fprintf(&b, "%dM", p.Months)
	}
	if p.Days != 0 {
		fmt.Fprintf(&b, "%dD", p.Days)
	}
	if c := p.Clock; c != 0 {
		b.WriteString("T")
		if h := c / time.Hour; h != 0 {
			fmt.Fprintf(&b, "%dH", h)
			c -= h * time.Hour
		}
		if m := c / time.Minute; m != 0 {
			fmt.Fprintf(&b, "%dM", m)
			c -= m * time.Minute
		}
		if c != 0 {
			b.WriteString(strconv.FormatFloat(c.Seconds(), 'f', -1, 64) + "S")
		}
	}
	if b.Len() == 1 {
		b.WriteString("T0S")
	}
	return b.String()
}
