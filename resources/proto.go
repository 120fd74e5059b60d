package resources

import (
	"fmt"
	"math"
	"slices"
	"strings"
	"unicode"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

// FromProto validates wire resources and returns their normalised sum.
// Errors wrap errdefs.ErrInvalid and say which resource is wrong and why:
// they end up in a TASK_ERROR message or a 400 a person reads.
func FromProto(rs []*mesos.Resource) (Resources, error) {
	out := make([]Resource, 0, len(rs))
	for i, r := range rs {
		x, err := fromProto(r)
		if err != nil {
			return nil, fmt.Errorf("resource %d (%s): %w", i, describe(r), err)
		}
		out = append(out, x)
	}
	return Of(out...), nil
}

func describe(r *mesos.Resource) string {
	if r.GetName() == "" {
		return "no name"
	}
	return r.GetName()
}

func fromProto(r *mesos.Resource) (Resource, error) {
	if r == nil {
		return Resource{}, fmt.Errorf("null resource: %w", errdefs.ErrInvalid)
	}
	if r.GetName() == "" {
		return Resource{}, fmt.Errorf("empty name: %w", errdefs.ErrInvalid)
	}
	if r.ProviderId != nil || r.Revocable != nil || r.Shared != nil ||
		r.GetDisk().GetPersistence() != nil || r.GetDisk().GetSource() != nil {
		return Resource{}, fmt.Errorf("resource providers, revocable, shared and persistent or mounted disk resources are not supported: %w", errdefs.ErrInvalid)
	}
	role := ReservationRole(r)
	if role != Unreserved {
		if err := ValidateRole(role); err != nil {
			return Resource{}, fmt.Errorf("reservation: %w", err)
		}
	}
	x := Resource{Name: r.GetName(), Role: role}
	if role != Unreserved {
		x.Dynamic, x.Principal = reservationKind(r)
	}
	switch r.GetType() {
	case mesos.Value_SCALAR:
		if r.Scalar == nil {
			return x, fmt.Errorf("type SCALAR without a scalar value: %w", errdefs.ErrInvalid)
		}
		v := r.GetScalar().GetValue()
		if math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			return x, fmt.Errorf("scalar value %v is not a finite non-negative number: %w", v, errdefs.ErrInvalid)
		}
		x.Kind, x.milli = Scalar, toMilli(v)
	case mesos.Value_RANGES:
		if r.Ranges == nil {
			return x, fmt.Errorf("type RANGES without ranges: %w", errdefs.ErrInvalid)
		}
		rs := make([]Range, 0, len(r.GetRanges().GetRange()))
		for _, rg := range r.GetRanges().GetRange() {
			if rg.GetBegin() > rg.GetEnd() {
				return x, fmt.Errorf("range [%d-%d] ends before it begins: %w", rg.GetBegin(), rg.GetEnd(), errdefs.ErrInvalid)
			}
			rs = append(rs, Range{rg.GetBegin(), rg.GetEnd()})
		}
		sorted := slices.Clone(rs)
		slices.SortFunc(sorted, func(a, b Range) int {
			switch {
			case a.Begin < b.Begin:
				return -1
			case a.Begin > b.Begin:
				return 1
			}
			return 0
		})
		for i := 1; i < len(sorted); i++ {
			if sorted[i].Begin <= sorted[i-1].End {
				return x, fmt.Errorf("ranges [%d-%d] and [%d-%d] overlap: %w",
					sorted[i-1].Begin, sorted[i-1].End, sorted[i].Begin, sorted[i].End, errdefs.ErrInvalid)
			}
		}
		x.Kind, x.ranges = Ranges, normRanges(sorted)
	case mesos.Value_SET:
		if r.Set == nil {
			return x, fmt.Errorf("type SET without a set: %w", errdefs.ErrInvalid)
		}
		items := slices.Clone(r.GetSet().GetItem())
		slices.Sort(items)
		for i := 1; i < len(items); i++ {
			if items[i] == items[i-1] {
				return x, fmt.Errorf("set item %q appears twice: %w", items[i], errdefs.ErrInvalid)
			}
		}
		x.Kind, x.set = Set, items
	default:
		return x, fmt.Errorf("type %s is not a resource type (want SCALAR, RANGES or SET): %w", r.GetType(), errdefs.ErrInvalid)
	}
	return x, nil
}

// reservationKind says whether a reserved wire resource's newest
// reservation is dynamic, and by whom.
func reservationKind(r *mesos.Resource) (dynamic bool, principal string) {
	if n := len(r.GetReservations()); n > 0 {
		last := r.GetReservations()[n-1]
		return last.GetType() == mesos.Resource_ReservationInfo_DYNAMIC, last.GetPrincipal()
	}
	if r.Reservation != nil {
		// The pre-refinement field marks a dynamic reservation.
		return true, r.GetReservation().GetPrincipal()
	}
	return false, ""
}

// ReservationRole is the role a wire resource is reserved for, "*" when it
// is unreserved. It reads the newest field first: the last of
// `reservations` (reservation refinement), then `reservation.role`, then
// the deprecated `role`.
func ReservationRole(r *mesos.Resource) string {
	if n := len(r.GetReservations()); n > 0 {
		if role := r.GetReservations()[n-1].GetRole(); role != "" {
			return role
		}
	}
	if role := r.GetReservation().GetRole(); role != "" {
		return role
	}
	return normRole(r.GetRole())
}

// ToProto returns the wire form. allocationRole, when not empty, is put in
// every resource's allocation_info (offers to MULTI_ROLE frameworks, tasks
// sent to agents). Reserved resources carry their role both in
// `reservations` and in the deprecated `role`, so frameworks from before
// and after reservation refinement read them.
func (r Resources) ToProto(allocationRole string) []*mesos.Resource {
	out := make([]*mesos.Resource, len(r))
	for i, x := range r {
		p := &mesos.Resource{Name: proto.String(x.Name), Role: proto.String(x.Role)}
		switch x.Kind {
		case Scalar:
			p.Type = mesos.Value_SCALAR.Enum()
			p.Scalar = &mesos.Value_Scalar{Value: proto.Float64(x.Value())}
		case Ranges:
			p.Type = mesos.Value_RANGES.Enum()
			rs := make([]*mesos.Value_Range, len(x.ranges))
			for j, rg := range x.ranges {
				rs[j] = &mesos.Value_Range{Begin: proto.Uint64(rg.Begin), End: proto.Uint64(rg.End)}
			}
			p.Ranges = &mesos.Value_Ranges{Range: rs}
		case Set:
			p.Type = mesos.Value_SET.Enum()
			p.Set = &mesos.Value_Set{Item: slices.Clone(x.set)}
		}
		if x.Role != Unreserved {
			ri := &mesos.Resource_ReservationInfo{Type: mesos.Resource_ReservationInfo_STATIC.Enum(), Role: proto.String(x.Role)}
			if x.Dynamic {
				ri.Type = mesos.Resource_ReservationInfo_DYNAMIC.Enum()
				if x.Principal != "" {
					ri.Principal = proto.String(x.Principal)
				}
			}
			p.Reservations = []*mesos.Resource_ReservationInfo{ri}
		}
		if allocationRole != "" {
			p.AllocationInfo = &mesos.Resource_AllocationInfo{Role: proto.String(allocationRole)}
		}
		out[i] = p
	}
	return out
}

// AllocationRoles returns the distinct allocation_info roles of wire
// resources, and whether some resource had none.
func AllocationRoles(rs []*mesos.Resource) (roles []string, missing bool) {
	for _, r := range rs {
		if r.GetAllocationInfo() == nil || r.GetAllocationInfo().Role == nil {
			missing = true
			continue
		}
		if !slices.Contains(roles, r.GetAllocationInfo().GetRole()) {
			roles = append(roles, r.GetAllocationInfo().GetRole())
		}
	}
	return roles, missing
}

// ValidateRole applies Mesos's rules for role names: not empty, not "." or
// "..", no leading '-', no whitespace, control characters or backslash; a
// hierarchical role "a/b" has no empty, "." or ".." component. Errors wrap
// errdefs.ErrInvalid.
func ValidateRole(role string) error {
	if role == Unreserved {
		return nil
	}
	if role == "" {
		return fmt.Errorf("role name is empty: %w", errdefs.ErrInvalid)
	}
	if strings.HasPrefix(role, "/") || strings.HasSuffix(role, "/") {
		return fmt.Errorf("role %q begins or ends with '/': %w", role, errdefs.ErrInvalid)
	}
	for _, part := range strings.Split(role, "/") {
		switch {
		case part == "":
			return fmt.Errorf("role %q has an empty component: %w", role, errdefs.ErrInvalid)
		case part == "." || part == "..":
			return fmt.Errorf("role %q has a %q component: %w", role, part, errdefs.ErrInvalid)
		case part == "*":
			return fmt.Errorf("role %q has a '*' component: %w", role, errdefs.ErrInvalid)
		case strings.HasPrefix(part, "-"):
			return fmt.Errorf("role %q has a component beginning with '-': %w", role, errdefs.ErrInvalid)
		}
		for _, c := range part {
			if unicode.IsSpace(c) || unicode.IsControl(c) || c == '\\' {
				return fmt.Errorf("role %q contains %q: %w", role, c, errdefs.ErrInvalid)
			}
		}
	}
	return nil
}
