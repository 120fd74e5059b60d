package docker

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/docker/docker/api/types/mount"

	"github.com/mesolite/mesolite/errdefs"
)

// Policy is what a framework may ask of dockerd through a task beyond an
// ordinary container. Each escape from the container (privileges, host
// files, devices, host namespaces, capabilities, security profiles) is
// refused unless the agent's operator allowed it with the flag named in
// the refusal. The check runs on the final container configuration, so it
// holds however a setting was asked for (ContainerInfo fields or
// DockerInfo.parameters).
type Policy struct {
	// AllowPrivileged is --docker_allow_privileged.
	AllowPrivileged bool
	// VolumeAllowedPaths is --docker_volume_allowed_paths: host paths that
	// may be bind-mounted, with everything below them. The sandbox always
	// may.
	VolumeAllowedPaths []string
	// AllowedParameters is --docker_allowed_parameters: the escapes the
	// operator allows by the parameter's name (device, cap-add,
	// security-opt, sysctl, pid, ipc, uts, oom-kill-disable,
	// volume-driver).
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
		src, _, _ := strings.Cut(b, ":")
		if err := p.checkHostPath(src, sandbox); err != nil {
			return err
		}
	}
	for _, m := range h.Mounts {
		switch m.Type {
		case mount.TypeBind:
			if err := p.checkHostPath(m.Source, sandbox); err != nil {
				return err
			}
		case mount.TypeVolume:
			// A local volume with driver options can be a bind of any
			// host path in disguise (type=none,o=bind,device=/).
			if m.VolumeOptions != nil && m.VolumeOptions.DriverConfig != nil && !p.allows("volume-driver") {
				return forbidden("docker volumes with a driver or driver options are not allowed on this agent (start it with --docker_allowed_parameters=volume-driver)")
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
	}
	for _, c := range checks {
		if c.hit && !p.allows(c.param) {
			return forbidden("%s are not allowed on this agent (start it with --docker_allowed_parameters=%s)", c.what, c.param)
		}
	}
	return nil
}

// checkHostPath allows the sandbox (and below) and the operator's paths.
// Symlinks in the asked path are resolved first, so a link cannot lead a
// bind from an allowed place to a forbidden one.
func (p Policy) checkHostPath(src, sandbox string) error {
	if !filepath.IsAbs(src) {
		// A name: a named docker volume (its driver options are checked
		// on the mount, and -v name:/path takes the default driver).
		return nil
	}
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
