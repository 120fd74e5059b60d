package jobs

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// Chronos reads scheduleTimeZone with Java's TimeZone.getTimeZone, so a
// job may name its zone in any of the forms Java knows, not only a tz
// database name: the old three-letter ids (PST) and custom offsets
// (GMT+05:30). Java answers GMT for a name it does not know, which
// Chronos refuses; so does LoadZone.

// javaShortIDs are Java's three-letter zone ids (java.time.ZoneId's
// SHORT_IDS, which TimeZone.getTimeZone resolves the same way): EST, MST
// and HST are fixed offsets, the others name a region.
var javaShortIDs = map[string]string{
	"ACT": "Australia/Darwin", "AET": "Australia/Sydney", "AGT": "America/Argentina/Buenos_Aires",
	"ART": "Africa/Cairo", "AST": "America/Anchorage", "BET": "America/Sao_Paulo", "BST": "Asia/Dhaka",
	"CAT": "Africa/Harare", "CNT": "America/St_Johns", "CST": "America/Chicago", "CTT": "Asia/Shanghai",
	"EAT": "Africa/Addis_Ababa", "ECT": "Europe/Paris", "IET": "America/Indiana/Indianapolis",
	"IST": "Asia/Kolkata", "JST": "Asia/Tokyo", "MIT": "Pacific/Apia", "NET": "Asia/Yerevan",
	"NST": "Pacific/Auckland", "PLT": "Asia/Karachi", "PNT": "America/Phoenix", "PRT": "America/Puerto_Rico",
	"PST": "America/Los_Angeles", "SST": "Pacific/Guadalcanal", "VST": "Asia/Ho_Chi_Minh",
}

// javaFixedIDs are the three-letter ids Java takes as fixed offsets.
var javaFixedIDs = map[string]int{"EST": -5 * 3600, "MST": -7 * 3600, "HST": -10 * 3600}

// LoadZone is the zone tz names, as Chronos reads scheduleTimeZone: a tz
// database name (America/Los_Angeles, UTC), one of Java's three-letter
// ids, or a custom offset GMT+h, GMT+hh, GMT+hhmm or GMT+hh:mm (or -).
func LoadZone(tz string) (*time.Location, error) {
	bad := func() (*time.Location, error) {
		return nil, fmt.Errorf("scheduleTimeZone %.60q is not a time zone: want a tz database name (America/Los_Angeles), a Java id (PST) or an offset (GMT+05:30): %w", tz, errdefs.ErrInvalid)
	}
	if off, ok := javaFixedIDs[tz]; ok {
		return time.FixedZone(tz, off), nil
	}
	if name, ok := javaShortIDs[tz]; ok {
		tz = name
	}
	if rest, ok := strings.CutPrefix(tz, "GMT"); ok && rest != "" && (rest[0] == '+' || rest[0] == '-') {
		off, ok := parseGMTOffset(rest)
		if !ok {
			return bad()
		}
		return time.FixedZone(tz, off), nil
	}
	// LoadLocation reads a file named by tz below the zoneinfo
	// directories: no name climbs out of them. "Local" would be this
	// machine's zone, which Java does not know either.
	if tz == "" || tz == "Local" || len(tz) > 64 || strings.Contains(tz, "..") || strings.HasPrefix(tz, "/") {
		return bad()
	}
	l, err := time.LoadLocation(tz)
	if err != nil {
		return bad()
	}
	return l, nil
}

// parseGMTOffset reads what follows GMT in a Java custom zone id: a sign,
// hours (one or two digits, 0 to 23), and minutes (two digits, with or
// without a colon: GMT+530 is +05:30). It returns the offset in seconds east of UTC.
func parseGMTOffset(s string) (int, bool) {
	if len(s) < 2 || (s[0] != '+' && s[0] != '-') {
		return 0, false
	}
	sign := 1
	if s[0] == '-' {
		sign = -1
	}
	s = s[1:]
	var hh, mm string
	switch {
	case len(s) <= 2:
		hh = s
	case (len(s) == 3 || len(s) == 4) && !strings.Contains(s, ":"):
		hh, mm = s[:len(s)-2], s[len(s)-2:]
	default:
		var ok bool
		if hh, mm, ok = strings.Cut(s, ":"); !ok || len(mm) != 2 || len(hh) < 1 || len(hh) > 2 {
			return 0, false
		}
	}
	digits := func(d string) (int, bool) {
		for _, c := range d {
			if c < '0' || c > '9' {
				return 0, false
			}
		}
		n, err := strconv.Atoi(d)
		return n, err == nil
	}
	h, ok := digits(hh)
	if !ok || h > 23 {
		return 0, false
	}
	m := 0
	if mm != "" {
		if m, ok = digits(mm); !ok || m > 59 {
			return 0, false
		}
	}
	return sign * (h*3600 + m*60), true
}
