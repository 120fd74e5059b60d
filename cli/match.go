package cli

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// Offer matching: a task asks for amounts (cpus:0.1, mem:32), fixed ranges
// (ports 8080 and 8443) and set items; allocate takes them out of an
// offer's resources and returns copies of the offered resources holding
// only what was taken. Taking from the offer's own messages, rather than
// sending back what was asked for, keeps what the master put on them
// (reservations, allocation_info for MULTI_ROLE frameworks) so that the
// master finds the task's resources inside the offer.

// errNoFit is wrapped by allocate's errors, which say what is missing.
var errNoFit = errors.New("offer does not fit")

// rng is an inclusive range of integers.
type rng struct{ b, e uint64 }

// pool is what is left of one offered resource.
type pool struct {
	res    *mesos.Resource
	milli  int64
	ranges []rng
	set    []string

	used       bool
	takenMilli int64
	takenRngs  []rng
	takenSet   []string
}

// toMilli converts a scalar to thousandths, Mesos's fixed-point precision,
// so that 0.1+0.2 fits into 0.3.
func toMilli(v float64) int64 { return int64(math.Round(v * 1000)) }

func fmtMilli(m int64) string { return strconv.FormatFloat(float64(m)/1000, 'f', -1, 64) }

// roleOf is the reservation role a resource belongs to, "*" when
// unreserved.
func roleOf(r *mesos.Resource) string {
	if n := len(r.GetReservations()); n > 0 {
		return r.GetReservations()[n-1].GetRole()
	}
	if role := r.GetRole(); role != "" {
		return role // the pre-refinement field; "*" when unset
	}
	return "*"
}

// wantRole is the role a request names, "" for any.
func wantRole(r *mesos.Resource) string {
	if role := roleOf(r); role != "*" {
		return role
	}
	return ""
}

func (p *pool) matches(name string, typ mesos.Value_Type, role string) bool {
	return p.res.GetName() == name && p.res.GetType() == typ && (role == "" || roleOf(p.res) == role)
}

// allocate takes want and pickPorts free ports out of offered. It returns
// the resources to give the task and the ports picked, or an error wrapping
// errNoFit that lists every shortfall.
func allocate(offered, want []*mesos.Resource, pickPorts int) ([]*mesos.Resource, []uint64, error) {
	pools := make([]*pool, 0, len(offered))
	for _, r := range offered {
		p := &pool{res: r}
		switch r.GetType() {
		case mesos.Value_SCALAR:
			p.milli = toMilli(r.GetScalar().GetValue())
		case mesos.Value_RANGES:
			p.ranges = toRngs(r.GetRanges())
		case mesos.Value_SET:
			p.set = slices.Clone(r.GetSet().GetItem())
		default:
			continue
		}
		pools = append(pools, p)
	}
	var short []string
	for _, w := range want {
		name, role := w.GetName(), wantRole(w)
		switch w.GetType() {
		case mesos.Value_SCALAR:
			need := toMilli(w.GetScalar().GetValue())
			have := int64(0)
			for _, p := range pools {
				if p.matches(name, mesos.Value_SCALAR, role) {
					have += p.milli
				}
			}
			if need > have {
				short = append(short, fmt.Sprintf("%s: want %s, offered %s", label(name, role), fmtMilli(need), fmtMilli(have)))
				continue
			}
			for _, p := range pools {
				if need == 0 {
					break
				}
				if p.matches(name, mesos.Value_SCALAR, role) && p.milli > 0 {
					t := min(need, p.milli)
					p.milli -= t
					p.takenMilli += t
					p.used = true
					need -= t
				}
			}
		case mesos.Value_RANGES:
			for _, wr := range toRngs(w.GetRanges()) {
				missing := []rng{wr}
				for _, p := range pools {
					if !p.matches(name, mesos.Value_RANGES, role) {
						continue
					}
					for _, got := range intersect(missing, p.ranges) {
						p.ranges = subtract(p.ranges, got)
						p.takenRngs = append(p.takenRngs, got)
						p.used = true
						missing = subtract(missing, got)
					}
				}
				if len(missing) > 0 {
					short = append(short, fmt.Sprintf("%s: %s not offered (offered %s)", label(name, role), fmtRngs(missing), fmtRngs(offeredRngs(offered, name))))
				}
			}
		case mesos.Value_SET:
			for _, item := range w.GetSet().GetItem() {
				found := false
				for _, p := range pools {
					if i := slices.Index(p.set, item); i >= 0 && p.matches(name, mesos.Value_SET, role) {
						p.set = slices.Delete(p.set, i, i+1)
						p.takenSet = append(p.takenSet, item)
						p.used = true
						found = true
						break
					}
				}
				if !found {
					short = append(short, fmt.Sprintf("%s: %q not offered", label(name, role), item))
				}
			}
		}
	}
	var picked []uint64
	for _, p := range pools {
		for len(picked) < pickPorts && p.matches("ports", mesos.Value_RANGES, "") && len(p.ranges) > 0 {
			port := p.ranges[0].b
			p.ranges = subtract(p.ranges, rng{port, port})
			p.takenRngs = append(p.takenRngs, rng{port, port})
			p.used = true
			picked = append(picked, port)
		}
	}
	if len(picked) < pickPorts {
		short = append(short, fmt.Sprintf("ports: want %d more free ports, offered %s", pickPorts, fmtRngs(offeredRngs(offered, "ports"))))
	}
	if len(short) > 0 {
		return nil, nil, fmt.Errorf("%w: %s", errNoFit, strings.Join(short, "; "))
	}

	var used []*mesos.Resource
	for _, p := range pools {
		if !p.used {
			continue
		}
		r := proto.Clone(p.res).(*mesos.Resource)
		switch r.GetType() {
		case mesos.Value_SCALAR:
			if p.takenMilli == 0 {
				continue
			}
			r.Scalar = &mesos.Value_Scalar{Value: mesos.Ptr(float64(p.takenMilli) / 1000)}
		case mesos.Value_RANGES:
			r.Ranges = fromRngs(normalize(p.takenRngs))
		case mesos.Value_SET:
			r.Set = &mesos.Value_Set{Item: p.takenSet}
		}
		used = append(used, r)
	}
	return used, picked, nil
}

func label(name, role string) string {
	if role == "" {
		return name
	}
	return name + "(" + role + ")"
}

func toRngs(rs *mesos.Value_Ranges) []rng {
	var out []rng
	for _, r := range rs.GetRange() {
		if r.GetEnd() >= r.GetBegin() {
			out = append(out, rng{r.GetBegin(), r.GetEnd()})
		}
	}
	return normalize(out)
}

func fromRngs(rs []rng) *mesos.Value_Ranges {
	out := &mesos.Value_Ranges{}
	for _, r := range rs {
		out.Range = append(out.Range, &mesos.Value_Range{Begin: mesos.Ptr(r.b), End: mesos.Ptr(r.e)})
	}
	return out
}

func offeredRngs(offered []*mesos.Resource, name string) []rng {
	var all []rng
	for _, r := range offered {
		if r.GetName() == name && r.GetType() == mesos.Value_RANGES {
			all = append(all, toRngs(r.GetRanges())...)
		}
	}
	return normalize(all)
}

// normalize sorts ranges and merges overlapping and adjacent ones.
func normalize(rs []rng) []rng {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b rng) int {
		switch {
		case a.b < b.b:
			return -1
		case a.b > b.b:
			return 1
		}
		return 0
	})
	var out []rng
	for _, r := range rs {
		if n := len(out); n > 0 && (out[n-1].e == math.MaxUint64 || r.b <= out[n-1].e+1) {
			out[n-1].e = max(out[n-1].e, r.e)
			continue
		}
		out = append(out, r)
	}
	return out
}

// intersect returns the parts of a that lie in b.
func intersect(a, b []rng) []rng {
	var out []rng
	for _, x := range a {
		for _, y := range b {
			lo, hi := max(x.b, y.b), min(x.e, y.e)
			if lo <= hi {
				out = append(out, rng{lo, hi})
			}
		}
	}
	return normalize(out)
}

// subtract removes r from rs.
func subtract(rs []rng, r rng) []rng {
	var out []rng
	for _, x := range rs {
		if r.e < x.b || r.b > x.e {
			out = append(out, x)
			continue
		}
		if r.b > x.b {
			out = append(out, rng{x.b, r.b - 1})
		}
		if r.e < x.e {
			out = append(out, rng{r.e + 1, x.e})
		}
	}
	return out
}

func fmtRngs(rs []rng) string {
	if len(rs) == 0 {
		return "none"
	}
	parts := make([]string, len(rs))
	for i, r := range rs {
		if r.b == r.e {
			parts[i] = strconv.FormatUint(r.b, 10)
		} else {
			parts[i] = strconv.FormatUint(r.b, 10) + "-" + strconv.FormatUint(r.e, 10)
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// describeResources renders resources in Mesos's text form for messages:
// cpus:0.1;mem:32;ports:[31000-31005].
func describeResources(rs []*mesos.Resource) string {
	var parts []string
	for _, r := range rs {
		name := r.GetName()
		if role := roleOf(r); role != "*" {
			name += "(" + role + ")"
		}
		switch r.GetType() {
		case mesos.Value_SCALAR:
			parts = append(parts, name+":"+fmtMilli(toMilli(r.GetScalar().GetValue())))
		case mesos.Value_RANGES:
			parts = append(parts, name+":"+fmtRngs(toRngs(r.GetRanges())))
		case mesos.Value_SET:
			parts = append(parts, name+":{"+strings.Join(r.GetSet().GetItem(), ",")+"}")
		}
	}
	if len(parts) == 0 {
		return "nothing"
	}
	return strings.Join(parts, ";")
}
