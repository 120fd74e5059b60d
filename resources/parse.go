package resources

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

// filePrefix marks a flag value that names a file holding the value, as
// Mesos's flags take it: file:///etc/mesos/resources reads that file.
const filePrefix = "file://"

// Parse reads resources the way a Mesos agent's --resources flag does:
//
//   - file:///path: the contents of that file, in either form below;
//   - a JSON array of v1 Resource objects;
//   - the text form `cpus:4;mem:8192;ports:[31000-32000];cpus(role):2;zones:{a,b}`:
//     a value is a scalar, ranges (a lone number is a one-number range) or
//     a set; a role other than "*" makes the resource a static reservation.
//
// The resources come back in the order written, unmerged (FromProto sums
// them). Each is checked as FromProto checks it: negative, NaN or infinite
// scalars, empty names, inverted or overlapping ranges and invalid roles
// are refused. Errors wrap errdefs.ErrInvalid and name the resource at
// fault; an empty value gives no resources and no error.
func Parse(s string) ([]*mesos.Resource, error) {
	s, err := readValue(s)
	if err != nil {
		return nil, err
	}
	if s == "" {
		return nil, nil
	}
	var out []*mesos.Resource
	if strings.HasPrefix(s, "[") {
		if out, err = parseJSON(s); err != nil {
			return nil, err
		}
	} else {
		for part := range strings.SplitSeq(s, ";") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			r, err := parseText(part)
			if err != nil {
				return nil, fmt.Errorf("resource %q: %w", part, err)
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// ParseJSON reads a JSON array of v1 Resource objects only, checked as
// Parse checks them: for values that come over the network, where a
// file:// name must never be read.
func ParseJSON(data []byte) ([]*mesos.Resource, error) {
	return parseJSON(strings.TrimSpace(string(data)))
}

// readValue returns the trimmed flag value, or the trimmed contents of the
// file a file:// value names.
func readValue(s string) (string, error) {
	s = strings.TrimSpace(s)
	path, ok := strings.CutPrefix(s, filePrefix)
	if !ok {
		return s, nil
	}
	if path == "" {
		return "", fmt.Errorf("%q names no file: %w", s, errdefs.ErrInvalid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		// Both: the caller gave a value that cannot be used, and may
		// want to tell a missing file (fs.ErrNotExist) apart.
		return "", fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
	}
	return strings.TrimSpace(string(b)), nil
}

func parseJSON(s string) ([]*mesos.Resource, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, fmt.Errorf("not a JSON array of resources: %w: %w", err, errdefs.ErrInvalid)
	}
	out := make([]*mesos.Resource, 0, len(raw))
	for i, m := range raw {
		r := &mesos.Resource{}
		if err := codec.JSON.Unmarshal(m, r); err != nil {
			return nil, fmt.Errorf("JSON resource %d: %w", i, err)
		}
		if _, err := fromProto(r); err != nil {
			return nil, fmt.Errorf("JSON resource %d (%s): %w", i, describe(r), err)
		}
		out = append(out, r)
	}
	return out, nil
}

// parseText reads one `name(role):value` of the text form.
func parseText(part string) (*mesos.Resource, error) {
	key, text, ok := strings.Cut(part, ":")
	if !ok {
		return nil, fmt.Errorf("want name:value: %w", errdefs.ErrInvalid)
	}
	name, role := strings.TrimSpace(key), ""
	if strings.ContainsAny(key, "()") {
		open := strings.IndexByte(key, '(')
		inner, ok := strings.CutSuffix(strings.TrimSpace(key[open+1:]), ")")
		if open < 0 || !ok || strings.ContainsAny(inner, "()") || strings.ContainsAny(key[:open], "()") {
			return nil, fmt.Errorf("mismatched parentheses around the role: %w", errdefs.ErrInvalid)
		}
		name, role = strings.TrimSpace(key[:open]), strings.TrimSpace(inner)
		if role == "" {
			return nil, fmt.Errorf("empty role in (); leave it out or write (*) for unreserved: %w", errdefs.ErrInvalid)
		}
	}
	if name == "" {
		return nil, fmt.Errorf("no name: %w", errdefs.ErrInvalid)
	}
	v, err := parseValue(strings.TrimSpace(text))
	if err != nil {
		return nil, err
	}
	if v.GetType() == mesos.Value_TEXT {
		return nil, fmt.Errorf("bad scalar %q: want a number, [ranges] or {set}: %w", v.GetText().GetValue(), errdefs.ErrInvalid)
	}
	r := &mesos.Resource{Name: proto.String(name), Type: v.Type, Scalar: v.Scalar, Ranges: v.Ranges, Set: v.Set}
	if role != "" && role != Unreserved {
		r.Reservations = []*mesos.Resource_ReservationInfo{{
			Type: mesos.Resource_ReservationInfo_STATIC.Enum(),
			Role: proto.String(role),
		}}
	}
	if _, err := fromProto(r); err != nil {
		return nil, err
	}
	return r, nil
}

// parseValue reads a value of the text form: [ranges], {set}, a finite
// number, or else text (which only attributes may have).
func parseValue(s string) (*mesos.Value, error) {
	switch {
	case strings.HasPrefix(s, "["):
		inner, ok := strings.CutSuffix(s[1:], "]")
		if !ok {
			return nil, fmt.Errorf("unterminated ranges %q: %w", s, errdefs.ErrInvalid)
		}
		rs := &mesos.Value_Ranges{Range: []*mesos.Value_Range{}}
		for item := range strings.SplitSeq(inner, ",") {
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			lo, hi, isRange := strings.Cut(item, "-")
			if !isRange {
				hi = lo
			}
			b, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 64)
			e, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 64)
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("bad range %q: want BEGIN-END or a number: %w", item, errdefs.ErrInvalid)
			}
			if e < b {
				return nil, fmt.Errorf("range %q ends before it begins: %w", item, errdefs.ErrInvalid)
			}
			rs.Range = append(rs.Range, &mesos.Value_Range{Begin: proto.Uint64(b), End: proto.Uint64(e)})
		}
		return &mesos.Value{Type: mesos.Value_RANGES.Enum(), Ranges: rs}, nil
	case strings.HasPrefix(s, "{"):
		inner, ok := strings.CutSuffix(s[1:], "}")
		if !ok {
			return nil, fmt.Errorf("unterminated set %q: %w", s, errdefs.ErrInvalid)
		}
		set := &mesos.Value_Set{Item: []string{}}
		for item := range strings.SplitSeq(inner, ",") {
			if item = strings.TrimSpace(item); item != "" {
				set.Item = append(set.Item, item)
			}
		}
		return &mesos.Value{Type: mesos.Value_SET.Enum(), Set: set}, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsInf(f, 0) && !math.IsNaN(f) {
		return &mesos.Value{Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(f)}}, nil
	} else if err != nil && errors.Is(err, strconv.ErrRange) {
		return nil, fmt.Errorf("number %q out of range: %w", s, errdefs.ErrInvalid)
	}
	return &mesos.Value{Type: mesos.Value_TEXT.Enum(), Text: &mesos.Value_Text{Value: proto.String(s)}}, nil
}

// ParseAttributes reads attributes the way a Mesos agent's --attributes
// flag does: `rack:r2;os:debian;zone:[1-3];level:2`, or file:///path with
// that text inside. A value is a scalar, ranges, a set or, when it is
// none of those, text. Errors wrap errdefs.ErrInvalid.
func ParseAttributes(s string) ([]*mesos.Attribute, error) {
	s, err := readValue(s)
	if err != nil {
		return nil, err
	}
	var out []*mesos.Attribute
	for part := range strings.SplitSeq(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, text, ok := strings.Cut(part, ":")
		name, text = strings.TrimSpace(name), strings.TrimSpace(text)
		switch {
		case !ok:
			return nil, fmt.Errorf("attribute %q: want name:value: %w", part, errdefs.ErrInvalid)
		case name == "":
			return nil, fmt.Errorf("attribute %q: no name: %w", part, errdefs.ErrInvalid)
		case text == "":
			return nil, fmt.Errorf("attribute %q: no value: %w", part, errdefs.ErrInvalid)
		}
		v, err := parseValue(text)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", part, err)
		}
		out = append(out, &mesos.Attribute{
			Name: proto.String(name), Type: v.Type,
			Scalar: v.Scalar, Ranges: v.Ranges, Set: v.Set, Text: v.Text,
		})
	}
	return out, nil
}

// Format writes wire resources in the text form Parse reads, as Mesos
// prints them: `cpus:4; mem:8192; ports:[31000-32000]; cpus(web):2;
// zones:{a, b}`. Resources keep their order and are not merged; an
// unreserved resource has no role, a reserved one its reservation role.
// Scalars are rounded to Mesos's three decimals.
func Format(rs []*mesos.Resource) string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r.GetName())
		if role := ReservationRole(r); role != Unreserved {
			b.WriteString("(" + role + ")")
		}
		b.WriteByte(':')
		switch r.GetType() {
		case mesos.Value_SCALAR:
			b.WriteString(formatScalar(r.GetScalar().GetValue()))
		case mesos.Value_RANGES:
			rgs := make([]Range, len(r.GetRanges().GetRange()))
			for j, rg := range r.GetRanges().GetRange() {
				rgs[j] = Range{rg.GetBegin(), rg.GetEnd()}
			}
			b.WriteString(formatRanges(rgs))
		case mesos.Value_SET:
			b.WriteString(formatSet(r.GetSet().GetItem()))
		default:
			b.WriteString(r.GetType().String())
		}
	}
	return b.String()
}

// formatScalar writes a scalar with at most three decimals, as Mesos's
// fixed point keeps it.
func formatScalar(v float64) string {
	if !math.IsInf(v, 0) && !math.IsNaN(v) {
		v = math.Round(v*scale) / scale
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

// formatRanges writes [31000-32000, 33000-33000]; a lone number is written
// as a range too, the only form Mesos reads.
func formatRanges(rs []Range) string {
	var b strings.Builder
	b.WriteByte('[')
	for i, rg := range rs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.FormatUint(rg.Begin, 10))
		b.WriteByte('-')
		b.WriteString(strconv.FormatUint(rg.End, 10))
	}
	b.WriteByte(']')
	return b.String()
}

func formatSet(items []string) string { return "{" + strings.Join(items, ", ") + "}" }
