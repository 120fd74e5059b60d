package docker

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/mount"

	"github.com/mesolite/mesolite/errdefs"
)

// Policy is what a framework may ask of dockerd through a task beyond an
// ordinary container. Each escape from the container (privileges, host
// files, named volumes, devices, host namespaces, another container's
// network, capabilities, security profiles, log drivers, real-time
// priority, overrides of the resource limits) is refused unless the
// agent's operator allowed it with the flag named in the refusal. The
// check runs on the final container configuration, so it holds however a
// setting was asked for (ContainerInfo fields or DockerInfo.parameters).
type Policy struct {
	// AllowPrivileged is --docker_allow_privileged.
	AllowPrivileged bool
	// VolumeAllowedPaths is --docker_volume_allowed_paths: host paths that
	// may be bind-mounted, with everything below them. The sandbox always
	// may.
	VolumeAllowedPaths []string
	// AllowedParameters is --docker_allowed_parameters: the escapes the
	// operator allows by the parameter's name (device, cap-add,
	// security-opt, sysctl, pid, ipc, uts, userns, cgroupns,
	// oom-kill-disable, cgroup-parent, volume-driver, named-volume,
	// network-container, log-driver, ulimit-priority,
	// resource-overrides).
	AllowedParameters []string
}

func forbidden(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errdefs.ErrForbidden)
}

func (p Policy) allows(param string) bool { return slices.Contains(p.AllowedParameters, param) }

// check refuses what d would let the container reach beyond itself.
// sandbox is the host path of the task's sandbox.
func (p Policy) check(d *dockerConfig, sandbox string) error {
	h := d.host
	if h.Privileged && !p.AllowPrivileged {
		return forbidden("privileged docker containers are not allowed on this agent (start it with --docker_allow_privileged)")
	}
	for _, b := range h.Binds {
		// -v syntax: SOURCE:TARGET[:MODE], or TARGET alone (an anonymous
		// volume, which reaches nothing that exists).
		if src, _, ok := strings.Cut(b, ":"); ok {
			if err := p.checkSource(src, sandbox); err != nil {
				return err
			}
		}
	}
	for _, m := range h.Mounts {
		switch m.Type {
		case mount.TypeBind:
			if err := p.checkSource(m.Source, sandbox); err != nil {
				return err
			}
		case mount.TypeVolume:
			// A local volume with driver options can be a bind of any
			// host path in disguise (type=none,o=bind,device=/).
			if m.VolumeOptions != nil && m.VolumeOptions.DriverConfig != nil {
				if !p.allows("volume-driver") {
					return forbidden("docker volumes with a driver or driver options are not allowed on this agent (start it with --docker_allowed_parameters=volume-driver)")
				}
			} else if m.Source != "" {
				if err := p.checkSource(m.Source, sandbox); err != nil {
					return err
				}
			}
		case mount.TypeTmpfs:
		default:
			return forbidden("docker mounts of type %s are not allowed on this agent", m.Type)
		}
	}
	checks := []struct {
		param string
		hit   bool
		what  string
	}{
		{"device", len(h.Devices) > 0 || len(h.DeviceRequests) > 0 || len(h.DeviceCgroupRules) > 0, "host devices"},
		{"cap-add", len(h.CapAdd) > 0, "added capabilities"},
		{"security-opt", len(h.SecurityOpt) > 0, "security options (seccomp, AppArmor, SELinux profiles)"},
		{"sysctl", len(h.Sysctls) > 0, "sysctls"},
		{"pid", h.PidMode.IsHost() || h.PidMode.IsContainer(), "sharing another pid namespace"},
		{"ipc", h.IpcMode.IsHost() || h.IpcMode.IsContainer(), "sharing another ipc namespace"},
		{"uts", h.UTSMode.IsHost(), "the host's uts namespace"},
		{"userns", h.UsernsMode.IsHost(), "the host's user namespace"},
		{"cgroupns", h.CgroupnsMode.IsHost(), "the host's cgroup namespace"},
		{"oom-kill-disable", h.OomKillDisable != nil && *h.OomKillDisable, "disabling the OOM killer"},
		{"cgroup-parent", h.CgroupParent != "", "another cgroup parent"},
		{"network-container", h.NetworkMode.IsContainer(), "joining another container's network namespace"},
		{"log-driver", otherLogging(h.LogConfig), "log drivers other than json-file and log options (dockerd ships the output with its own network and credentials)"},
		{"ulimit-priority", priorityUlimit(h.Ulimits), "nice and rtprio ulimits (real-time scheduling)"},
		{"resource-overrides", overridesLimits(d), "a negative oom-score-adj, no cpu quota or unlimited memory-swap"},
	}
	for _, c := range checks {
		if c.hit && !p.allows(c.param) {
			return forbidden("%s: not allowed on this agent (start it with --docker_allowed_parameters=%s)", c.what, c.param)
		}
	}
	return nil
}

// otherLogging: anything but dockerd's json-file driver without options.
// Options go to dockerd's default driver when none is named, which need
// not be json-file.
func otherLogging(l container.LogConfig) bool {
	return (l.Type != "" && l.Type != "json-file") || len(l.Config) > 0
}

// priorityUlimit: RLIMIT_RTPRIO lets a process without CAP_SYS_NICE take
// real-time scheduling (and starve the host), RLIMIT_NICE lets it raise
// its priority. Zero grants neither.
func priorityUlimit(us []*container.Ulimit) bool {
	for _, u := range us {
		switch strings.ToLower(u.Name) {
		case "rtprio", "nice":
			if u.Soft != 0 || u.Hard != 0 {
				return true
			}
		}
	}
	return false
}

// overridesLimits: parameters that undo the limits the task's resources
// set, or spare it from the OOM killer.
func overridesLimits(d *dockerConfig) bool {
	h := d.host
	if h.OomScoreAdj < 0 || h.CPUQuota < 0 || h.MemorySwap < 0 {
		return true
	}
	if d.cfsLimit > 0 {
		// With --cgroups_enable_cfs the quota is the cpus resource: a
		// cpu-quota of 0 (none), a larger one or a shorter cpu-period
		// gives the task more.
		period := h.CPUPeriod
		if period <= 0 {
			period = cfsPeriodUs // dockerd's default
		}
		if h.CPUQuota == 0 || float64(h.CPUQuota)/float64(period) > d.cfsLimit*(1+1e-9) {
			return true
		}
	}
	return false
}

// checkSource checks the source of a bind or volume: an absolute path is
// a host path, anything else names a docker volume, which may exist on
// the host with another framework's data.
func (p Policy) checkSource(src, sandbox string) error {
	if filepath.IsAbs(src) {
		return p.checkHostPath(src, sandbox)
	}
	if !p.allows("named-volume") {
		return forbidden("named docker volume %q: not allowed on this agent (start it with --docker_allowed_parameters=named-volume)", src)
	}
	return nil
}

// checkHostPath allows the sandbox (and below) and the operator's paths.
// Symlinks in the asked path are resolved first, so a link cannot lead a
// bind from an allowed place to a forbidden one.
func (p Policy) checkHostPath(src, sandbox string) error {
	real := filepath.Clean(src)
	if r, err := filepath.EvalSymlinks(real); err == nil {
		real = r
	}
	under := func(root string) bool {
		root = filepath.Clean(root)
		if r, err := filepath.EvalSymlinks(root); err == nil {
			root = r
		}
		rel, err := filepath.Rel(root, real)
		return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
	}
	if sandbox != "" && under(sandbox) {
		return nil
	}
	for _, a := range p.VolumeAllowedPaths {
		if a != "" && under(a) {
			return nil
		}
	}
	return forbidden("bind-mounting host path %s is not allowed on this agent (start it with --docker_volume_allowed_paths naming it or a parent)", src)
}
