package isolation

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mesolite/mesolite/errdefs"
)

// Isolator is one entry of the agent's --isolation flag, named as Mesos names it.
type Isolator uint16

// The isolators mesolite knows. posix/* only report usage (as in Mesos); the
// others enforce something and need root.
const (
	CgroupsCPU Isolator = 1 << iota
	CgroupsMem
	CgroupsPids
	NamespacesPID
	NamespacesIPC
	NamespacesUTS
	FilesystemLinux
	FilesystemPosix
	PosixCPU
	PosixMem
)

var isolatorNames = []struct {
	i    Isolator
	name string
}{
	{CgroupsCPU, "cgroups/cpu"},
	{CgroupsMem, "cgroups/mem"},
	{CgroupsPids, "cgroups/pids"},
	{NamespacesPID, "namespaces/pid"},
	{NamespacesIPC, "namespaces/ipc"},
	{NamespacesUTS, "namespaces/uts"},
	{FilesystemLinux, "filesystem/linux"},
	{FilesystemPosix, "filesystem/posix"},
	{PosixCPU, "posix/cpu"},
	{PosixMem, "posix/mem"},
}

// String returns the Mesos name ("cgroups/cpu").
func (i Isolator) String() string {
	for _, n := range isolatorNames {
		if n.i == i {
			return n.name
		}
	}
	return fmt.Sprintf("isolator(%d)", uint16(i))
}

// Set is a set of isolators, as parsed from --isolation.
type Set uint16

// DefaultIsolation is Mesos's default --isolation value.
const DefaultIsolation = "posix/cpu,posix/mem"

// ParseIsolation parses a comma separated --isolation value. An empty value
// gives Mesos's default (posix/cpu,posix/mem). "cgroups/all" stands for every
// cgroups isolator mesolite has. Unknown names are an error wrapping
// errdefs.ErrInvalid that names the entry, so a typo never silently drops an
// isolator.
func ParseIsolation(s string) (Set, error) {
	if strings.TrimSpace(s) == "" {
		s = DefaultIsolation
	}
	var set Set
	var bad []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if f == "cgroups/all" {
			set |= Set(CgroupsCPU | CgroupsMem | CgroupsPids)
			continue
		}
		found := false
		for _, n := range isolatorNames {
			if n.name == f {
				set |= Set(n.i)
				found = true
				break
			}
		}
		if !found {
			bad = append(bad, fmt.Sprintf("%q", f))
		}
	}
	if len(bad) > 0 {
		return 0, fmt.Errorf("--isolation: unknown isolator %s (known: %s): %w",
			strings.Join(bad, ", "), strings.Join(knownNames(), ", "), errdefs.ErrInvalid)
	}
	return set, nil
}

func knownNames() []string {
	out := make([]string, 0, len(isolatorNames)+1)
	for _, n := range isolatorNames {
		out = append(out, n.name)
	}
	return append(out, "cgroups/all")
}

// Has reports whether i is in the set.
func (s Set) Has(i Isolator) bool { return s&Set(i) != 0 }

// Isolators lists the members in a stable order.
func (s Set) Isolators() []Isolator {
	var out []Isolator
	for _, n := range isolatorNames {
		if s.Has(n.i) {
			out = append(out, n.i)
		}
	}
	return out
}

// String renders the set as an --isolation value.
func (s Set) String() string {
	var names []string
	for _, i := range s.Isolators() {
		names = append(names, i.String())
	}
	return strings.Join(names, ",")
}

// UsesCgroups reports whether any cgroups isolator is in the set.
func (s Set) UsesCgroups() bool {
	return s.Has(CgroupsCPU) || s.Has(CgroupsMem) || s.Has(CgroupsPids)
}

// Namespaces returns the namespaces a container launched under this set gets.
// A pid namespace brings a mount namespace with it: the init has to mount a
// fresh /proc, and that must not show on the host.
func (s Set) Namespaces() Namespaces {
	var n Namespaces
	if s.Has(NamespacesPID) {
		n |= NamespacePID | NamespaceMount
	}
	if s.Has(NamespacesIPC) {
		n |= NamespaceIPC
	}
	if s.Has(NamespacesUTS) {
		n |= NamespaceUTS
	}
	if s.Has(FilesystemLinux) {
		n |= NamespaceMount
	}
	return n
}

// needsRoot reports whether anything in the set needs euid 0.
func (s Set) needsRoot() bool {
	return s.UsesCgroups() || s.Namespaces() != 0
}

// Namespaces is a set of Linux namespaces a container is started in.
type Namespaces uint8

// The namespaces the linux launcher can create.
const (
	NamespacePID Namespaces = 1 << iota
	NamespaceMount
	NamespaceIPC
	NamespaceUTS
)

// Has reports whether all of x are in n.
func (n Namespaces) Has(x Namespaces) bool { return n&x == x }

// String lists the namespaces ("pid,mount").
func (n Namespaces) String() string {
	var out []string
	for _, x := range []struct {
		ns   Namespaces
		name string
	}{{NamespacePID, "pid"}, {NamespaceMount, "mount"}, {NamespaceIPC, "ipc"}, {NamespaceUTS, "uts"}} {
		if n.Has(x.ns) {
			out = append(out, x.name)
		}
	}
	return strings.Join(out, ",")
}

// LauncherKind selects how executors are started (Mesos's --launcher).
type LauncherKind string

// The two launchers.
const (
	// LauncherLinux starts the executor under an init in fresh namespaces and
	// its cgroup. Needs root.
	LauncherLinux LauncherKind = "linux"
	// LauncherPosix starts the executor as a plain child in its own session.
	LauncherPosix LauncherKind = "posix"
)

// DefaultLauncher is linux as root and posix otherwise, as in Mesos.
func DefaultLauncher() LauncherKind {
	if os.Geteuid() == 0 {
		return LauncherLinux
	}
	return LauncherPosix
}

// ParseLauncher parses a --launcher value; empty picks DefaultLauncher.
func ParseLauncher(s string) (LauncherKind, error) {
	switch LauncherKind(strings.TrimSpace(s)) {
	case "":
		return DefaultLauncher(), nil
	case LauncherLinux:
		return LauncherLinux, nil
	case LauncherPosix:
		return LauncherPosix, nil
	}
	return "", fmt.Errorf("--launcher: unknown launcher %q (want linux or posix): %w", s, errdefs.ErrInvalid)
}

// Default values of Options.
const (
	DefaultCgroupsRoot      = "mesolite"
	DefaultCgroupsHierarchy = "/sys/fs/cgroup"
)

// Options are the agent flags this package reads (Mesos names in comments).
type Options struct {
	// CgroupsRoot is the cgroup, relative to each hierarchy, under which one
	// cgroup per container is made (--cgroups_root). Default "mesolite".
	CgroupsRoot string
	// CgroupsHierarchy is where cgroups are mounted (--cgroups_hierarchy):
	// a tmpfs of v1 controller mounts, or the v2 unified mount. Default
	// /sys/fs/cgroup.
	CgroupsHierarchy string
	// EnableCFS caps cpu time at the container's cpus with a CFS quota
	// (--cgroups_enable_cfs); otherwise cpus only weigh the scheduler.
	EnableCFS bool
	// Launcher is linux or posix (--launcher); empty picks DefaultLauncher.
	Launcher LauncherKind
}

// WithDefaults returns o with empty fields filled in.
func (o Options) WithDefaults() Options {
	if o.CgroupsRoot == "" {
		o.CgroupsRoot = DefaultCgroupsRoot
	}
	if o.CgroupsHierarchy == "" {
		o.CgroupsHierarchy = DefaultCgroupsHierarchy
	}
	if o.Launcher == "" {
		o.Launcher = DefaultLauncher()
	}
	return o
}

func (o Options) validate() error {
	root := filepath.Clean("/" + o.CgroupsRoot)
	if root == "/" || root != "/"+strings.Trim(o.CgroupsRoot, "/") {
		return fmt.Errorf("--cgroups_root %q: want a relative cgroup path without '..': %w", o.CgroupsRoot, errdefs.ErrInvalid)
	}
	if !filepath.IsAbs(o.CgroupsHierarchy) {
		return fmt.Errorf("--cgroups_hierarchy %q: want an absolute path: %w", o.CgroupsHierarchy, errdefs.ErrInvalid)
	}
	return nil
}
