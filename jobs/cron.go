package jobs

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// Chronos 3 also takes a UNIX cron expression as a job's schedule
// (anything that is not R[n]/start/period): five fields, minute (0-59),
// hour (0-23), day of month (1-31), month (1-12 or JAN-DEC) and day of
// week (0-7, 0 and 7 Sunday, or SUN-SAT), each *, a value, a range a-b,
// a list of those, any of them with a step /n (a value with a step runs
// from it to the field's end); and the nicknames @yearly, @annually,
// @monthly, @weekly, @daily, @midnight and @hourly. As in cron, when both
// day fields are restricted a day matching either runs; when one is *,
// the other alone decides. Times are read in the job's scheduleTimeZone
// (UTC without).

// maxCronLen bounds a cron expression.
const maxCronLen = 200

// Cron is a parsed cron expression: the values each field allows.
type Cron struct {
	text                          string
	minute, hour, dom, month, dow uint64 // bit v set: value v allowed
	// domAny, dowAny: the day fields were * (so only the other decides).
	domAny, dowAny bool
	// fixedTime: neither the minute nor the hour field is *: the
	// expression names times of day, read on the wall clock (Next).
	fixedTime bool
}

var cronNicknames = map[string]string{
	"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
	"@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}

var monthNames = []string{"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"}
var dayNames = []string{"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"}

// cronField is one field's range and names (names[i] is min+i).
type cronField struct {
	name     string
	min, max int
	names    []string
}

var cronFields = [5]cronField{
	{"minute", 0, 59, nil}, {"hour", 0, 23, nil}, {"day of month", 1, 31, nil},
	{"month", 1, 12, monthNames}, {"day of week", 0, 7, dayNames},
}

// ParseCron parses a cron expression.
func ParseCron(s string) (*Cron, error) {
	bad := func(format string, a ...any) (*Cron, error) {
		return nil, fmt.Errorf("schedule %.80q: %s (want R[n]/[start]/period, like R/2015-01-16T05:00:00Z/PT5M, or a cron expression, like */5 * * * *): %w",
			s, fmt.Sprintf(format, a...), errdefs.ErrInvalid)
	}
	if len(s) > maxCronLen {
		return bad("longer than %d bytes", maxCronLen)
	}
	expr := strings.TrimSpace(s)
	if strings.HasPrefix(expr, "@") {
		e, ok := cronNicknames[strings.ToLower(expr)]
		if !ok {
			return bad("%q is not a cron nickname", expr)
		}
		expr = e
	}
	fields := strings.Fields(expr)
	if len(fields) != 5 {
		return bad("%d fields, want 5 (minute hour day-of-month month day-of-week)", len(fields))
	}
	c := &Cron{text: strings.Join(strings.Fields(strings.TrimSpace(s)), " ")}
	sets := [5]*uint64{&c.minute, &c.hour, &c.dom, &c.month, &c.dow}
	for i, f := range fields {
		set, err := cronFields[i].parse(f)
		if err != nil {
			return bad("%v", err)
		}
		*sets[i] = set
	}
	if c.dow&(1<<7) != 0 { // 7 is Sunday too
		c.dow |= 1
	}
	c.domAny, c.dowAny = strings.HasPrefix(fields[2], "*"), strings.HasPrefix(fields[4], "*")
	c.fixedTime = !strings.HasPrefix(fields[0], "*") && !strings.HasPrefix(fields[1], "*")
	return c, nil
}

// parse reads one field: a comma-separated list of *, v, a-b, each with
// an optional /step.
func (f cronField) parse(s string) (uint64, error) {
	var set uint64
	for part := range strings.SplitSeq(s, ",") {
		rng, stepText, hasStep := strings.Cut(part, "/")
		step := 1
		if hasStep {
			n, err := strconv.Atoi(stepText)
			if err != nil || n < 1 || n > f.max {
				return 0, fmt.Errorf("%s: step %q is not a number from 1 to %d", f.name, stepText, f.max)
			}
			step = n
		}
		lo, hi := f.min, f.max
		switch {
		case rng == "*":
		case strings.Contains(rng, "-"):
			a, b, _ := strings.Cut(rng, "-")
			var err error
			if lo, err = f.value(a); err != nil {
				return 0, err
			}
			if hi, err = f.value(b); err != nil {
				return 0, err
			}
			if lo > hi {
				return 0, fmt.Errorf("%s: range %q runs backwards", f.name, rng)
			}
		default:
			v, err := f.value(rng)
			if err != nil {
				return 0, err
			}
			lo = v
			if !hasStep {
				hi = v
			}
		}
		for v := lo; v <= hi; v += step {
			set |= 1 << v
		}
	}
	return set, nil
}

// value reads one value of f: a number in its range or one of its names.
func (f cronField) value(s string) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < f.min || v > f.max || strings.HasPrefix(s, "+") {
		return 0, fmt.Errorf("%s: %q is not a value from %d to %d", f.name, s, f.min, f.max)
	}
	return v, nil
}

func (c *Cron) String() string { return c.text }

// dayMatches says whether t's day runs: both day fields restricted, either
// matching; else the restricted one (or any day).
func (c *Cron) dayMatches(t time.Time) bool {
	dom, dow := c.dom&(1<<t.Day()) != 0, c.dow&(1<<int(t.Weekday())) != 0
	switch {
	case c.domAny || c.dowAny:
		return dom && dow
	default:
		return dom || dow
	}
}

// cronHorizon is how far Next looks: an expression with no run within it
// (February 30th) has none at all.
const cronHorizon = 5 * 366 * 24 * time.Hour

// Next is the first time after t (at a whole minute of loc's wall clock)
// that c runs; ok is false when none is within cronHorizon. Around
// daylight saving changes it does as cron does: an expression with a fixed
// time (neither minute nor hour *) is read on the wall clock, so a time
// that comes twice runs once and one the clocks skip runs just after the
// change (02:30 as 03:30); others run by the minutes that pass, on
// whatever the clock says (every 20 minutes through a repeated hour too).
func (c *Cron) Next(t time.Time, loc *time.Location) (time.Time, bool) {
	if c.fixedTime {
		return c.nextOnWall(t, loc)
	}
	return c.nextPassing(t, loc)
}

// match says which field of wall-clock reading w (its fields, whatever its
// zone) first fails: the next candidate after it, at that field's step,
// or w itself when all match.
func (c *Cron) match(w time.Time) (next time.Time, ok bool) {
	loc := w.Location()
	switch {
	case c.month&(1<<int(w.Month())) == 0:
		return time.Date(w.Year(), w.Month()+1, 1, 0, 0, 0, 0, loc), false
	case !c.dayMatches(w):
		return time.Date(w.Year(), w.Month(), w.Day()+1, 0, 0, 0, 0, loc), false
	case c.hour&(1<<w.Hour()) == 0:
		return time.Date(w.Year(), w.Month(), w.Day(), w.Hour()+1, 0, 0, 0, loc), false
	case c.minute&(1<<w.Minute()) == 0:
		return w.Add(time.Minute), false
	}
	return w, true
}

// nextOnWall searches wall-clock readings (in UTC, where none repeats or
// is skipped) after t's, and takes the first whose instant in loc is after
// t.
func (c *Cron) nextOnWall(t time.Time, loc *time.Location) (time.Time, bool) {
	w := wall(t.In(loc)).Add(time.Minute)
	for limit := w.Add(cronHorizon); w.Before(limit); {
		next, ok := c.match(w)
		if !ok {
			w = next
			continue
		}
		at := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), 0, 0, loc)
		if got := wall(at.In(loc)); !got.Equal(w) {
			// A reading the clocks skip (time.Date reads it with the
			// offset after the change, which lands before it): it comes
			// as far after the change as it was into the gap.
			at = at.Add(w.Sub(got))
		}
		if at.After(t) {
			return at, true
		}
		w = w.Add(time.Minute)
	}
	return time.Time{}, false
}

// nextPassing searches the instants after t, minute by minute (faster by
// fields), reading each on loc's clock.
func (c *Cron) nextPassing(t time.Time, loc *time.Location) (time.Time, bool) {
	// Truncated as an instant: read back from the wall clock, a reading
	// that comes twice would be taken at its first.
	t = t.In(loc).Truncate(time.Minute).Add(time.Minute)
	for limit := t.Add(cronHorizon); t.Before(limit); {
		next, ok := c.match(t)
		if ok {
			return t, true
		}
		// Across a daylight saving change a wall-clock reading may come
		// out at or before t: a minute on is always progress.
		if !next.After(t) {
			next = t.Add(time.Minute)
		}
		t = next
	}
	return time.Time{}, false
}

// wall is t's wall-clock reading, to the minute, as a comparable time.
func wall(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, time.UTC)
}
