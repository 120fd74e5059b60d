package apps

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

// placement is where one instance of an app goes: the offer, and what of
// it the instance takes.
type placement struct {
	task      *mesos.TaskInfo
	used      []*mesos.Resource
	hostPorts []uint64
}

// acceptedResources keeps the offered resources an app may use: those of
// its acceptedResourceRoles, or unreserved ones and those of the
// framework's role when it names none (Marathon's default without
// --default_accepted_resource_roles).
func acceptedResources(offered []*mesos.Resource, accepted []string, frameworkRole string) []*mesos.Resource {
	if len(accepted) == 0 {
		accepted = []string{resources.Unreserved}
		if frameworkRole != "" && frameworkRole != resources.Unreserved {
			accepted = append(accepted, frameworkRole)
		}
	}
	out := make([]*mesos.Resource, 0, len(offered))
	for _, r := range offered {
		if slices.Contains(accepted, resources.ReservationRole(r)) {
			out = append(out, r)
		}
	}
	return out
}

func scalarResource(name string, v float64) *mesos.Resource {
	return &mesos.Resource{Name: proto.String(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(v)}}
}

// wantResources is what one instance of a asks for: its scalars, the host
// ports it names, and how many more to pick from the offer.
func (a *App) wantResources() (want []*mesos.Resource, pick int) {
	want = []*mesos.Resource{scalarResource(resources.CPUs, a.Cpus), scalarResource(resources.Mem, a.Mem)}
	if a.Disk > 0 {
		want = append(want, scalarResource(resources.Disk, a.Disk))
	}
	if a.Gpus > 0 {
		want = append(want, scalarResource(resources.GPUs, float64(a.Gpus)))
	}
	var fixed []*mesos.Value_Range
	if a.bridged() {
		for _, m := range a.portMappings() {
			if m.HostPort != 0 {
				fixed = append(fixed, &mesos.Value_Range{Begin: proto.Uint64(uint64(m.HostPort)), End: proto.Uint64(uint64(m.HostPort))})
			} else {
				pick++
			}
		}
	} else {
		for _, p := range a.PortDefinitions {
			if a.RequirePorts {
				fixed = append(fixed, &mesos.Value_Range{Begin: proto.Uint64(uint64(p.Port)), End: proto.Uint64(uint64(p.Port))})
			} else {
				pick++
			}
		}
	}
	if len(fixed) > 0 {
		want = append(want, &mesos.Resource{Name: proto.String(resources.Ports), Type: mesos.Value_RANGES.Enum(), Ranges: &mesos.Value_Ranges{Range: fixed}})
	}
	return want, pick
}

// place builds the TaskInfo of an instance of a (id taskID) on offer,
// taking its resources from offered (what is left of the offer), or says
// why it does not fit (an error wrapping resources.ErrNoFit). envPrefix
// is --env_vars_prefix (see environment).
func (a *App) place(taskID string, offer *mesos.Offer, offered []*mesos.Resource, frameworkRole, envPrefix string) (*placement, error) {
	want, pick := a.wantResources()
	used, picked, err := resources.Allocate(acceptedResources(offered, a.AcceptedResourceRoles, frameworkRole), want, pick)
	if err != nil {
		return nil, err
	}
	n := a.portCount()
	hostPorts := make([]uint64, 0, n)
	next := func() uint64 { p := picked[0]; picked = picked[1:]; return p }
	if a.bridged() {
		for _, m := range a.portMappings() {
			if m.HostPort != 0 {
				hostPorts = append(hostPorts, uint64(m.HostPort))
			} else {
				hostPorts = append(hostPorts, next())
			}
		}
	} else {
		for _, p := range a.PortDefinitions {
			if a.RequirePorts {
				hostPorts = append(hostPorts, uint64(p.Port))
			} else {
				hostPorts = append(hostPorts, next())
			}
		}
	}
	id := PathID(a.ID)
	task := &mesos.TaskInfo{
		Name:      proto.String(id.Hostname()),
		TaskId:    &mesos.TaskID{Value: proto.String(taskID)},
		AgentId:   offer.GetAgentId(),
		Resources: used,
		Command:   a.command(taskID, offer.GetHostname(), hostPorts, envPrefix),
		Container: a.containerInfo(hostPorts),
		Discovery: a.discovery(hostPorts),
	}
	if len(a.Labels) > 0 {
		task.Labels = &mesos.Labels{}
		for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
			task.Labels.Labels = append(task.Labels.Labels, &mesos.Label{Key: proto.String(k), Value: proto.String(a.Labels[k])})
		}
	}
	if h := a.mesosCheck(); h != nil {
		task.HealthCheck = a.healthCheck(*h, hostPorts)
	}
	if a.TaskKillGracePeriodSeconds != nil {
		task.KillPolicy = &mesos.KillPolicy{GracePeriod: &mesos.DurationInfo{
			Nanoseconds: proto.Int64(int64(*a.TaskKillGracePeriodSeconds) * int64(time.Second))}}
	}
	return &placement{task: task, used: used, hostPorts: hostPorts}, nil
}

func (a *App) command(taskID, host string, hostPorts []uint64, envPrefix string) *mesos.CommandInfo {
	ci := &mesos.CommandInfo{Environment: a.environment(taskID, host, hostPorts, envPrefix)}
	docker := a.Container != nil && a.Container.Type == ContainerDocker
	switch {
	case a.Cmd != "":
		ci.Shell, ci.Value = proto.Bool(true), proto.String(a.Cmd)
	case len(a.Args) > 0 && docker:
		// The image's ENTRYPOINT stays; args are its arguments.
		ci.Shell, ci.Arguments = proto.Bool(false), a.Args
	case len(a.Args) > 0:
		// As Mesos's CommandInfo wants it: arguments include argv[0].
		ci.Shell, ci.Value, ci.Arguments = proto.Bool(false), proto.String(a.Args[0]), a.Args
	default:
		// An image without a command runs its own ENTRYPOINT and CMD.
		ci.Shell = proto.Bool(false)
	}
	if a.User != "" {
		ci.User = proto.String(a.User)
	}
	for _, f := range a.Fetch {
		u := &mesos.CommandInfo_URI{Value: proto.String(f.URI), Executable: proto.Bool(f.Executable),
			Extract: proto.Bool(f.Extract), Cache: proto.Bool(f.Cache)}
		if f.DestPath != "" {
			u.OutputFile = proto.String(f.DestPath)
		}
		ci.Uris = append(ci.Uris, u)
	}
	return ci
}

// envName makes a label key or port name into the part of a variable
// name Marathon makes of it: upper case, anything but letters and digits
// as '_'.
func envName(s string) string {
	return strings.Map(func(r rune) rune {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			return unicode.ToUpper(r)
		}
		return '_'
	}, s)
}

// maxLabelEnv is the longest label value Marathon passes as a variable.
const maxLabelEnv = 512

// environment is what Marathon puts in every task's environment, then the
// app's own variables, which win. A prefix (--env_vars_prefix) is put
// before the names of HOST and the PORT variables, as Marathon does; the
// names already its own (MESOS_TASK_ID, MARATHON_APP_*) keep theirs.
func (a *App) environment(taskID, host string, hostPorts []uint64, prefix string) *mesos.Environment {
	env := map[string]string{
		"MESOS_TASK_ID":              taskID,
		"MARATHON_APP_ID":            a.ID,
		"MARATHON_APP_VERSION":       a.Version,
		"MARATHON_APP_RESOURCE_CPUS": strconv.FormatFloat(a.Cpus, 'f', -1, 64),
		"MARATHON_APP_RESOURCE_MEM":  strconv.FormatFloat(a.Mem, 'f', -1, 64),
		"MARATHON_APP_RESOURCE_DISK": strconv.FormatFloat(a.Disk, 'f', -1, 64),
		"MARATHON_APP_RESOURCE_GPUS": strconv.Itoa(a.Gpus),
		"HOST":                       host,
		"MARATHON_APP_DOCKER_IMAGE":  "",
		"MARATHON_APP_LABELS":        "",
	}
	if a.Container != nil && a.Container.Docker != nil {
		env["MARATHON_APP_DOCKER_IMAGE"] = a.Container.Docker.Image
	}
	var labels []string
	for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
		if v := a.Labels[k]; len(v) <= maxLabelEnv {
			labels = append(labels, envName(k))
			env["MARATHON_APP_LABEL_"+envName(k)] = v
		}
	}
	env["MARATHON_APP_LABELS"] = strings.Join(labels, " ")
	if len(hostPorts) > 0 {
		all := make([]string, len(hostPorts))
		for i, p := range hostPorts {
			all[i] = strconv.FormatUint(p, 10)
			env["PORT"+strconv.Itoa(i)] = all[i]
		}
		env["PORT"] = all[0]
		env["PORTS"] = strings.Join(all, ",")
		if a.bridged() {
			for i, m := range a.portMappings() {
				if m.ContainerPort != 0 {
					env["PORT_"+strconv.Itoa(m.ContainerPort)] = all[i]
				}
				if m.Name != "" {
					env["PORT_"+envName(m.Name)] = all[i]
				}
			}
		} else {
			for i, p := range a.PortDefinitions {
				if p.Port != 0 {
					env["PORT_"+strconv.Itoa(p.Port)] = all[i]
				}
				if p.Name != "" {
					env["PORT_"+envName(p.Name)] = all[i]
				}
			}
		}
	}
	if prefix != "" {
		// Into a new map: renamed in place, a PORT_<NAME> made from PORT
		// could meet (and be renamed again with) a port's own.
		prefixed := make(map[string]string, len(env))
		for k, v := range env {
			if k != "HOST" && !strings.HasPrefix(k, "PORT") {
				prefixed[k] = v
			}
		}
		for k, v := range env {
			if k == "HOST" || strings.HasPrefix(k, "PORT") {
				prefixed[prefix+k] = v
			}
		}
		env = prefixed
	}
	maps.Copy(env, a.Env)
	out := &mesos.Environment{}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out.Variables = append(out.Variables, &mesos.Environment_Variable{Name: proto.String(k), Value: proto.String(env[k])})
	}
	return out
}

func protocols(p string) []string {
	if p == "" {
		return []string{"tcp"}
	}
	return strings.Split(p, ",")
}

func (a *App) containerInfo(hostPorts []uint64) *mesos.ContainerInfo {
	c := a.Container
	if c == nil {
		return nil
	}
	ci := &mesos.ContainerInfo{}
	for _, v := range c.Volumes {
		mode := mesos.Volume_RW
		if v.Mode == "RO" {
			mode = mesos.Volume_RO
		}
		ci.Volumes = append(ci.Volumes, &mesos.Volume{ContainerPath: proto.String(v.ContainerPath), HostPath: proto.String(v.HostPath), Mode: mode.Enum()})
	}
	switch c.Type {
	case ContainerDocker:
		ci.Type = mesos.ContainerInfo_DOCKER.Enum()
		d := c.Docker
		di := &mesos.ContainerInfo_DockerInfo{Image: proto.String(d.Image), Privileged: proto.Bool(d.Privileged),
			ForcePullImage: proto.Bool(d.ForcePullImage), Network: mesos.ContainerInfo_DockerInfo_HOST.Enum()}
		if a.bridged() {
			di.Network = mesos.ContainerInfo_DockerInfo_BRIDGE.Enum()
			for i, m := range a.portMappings() {
				for _, proto_ := range protocols(m.Protocol) {
					di.PortMappings = append(di.PortMappings, &mesos.ContainerInfo_DockerInfo_PortMapping{
						HostPort: proto.Uint32(uint32(hostPorts[i])), ContainerPort: proto.Uint32(uint32(m.ContainerPort)), Protocol: proto.String(proto_)})
				}
			}
		}
		for _, p := range d.Parameters {
			di.Parameters = append(di.Parameters, &mesos.Parameter{Key: proto.String(p.Key), Value: proto.String(p.Value)})
		}
		ci.Docker = di
	case ContainerMesos:
		ci.Type = mesos.ContainerInfo_MESOS.Enum()
		if d := c.Docker; d != nil && d.Image != "" {
			ci.Mesos = &mesos.ContainerInfo_MesosInfo{Image: &mesos.Image{Type: mesos.Image_DOCKER.Enum(),
				Docker: &mesos.Image_Docker{Name: proto.String(d.Image)}, Cached: proto.Bool(!d.ForcePullImage)}}
		}
	}
	return ci
}

// discovery is what service discovery (mesos-dns) reads of the task: its
// name and its ports with their names and labels.
func (a *App) discovery(hostPorts []uint64) *mesos.DiscoveryInfo {
	d := &mesos.DiscoveryInfo{Visibility: mesos.DiscoveryInfo_FRAMEWORK.Enum(), Name: proto.String(PathID(a.ID).Hostname()), Ports: &mesos.Ports{}}
	add := func(port uint64, name, protocol string, labels map[string]string) {
		for _, p := range protocols(protocol) {
			mp := &mesos.Port{Number: proto.Uint32(uint32(port)), Protocol: proto.String(p)}
			if name != "" {
				mp.Name = proto.String(name)
			}
			if len(labels) > 0 {
				mp.Labels = &mesos.Labels{}
				for _, k := range slices.Sorted(maps.Keys(labels)) {
					mp.Labels.Labels = append(mp.Labels.Labels, &mesos.Label{Key: proto.String(k), Value: proto.String(labels[k])})
				}
			}
			d.Ports.Ports = append(d.Ports.Ports, mp)
		}
	}
	if a.bridged() {
		for i, m := range a.portMappings() {
			add(hostPorts[i], m.Name, m.Protocol, m.Labels)
		}
	} else {
		for i, p := range a.PortDefinitions {
			add(hostPorts[i], p.Name, p.Protocol, p.Labels)
		}
	}
	return d
}

// healthCheck maps an app health check onto the Mesos-native one the
// executor runs. Its port is the host port, or the container port of a
// bridged container (the docker executor probes the container's address).
func (a *App) healthCheck(h HealthCheck, hostPorts []uint64) *mesos.HealthCheck {
	hc := &mesos.HealthCheck{
		DelaySeconds:        proto.Float64(float64(h.DelaySeconds)),
		IntervalSeconds:     proto.Float64(float64(h.IntervalSeconds)),
		TimeoutSeconds:      proto.Float64(float64(h.TimeoutSeconds)),
		GracePeriodSeconds:  proto.Float64(float64(h.GracePeriodSeconds)),
		ConsecutiveFailures: proto.Uint32(uint32(h.MaxConsecutiveFailures)),
	}
	port := func() uint32 {
		if h.Port != nil {
			return uint32(*h.Port)
		}
		i := 0
		if h.PortIndex != nil {
			i = *h.PortIndex
		}
		if a.bridged() && i < len(a.portMappings()) {
			return uint32(a.portMappings()[i].ContainerPort)
		}
		if i < len(hostPorts) {
			return uint32(hostPorts[i])
		}
		return 0
	}
	switch h.Protocol {
	case ProtoCommand:
		hc.Type = mesos.HealthCheck_COMMAND.Enum()
		hc.Command = &mesos.CommandInfo{Shell: proto.Bool(true), Value: proto.String(h.Command.Value)}
	case ProtoTCP, ProtoMesosTCP:
		hc.Type = mesos.HealthCheck_TCP.Enum()
		hc.Tcp = &mesos.HealthCheck_TCPCheckInfo{Port: proto.Uint32(port())}
	default:
		scheme := "http"
		if h.Protocol == ProtoHTTPS || h.Protocol == ProtoMesosHTTPS {
			scheme = "https"
		}
		path := h.Path
		if path == "" {
			path = "/"
		}
		hc.Type = mesos.HealthCheck_HTTP.Enum()
		hc.Http = &mesos.HealthCheck_HTTPCheckInfo{Port: proto.Uint32(port()), Path: proto.String(path), Scheme: proto.String(scheme)}
	}
	return hc
}

// describeNoFit says in a line why an offer did not take an instance, for
// /v2/queue.
func describeNoFit(err error) string {
	return strings.TrimPrefix(fmt.Sprint(err), resources.ErrNoFit.Error()+": ")
}
