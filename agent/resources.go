package agent

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

// ParseResources reads --resources: Mesos's text form
// `cpus:4;mem:8192;disk:10000;ports:[31000-32000];gpus:1;name(role):value`
// with sets as `{a,b}`, or a JSON array of v1 Resource objects.
func ParseResources(s string) ([]*mesos.Resource, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if strings.HasPrefix(s, "[") {
		var raw []json.RawMessage
		if err := json.Unmarshal([]byte(s), &raw); err != nil {
			return nil, fmt.Errorf("resources JSON: %w: %w", errdefs.ErrInvalid, err)
		}
		out := make([]*mesos.Resource, 0, len(raw))
		for i, r := range raw {
			res := &mesos.Resource{}
			if err := codec.JSON.Unmarshal(r, res); err != nil {
				return nil, fmt.Errorf("resources JSON entry %d: %w", i, err)
			}
			out = append(out, res)
		}
		return out, nil
	}
	var out []*mesos.Resource
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("resource %q: want name:value: %w", part, errdefs.ErrInvalid)
		}
		name = strings.TrimSpace(name)
		role := ""
		if i := strings.Index(name, "("); i >= 0 && strings.HasSuffix(name, ")") {
			role = name[i+1 : len(name)-1]
			name = name[:i]
		}
		r, err := parseResourceValue(name, strings.TrimSpace(value))
		if err != nil {
			return nil, err
		}
		if role != "" && role != "*" {
			r.Reservations = []*mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_STATIC.Enum(), Role: proto.String(role)}}
		}
		out = append(out, r)
	}
	return out, nil
}

func parseResourceValue(name, value string) (*mesos.Resource, error) {
	r := &mesos.Resource{Name: proto.String(name)}
	switch {
	case strings.HasPrefix(value, "["):
		if !strings.HasSuffix(value, "]") {
			return nil, fmt.Errorf("resource %s: unterminated range %q: %w", name, value, errdefs.ErrInvalid)
		}
		rs := &mesos.Value_Ranges{}
		for _, rg := range strings.Split(value[1:len(value)-1], ",") {
			rg = strings.TrimSpace(rg)
			if rg == "" {
				continue
			}
			lo, hi, ok := strings.Cut(rg, "-")
			if !ok {
				hi = lo
			}
			b, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 64)
			e, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 64)
			if err1 != nil || err2 != nil || e < b {
				return nil, fmt.Errorf("resource %s: bad range %q: %w", name, rg, errdefs.ErrInvalid)
			}
			rs.Range = append(rs.Range, &mesos.Value_Range{Begin: proto.Uint64(b), End: proto.Uint64(e)})
		}
		r.Type = mesos.Value_RANGES.Enum()
		r.Ranges = rs
	case strings.HasPrefix(value, "{"):
		if !strings.HasSuffix(value, "}") {
			return nil, fmt.Errorf("resource %s: unterminated set %q: %w", name, value, errdefs.ErrInvalid)
		}
		set := &mesos.Value_Set{}
		for _, it := range strings.Split(value[1:len(value)-1], ",") {
			if it = strings.TrimSpace(it); it != "" {
				set.Item = append(set.Item, it)
			}
		}
		r.Type = mesos.Value_SET.Enum()
		r.Set = set
	default:
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("resource %s: bad scalar %q: %w", name, value, errdefs.ErrInvalid)
		}
		r.Type = mesos.Value_SCALAR.Enum()
		r.Scalar = &mesos.Value_Scalar{Value: proto.Float64(v)}
	}
	return r, nil
}

// ParseAttributes reads --attributes: `rack:2;os:debian;zone:[1-3]`.
func ParseAttributes(s string) ([]*mesos.Attribute, error) {
	var out []*mesos.Attribute
	for _, part := range strings.Split(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, value, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("attribute %q: want name:value: %w", part, errdefs.ErrInvalid)
		}
		a := &mesos.Attribute{Name: proto.String(strings.TrimSpace(name))}
		value = strings.TrimSpace(value)
		if strings.HasPrefix(value, "[") || strings.HasPrefix(value, "{") {
			r, err := parseResourceValue(name, value)
			if err != nil {
				return nil, err
			}
			a.Type, a.Ranges, a.Set = r.Type, r.Ranges, r.Set
		} else if f, err := strconv.ParseFloat(value, 64); err == nil {
			a.Type = mesos.Value_SCALAR.Enum()
			a.Scalar = &mesos.Value_Scalar{Value: proto.Float64(f)}
		} else {
			a.Type = mesos.Value_TEXT.Enum()
			a.Text = &mesos.Value_Text{Value: proto.String(value)}
		}
		out = append(out, a)
	}
	return out, nil
}

// DetectResources fills in what --resources left out from the machine, the
// way Mesos does: all cpus, memory minus what the host needs (1 GB, or half
// below 2 GB), disk of work_dir minus 5 GB (or half below 10 GB), ports
// 31000-32000.
func DetectResources(given []*mesos.Resource, workDir string) []*mesos.Resource {
	has := map[string]bool{}
	for _, r := range given {
		has[r.GetName()] = true
	}
	out := append([]*mesos.Resource(nil), given...)
	scalar := func(name string, v float64) {
		if !has[name] {
			out = append(out, &mesos.Resource{Name: proto.String(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(v)}})
		}
	}
	scalar("cpus", float64(runtime.NumCPU()))
	if memMB := totalMemoryMB(); memMB > 0 {
		if memMB >= 2048 {
			scalar("mem", float64(memMB-1024))
		} else {
			scalar("mem", float64(memMB/2))
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(workDir, &st); err == nil {
		diskMB := int64(st.Blocks) * st.Bsize / (1 << 20)
		if diskMB >= 10240 {
			scalar("disk", float64(diskMB-5120))
		} else {
			scalar("disk", float64(diskMB/2))
		}
	}
	if !has["ports"] {
		out = append(out, &mesos.Resource{Name: proto.String("ports"), Type: mesos.Value_RANGES.Enum(),
			Ranges: &mesos.Value_Ranges{Range: []*mesos.Value_Range{{Begin: proto.Uint64(31000), End: proto.Uint64(32000)}}}})
	}
	return out
}

func totalMemoryMB() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "MemTotal:") {
			f := strings.Fields(line)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return kb / 1024
			}
		}
	}
	return 0
}

// scalarOf sums the scalar resource name.
func scalarOf(rs []*mesos.Resource, name string) float64 {
	var v float64
	for _, r := range rs {
		if r.GetName() == name && r.GetType() == mesos.Value_SCALAR {
			v += r.GetScalar().GetValue()
		}
	}
	return v
}

// ResourcesString renders resources in Mesos's text form for logs and the UI.
func ResourcesString(rs []*mesos.Resource) string {
	var parts []string
	for _, r := range rs {
		var v string
		switch r.GetType() {
		case mesos.Value_SCALAR:
			v = strconv.FormatFloat(r.GetScalar().GetValue(), 'f', -1, 64)
		case mesos.Value_RANGES:
			var rg []string
			for _, x := range r.GetRanges().GetRange() {
				rg = append(rg, fmt.Sprintf("%d-%d", x.GetBegin(), x.GetEnd()))
			}
			v = "[" + strings.Join(rg, ", ") + "]"
		case mesos.Value_SET:
			v = "{" + strings.Join(r.GetSet().GetItem(), ", ") + "}"
		}
		parts = append(parts, r.GetName()+":"+v)
	}
	return strings.Join(parts, "; ")
}
