package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/resources"
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

// pool is one offered resource: the offer's message, with what is left of
// it and what the task takes from it. left and taken hold the value without
// the role (the message has it), so one arithmetic serves every role.
type pool struct {
	res         *mesos.Resource
	role        string
	left, taken resources.Resources
}

func (p *pool) matches(name string, typ mesos.Value_Type, role string) bool {
	return p.res.GetName() == name && p.res.GetType() == typ && (role == "" || p.role == role)
}

// valueOf is a wire resource's value without its role, or false for one
// the arithmetic does not read (revocable, shared, a persistent volume):
// a task gets those only by asking for them in a TaskInfo of its own.
func valueOf(r *mesos.Resource) (resources.Resources, bool) {
	v, err := resources.FromProto([]*mesos.Resource{r})
	if err != nil {
		return nil, false
	}
	return v.Flatten(), true
}

// withValue is a copy of r, an offered resource, that holds v, of r's name
// and type, instead of r's own value; everything else the master put on r
// stays.
func withValue(r *mesos.Resource, v resources.Resources) *mesos.Resource {
	c := proto.Clone(r).(*mesos.Resource)
	if len(v) > 0 {
		w := v.ToProto("")[0]
		c.Scalar, c.Ranges, c.Set = w.Scalar, w.Ranges, w.Set
		return c
	}
	switch r.GetType() {
	case mesos.Value_SCALAR:
		c.Scalar = &mesos.Value_Scalar{Value: mesos.Ptr(0.0)}
	case mesos.Value_RANGES:
		c.Ranges = &mesos.Value_Ranges{}
	case mesos.Value_SET:
		c.Set = &mesos.Value_Set{}
	}
	return c
}

// wantRole is the role a request names, "" for any.
func wantRole(r *mesos.Resource) string {
	if role := resources.ReservationRole(r); role != resources.Unreserved {
		return role
	}
	return ""
}

// allocate takes want and pickPorts free ports out of offered. It returns
// the resources to give the task and the ports picked, or an error wrapping
// errNoFit that lists every shortfall. A request without a role takes from
// reserved and unreserved resources alike, in the offer's order.
func allocate(offered, want []*mesos.Resource, pickPorts int) ([]*mesos.Resource, []uint64, error) {
	pools := make([]*pool, 0, len(offered))
	for _, r := range offered {
		if v, ok := valueOf(r); ok {
			pools = append(pools, &pool{res: r, role: resources.ReservationRole(r), left: v})
		}
	}
	var short []string
	for _, w := range want {
		name, role := w.GetName(), wantRole(w)
		need, ok := valueOf(w)
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
		for len(picked) < pickPorts && p.matches(resources.Ports, mesos.Value_RANGES, "") && !p.left.IsEmpty() {
			port := p.left[0].Ranges()[0].Begin
			one := resources.Of(resources.NewRanges(resources.Ports, "", resources.Range{Begin: port, End: port}))
			p.left = p.left.Subtract(one)
			p.taken = p.taken.Add(one)
			picked = append(picked, port)
		}
	}
	if len(picked) < pickPorts {
		short = append(short, fmt.Sprintf("ports: want %d more free ports, offered %s", pickPorts, offeredRanges(offered, resources.Ports)))
	}
	if len(short) > 0 {
		return nil, nil, fmt.Errorf("%w: %s", errNoFit, strings.Join(short, "; "))
	}

	var used []*mesos.Resource
	for _, p := range pools {
		if !p.taken.IsEmpty() {
			used = append(used, withValue(p.res, p.taken))
		}
	}
	return used, picked, nil
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
	var all resources.Resources
	for _, r := range offered {
		if r.GetName() == name && r.GetType() == mesos.Value_RANGES {
			if v, ok := valueOf(r); ok {
				all = all.Add(v)
			}
		}
	}
	if all.IsEmpty() {
		return "none"
	}
	return all[0].ValueString()
}

// describeResources renders resources in Mesos's text form for messages:
// cpus:0.1; mem:32; ports:[31000-31005].
func describeResources(rs []*mesos.Resource) string {
	if len(rs) == 0 {
		return "nothing"
	}
	return resources.Format(rs)
}
