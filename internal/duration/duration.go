package duration

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Mesos's units, smallest first. Mesos has no months or years, and a day is
// always 24 hours and a week 7 days (no calendar).
const (
	Day  = 24 * time.Hour
	Week = 7 * Day
)

var units = map[string]time.Duration{
	"ns":    time.Nanosecond,
	"us":    time.Microsecond,
	"ms":    time.Millisecond,
	"secs":  time.Second,
	"mins":  time.Minute,
	"hrs":   time.Hour,
	"days":  Day,
	"weeks": Week,
}

// ErrSyntax is wrapped by every parse error.
var ErrSyntax = errors.New("invalid duration")

// Parse reads a Mesos duration: a decimal number (fractions allowed) followed
// by one of ns, us, ms, secs, mins, hrs, days, weeks, e.g. "1weeks", "1.5secs".
// A Go duration ("5s", "1h30m") is accepted as well, because operators type
// those and nothing is ambiguous between the two syntaxes. A leading '-' is
// accepted so that Parse(Format(d)) round-trips for negative values.
// Fractions are rounded to the nearest nanosecond.
func Parse(s string) (time.Duration, error) {
	in := strings.TrimSpace(s)
	body, neg := strings.CutPrefix(in, "-")

	i := 0
	for i < len(body) && (body[i] >= '0' && body[i] <= '9' || body[i] == '.') {
		i++
	}
	num, unit := body[:i], body[i:]
	if num != "" && unit != "" {
		if u, ok := units[unit]; ok {
			d, err := scale(num, u)
			if err != nil {
				return 0, fmt.Errorf("%w %q: %v", ErrSyntax, s, err)
			}
			if neg {
				d = -d
			}
			return d, nil
		}
	}
	// Not Mesos syntax; Go's syntax needs a unit too, except for "0".
	if d, err := time.ParseDuration(in); err == nil {
		return d, nil
	}
	if num != "" && unit != "" {
		return 0, fmt.Errorf("%w %q: unknown unit %q; supported units are ns, us, ms, secs, mins, hrs, days and weeks", ErrSyntax, s, unit)
	}
	return 0, fmt.Errorf("%w %q: want a number followed by a unit, e.g. 5secs, 15mins, 2hrs", ErrSyntax, s)
}

// scale multiplies the decimal num by unit, refusing values a time.Duration
// cannot hold rather than wrapping around.
func scale(num string, unit time.Duration) (time.Duration, error) {
	if !strings.Contains(num, ".") {
		n, err := strconv.ParseInt(num, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("out of range")
		}
		if n > math.MaxInt64/int64(unit) {
			return 0, fmt.Errorf("out of range")
		}
		return time.Duration(n) * unit, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", num)
	}
	ns := math.Round(f * float64(unit))
	if ns >= math.MaxInt64 {
		return 0, fmt.Errorf("out of range")
	}
	return time.Duration(ns), nil
}

// Format writes d as Mesos does: in the largest unit the value falls into,
// unless the next smaller unit gives a whole number where this one would not
// ("90secs", not "1.5mins"; "36hrs", not "1.5days"). Zero is "0ns".
func Format(d time.Duration) string {
	if d < 0 {
		if d == math.MinInt64 {
			return "-" + Format(math.MaxInt64)
		}
		return "-" + Format(-d)
	}
	if d < time.Microsecond {
		return strconv.FormatInt(int64(d), 10) + "ns"
	}
	// Each bucket: the unit d falls into and the next smaller one.
	buckets := []struct {
		limit       time.Duration // d < limit falls into this bucket
		unit, finer time.Duration
		name, fname string
	}{
		{time.Millisecond, time.Microsecond, time.Nanosecond, "us", "ns"},
		{time.Second, time.Millisecond, time.Microsecond, "ms", "us"},
		{time.Minute, time.Second, time.Millisecond, "secs", "ms"},
		{time.Hour, time.Minute, time.Second, "mins", "secs"},
		{Day, time.Hour, time.Minute, "hrs", "mins"},
		{Week, Day, time.Hour, "days", "hrs"},
		{math.MaxInt64, Week, Day, "weeks", "days"},
	}
	for _, b := range buckets {
		if d >= b.limit && b.limit != math.MaxInt64 {
			continue
		}
		if d%b.unit != 0 && d%b.finer == 0 {
			return number(d, b.finer) + b.fname
		}
		return number(d, b.unit) + b.name
	}
	panic("unreachable")
}

// number prints d/unit with 15 significant digits and no trailing zeros,
// which is what a C++ stream with precision 15 prints for a double.
func number(d, unit time.Duration) string {
	if d%unit == 0 {
		return strconv.FormatInt(int64(d/unit), 10)
	}
	return strconv.FormatFloat(float64(d)/float64(unit), 'g', 15, 64)
}
