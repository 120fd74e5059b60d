package docker

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/go-connections/nat"
	"github.com/docker/go-units"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer/docker/engine"
	"github.com/mesolite/mesolite/errdefs"
)

// Limits Mesos applies to docker containers.
const (
	cpuSharesPerCPU = 1024
	minCPUShares    = 2
	cfsPeriodUs     = 100000
	minCFSQuotaUs   = 1000
	// MinMemory is the smallest memory limit a container gets, as in Mesos.
	MinMemory = 32 << 20
)

// request is what a container is made from: the task's (or executor's)
// ContainerInfo and command, the resources that limit it and the
// environment it starts with.
type request struct {
	name      string
	info      *mesos.ContainerInfo
	command   *mesos.CommandInfo
	resources []*mesos.Resource
	env       []string // KEY=VALUE, before the command's own environment
	sandbox   string   // host path of the sandbox
	labels    map[string]string
}

// dockerConfig is a request translated into the Engine API's terms.
type dockerConfig struct {
	image     string
	forcePull bool
	config    *container.Config
	host      *container.HostConfig
	network   *network.NetworkingConfig
	// swapSet: a memory-swap parameter chose the swap limit, so Update
	// must not reset it to the memory limit.
	swapSet bool
	// cfsLimit is the CFS quota in cpus that the cpus resource set (0:
	// none), for the policy to refuse parameters that raise it.
	cfsLimit float64
}

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errdefs.ErrInvalid, fmt.Sprintf(format, args...))
}

// translate builds the Docker configuration of a request. Errors wrap
// errdefs.ErrInvalid (the agent answers TASK_ERROR) or errdefs.ErrForbidden.
func (c *Containerizer) translate(r request) (*dockerConfig, error) {
	di := r.info.GetDocker()
	if di == nil || di.GetImage() == "" {
		return nil, invalidf("a DOCKER container needs container.docker.image")
	}
	d := &dockerConfig{
		image:     di.GetImage(),
		forcePull: di.GetForcePullImage(),
		config: &container.Config{
			Image:  di.GetImage(),
			Labels: map[string]string{},
		},
		host:    &container.HostConfig{},
		network: &network.NetworkingConfig{},
	}
	for k, v := range r.labels {
		d.config.Labels[k] = v
	}
	if r.info.GetTtyInfo() != nil {
		// A terminal, and an input that stays open for clients that
		// attach to it later (ATTACH_CONTAINER_INPUT).
		d.config.Tty, d.config.OpenStdin = true, true
	}
	entrypoint, cmd, err := commandArgs(r.command)
	if err != nil {
		return nil, err
	}
	d.config.Entrypoint, d.config.Cmd = entrypoint, cmd
	// A task that names its user runs as it in the image (a "user"
	// parameter, applied below, wins).
	d.config.User = r.command.GetUser()

	if err := c.networkConfig(d, r); err != nil {
		return nil, err
	}
	if r.info.GetHostname() != "" {
		if d.host.NetworkMode.IsHost() {
			return nil, invalidf("container.hostname cannot be set with HOST networking (docker refuses it)")
		}
		if d.host.NetworkMode.IsContainer() {
			return nil, invalidf("container.hostname cannot be set in another container's network (docker refuses it)")
		}
		d.config.Hostname = r.info.GetHostname()
	}
	d.host.Privileged = di.GetPrivileged()
	limits(d, r.resources, c.opts.EnableCFS)

	sandboxMount := c.opts.SandboxDirectory
	d.host.Binds = append(d.host.Binds, r.sandbox+":"+sandboxMount)
	if err := volumes(d, r.info.GetVolumes(), r.sandbox, sandboxMount); err != nil {
		return nil, err
	}
	for _, rl := range r.info.GetRlimitInfo().GetRlimits() {
		name := strings.ToLower(strings.TrimPrefix(rl.GetType().String(), "RLMT_"))
		soft, hard := int64(-1), int64(-1)
		if rl.Soft != nil {
			soft = int64(rl.GetSoft())
		}
		if rl.Hard != nil {
			hard = int64(rl.GetHard())
		}
		d.host.Ulimits = append(d.host.Ulimits, &container.Ulimit{Name: name, Soft: soft, Hard: hard})
	}

	env := newEnv(r.env)
	for _, v := range r.command.GetEnvironment().GetVariables() {
		if v.GetType() == mesos.Environment_Variable_SECRET {
			return nil, invalidf("environment variable %s: secrets are not supported", v.GetName())
		}
		env.set(v.GetName(), v.GetValue())
	}
	if err := applyParameters(d, env, di.GetParameters()); err != nil {
		return nil, err
	}
	d.config.Env = env.list()
	policy := c.opts.Policy
	policy.AllowPrivileged = policy.AllowPrivileged || c.opts.AllowPrivileged
	if err := policy.check(d, r.sandbox); err != nil {
		return nil, err
	}
	return d, nil
}

// commandArgs gives a CommandInfo Mesos's docker semantics: shell runs
// `/bin/sh -c value` whatever the image's entrypoint; no shell keeps the
// entrypoint and passes value and arguments as the command; no value and
// no arguments run the image's own ENTRYPOINT and CMD unchanged.
func commandArgs(ci *mesos.CommandInfo) (entrypoint, cmd []string, err error) {
	if ci == nil || (ci.GetValue() == "" && len(ci.GetArguments()) == 0) {
		return nil, nil, nil
	}
	if ci.Shell == nil || ci.GetShell() {
		if ci.GetValue() == "" {
			return nil, nil, invalidf("a shell command needs command.value")
		}
		return []string{"/bin/sh"}, []string{"-c", ci.GetValue()}, nil
	}
	if ci.GetValue() != "" {
		cmd = append(cmd, ci.GetValue())
	}
	return nil, append(cmd, ci.GetArguments()...), nil
}

func (c *Containerizer) networkConfig(d *dockerConfig, r request) error {
	di := r.info.GetDocker()
	var userNet string
	switch di.GetNetwork() {
	case mesos.ContainerInfo_DockerInfo_HOST:
		d.host.NetworkMode = "host"
	case mesos.ContainerInfo_DockerInfo_BRIDGE:
		d.host.NetworkMode = "bridge"
	case mesos.ContainerInfo_DockerInfo_NONE:
		d.host.NetworkMode = "none"
	case mesos.ContainerInfo_DockerInfo_USER:
		nis := r.info.GetNetworkInfos()
		if len(nis) != 1 || nis[0].GetName() == "" {
			return invalidf("USER networking needs exactly one container.network_infos entry with a name (the docker network)")
		}
		userNet = nis[0].GetName()
		mode := container.NetworkMode(userNet)
		switch {
		case mode.IsHost() || mode.IsNone():
			// docker's own modes, not networks: HOST and NONE are asked
			// for with container.docker.network (where port mappings
			// are refused).
			return invalidf("USER network %q is docker's %s mode, not a network: set container.docker.network to %s instead", userNet, userNet, strings.ToUpper(userNet))
		case mode.IsContainer():
			// Another container's network namespace: no endpoint of its
			// own (the policy refuses it unless network-container is
			// allowed).
			d.host.NetworkMode = mode
		default:
			d.host.NetworkMode = mode
			d.network.EndpointsConfig = map[string]*network.EndpointSettings{userNet: {}}
		}
	default:
		return invalidf("unknown docker network %v", di.GetNetwork())
	}
	if len(r.info.GetNetworkInfos()) > 0 && userNet == "" {
		return invalidf("container.network_infos is only meaningful with USER networking (network is %v)", di.GetNetwork())
	}
	mappings := di.GetPortMappings()
	if len(mappings) == 0 {
		return nil
	}
	if userNet == "" && !d.host.NetworkMode.IsBridge() {
		return invalidf("port_mappings need BRIDGE or USER networking (network is %v)", di.GetNetwork())
	}
	if d.host.NetworkMode.IsContainer() {
		return invalidf("port_mappings cannot be used in another container's network (%s)", userNet)
	}
	ranges := portRanges(r.resources)
	d.config.ExposedPorts = nat.PortSet{}
	d.host.PortBindings = nat.PortMap{}
	publish := c.opts.PublishIP
	for _, m := range mappings {
		proto := strings.ToLower(m.GetProtocol())
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			return invalidf("port mapping %d:%d: protocol %q is not tcp or udp", m.GetHostPort(), m.GetContainerPort(), m.GetProtocol())
		}
		if m.GetContainerPort() == 0 || m.GetContainerPort() > 65535 {
			return invalidf("port mapping %d:%d: bad container port", m.GetHostPort(), m.GetContainerPort())
		}
		if !ranges.contains(uint64(m.GetHostPort())) {
			return invalidf("port mapping %d:%d/%s: host port %d is not in the task's ports resource %s", m.GetHostPort(), m.GetContainerPort(), proto, m.GetHostPort(), ranges)
		}
		p := nat.Port(fmt.Sprintf("%d/%s", m.GetContainerPort(), proto))
		d.config.ExposedPorts[p] = struct{}{}
		d.host.PortBindings[p] = append(d.host.PortBindings[p], nat.PortBinding{HostIP: publish, HostPort: strconv.FormatUint(uint64(m.GetHostPort()), 10)})
	}
	return nil
}

// limits sets cpu shares (1024 per cpu), memory (at least 32 MB, no swap
// beyond it) and, with --cgroups_enable_cfs, a CFS quota.
func limits(d *dockerConfig, res []*mesos.Resource, cfs bool) {
	cpus, haveCPU := scalar(res, "cpus")
	mem, haveMem := scalar(res, "mem")
	if haveCPU {
		d.host.CPUShares = max(int64(cpus*cpuSharesPerCPU), minCPUShares)
		if cfs {
			d.host.CPUPeriod = cfsPeriodUs
			d.host.CPUQuota = max(int64(cpus*cfsPeriodUs), minCFSQuotaUs)
			d.cfsLimit = float64(d.host.CPUQuota) / cfsPeriodUs
		}
	}
	if haveMem {
		d.host.Memory = max(int64(mem*(1<<20)), MinMemory)
		// A memory limit that swap can get around is no limit: the task
		// would swap instead of being OOM-killed and reported as such.
		d.host.MemorySwap = d.host.Memory
	}
}

func scalar(res []*mesos.Resource, name string) (float64, bool) {
	var sum float64
	found := false
	for _, r := range res {
		if r.GetName() == name && r.GetType() == mesos.Value_SCALAR {
			sum += r.GetScalar().GetValue()
			found = true
		}
	}
	return sum, found
}

type portRangeList [][2]uint64

func portRanges(res []*mesos.Resource) portRangeList {
	var out portRangeList
	for _, r := range res {
		if r.GetName() != "ports" || r.GetType() != mesos.Value_RANGES {
			continue
		}
		for _, rg := range r.GetRanges().GetRange() {
			out = append(out, [2]uint64{rg.GetBegin(), rg.GetEnd()})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

func (p portRangeList) contains(port uint64) bool {
	for _, r := range p {
		if port >= r[0] && port <= r[1] {
			return true
		}
	}
	return false
}

func (p portRangeList) String() string {
	if len(p) == 0 {
		return "(none)"
	}
	parts := make([]string, len(p))
	for i, r := range p {
		parts[i] = fmt.Sprintf("%d-%d", r[0], r[1])
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// volumes maps ContainerInfo volumes to binds and mounts. A relative host
// path is a directory inside the sandbox (created when missing, resolved
// through os.Root so that no symlink or ".." leads out); a relative
// container path is under the sandbox mount point.
func volumes(d *dockerConfig, vols []*mesos.Volume, sandbox, sandboxMount string) error {
	for _, v := range vols {
		cpath := v.GetContainerPath()
		if cpath == "" {
			return invalidf("volume without container_path")
		}
		if !path.IsAbs(cpath) {
			cpath = path.Join(sandboxMount, cpath)
		}
		ro := v.GetMode() == mesos.Volume_RO
		src := v.GetSource()
		host := v.GetHostPath()
		switch {
		case src != nil && src.GetType() == mesos.Volume_Source_DOCKER_VOLUME:
			dv := src.GetDockerVolume()
			m := mount.Mount{Type: mount.TypeVolume, Source: dv.GetName(), Target: cpath, ReadOnly: ro}
			if dv.GetDriver() != "" || len(dv.GetDriverOptions().GetParameter()) > 0 {
				opts := map[string]string{}
				for _, p := range dv.GetDriverOptions().GetParameter() {
					opts[p.GetKey()] = p.GetValue()
				}
				m.VolumeOptions = &mount.VolumeOptions{DriverConfig: &mount.Driver{Name: dv.GetDriver(), Options: opts}}
			}
			d.host.Mounts = append(d.host.Mounts, m)
			continue
		case src != nil && src.GetType() == mesos.Volume_Source_SANDBOX_PATH:
			sp := src.GetSandboxPath()
			if sp.GetType() == mesos.Volume_Source_SandboxPath_PARENT {
				return invalidf("volume %s: SANDBOX_PATH of type PARENT needs a task group, which docker containers are not", cpath)
			}
			host = sp.GetPath()
			if filepath.IsAbs(host) {
				return invalidf("volume %s: a SANDBOX_PATH must be relative", cpath)
			}
		case src != nil && src.GetType() == mesos.Volume_Source_HOST_PATH:
			host = src.GetHostPath().GetPath()
		case src != nil && src.GetType() != mesos.Volume_Source_UNKNOWN:
			return invalidf("volume %s: source type %v is not supported by the docker containerizer", cpath, src.GetType())
		case v.GetImage() != nil:
			return invalidf("volume %s: image volumes are not supported by the docker containerizer", cpath)
		}
		if host == "" {
			// A bare container path is an anonymous docker volume.
			d.host.Mounts = append(d.host.Mounts, mount.Mount{Type: mount.TypeVolume, Target: cpath, ReadOnly: ro})
			continue
		}
		if !filepath.IsAbs(host) {
			p, err := sandboxDir(sandbox, host)
			if err != nil {
				return fmt.Errorf("volume %s: %w", cpath, err)
			}
			host = p
		}
		bind := host + ":" + cpath
		if ro {
			bind += ":ro"
		} else {
			bind += ":rw"
		}
		d.host.Binds = append(d.host.Binds, bind)
	}
	return nil
}

// sandboxDir makes (if needed) the directory rel inside the sandbox and
// returns its host path. os.Root refuses ".." and symlinks that lead out.
func sandboxDir(sandbox, rel string) (string, error) {
	root, err := os.OpenRoot(sandbox)
	if err != nil {
		return "", fmt.Errorf("open sandbox: %w", err)
	}
	defer root.Close()
	rel = filepath.Clean(rel)
	if err := root.MkdirAll(rel, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", invalidf("host path %q must stay inside the sandbox: %v", rel, err)
	}
	fi, err := root.Stat(rel)
	if err != nil {
		return "", invalidf("host path %q must stay inside the sandbox: %v", rel, err)
	}
	if !fi.IsDir() {
		// A file in the sandbox (a fetched config) is fine to bind too.
		if !fi.Mode().IsRegular() {
			return "", invalidf("host path %q is neither a directory nor a file", rel)
		}
	}
	return filepath.Join(sandbox, rel), nil
}

// env is an ordered environment in which a later value replaces an
// earlier one of the same name.
type env struct {
	order []string
	vals  map[string]string
}

func newEnv(base []string) *env {
	e := &env{vals: map[string]string{}}
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		e.set(k, v)
	}
	return e
}

func (e *env) set(k, v string) {
	if _, ok := e.vals[k]; !ok {
		e.order = append(e.order, k)
	}
	e.vals[k] = v
}

func (e *env) list() []string {
	out := make([]string, 0, len(e.order))
	for _, k := range e.order {
		out = append(out, k+"="+e.vals[k])
	}
	return out
}

// reservedLabel refuses labels that would forge our ownership labels.
func reservedLabel(k string) bool { return strings.HasPrefix(k, engine.LabelPrefix) }

// applyParameters maps DockerInfo.parameters (docker run flags without
// the dashes) onto the API. Flags that another ContainerInfo field owns
// (network, publish, privileged, memory, cpu-shares, name) are refused
// with a pointer to that field, unknown ones with the list of known ones.
func applyParameters(d *dockerConfig, env *env, params []*mesos.Parameter) error {
	for _, p := range params {
		key := strings.TrimLeft(p.GetKey(), "-")
		val := p.GetValue()
		if owner, ok := ownedFlags[key]; ok {
			return invalidf("docker parameter %q is not allowed: set %s instead", key, owner)
		}
		apply, ok := parameterSetters[key]
		if !ok {
			return invalidf("docker parameter %q is not supported (supported: %s)", key, strings.Join(SupportedParameters(), ", "))
		}
		if err := apply(d, env, val); err != nil {
			return invalidf("docker parameter %s=%q: %v", key, val, err)
		}
	}
	return nil
}

// ownedFlags are docker run flags that a ContainerInfo field sets.
var ownedFlags = map[string]string{
	"net": "container.docker.network", "network": "container.docker.network",
	"p": "container.docker.port_mappings", "publish": "container.docker.port_mappings", "publish-all": "container.docker.port_mappings", "P": "container.docker.port_mappings",
	"privileged": "container.docker.privileged",
	"m":          "the task's mem resource", "memory": "the task's mem resource",
	"c": "the task's cpus resource", "cpu-shares": "the task's cpus resource", "cpus": "the task's cpus resource",
	"name": "nothing (the agent names containers)", "rm": "nothing (the agent removes containers)",
	"d": "nothing", "detach": "nothing", "restart": "nothing (the framework restarts tasks)",
	"t": "container.tty_info", "tty": "container.tty_info", "i": "nothing", "interactive": "nothing",
}

type parameterSetter func(d *dockerConfig, env *env, v string) error

func bytesValue(v string) (int64, error) {
	if v == "-1" {
		return -1, nil
	}
	return units.RAMInBytes(v)
}

func boolValue(v string) (bool, error) {
	if v == "" {
		return true, nil
	}
	return strconv.ParseBool(v)
}

var parameterSetters = map[string]parameterSetter{
	"env": func(d *dockerConfig, e *env, v string) error {
		// `docker run -e NAME` copies NAME from the client's environment,
		// which here is the agent's (and its secrets): a value is needed,
		// NAME= for an empty one.
		k, val, ok := strings.Cut(v, "=")
		if k == "" || !ok {
			return errors.New("env parameter needs NAME=VALUE (NAME= for an empty value)")
		}
		e.set(k, val)
		return nil
	},
	"label": func(d *dockerConfig, _ *env, v string) error {
		k, val, _ := strings.Cut(v, "=")
		if k == "" {
			return errors.New("want KEY=VALUE")
		}
		if reservedLabel(k) {
			return fmt.Errorf("labels under %s are the agent's", engine.LabelPrefix)
		}
		d.config.Labels[k] = val
		return nil
	},
	"volume": func(d *dockerConfig, _ *env, v string) error {
		if v == "" {
			return errors.New("empty volume")
		}
		d.host.Binds = append(d.host.Binds, v)
		return nil
	},
	"memory-swap": func(d *dockerConfig, _ *env, v string) error {
		n, err := bytesValue(v)
		d.host.MemorySwap, d.swapSet = n, true
		return err
	},
	"memory-reservation": func(d *dockerConfig, _ *env, v string) error {
		n, err := bytesValue(v)
		d.host.MemoryReservation = n
		return err
	},
	"memory-swappiness": func(d *dockerConfig, _ *env, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		d.host.MemorySwappiness = &n
		return err
	},
	"oom-kill-disable": func(d *dockerConfig, _ *env, v string) error {
		b, err := boolValue(v)
		d.host.OomKillDisable = &b
		return err
	},
	"oom-score-adj": func(d *dockerConfig, _ *env, v string) error {
		n, err := strconv.Atoi(v)
		d.host.OomScoreAdj = n
		return err
	},
	"pids-limit": func(d *dockerConfig, _ *env, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		d.host.PidsLimit = &n
		return err
	},
	"cpuset-cpus": func(d *dockerConfig, _ *env, v string) error { d.host.CpusetCpus = v; return nil },
	"cpuset-mems": func(d *dockerConfig, _ *env, v string) error { d.host.CpusetMems = v; return nil },
	"cpu-period": func(d *dockerConfig, _ *env, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		d.host.CPUPeriod = n
		return err
	},
	"cpu-quota": func(d *dockerConfig, _ *env, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		d.host.CPUQuota = n
		return err
	},
	"blkio-weight": func(d *dockerConfig, _ *env, v string) error {
		n, err := strconv.ParseUint(v, 10, 16)
		d.host.BlkioWeight = uint16(n)
		return err
	},
	"ulimit": func(d *dockerConfig, _ *env, v string) error {
		u, err := units.ParseUlimit(v)
		if err != nil {
			return err
		}
		d.host.Ulimits = append(d.host.Ulimits, &container.Ulimit{Name: u.Name, Soft: u.Soft, Hard: u.Hard})
		return nil
	},
	"cap-add":  func(d *dockerConfig, _ *env, v string) error { d.host.CapAdd = append(d.host.CapAdd, v); return nil },
	"cap-drop": func(d *dockerConfig, _ *env, v string) error { d.host.CapDrop = append(d.host.CapDrop, v); return nil },
	"add-host": func(d *dockerConfig, _ *env, v string) error {
		d.host.ExtraHosts = append(d.host.ExtraHosts, v)
		return nil
	},
	"dns": func(d *dockerConfig, _ *env, v string) error { d.host.DNS = append(d.host.DNS, v); return nil },
	"dns-search": func(d *dockerConfig, _ *env, v string) error {
		d.host.DNSSearch = append(d.host.DNSSearch, v)
		return nil
	},
	"dns-option": func(d *dockerConfig, _ *env, v string) error {
		d.host.DNSOptions = append(d.host.DNSOptions, v)
		return nil
	},
	"security-opt": func(d *dockerConfig, _ *env, v string) error {
		d.host.SecurityOpt = append(d.host.SecurityOpt, v)
		return nil
	},
	"group-add": func(d *dockerConfig, _ *env, v string) error {
		d.host.GroupAdd = append(d.host.GroupAdd, v)
		return nil
	},
	"user":    func(d *dockerConfig, _ *env, v string) error { d.config.User = v; return nil },
	"u":       func(d *dockerConfig, _ *env, v string) error { d.config.User = v; return nil },
	"workdir": func(d *dockerConfig, _ *env, v string) error { d.config.WorkingDir = v; return nil },
	"w":       func(d *dockerConfig, _ *env, v string) error { d.config.WorkingDir = v; return nil },
	"hostname": func(d *dockerConfig, _ *env, v string) error {
		if d.host.NetworkMode.IsHost() {
			return errors.New("cannot be set with HOST networking")
		}
		if d.host.NetworkMode.IsContainer() {
			return errors.New("cannot be set in another container's network")
		}
		d.config.Hostname = v
		return nil
	},
	"entrypoint": func(d *dockerConfig, _ *env, v string) error {
		// As `docker run --entrypoint`: one executable, "" resets it.
		d.config.Entrypoint = []string{v}
		return nil
	},
	"stop-signal": func(d *dockerConfig, _ *env, v string) error { d.config.StopSignal = v; return nil },
	"stop-timeout": func(d *dockerConfig, _ *env, v string) error {
		n, err := strconv.Atoi(v)
		d.config.StopTimeout = &n
		return err
	},
	"shm-size": func(d *dockerConfig, _ *env, v string) error {
		n, err := units.RAMInBytes(v)
		d.host.ShmSize = n
		return err
	},
	"tmpfs": func(d *dockerConfig, _ *env, v string) error {
		p, opts, _ := strings.Cut(v, ":")
		if d.host.Tmpfs == nil {
			d.host.Tmpfs = map[string]string{}
		}
		d.host.Tmpfs[p] = opts
		return nil
	},
	"sysctl": func(d *dockerConfig, _ *env, v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok {
			return errors.New("want NAME=VALUE")
		}
		if d.host.Sysctls == nil {
			d.host.Sysctls = map[string]string{}
		}
		d.host.Sysctls[k] = val
		return nil
	},
	"device": func(d *dockerConfig, _ *env, v string) error {
		parts := strings.Split(v, ":")
		dm := container.DeviceMapping{PathOnHost: parts[0], PathInContainer: parts[0], CgroupPermissions: "rwm"}
		if len(parts) > 1 {
			dm.PathInContainer = parts[1]
		}
		if len(parts) > 2 {
			dm.CgroupPermissions = parts[2]
		}
		d.host.Devices = append(d.host.Devices, dm)
		return nil
	},
	"read-only": func(d *dockerConfig, _ *env, v string) error {
		b, err := boolValue(v)
		d.host.ReadonlyRootfs = b
		return err
	},
	"init": func(d *dockerConfig, _ *env, v string) error {
		b, err := boolValue(v)
		d.host.Init = &b
		return err
	},
	"ipc": func(d *dockerConfig, _ *env, v string) error { d.host.IpcMode = container.IpcMode(v); return nil },
	"pid": func(d *dockerConfig, _ *env, v string) error { d.host.PidMode = container.PidMode(v); return nil },
	"uts": func(d *dockerConfig, _ *env, v string) error { d.host.UTSMode = container.UTSMode(v); return nil },
	"log-driver": func(d *dockerConfig, _ *env, v string) error {
		d.host.LogConfig.Type = v
		return nil
	},
	"log-opt": func(d *dockerConfig, _ *env, v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok {
			return errors.New("want KEY=VALUE")
		}
		if d.host.LogConfig.Config == nil {
			d.host.LogConfig.Config = map[string]string{}
		}
		d.host.LogConfig.Config[k] = val
		return nil
	},
	"network-alias": networkAlias,
	"net-alias":     networkAlias,
	"ip": func(d *dockerConfig, _ *env, v string) error {
		ep, err := userEndpoint(d)
		if err != nil {
			return err
		}
		if ep.IPAMConfig == nil {
			ep.IPAMConfig = &network.EndpointIPAMConfig{}
		}
		ep.IPAMConfig.IPv4Address = v
		return nil
	},
	"mac-address": func(d *dockerConfig, _ *env, v string) error {
		// Config.MacAddress, not the per-endpoint field: that one needs API 1.44.
		d.config.MacAddress = v
		return nil
	},
}

func networkAlias(d *dockerConfig, _ *env, v string) error {
	ep, err := userEndpoint(d)
	if err != nil {
		return err
	}
	ep.Aliases = append(ep.Aliases, v)
	return nil
}

func userEndpoint(d *dockerConfig) (*network.EndpointSettings, error) {
	for _, ep := range d.network.EndpointsConfig {
		return ep, nil
	}
	return nil, errors.New("only with USER networking")
}

// SupportedParameters lists the DockerInfo.parameters keys the docker
// containerizer maps onto the Engine API, sorted.
func SupportedParameters() []string {
	keys := make([]string, 0, len(parameterSetters))
	for k := range parameterSetters {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
