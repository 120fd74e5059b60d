package resources

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// Offer matching, shared by every framework of ours (`mesolite run`, the
// example framework, apps, jobs): a task asks for amounts (cpus:0.1,
// mem:32), fixed ranges (ports 8080 and 8443), set items and a number of
// ports to pick; Allocate takes them out of an offer's resources and
// returns copies of the offered resources holding only what was taken.
// Taking from the offer's own messages, rather than sending back what was
// asked for, keeps what the master put on them (reservations,
// allocation_info for MULTI_ROLE frameworks) so that the master finds the
// task's resources inside the offer.

// ErrNoFit is wrapped by Allocate's errors, which say what is missing.
var ErrNoFit = errors.New("offer does not fit")

// pool is one offered resource: the offer's message, with what is left of
// it and what the task takes from it. left and taken hold the value without
// the role (the message has it), so one arithmetic serves every role.
type pool struct {
	res         *mesos.Resource
	role        string
	left, taken Resources
}

func (p *pool) matches(name string, typ mesos.Value_Type, role string) bool {
	return p.res.GetName() == name && p.res.GetType() == typ && (role == "" || p.role == role)
}

// ValueOf is a wire resource's value without its role, or false for one
// the arithmetic does not read (revocable, shared, a persistent volume):
// a task gets those only by asking for them in a TaskInfo of its own.
func ValueOf(r *mesos.Resource) (Resources, bool) {
	v, err := FromProto([]*mesos.Resource{r})
	if err != nil {
		return nil, false
	}
	return v.Flatten(), true
}

// WithValue is a copy of r, an offered resource, that holds v, of r's name
// and type, instead of r's own value; everything else the master put on r
// stays.
func WithValue(r *mesos.Resource, v Resources) *mesos.Resource {
	c := proto.Clone(r).(*mesos.Resource)
	if len(v) > 0 {
		w := v.ToProto("")[0]
		c.Scalar, c.Ranges, c.Set = w.Scalar, w.Ranges, w.Set
		return c
	}
	switch r.GetType() {
	case mesos.Value_SCALAR:
		c.Scalar = &mesos.Value_Scalar{Value: proto.Float64(0)}
	case mesos.Value_RANGES:
		c.Ranges = &mesos.Value_Ranges{}
	case mesos.Value_SET:
		c.Set = &mesos.Value_Set{}
	}
	return c
}

// wantRole is the role a request names, "" for any.
func wantRole(r *mesos.Resource) string {
	if role := ReservationRole(r); role != Unreserved {
		return role
	}
	return ""
}

// Allocate takes want and pickPorts free ports out of offered. It returns
// the resources to give the task and the ports picked (the lowest free
// ones, in order), or an error wrapping ErrNoFit that lists every
// shortfall. A request without a role takes from reserved and unreserved
// resources alike, in the offer's order. offered is not changed; Remaining
// gives what is left of it for the next task.
func Allocate(offered, want []*mesos.Resource, pickPorts int) ([]*mesos.Resource, []uint64, error) {
	pools := make([]*pool, 0, len(offered))
	for _, r := range offered {
		if v, ok := ValueOf(r); ok {
			pools = append(pools, &pool{res: r, role: ReservationRole(r), left: v})
		}
	}
	var short []string
	for _, w := range want {
		name, role := w.GetName(), wantRole(w)
		need, ok := ValueOf(w)
		if !ok {
			short = append(short, fmt.Sprintf("%s: cannot be asked for", label(name, role)))
			continue
		}
		missing := need
		for _, p := range pools {
			if missing.IsEmpty() {
				break
			}
			if !p.matches(name, w.GetType(), role) {
				continue
			}
			// What p has of missing: for a scalar the smaller amount (a
			// subtraction stops at zero), for ranges and sets the overlap.
			if got := missing.Subtract(missing.Subtract(p.left)); !got.IsEmpty() {
				p.left = p.left.Subtract(got)
				p.taken = p.taken.Add(got)
				missing = missing.Subtract(got)
			}
		}
		if missing.IsEmpty() {
			continue
		}
		switch w.GetType() {
		case mesos.Value_SCALAR:
			short = append(short, fmt.Sprintf("%s: want %s, offered %s", label(name, role),
				amount(need.Scalar(name)), amount(need.Subtract(missing).Scalar(name))))
		case mesos.Value_RANGES:
			short = append(short, fmt.Sprintf("%s: %s not offered (offered %s)", label(name, role),
				missing[0].ValueString(), offeredRanges(offered, name)))
		case mesos.Value_SET:
			for _, item := range missing[0].Items() {
				short = append(short, fmt.Sprintf("%s: %q not offered", label(name, role), item))
			}
		}
	}
	var picked []uint64
	for _, p := range pools {
		for len(picked) < pickPorts && p.matches(Ports, mesos.Value_RANGES, "") && !p.left.IsEmpty() {
			port := p.left[0].Ranges()[0].Begin
			one := Of(NewRanges(Ports, "", Range{Begin: port, End: port}))
			p.left = p.left.Subtract(one)
			p.taken = p.taken.Add(one)
			picked = append(picked, port)
		}
	}
	if len(picked) < pickPorts {
		short = append(short, fmt.Sprintf("ports: want %d more free ports, offered %s", pickPorts, offeredRanges(offered, Ports)))
	}
	if len(short) > 0 {
		return nil, nil, fmt.Errorf("%w: %s", ErrNoFit, strings.Join(short, "; "))
	}

	var used []*mesos.Resource
	for _, p := range pools {
		if !p.taken.IsEmpty() {
			used = append(used, WithValue(p.res, p.taken))
		}
	}
	return used, picked, nil
}

// Remaining is what is left of offered once a task took used (Allocate's
// result) from it: one message per offered one, with what the master put
// on it kept, so several tasks can be placed on one offer in turn.
func Remaining(offered, used []*mesos.Resource) []*mesos.Resource {
	out := make([]*mesos.Resource, 0, len(offered))
	for _, r := range offered {
		left, ok := ValueOf(r)
		if !ok {
			// Allocate never takes from it.
			out = append(out, proto.Clone(r).(*mesos.Resource))
			continue
		}
		role := ReservationRole(r)
		for _, u := range used {
			if u.GetName() != r.GetName() || u.GetType() != r.GetType() || ReservationRole(u) != role {
				continue
			}
			if v, ok := ValueOf(u); ok {
				left = left.Subtract(v)
			}
		}
		out = append(out, WithValue(r, left))
	}
	return out
}

func label(name, role string) string {
	if role == "" {
		return name
	}
	return name + "(" + role + ")"
}

func amount(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// offeredRanges writes the ranges of name the offer has, of every role.
func offeredRanges(offered []*mesos.Resource, name string) string {
	var all Resources
	for _, r := range offered {
		if r.GetName() == name && r.GetType() == mesos.Value_RANGES {
			if v, ok := ValueOf(r); ok {
				all = all.Add(v)
			}
		}
	}
	if all.IsEmpty() {
		return "none"
	}
	return all[0].ValueString()
}
