package frameworks

import (
	"errors"
	"testing"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

func at(host string, attrs ...string) Placement {
	p := Placement{Hostname: host, Attributes: map[string]string{}}
	for i := 0; i+1 < len(attrs); i += 2 {
		p.Attributes[attrs[i]] = attrs[i+1]
	}
	return p
}

func TestConstraintAllows(t *testing.T) {
	placed := []Placement{at("a", "rack", "r1"), at("b", "rack", "r1"), at("c", "rack", "r2")}
	tests := []struct {
		parts     []string
		candidate Placement
		placed    []Placement
		want      bool
	}{
		{[]string{"hostname", "UNIQUE"}, at("a"), placed, false},
		{[]string{"hostname", "UNIQUE"}, at("d"), placed, true},
		{[]string{"rack", "UNIQUE"}, at("d", "rack", "r3"), placed, true},
		{[]string{"rack", "UNIQUE"}, at("d"), placed, false}, // no rack attribute
		{[]string{"rack", "CLUSTER", "r2"}, at("d", "rack", "r2"), nil, true},
		{[]string{"rack", "CLUSTER", "r2"}, at("d", "rack", "r1"), nil, false},
		{[]string{"rack", "CLUSTER"}, at("d", "rack", "r9"), nil, true},
		{[]string{"rack", "CLUSTER"}, at("d", "rack", "r2"), placed, false}, // the first placed is on r1
		{[]string{"rack", "GROUP_BY"}, at("d", "rack", "r2"), placed, true},
		{[]string{"rack", "GROUP_BY"}, at("d", "rack", "r1"), placed, false},
		{[]string{"rack", "GROUP_BY", "3"}, at("d", "rack", "r3"), placed, true},
		{[]string{"rack", "GROUP_BY", "3"}, at("d", "rack", "r2"), placed, false}, // r3 is still empty
		{[]string{"hostname", "LIKE", "srv[0-9]+"}, at("srv12"), nil, true},
		{[]string{"hostname", "LIKE", "srv[0-9]+"}, at("srv12.example"), nil, false}, // whole value
		{[]string{"hostname", "UNLIKE", "srv.*"}, at("db1"), nil, true},
		{[]string{"gpu", "UNLIKE", "none"}, at("db1"), nil, true}, // without the attribute
		{[]string{"gpu", "LIKE", ".*"}, at("db1"), nil, false},
		{[]string{"rack", "MAX_PER", "2"}, at("d", "rack", "r1"), placed, false},
		{[]string{"rack", "MAX_PER", "2"}, at("d", "rack", "r2"), placed, true},
		{[]string{"rack", "IS", "r1"}, at("d", "rack", "r1"), nil, true},
		{[]string{"rack", "is", "r1"}, at("d", "rack", "r2"), nil, false},
	}
	for _, tt := range tests {
		c, err := ParseConstraint(tt.parts)
		if err != nil {
			t.Fatalf("%v: %v", tt.parts, err)
		}
		if got := c.Allows(tt.candidate, tt.placed); got != tt.want {
			t.Errorf("%v on %v: %v, want %v", tt.parts, tt.candidate, got, tt.want)
		}
	}
}

func TestParseConstraintRefuses(t *testing.T) {
	for _, parts := range [][]string{
		{"hostname"},
		{"hostname", "UNIQUE", "x", "y"},
		{"", "UNIQUE"},
		{"hostname", "SOMETIMES"},
		{"hostname", "UNIQUE", "x"},
		{"hostname", "LIKE"},
		{"hostname", "LIKE", "("},
		{"rack", "MAX_PER", "0"},
		{"rack", "GROUP_BY", "many"},
		{"rack", "IS"},
	} {
		if _, err := ParseConstraint(parts); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%q: %v, want ErrInvalid", parts, err)
		}
	}
}

func TestAttributeText(t *testing.T) {
	attrs := []*mesos.Attribute{
		{Name: proto.String("rack"), Type: mesos.Value_TEXT.Enum(), Text: &mesos.Value_Text{Value: proto.String("r1")}},
		{Name: proto.String("cores"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(8)}},
		{Name: proto.String("zones"), Type: mesos.Value_SET.Enum(), Set: &mesos.Value_Set{Item: []string{"a", "b"}}},
	}
	got := AttributeText(attrs)
	if got["rack"] != "r1" || got["cores"] != "8" || got["zones"] != "{a, b}" {
		t.Fatalf("%v", got)
	}
}
