package frameworks

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/resources"
)

// Constraint operators, with Marathon's names and meanings.
const (
	// Unique: no two tasks on the same value of the field.
	Unique = "UNIQUE"
	// Cluster: every task on Value, or, without one, on the value of the
	// first task placed.
	Cluster = "CLUSTER"
	// GroupBy: spread evenly over the field's values; Value, when given,
	// is how many values there are, so that one not seen yet counts as
	// empty.
	GroupBy = "GROUP_BY"
	// Like and Unlike: the field's value matches (does not match) the
	// regular expression Value, entirely.
	Like   = "LIKE"
	Unlike = "UNLIKE"
	// MaxPer: at most Value tasks on one value of the field.
	MaxPer = "MAX_PER"
	// Is: the field's value is Value.
	Is = "IS"
)

// HostnameField is the field naming the agent's hostname rather than one
// of its attributes.
const HostnameField = "hostname"

// maxConstraintValue bounds a constraint's value (a regular expression,
// say): a definition is user input.
const maxConstraintValue = 1024

// Constraint restricts where a framework's tasks go, by the hostname or an
// attribute of the agent. Make one with ParseConstraint.
type Constraint struct {
	Field, Operator, Value string
	re                     *regexp.Regexp // LIKE, UNLIKE
	n                      int            // GROUP_BY, MAX_PER
}

// ParseConstraint reads Marathon's array form: [field, operator] or
// [field, operator, value]. Errors wrap errdefs.ErrInvalid and say what is
// wrong for the user.
func ParseConstraint(parts []string) (Constraint, error) {
	if len(parts) < 2 || len(parts) > 3 {
		return Constraint{}, fmt.Errorf("a constraint is [field, operator] or [field, operator, value], not %d items: %w", len(parts), errdefs.ErrInvalid)
	}
	c := Constraint{Field: parts[0], Operator: strings.ToUpper(parts[1])}
	if len(parts) == 3 {
		c.Value = parts[2]
	}
	if c.Field == "" {
		return c, fmt.Errorf("constraint field is empty: %w", errdefs.ErrInvalid)
	}
	if len(c.Value) > maxConstraintValue {
		return c, fmt.Errorf("constraint value longer than %d: %w", maxConstraintValue, errdefs.ErrInvalid)
	}
	switch c.Operator {
	case Unique:
		if c.Value != "" {
			return c, fmt.Errorf("UNIQUE takes no value: %w", errdefs.ErrInvalid)
		}
	case Cluster:
	case GroupBy, MaxPer:
		if c.Value == "" && c.Operator == GroupBy {
			break
		}
		n, err := strconv.Atoi(c.Value)
		if err != nil || n < 1 {
			return c, fmt.Errorf("%s needs a positive integer value, not %q: %w", c.Operator, c.Value, errdefs.ErrInvalid)
		}
		c.n = n
	case Like, Unlike:
		if c.Value == "" {
			return c, fmt.Errorf("%s needs a regular expression: %w", c.Operator, errdefs.ErrInvalid)
		}
		re, err := regexp.Compile("^(?:" + c.Value + ")$")
		if err != nil {
			return c, fmt.Errorf("%s value %q is not a regular expression: %w", c.Operator, c.Value, errdefs.ErrInvalid)
		}
		c.re = re
	case Is:
		if c.Value == "" {
			return c, fmt.Errorf("IS needs a value: %w", errdefs.ErrInvalid)
		}
	default:
		return c, fmt.Errorf("constraint operator %q is not one of UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER, IS: %w", parts[1], errdefs.ErrInvalid)
	}
	return c, nil
}

// Parts is the constraint in Marathon's array form.
func (c Constraint) Parts() []string {
	if c.Value == "" && (c.Operator == Unique || c.Operator == Cluster || c.Operator == GroupBy) {
		return []string{c.Field, c.Operator}
	}
	return []string{c.Field, c.Operator, c.Value}
}

// Placement is what constraints read of an agent: its hostname and its
// attributes as text.
type Placement struct {
	Hostname   string            `json:"hostname"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// PlacementOf reads an offer's agent.
func PlacementOf(o *mesos.Offer) Placement {
	return Placement{Hostname: o.GetHostname(), Attributes: AttributeText(o.GetAttributes())}
}

// AttributeText renders attributes as Mesos writes them in --attributes:
// text as is, scalars as numbers, ranges as [a-b, c-d], sets as {a, b}.
func AttributeText(attrs []*mesos.Attribute) map[string]string {
	if len(attrs) == 0 {
		return nil
	}
	out := make(map[string]string, len(attrs))
	for _, a := range attrs {
		switch a.GetType() {
		case mesos.Value_TEXT:
			out[a.GetName()] = a.GetText().GetValue()
		case mesos.Value_SCALAR:
			out[a.GetName()] = strconv.FormatFloat(a.GetScalar().GetValue(), 'f', -1, 64)
		case mesos.Value_RANGES, mesos.Value_SET:
			r := &mesos.Resource{Name: a.Name, Type: a.Type, Ranges: a.Ranges, Set: a.Set}
			_, v, _ := strings.Cut(resources.Format([]*mesos.Resource{r}), ":")
			out[a.GetName()] = v
		}
	}
	return out
}

func (p Placement) value(field string) (string, bool) {
	if field == HostnameField || field == "@hostname" {
		return p.Hostname, true
	}
	v, ok := p.Attributes[field]
	return v, ok
}

// Allows says whether a task may go to candidate, given where the
// framework's other tasks this constraint applies to (those of one app)
// are placed. An agent without the field's attribute satisfies only
// UNLIKE.
func (c Constraint) Allows(candidate Placement, placed []Placement) bool {
	v, ok := candidate.value(c.Field)
	if !ok {
		return c.Operator == Unlike
	}
	count := func(val string) int {
		n := 0
		for _, p := range placed {
			if pv, ok := p.value(c.Field); ok && pv == val {
				n++
			}
		}
		return n
	}
	switch c.Operator {
	case Unique:
		return count(v) == 0
	case Cluster:
		if c.Value != "" {
			return v == c.Value
		}
		for _, p := range placed {
			if pv, ok := p.value(c.Field); ok {
				return pv == v
			}
		}
		return true
	case GroupBy:
		counts := map[string]int{}
		for _, p := range placed {
			if pv, ok := p.value(c.Field); ok {
				counts[pv]++
			}
		}
		least := -1
		for _, n := range counts {
			if least < 0 || n < least {
				least = n
			}
		}
		if least < 0 || len(counts) < c.n {
			// Values not seen yet hold no task.
			least = 0
		}
		return counts[v] <= least
	case Like:
		return c.re.MatchString(v)
	case Unlike:
		return !c.re.MatchString(v)
	case MaxPer:
		return count(v) < c.n
	case Is:
		return v == c.Value
	}
	return false
}

// AllowsAll is whether every constraint allows candidate.
func AllowsAll(cs []Constraint, candidate Placement, placed []Placement) bool {
	for _, c := range cs {
		if !c.Allows(candidate, placed) {
			return false
		}
	}
	return true
}
