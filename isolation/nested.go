package isolation

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mesolite/mesolite/errdefs"
)

// NestedCgroupsEnv names the variable that gives a task group's executor
// the directories of its container's cgroup (Cgroup.Dirs, joined by ':'),
// below which the agent makes one cgroup per task (CreateNested) for the
// executor to move the task into (PlaceNested).
const NestedCgroupsEnv = "MESOLITE_NESTED_CGROUPS"

// NestedDirs parses the value of NestedCgroupsEnv; nil when it is empty.
func NestedDirs(v string) []string {
	var out []string
	for _, d := range strings.Split(v, ":") {
		if filepath.IsAbs(d) {
			out = append(out, filepath.Clean(d))
		}
	}
	return out
}

// PlaceNested moves process pid (it and its threads) into nested cgroup id
// below each of dirs, by writing cgroup.procs, which the caller may only
// while the cgroup is delegated to it (Cgroup.Delegate). It is an error
// wrapping errdefs.ErrNotFound when no such nested cgroup was made.
func PlaceNested(dirs []string, id string, pid int) error {
	if err := validateNestedID(id); err != nil {
		return err
	}
	if len(dirs) == 0 {
		return fmt.Errorf("place pid %d in nested cgroup %s: no cgroup directories: %w", pid, id, errdefs.ErrNotFound)
	}
	for _, d := range dirs {
		err := writeFile(filepath.Join(d, id, "cgroup.procs"), strconv.Itoa(pid))
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("place pid %d: no nested cgroup %s in %s: %w", pid, id, d, errdefs.ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("place pid %d in nested cgroup %s: %w", pid, id, err)
		}
	}
	return nil
}

// HasNested reports whether nested cgroup id exists below the first of dirs.
func HasNested(dirs []string, id string) bool {
	if len(dirs) == 0 || validateNestedID(id) != nil {
		return false
	}
	_, err := os.Stat(filepath.Join(dirs[0], id))
	return err == nil
}
