package agent

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

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

// reserveUnreserved gives role, statically, every resource of rs that is
// unreserved (Mesos's agent --default_role: what --resources wrote without
// a role and what was detected).
func reserveUnreserved(rs []*mesos.Resource, role string) []*mesos.Resource {
	if role == "" || role == resources.Unreserved {
		return rs
	}
	out := make([]*mesos.Resource, len(rs))
	for i, r := range rs {
		if resources.ReservationRole(r) != resources.Unreserved {
			out[i] = r
			continue
		}
		c := proto.Clone(r).(*mesos.Resource)
		c.Role = nil
		c.Reservations = []*mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_STATIC.Enum(), Role: proto.String(role)}}
		out[i] = c
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

// scalarOf is the named scalar of rs, summed over roles in Mesos's fixed
// point; 0 when rs is not valid (the master checks what it sends, and New
// what the agent offers).
func scalarOf(rs []*mesos.Resource, name string) float64 {
	res, _ := resources.FromProto(rs)
	return res.Scalar(name)
}
