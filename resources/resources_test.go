package resources

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

func cpus(v float64) Resource                  { return NewScalar(CPUs, "", v) }
func mem(v float64) Resource                   { return NewScalar(Mem, "", v) }
func ports(rs ...Range) Resource               { return NewRanges(Ports, "", rs...) }
func set(items ...string) Resource             { return NewSet("zones", "", items...) }
func reserved(role string, v float64) Resource { return NewScalar(CPUs, role, v) }

func TestAddSubtract(t *testing.T) {
	tests := []struct {
		name      string
		a, b      Resources
		sum, diff string
	}{
		{"empty", nil, nil, "", ""},
		{"scalars", Of(cpus(4), mem(1024)), Of(cpus(1.5)), "cpus(*):5.5; mem(*):1024", "cpus(*):2.5; mem(*):1024"},
		{"fixed point", Of(cpus(0.1)), Of(cpus(0.2)), "cpus(*):0.3", ""},
		{"scalar stops at zero", Of(cpus(1)), Of(cpus(3)), "cpus(*):4", ""},
		{"tiny values round", Of(cpus(0.0004)), nil, "", ""},
		{"roles are kept apart", Of(cpus(1), reserved("prod", 2)), Of(reserved("prod", 1)), "cpus(*):1; cpus(prod):3", "cpus(*):1; cpus(prod):1"},
		{"ranges merge", Of(ports(Range{1, 5})), Of(ports(Range{6, 10})), "ports(*):[1-10]", "ports(*):[1-5]"},
		{"ranges split", Of(ports(Range{1, 10})), Of(ports(Range{3, 4}, Range{7, 7})), "ports(*):[1-10]", "ports(*):[1-2, 5-6, 8-10]"},
		{"ranges over edges", Of(ports(Range{5, 10}, Range{20, 30})), Of(ports(Range{1, 6}, Range{9, 21}, Range{30, 40})), "ports(*):[1-40]", "ports(*):[7-8, 22-29]"},
		{"ranges all gone", Of(ports(Range{5, 10})), Of(ports(Range{0, 100})), "ports(*):[0-100]", ""},
		{"sets", Of(set("a", "b")), Of(set("b", "c")), "zones(*):{a, b, c}", "zones(*):{a}"},
		{"disjoint names", Of(cpus(1)), Of(mem(2)), "cpus(*):1; mem(*):2", "cpus(*):1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Add(tt.b).String(); got != tt.sum {
				t.Errorf("Add = %q, want %q", got, tt.sum)
			}
			if got := tt.a.Subtract(tt.b).String(); got != tt.diff {
				t.Errorf("Subtract = %q, want %q", got, tt.diff)
			}
			if got := tt.b.Add(tt.a).String(); got != tt.sum {
				t.Errorf("Add is not commutative: %q", got)
			}
			if got := Sum(tt.a, nil, tt.b).String(); got != tt.sum {
				t.Errorf("Sum = %q, want %q", got, tt.sum)
			}
		})
	}
}

// Sum of many equals adding them one by one.
func TestSumEqualsRepeatedAdd(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	for range 50 {
		var list []Resources
		var want Resources
		for range rng.IntN(20) {
			p := uint64(rng.IntN(100))
			r := Of(cpus(float64(rng.IntN(8))/4), mem(float64(rng.IntN(4096))),
				ports(Range{p, p + uint64(rng.IntN(3))}), reserved([]string{"a", "b"}[rng.IntN(2)], 0.5),
				set([]string{"x", "y", "z"}[rng.IntN(3)]))
			list = append(list, r)
			want = want.Add(r)
		}
		if got := Sum(list...); got.String() != want.String() {
			t.Fatalf("Sum = %q, repeated Add = %q", got, want)
		}
	}
}

func TestContains(t *testing.T) {
	total := Of(cpus(4), mem(1024), ports(Range{31000, 31010}, Range{32000, 32000}), set("a", "b"), reserved("prod", 2))
	tests := []struct {
		name string
		sub  Resources
		want bool
	}{
		{"nothing", nil, true},
		{"itself", total, true},
		{"less cpu", Of(cpus(3.999)), true},
		{"more cpu", Of(cpus(4.001)), false},
		{"ports inside", Of(ports(Range{31002, 31005}, Range{32000, 32000})), true},
		{"ports across a gap", Of(ports(Range{31010, 31011})), false},
		{"port outside", Of(ports(Range{80, 80})), false},
		{"set item", Of(set("b")), true},
		{"missing set item", Of(set("c")), false},
		{"reserved from reserved", Of(reserved("prod", 2)), true},
		{"reserved is not unreserved", Of(reserved("dev", 1)), false},
		{"unknown name", Of(NewScalar("bananas", "", 1)), false},
		{"unreserved cannot come from reservation", Of(cpus(5)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := total.Contains(tt.sub); got != tt.want {
				t.Errorf("Contains(%s) = %v, want %v", tt.sub, got, tt.want)
			}
		})
	}
}

// TestArithmeticProperties checks, on random resources, that what is
// subtracted can be added back and that a sum contains its parts.
func TestArithmeticProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := func() Resources {
		var rs []Resource
		for range rng.IntN(4) {
			rs = append(rs, NewScalar([]string{CPUs, Mem, Disk}[rng.IntN(3)], []string{"", "prod"}[rng.IntN(2)], float64(rng.IntN(10000))/1000))
		}
		for range rng.IntN(3) {
			b := uint64(rng.IntN(100))
			rs = append(rs, ports(Range{b, b + uint64(rng.IntN(10))}))
		}
		for range rng.IntN(3) {
			rs = append(rs, set(string(rune('a'+rng.IntN(5)))))
		}
		return Of(rs...)
	}
	for i := range 2000 {
		a, b := random(), random()
		sum := a.Add(b)
		if !sum.Contains(a) || !sum.Contains(b) {
			t.Fatalf("#%d: %s + %s = %s does not contain its parts", i, a, b, sum)
		}
		if got := sum.Subtract(b); !got.Contains(a.Subtract(b)) {
			t.Fatalf("#%d: (%s + %s) - b = %s", i, a, b, got)
		}
		if a.Contains(b) {
			if got := a.Subtract(b).Add(b); !got.Equal(a) {
				t.Fatalf("#%d: %s - %s + b = %s", i, a, b, got)
			}
		}
		if !Of(append(append([]Resource{}, a...), b...)...).Equal(sum) {
			t.Fatalf("#%d: Of(a..., b...) != a.Add(b)", i)
		}
	}
}

func TestQuantitiesAndScalar(t *testing.T) {
	r := Of(cpus(1.5), reserved("prod", 0.5), mem(100), NewScalar(Disk, "", 10), NewScalar(GPUs, "", 1), ports(Range{1, 2}))
	q := r.Quantities()
	if q.Get(QCPUs) != 2 || q.Get(QMem) != 100 || q.Get(QDisk) != 10 || q.Get(QGPUs) != 1 {
		t.Fatalf("Quantities = %v", q)
	}
	if r.Scalar(CPUs) != 2 {
		t.Fatalf("Scalar(cpus) = %v", r.Scalar(CPUs))
	}
	if got := q.Sub(Of(cpus(5)).Quantities()); got[QCPUs] != 0 {
		t.Fatalf("Sub went below zero: %v", got)
	}
}

func TestAllocatableToAndFlatten(t *testing.T) {
	r := Of(cpus(1), reserved("prod", 2), reserved("dev", 3))
	if got := r.AllocatableTo("prod").String(); got != "cpus(*):1; cpus(prod):2" {
		t.Errorf("AllocatableTo(prod) = %s", got)
	}
	if got := r.AllocatableTo("other").String(); got != "cpus(*):1" {
		t.Errorf("AllocatableTo(other) = %s", got)
	}
	if got := r.Flatten().String(); got != "cpus(*):6" {
		t.Errorf("Flatten = %s", got)
	}
}

func TestModel(t *testing.T) {
	r := Of(cpus(1), reserved("prod", 2), mem(64), ports(Range{1, 2}, Range{5, 5}), set("x"))
	want := map[string]any{"cpus": 3.0, "mem": 64.0, "disk": 0.0, "gpus": 0.0, "ports": "[1-2, 5-5]", "zones": "{x}"}
	if got := r.Model(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Model = %v, want %v", got, want)
	}
}

func scalarProto(name string, v float64) *mesos.Resource {
	return &mesos.Resource{Name: proto.String(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(v)}}
}

func TestFromProto(t *testing.T) {
	rangesProto := func(rs ...uint64) *mesos.Resource {
		p := &mesos.Resource{Name: proto.String(Ports), Type: mesos.Value_RANGES.Enum(), Ranges: &mesos.Value_Ranges{}}
		for i := 0; i+1 < len(rs); i += 2 {
			p.Ranges.Range = append(p.Ranges.Range, &mesos.Value_Range{Begin: proto.Uint64(rs[i]), End: proto.Uint64(rs[i+1])})
		}
		return p
	}
	withRole := func(r *mesos.Resource, role string) *mesos.Resource {
		r.Reservations = []*mesos.Resource_ReservationInfo{{Role: proto.String(role)}}
		return r
	}
	tests := []struct {
		name    string
		in      []*mesos.Resource
		want    string
		wantErr string
	}{
		{"scalars merge", []*mesos.Resource{scalarProto("cpus", 1), scalarProto("cpus", 0.5)}, "cpus(*):1.5", ""},
		{"ranges", []*mesos.Resource{rangesProto(10, 20, 1, 5)}, "ports(*):[1-5, 10-20]", ""},
		{"reservation", []*mesos.Resource{withRole(scalarProto("cpus", 1), "prod")}, "cpus(prod):1", ""},
		{"deprecated role", []*mesos.Resource{{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(5)}, Role: proto.String("web")}}, "mem(web):5", ""},
		{"negative", []*mesos.Resource{scalarProto("cpus", -1)}, "", "not a finite non-negative number"},
		{"no name", []*mesos.Resource{scalarProto("", 1)}, "", "empty name"},
		{"missing scalar", []*mesos.Resource{{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum()}}, "", "without a scalar"},
		{"inverted range", []*mesos.Resource{rangesProto(5, 1)}, "", "ends before it begins"},
		{"overlapping ranges", []*mesos.Resource{rangesProto(1, 5, 5, 6)}, "", "overlap"},
		{"duplicate set item", []*mesos.Resource{{Name: proto.String("x"), Type: mesos.Value_SET.Enum(), Set: &mesos.Value_Set{Item: []string{"a", "a"}}}}, "", "appears twice"},
		{"text", []*mesos.Resource{{Name: proto.String("x"), Type: mesos.Value_TEXT.Enum()}}, "", "not a resource type"},
		{"bad role", []*mesos.Resource{withRole(scalarProto("cpus", 1), "a b")}, "", "contains"},
		{"revocable", []*mesos.Resource{{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(1)}, Revocable: &mesos.Resource_RevocableInfo{}}}, "", "not supported"},
		{"nil", []*mesos.Resource{nil}, "", "null resource"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromProto(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errdefs.ErrInvalid) {
					t.Fatalf("err = %v, want one containing %q and wrapping ErrInvalid", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.String() != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestProtoRoundTrip(t *testing.T) {
	r := Of(cpus(2.5), reserved("prod", 1), mem(512), ports(Range{31000, 31005}), set("a", "b"))
	p := r.ToProto("web")
	for _, x := range p {
		if x.GetAllocationInfo().GetRole() != "web" {
			t.Fatalf("allocation_info missing on %v", x)
		}
	}
	back, err := FromProto(p)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Equal(r) {
		t.Fatalf("round trip: %s != %s", back, r)
	}
	for _, x := range r.ToProto("") {
		if x.AllocationInfo != nil {
			t.Fatalf("allocation_info set without a role: %v", x)
		}
	}
	roles, missing := AllocationRoles(p)
	if !reflect.DeepEqual(roles, []string{"web"}) || missing {
		t.Fatalf("AllocationRoles = %v, %v", roles, missing)
	}
}

func TestValidateRole(t *testing.T) {
	for _, ok := range []string{"*", "prod", "a/b", "team-1", "x.y"} {
		if err := ValidateRole(ok); err != nil {
			t.Errorf("ValidateRole(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "-x", "a b", "a\tb", "/a", "a/", "a//b", "a/../b", "a/*", `a\b`} {
		if err := ValidateRole(bad); err == nil {
			t.Errorf("ValidateRole(%q) accepted", bad)
		}
	}
}

// TestDynamicReservations: a dynamic reservation is a resource of its own
// (not merged with the static one of the same role, nor with one by
// another principal), survives the wire both ways and is dropped by
// Flatten.
func TestDynamicReservations(t *testing.T) {
	dyn := func(role, principal string, v float64) *mesos.Resource {
		return &mesos.Resource{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(v)},
			Reservations: []*mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_DYNAMIC.Enum(), Role: proto.String(role), Principal: proto.String(principal)}}}
	}
	static := &mesos.Resource{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(1)},
		Reservations: []*mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_STATIC.Enum(), Role: proto.String("web")}}}
	rs, err := FromProto([]*mesos.Resource{static, dyn("web", "ops", 2), dyn("web", "ops", 0.5), dyn("web", "dev", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 3 {
		t.Fatalf("want static, dynamic by dev and dynamic by ops apart: %+v", rs)
	}
	back, err := FromProto(rs.ToProto(""))
	if err != nil || !back.Equal(rs) {
		t.Fatalf("round trip: %v %+v", err, back)
	}
	var ops *mesos.Resource
	for _, p := range rs.ToProto("") {
		if p.GetReservations()[0].GetPrincipal() == "ops" {
			ops = p
		}
	}
	if ops == nil || ops.GetReservations()[0].GetType() != mesos.Resource_ReservationInfo_DYNAMIC || ops.GetScalar().GetValue() != 2.5 {
		t.Fatalf("dynamic reservation on the wire: %v", ops)
	}
	if flat := rs.Flatten(); len(flat) != 1 || flat.Scalar("cpus") != 4.5 {
		t.Fatalf("Flatten: %+v", flat)
	}
	// Taking the dynamic part away leaves the static one.
	left := rs.Subtract(Of(Resource{Name: "cpus", Role: "web", Dynamic: true, Principal: "ops", Kind: Scalar, milli: 2500}))
	if len(left) != 2 || left.Scalar("cpus") != 2 {
		t.Fatalf("after unreserving the ops part: %+v", left)
	}
}

func TestCapQuantities(t *testing.T) {
	r := Of(NewScalar(CPUs, "", 4), NewScalar(CPUs, "web", 1), NewScalar(Mem, "", 1024), NewRanges(Ports, "", Range{31000, 31010}))
	var unset [4]bool
	limit := QuantitiesOf(map[string]float64{CPUs: 2.5}, &unset)
	if !unset[QMem] || unset[QCPUs] {
		t.Fatalf("unset %v", unset)
	}
	limited := [4]bool{}
	for i := range unset {
		limited[i] = !unset[i]
	}
	got := r.CapQuantities(limit, limited)
	if got.Scalar(CPUs) != 2.5 || got.Scalar(Mem) != 1024 || len(got.Filter(func(x Resource) bool { return x.Name == Ports })) != 1 {
		t.Fatalf("capped %v", got)
	}
	// The reserved cpu is kept whole before the unreserved ones.
	if res, ok := got.Get(CPUs, "web"); !ok || res.Value() != 1 {
		t.Fatalf("reserved cpus %v", got)
	}
	if none := r.CapQuantities(Quantities{}, [4]bool{true, true, true, true}); none.Scalar(CPUs) != 0 || none.Scalar(Mem) != 0 {
		t.Fatalf("a zero limit left %v", none)
	}
}
