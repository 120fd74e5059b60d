package resources

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Kind is the type of a resource's value, as mesos.Value_Type without TEXT
// (text is an attribute type, never a resource).
type Kind uint8

// The kinds of resource values.
const (
	Scalar Kind = iota
	Ranges
	Set
)

func (k Kind) String() string {
	switch k {
	case Scalar:
		return "SCALAR"
	case Ranges:
		return "RANGES"
	case Set:
		return "SET"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Unreserved is the role of resources that are not reserved for any role.
const Unreserved = "*"

// Well-known resource names. DRF shares are computed over the first four.
const (
	CPUs  = "cpus"
	Mem   = "mem"
	Disk  = "disk"
	GPUs  = "gpus"
	Ports = "ports"
)

// scale is the fixed-point factor of scalars: Mesos keeps three decimals.
const scale = 1000

// Range is an inclusive range of integers, such as ports 31000-32000.
type Range struct {
	Begin, End uint64
}

// Resource is one named resource reserved for Role ("*" when unreserved).
// Exactly one of the value fields matters, chosen by Kind.
type Resource struct {
	Name string
	Role string
	// Dynamic reservations were made by an operator or a framework
	// (RESERVE) rather than by the agent's --resources, by Principal;
	// resources reserved differently are different resources, as in Mesos.
	Dynamic   bool
	Principal string
	Kind      Kind
	// milli is a scalar value in thousandths.
	milli  int64
	ranges []Range  // sorted, disjoint and not adjacent
	set    []string // sorted, unique
}

// NewScalar returns a scalar resource, rounded to three decimals as Mesos
// does. Negative or non-finite values give an empty resource.
func NewScalar(name, role string, v float64) Resource {
	return Resource{Name: name, Role: normRole(role), Kind: Scalar, milli: toMilli(v)}
}

// NewRanges returns a ranges resource; rs may overlap and be unsorted.
func NewRanges(name, role string, rs ...Range) Resource {
	return Resource{Name: name, Role: normRole(role), Kind: Ranges, ranges: normRanges(slices.Clone(rs))}
}

// NewSet returns a set resource; duplicate items count once.
func NewSet(name, role string, items ...string) Resource {
	s := slices.Clone(items)
	slices.Sort(s)
	return Resource{Name: name, Role: normRole(role), Kind: Set, set: slices.Compact(s)}
}

func normRole(role string) string {
	if role == "" {
		return Unreserved
	}
	return role
}

func toMilli(v float64) int64 {
	if !(v > 0) || math.IsInf(v, 0) {
		return 0
	}
	m := math.Round(v * scale)
	if m >= math.MaxInt64/4 {
		// Absurd values are clamped so that sums cannot overflow.
		return math.MaxInt64 / 4
	}
	return int64(m)
}

// Value is a scalar resource's value (0 for other kinds).
func (r Resource) Value() float64 { return float64(r.milli) / scale }

// Ranges returns a ranges resource's ranges (sorted, disjoint). The caller
// must not modify them.
func (r Resource) Ranges() []Range { return r.ranges }

// Items returns a set resource's items (sorted). The caller must not modify
// them.
func (r Resource) Items() []string { return r.set }

// Reserved reports whether the resource is reserved for a role.
func (r Resource) Reserved() bool { return r.Role != Unreserved }

// Empty reports whether the resource has nothing in it.
func (r Resource) Empty() bool {
	switch r.Kind {
	case Scalar:
		return r.milli <= 0
	case Ranges:
		return len(r.ranges) == 0
	default:
		return len(r.set) == 0
	}
}

// ValueString formats the value as Mesos does: 4, 0.5, [31000-32000, 33000-33001], {a, b}.
func (r Resource) ValueString() string {
	switch r.Kind {
	case Scalar:
		return formatScalar(r.Value())
	case Ranges:
		return formatRanges(r.ranges)
	default:
		return formatSet(r.set)
	}
}

// String is Mesos's text form, name(role):value.
func (r Resource) String() string {
	return r.Name + "(" + r.Role + "):" + r.ValueString()
}

// key orders resources and decides which ones combine.
func compareKey(a, b *Resource) int {
	if c := strings.Compare(a.Name, b.Name); c != 0 {
		return c
	}
	if c := strings.Compare(a.Role, b.Role); c != 0 {
		return c
	}
	if a.Dynamic != b.Dynamic {
		if a.Dynamic {
			return 1
		}
		return -1
	}
	if c := strings.Compare(a.Principal, b.Principal); c != 0 {
		return c
	}
	return cmp.Compare(a.Kind, b.Kind)
}

// add combines two resources of the same key.
func add(a, b Resource) Resource {
	switch a.Kind {
	case Scalar:
		a.milli += b.milli
	case Ranges:
		a.ranges = addRanges(a.ranges, b.ranges)
	default:
		a.set = unionSets(a.set, b.set)
	}
	return a
}

// sub removes b from a (same key); what b has beyond a is ignored.
func sub(a, b Resource) Resource {
	switch a.Kind {
	case Scalar:
		a.milli = max(a.milli-b.milli, 0)
	case Ranges:
		a.ranges = subRanges(a.ranges, b.ranges)
	default:
		a.set = diffSets(a.set, b.set)
	}
	return a
}

// contains reports whether a holds all of b (same key).
func contains(a, b Resource) bool {
	switch a.Kind {
	case Scalar:
		return a.milli >= b.milli
	case Ranges:
		return rangesContain(a.ranges, b.ranges)
	default:
		return setContains(a.set, b.set)
	}
}

// Resources is a normalised list of resources: sorted by name, role and
// kind, one entry per key, no empty entries. The zero value is empty. Build
// one with Of or FromProto; never append to one directly.
type Resources []Resource

// Of returns the normalised sum of rs.
func Of(rs ...Resource) Resources {
	out := make(Resources, 0, len(rs))
	for _, r := range rs {
		if !r.Empty() {
			out = append(out, r)
		}
	}
	return normalize(out)
}

// Sum returns the sum of every Resources in list.
func Sum(list ...Resources) Resources {
	var acc Accumulator
	for _, r := range list {
		acc.Add(r)
	}
	return acc.Resources()
}

// Accumulator sums many Resources in place: Add merges into one running
// total, so summing n small lists costs n merges and no copy of the total
// (Resources.Add copies it each time; 50,000 tasks' resources summed for
// a state answer were most of its cost). The zero value is empty.
type Accumulator struct{ sum Resources }

// Add adds o to the total.
func (a *Accumulator) Add(o Resources) {
	i := 0
	for _, r := range o {
		for i < len(a.sum) && compareKey(&a.sum[i], &r) < 0 {
			i++
		}
		if i < len(a.sum) && compareKey(&a.sum[i], &r) == 0 {
			// add builds new range and set slices; the entries of o
			// are never written.
			a.sum[i] = add(a.sum[i], r)
		} else {
			a.sum = slices.Insert(a.sum, i, r)
		}
		i++
	}
}

// Resources returns the total so far. The Accumulator must not be used
// after.
func (a *Accumulator) Resources() Resources { return a.sum }

// normalize sorts out (whose entries are not empty) by key and merges
// neighbours with equal keys, in place.
func normalize(out Resources) Resources {
	slices.SortStableFunc(out, func(a, b Resource) int { return compareKey(&a, &b) })
	// Merge neighbours with equal keys.
	n := 0
	for i := range out {
		if n > 0 && compareKey(&out[n-1], &out[i]) == 0 {
			out[n-1] = add(out[n-1], out[i])
			continue
		}
		out[n] = out[i]
		n++
	}
	return out[:n]
}

// IsEmpty reports whether there is nothing in r.
func (r Resources) IsEmpty() bool { return len(r) == 0 }

// Add returns r + o.
func (r Resources) Add(o Resources) Resources {
	if len(o) == 0 {
		return r
	}
	if len(r) == 0 {
		return o
	}
	out := make(Resources, 0, len(r)+len(o))
	i, j := 0, 0
	for i < len(r) && j < len(o) {
		switch c := compareKey(&r[i], &o[j]); {
		case c < 0:
			out = append(out, r[i])
			i++
		case c > 0:
			out = append(out, o[j])
			j++
		default:
			out = append(out, add(r[i], o[j]))
			i++
			j++
		}
	}
	out = append(out, r[i:]...)
	return append(out, o[j:]...)
}

// Subtract returns r - o. What o holds beyond r is ignored (a scalar stops
// at zero); callers that need exactness check Contains first.
func (r Resources) Subtract(o Resources) Resources {
	if len(o) == 0 || len(r) == 0 {
		return r
	}
	out := make(Resources, 0, len(r))
	i, j := 0, 0
	for i < len(r) {
		if j == len(o) {
			out = append(out, r[i:]...)
			break
		}
		switch c := compareKey(&r[i], &o[j]); {
		case c < 0:
			out = append(out, r[i])
			i++
		case c > 0:
			j++
		default:
			if d := sub(r[i], o[j]); !d.Empty() {
				out = append(out, d)
			}
			i++
			j++
		}
	}
	return out
}

// Contains reports whether r holds all of o, exactly: every scalar at least
// as large, every range and set item present, in the same role.
func (r Resources) Contains(o Resources) bool {
	i := 0
	for j := range o {
		for i < len(r) && compareKey(&r[i], &o[j]) < 0 {
			i++
		}
		if i == len(r) || compareKey(&r[i], &o[j]) != 0 || !contains(r[i], o[j]) {
			return false
		}
	}
	return true
}

// Equal reports whether r and o hold exactly the same resources.
func (r Resources) Equal(o Resources) bool {
	return len(r) == len(o) && r.Contains(o) && o.Contains(r)
}

// Scalar is the sum of the named scalar over all roles.
func (r Resources) Scalar(name string) float64 {
	var m int64
	for i := range r {
		if r[i].Name == name && r[i].Kind == Scalar {
			m += r[i].milli
		}
	}
	return float64(m) / scale
}

// Get returns the resource with the name in role, if any.
func (r Resources) Get(name, role string) (Resource, bool) {
	role = normRole(role)
	for _, x := range r {
		if x.Name == name && x.Role == role {
			return x, true
		}
	}
	return Resource{}, false
}

// Filter returns the resources for which keep is true.
func (r Resources) Filter(keep func(Resource) bool) Resources {
	var out Resources
	for _, x := range r {
		if keep(x) {
			out = append(out, x)
		}
	}
	return out
}

// HasReservations reports whether any resource is reserved for a role.
func (r Resources) HasReservations() bool {
	for i := range r {
		if r[i].Role != Unreserved {
			return true
		}
	}
	return false
}

// AllocatableTo returns what a framework in role may be offered: the
// unreserved resources and those reserved for role.
func (r Resources) AllocatableTo(role string) Resources {
	if !r.HasReservations() {
		return r
	}
	return r.Filter(func(x Resource) bool { return x.Role == Unreserved || x.Role == role })
}

// Flatten returns the resources with every reservation dropped, for
// comparing quantities regardless of role.
func (r Resources) Flatten() Resources {
	if !r.HasReservations() {
		return r
	}
	out := make(Resources, len(r))
	for i, x := range r {
		x.Role, x.Dynamic, x.Principal = Unreserved, false, ""
		out[i] = x
	}
	return Of(out...)
}

// String is Mesos's text form: cpus(*):4; mem(*):1024; ports(*):[31000-32000].
func (r Resources) String() string {
	parts := make([]string, len(r))
	for i, x := range r {
		parts[i] = x.String()
	}
	return strings.Join(parts, "; ")
}

// Quantities are the scalars DRF weighs, in thousandths, indexed by
// QCPUs, QMem, QDisk and QGPUs. They are plain numbers so the allocator's
// hot loop does no allocation.
type Quantities [4]int64

// Indexes into Quantities.
const (
	QCPUs = iota
	QMem
	QDisk
	QGPUs
)

// QuantityNames are the resource names behind Quantities' indexes.
var QuantityNames = [4]string{CPUs, Mem, Disk, GPUs}

// Quantities sums cpus, mem, disk and gpus over all roles.
func (r Resources) Quantities() Quantities {
	var q Quantities
	for i := range r {
		if r[i].Kind != Scalar {
			continue
		}
		switch r[i].Name {
		case CPUs:
			q[QCPUs] += r[i].milli
		case Mem:
			q[QMem] += r[i].milli
		case Disk:
			q[QDisk] += r[i].milli
		case GPUs:
			q[QGPUs] += r[i].milli
		}
	}
	return q
}

// Add returns q + o.
func (q Quantities) Add(o Quantities) Quantities {
	for i := range q {
		q[i] += o[i]
	}
	return q
}

// Sub returns q - o, stopping at zero.
func (q Quantities) Sub(o Quantities) Quantities {
	for i := range q {
		q[i] = max(q[i]-o[i], 0)
	}
	return q
}

// Get returns quantity i as a float.
func (q Quantities) Get(i int) float64 { return float64(q[i]) / scale }

// QuantitiesOf reads amounts by resource name (a quota's guarantees or
// limits) into Quantities; names other than cpus, mem, disk and gpus are
// ignored. unset, when not nil, gets true at every index not named.
func QuantitiesOf(m map[string]float64, unset *[4]bool) Quantities {
	var q Quantities
	for i, name := range QuantityNames {
		v, ok := m[name]
		if unset != nil {
			unset[i] = !ok
		}
		q[i] = toMilli(v)
	}
	return q
}

// CapQuantities returns r with at most limit[i] of each quantity i whose
// limited[i] is true, the rest left out: the part of an offer a role's
// quota limit lets it have. Reserved resources are kept first (they are
// the role's own), then unreserved ones; other resources pass whole.
func (r Resources) CapQuantities(limit Quantities, limited [4]bool) Resources {
	index := func(name string) int {
		for i, n := range QuantityNames {
			if n == name {
				return i
			}
		}
		return -1
	}
	left := limit
	out := make([]Resource, 0, len(r))
	take := func(x Resource) {
		i := index(x.Name)
		if x.Kind != Scalar || i < 0 || !limited[i] {
			out = append(out, x)
			return
		}
		x.milli = min(x.milli, left[i])
		left[i] -= x.milli
		out = append(out, x)
	}
	for _, x := range r {
		if x.Reserved() {
			take(x)
		}
	}
	for _, x := range r {
		if !x.Reserved() {
			take(x)
		}
	}
	return Of(out...)
}

// Model is the JSON shape Mesos's endpoints give resources: cpus, gpus, mem
// and disk always present as numbers, other scalars as numbers, ranges as
// "[a-b, c-d]" and sets as "{a, b}", summed over roles.
func (r Resources) Model() map[string]any {
	m := map[string]any{CPUs: 0.0, GPUs: 0.0, Mem: 0.0, Disk: 0.0}
	// Resources are sorted by name, so entries of one name are neighbours.
	for i := 0; i < len(r); {
		name, kind := r[i].Name, r[i].Kind
		acc := r[i]
		j := i + 1
		for ; j < len(r) && r[j].Name == name; j++ {
			if r[j].Kind == kind {
				acc.Role = r[j].Role
				acc = add(acc, r[j])
			}
		}
		if kind == Scalar {
			m[name] = acc.Value()
		} else {
			m[name] = acc.ValueString()
		}
		i = j
	}
	return m
}

// normRanges sorts rs and merges overlapping and adjacent ranges, dropping
// inverted ones. It reuses rs.
func normRanges(rs []Range) []Range {
	rs = slices.DeleteFunc(rs, func(r Range) bool { return r.Begin > r.End })
	if len(rs) < 2 {
		return rs
	}
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.Begin, b.Begin) })
	n := 0
	for _, r := range rs[1:] {
		last := &rs[n]
		if last.End == math.MaxUint64 || r.Begin <= last.End+1 {
			last.End = max(last.End, r.End)
			continue
		}
		n++
		rs[n] = r
	}
	return rs[:n+1]
}

func addRanges(a, b []Range) []Range {
	out := make([]Range, 0, len(a)+len(b))
	out = append(out, a...)
	return normRanges(append(out, b...))
}

// subRanges returns a - b for normalised a and b.
func subRanges(a, b []Range) []Range {
	var out []Range
	j := 0
	for _, r := range a {
		for j < len(b) && b[j].End < r.Begin {
			j++
		}
		cur := r
		k := j
		keep := true
		for k < len(b) && b[k].Begin <= cur.End {
			if b[k].Begin > cur.Begin {
				out = append(out, Range{cur.Begin, b[k].Begin - 1})
			}
			if b[k].End >= cur.End {
				keep = false
				break
			}
			cur.Begin = b[k].End + 1
			k++
		}
		if keep {
			out = append(out, cur)
		}
	}
	return out
}

// rangesContain reports whether normalised a covers normalised b.
func rangesContain(a, b []Range) bool {
	i := 0
	for _, r := range b {
		for i < len(a) && a[i].End < r.Begin {
			i++
		}
		// a is coalesced, so one range of a must cover all of r.
		if i == len(a) || a[i].Begin > r.Begin || a[i].End < r.End {
			return false
		}
	}
	return true
}

func unionSets(a, b []string) []string {
	out := make([]string, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := strings.Compare(a[i], b[j]); {
		case c < 0:
			out = append(out, a[i])
			i++
		case c > 0:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

func diffSets(a, b []string) []string {
	var out []string
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j < len(b) && b[j] == x {
			continue
		}
		out = append(out, x)
	}
	return out
}

func setContains(a, b []string) bool {
	i := 0
	for _, x := range b {
		for i < len(a) && a[i] < x {
			i++
		}
		if i == len(a) || a[i] != x {
			return false
		}
	}
	return true
}
