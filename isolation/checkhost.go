package isolation

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
)

// CheckHost verifies, without changing anything, that this host can give
// every isolation in set with opts: root where needed, every v1 controller
// mounted at <hierarchy>/<controller>, every v2 controller available in
// cgroup.controllers and either enabled in cgroup.subtree_control or
// enable-able, namespaces supported, and a launcher that can create them.
// It reports every problem at once (errors.Join); each wraps
// errdefs.ErrForbidden (not root), errdefs.ErrInvalid (a flag combination
// that cannot work) or errdefs.ErrUnavailable (the host lacks something).
// The agent must refuse to start on an error: a container that silently runs
// without the isolation it was promised is worse than no agent.
func CheckHost(set Set, opts Options) error {
	opts = opts.WithDefaults()
	if err := opts.validate(); err != nil {
		return err
	}
	var errs []error
	fail := func(class error, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), class))
	}
	if set.needsRoot() && os.Geteuid() != 0 {
		fail(errdefs.ErrForbidden, "--isolation=%s needs root (euid is %d)", set, os.Geteuid())
	}
	if opts.Launcher == LauncherLinux && os.Geteuid() != 0 {
		fail(errdefs.ErrForbidden, "--launcher=linux needs root (euid is %d); use --launcher=posix", os.Geteuid())
	}
	if ns := set.Namespaces(); ns != 0 {
		if opts.Launcher != LauncherLinux {
			fail(errdefs.ErrInvalid, "--isolation=%s needs namespaces (%s), which only --launcher=linux creates (launcher is %s)", set, ns, opts.Launcher)
		}
		for _, n := range []struct {
			ns   Namespaces
			file string
		}{{NamespacePID, "pid"}, {NamespaceMount, "mnt"}, {NamespaceIPC, "ipc"}, {NamespaceUTS, "uts"}} {
			if !ns.Has(n.ns) {
				continue
			}
			if _, err := os.Lstat("/proc/self/ns/" + n.file); err != nil {
				fail(errdefs.ErrUnavailable, "%s namespaces are not supported by this kernel (%v)", n.file, err)
			}
		}
	}
	if set.UsesCgroups() || opts.Launcher == LauncherLinux {
		errs = append(errs, checkCgroups(set, opts)...)
	}
	return errors.Join(errs...)
}

func checkCgroups(set Set, opts Options) []error {
	version, err := detectVersion(opts.CgroupsHierarchy)
	if err != nil {
		return []error{err}
	}
	var errs []error
	if version == 1 {
		for _, c := range v1Controllers(set) {
			if err := checkV1Mount(opts.CgroupsHierarchy, c); err != nil {
				errs = append(errs, err)
			}
		}
		return errs
	}
	want := v2Controllers(set)
	dir := opts.CgroupsHierarchy
	parts := strings.Split(strings.Trim(opts.CgroupsRoot, "/"), "/")
	for i := 0; ; i++ {
		if err := checkV2Controllers(dir, want); err != nil {
			errs = append(errs, err)
			break
		}
		if i == len(parts) {
			break
		}
		dir = filepath.Join(dir, parts[i])
		if _, err := os.Stat(dir); err != nil {
			// Not made yet: NewManager makes it and enables what the parent allows.
			break
		}
	}
	return errs
}

// detectVersion tells the layout at hier: 2 for a cgroup2 mount, 1 for a
// tmpfs holding v1 controller mounts (also the hybrid layout, whose v2 part
// at unified/ holds no controller).
func detectVersion(hier string) (int, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(hier, &st); err != nil {
		return 0, fmt.Errorf("cgroups hierarchy %s: %w: %w", hier, err, errdefs.ErrUnavailable)
	}
	switch st.Type {
	case unix.CGROUP2_SUPER_MAGIC:
		return 2, nil
	case unix.TMPFS_MAGIC, unix.SYSFS_MAGIC:
		return 1, nil
	}
	return 0, fmt.Errorf("cgroups hierarchy %s is neither a cgroup2 mount nor a directory of cgroup v1 mounts (filesystem type %#x): %w", hier, st.Type, errdefs.ErrUnavailable)
}

func checkV1Mount(hier, ctrl string) error {
	dir := filepath.Join(hier, ctrl)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("cgroup v1 controller %s is not mounted at %s (%v): %w", ctrl, dir, err, errdefs.ErrUnavailable)
	}
	if st.Type != unix.CGROUP_SUPER_MAGIC {
		return fmt.Errorf("cgroup v1 controller %s: %s is not a cgroup mount: %w", ctrl, dir, errdefs.ErrUnavailable)
	}
	// The mount must carry the controller, not just be named after it.
	if _, err := os.Stat(filepath.Join(dir, "cgroup.procs")); err != nil {
		return fmt.Errorf("cgroup v1 controller %s: %s has no cgroup.procs: %w", ctrl, dir, errdefs.ErrUnavailable)
	}
	if !mountHasOption(dir, ctrl) {
		return fmt.Errorf("cgroup v1 mount %s does not carry the %s controller: %w", dir, ctrl, errdefs.ErrUnavailable)
	}
	return nil
}

// mountHasOption looks up the mount at dir (after symlinks, so cpu ->
// cpu,cpuacct works) in /proc/self/mountinfo and reports whether its super
// options name ctrl.
func mountHasOption(dir, ctrl string) bool {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return false
	}
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 10 || fields[4] != real {
			continue
		}
		sep := slices.Index(fields, "-")
		if sep < 0 || sep+3 >= len(fields) || fields[sep+1] != "cgroup" {
			continue
		}
		if slices.Contains(strings.Split(fields[sep+3], ","), ctrl) {
			return true
		}
	}
	return false
}

// checkV2Controllers checks that dir can hand every controller in want down
// to its children: available in cgroup.controllers, and either enabled in
// cgroup.subtree_control or enable-able (a non-root cgroup with member
// processes cannot enable controllers for its children: the "no internal
// processes" rule).
func checkV2Controllers(dir string, want []string) error {
	avail, err := readTrimmed(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("cgroup v2 %s: %w: %w", dir, err, errdefs.ErrUnavailable)
	}
	enabled, err := readTrimmed(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("cgroup v2 %s: %w: %w", dir, err, errdefs.ErrUnavailable)
	}
	var missing, toEnable []string
	for _, c := range want {
		switch {
		case !slices.Contains(strings.Fields(avail), c):
			missing = append(missing, c)
		case !slices.Contains(strings.Fields(enabled), c):
			toEnable = append(toEnable, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cgroup v2 controller(s) %s not available in %s (cgroup.controllers: %q); they may be bound to a v1 hierarchy or disabled by the parent: %w",
			strings.Join(missing, ","), filepath.Join(dir, "cgroup.controllers"), avail, errdefs.ErrUnavailable)
	}
	if len(toEnable) > 0 && isV2NonRoot(dir) {
		procs, _ := readPidsFile(filepath.Join(dir, "cgroup.procs"))
		if len(procs) > 0 {
			return fmt.Errorf("cgroup v2 controller(s) %s are not in %s and cannot be enabled: %s holds %d processes and a non-root cgroup with processes cannot pass controllers to its children (move them to a leaf cgroup, or enable the controllers before they start): %w",
				strings.Join(toEnable, ","), filepath.Join(dir, "cgroup.subtree_control"), dir, len(procs), errdefs.ErrUnavailable)
		}
	}
	return nil
}

// isV2NonRoot: only non-root cgroups have cgroup.type.
func isV2NonRoot(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "cgroup.type"))
	return err == nil
}

// enableV2Controllers writes +ctrl to dir's cgroup.subtree_control for each
// controller not yet enabled, one at a time so the error names the culprit.
func enableV2Controllers(dir string, want []string) error {
	enabled, err := readTrimmed(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("cgroup v2 %s: %w", dir, err)
	}
	for _, c := range want {
		if slices.Contains(strings.Fields(enabled), c) {
			continue
		}
		if err := writeFile(filepath.Join(dir, "cgroup.subtree_control"), "+"+c); err != nil {
			if errors.Is(err, unix.EBUSY) {
				return fmt.Errorf("enable cgroup v2 controller %s in %s: %w: the cgroup holds processes, and a non-root cgroup with processes cannot pass controllers to its children: %w",
					c, dir, err, errdefs.ErrUnavailable)
			}
			if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("enable cgroup v2 controller %s in %s: %w: not available there (see cgroup.controllers): %w", c, dir, err, errdefs.ErrUnavailable)
			}
			return fmt.Errorf("enable cgroup v2 controller %s in %s: %w", c, dir, err)
		}
	}
	return nil
}
