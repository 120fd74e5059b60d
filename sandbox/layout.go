package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/mesolite/mesolite/api/v1/validate"
	"github.com/mesolite/mesolite/internal/safefile"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/mesolite/mesolite/errdefs"
)

// Directory and file names of Mesos's agent layout; tools and people who know
// Mesos look for exactly these.
const (
	SlavesDir     = "slaves"
	FrameworksDir = "frameworks"
	ExecutorsDir  = "executors"
	RunsDir       = "runs"
	LatestLink    = "latest"
	StdoutFile    = "stdout"
	StderrFile    = "stderr"
)

// RunDirMode is the permission of a new executor run directory.
const RunDirMode fs.FileMode = 0o755

// Layout is Mesos's sandbox layout under an agent work directory:
//
//	<WorkDir>/slaves/<agent_id>/frameworks/<framework_id>/executors/<executor_id>/runs/<container_id>/
//	<WorkDir>/slaves/<agent_id>/frameworks/<framework_id>/executors/<executor_id>/runs/latest -> <container_id>
//
// The getters only join names; ids are checked by CreateRun and the resolver,
// which are the places where an id could come from outside.
type Layout struct {
	WorkDir string
}

// RunID names one executor run (one container) of one agent.
type RunID struct {
	AgentID     string
	FrameworkID string
	ExecutorID  string
	ContainerID string
}

// String is the form used in logs.
func (id RunID) String() string {
	return fmt.Sprintf("agent %s framework %s executor %s container %s", id.AgentID, id.FrameworkID, id.ExecutorID, id.ContainerID)
}

// Validate checks every id with Mesos's rules for ids that become directory
// names (non-empty, not "." or "..", no '/', '\\' or control characters).
// The container id must not be "latest", which names the symlink.
func (id RunID) Validate() error {
	for _, f := range []struct{ name, v string }{
		{"agent id", id.AgentID},
		{"framework id", id.FrameworkID},
		{"executor id", id.ExecutorID},
		{"container id", id.ContainerID},
	} {
		if err := ValidateID(f.v); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	if id.ContainerID == LatestLink {
		return fmt.Errorf("container id %q names the latest symlink: %w", id.ContainerID, errdefs.ErrInvalid)
	}
	return nil
}

// ValidateID applies Mesos's rules for an id used as a directory name
// (validate.ID: one path component, printable, length-capped).
func ValidateID(id string) error { return validate.ID("id", id) }

// SlavesDir is <WorkDir>/slaves, the parent of every agent's sandboxes.
func (l Layout) SlavesDir() string { return filepath.Join(l.WorkDir, SlavesDir) }

// AgentDir is <WorkDir>/slaves/<agent_id>.
func (l Layout) AgentDir(agentID string) string {
	return filepath.Join(l.WorkDir, SlavesDir, agentID)
}

// FrameworkDir is <agent dir>/frameworks/<framework_id>.
func (l Layout) FrameworkDir(agentID, frameworkID string) string {
	return filepath.Join(l.AgentDir(agentID), FrameworksDir, frameworkID)
}

// ExecutorDir is <framework dir>/executors/<executor_id>.
func (l Layout) ExecutorDir(agentID, frameworkID, executorID string) string {
	return filepath.Join(l.FrameworkDir(agentID, frameworkID), ExecutorsDir, executorID)
}

// RunsDir is <executor dir>/runs, holding one directory per container and
// the latest symlink.
func (l Layout) RunsDir(agentID, frameworkID, executorID string) string {
	return filepath.Join(l.ExecutorDir(agentID, frameworkID, executorID), RunsDir)
}

// RunDir is <executor dir>/runs/<container_id>, the sandbox itself
// (MESOS_DIRECTORY).
func (l Layout) RunDir(id RunID) string {
	return filepath.Join(l.RunsDir(id.AgentID, id.FrameworkID, id.ExecutorID), id.ContainerID)
}

// LatestLink is <executor dir>/runs/latest.
func (l Layout) LatestLink(agentID, frameworkID, executorID string) string {
	return filepath.Join(l.RunsDir(agentID, frameworkID, executorID), LatestLink)
}

// relRunDir is RunDir relative to SlavesDir, the form os.Root wants.
func relRunDir(id RunID) string {
	return path.Join(id.AgentID, FrameworksDir, id.FrameworkID, ExecutorsDir, id.ExecutorID, RunsDir, id.ContainerID)
}

func relRunsDir(agentID, frameworkID, executorID string) string {
	return path.Join(agentID, FrameworksDir, frameworkID, ExecutorsDir, executorID, RunsDir)
}

// CreateRun makes the run directory (mode RunDirMode) with empty stdout and
// stderr files, and points runs/latest at it. It is idempotent: an existing
// directory and existing logs are kept, so an agent that recovers can call it
// again. It returns the run directory.
func (l Layout) CreateRun(id RunID) (string, error) {
	if err := id.Validate(); err != nil {
		return "", err
	}
	dir := l.RunDir(id)
	if err := os.MkdirAll(dir, RunDirMode); err != nil {
		return "", fmt.Errorf("create sandbox %s: %w", dir, err)
	}
	// MkdirAll's mode passes through the umask; the sandbox mode must not.
	if err := os.Chmod(dir, RunDirMode); err != nil {
		return "", fmt.Errorf("chmod sandbox %s: %w", dir, err)
	}
	for _, name := range []string{StdoutFile, StderrFile} {
		f, err := safefile.OpenAppend(filepath.Join(dir, name), 0o644, nil)
		if err != nil {
			return "", fmt.Errorf("create %s in sandbox: %w", name, err)
		}
		if err := f.Close(); err != nil {
			return "", fmt.Errorf("create %s in sandbox: %w", name, err)
		}
	}
	if err := l.SetLatest(id); err != nil {
		return "", err
	}
	return dir, nil
}

// SetLatest points runs/latest at id's container, replacing any previous
// link atomically (a reader sees the old target or the new one, never no
// link). The target is the bare container id, so the link stays valid when
// the work directory is moved or bind-mounted elsewhere.
func (l Layout) SetLatest(id RunID) error {
	if err := id.Validate(); err != nil {
		return err
	}
	runs := l.RunsDir(id.AgentID, id.FrameworkID, id.ExecutorID)
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("latest link: %w", err)
	}
	tmp := filepath.Join(runs, ".latest."+hex.EncodeToString(rnd[:]))
	if err := os.Symlink(id.ContainerID, tmp); err != nil {
		return fmt.Errorf("latest link: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(runs, LatestLink)); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("latest link: %w", err)
	}
	return nil
}

// Latest returns the container id runs/latest points at. The target must be
// a plain name in the runs directory; an absolute target (what Mesos itself
// writes) is accepted when it names an entry of that same runs directory.
func (l Layout) Latest(agentID, frameworkID, executorID string) (string, error) {
	runs := l.RunsDir(agentID, frameworkID, executorID)
	target, err := os.Readlink(filepath.Join(runs, LatestLink))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("no latest run for executor %s: %w", executorID, errdefs.ErrNotFound)
		}
		return "", fmt.Errorf("latest link: %w", err)
	}
	return latestTarget(runs, target)
}

// latestTarget checks a latest link's target and returns the container id.
func latestTarget(runsDir, target string) (string, error) {
	name := target
	if filepath.IsAbs(target) {
		dir, base := filepath.Split(target)
		if filepath.Clean(dir) != filepath.Clean(runsDir) {
			return "", fmt.Errorf("latest link points outside its runs directory: %w", errdefs.ErrForbidden)
		}
		name = base
	}
	if err := ValidateID(name); err != nil || name == LatestLink || strings.HasPrefix(name, ".latest.") {
		return "", fmt.Errorf("latest link target %q is not a container directory: %w", target, errdefs.ErrForbidden)
	}
	return name, nil
}

// ParseRunDir is the inverse of RunDir: it splits a host path under the work
// directory into its ids. Anything below the run directory is returned as rest
// ("" when dir is the run directory itself).
func (l Layout) ParseRunDir(dir string) (id RunID, rest string, err error) {
	prefix := filepath.Clean(l.SlavesDir()) + string(filepath.Separator)
	clean := filepath.Clean(dir)
	if !strings.HasPrefix(clean, prefix) {
		return RunID{}, "", fmt.Errorf("%s is not under %s: %w", dir, l.SlavesDir(), errdefs.ErrInvalid)
	}
	parts := strings.Split(clean[len(prefix):], string(filepath.Separator))
	if len(parts) < 7 || parts[1] != FrameworksDir || parts[3] != ExecutorsDir || parts[5] != RunsDir {
		return RunID{}, "", fmt.Errorf("%s is not an executor run directory: %w", dir, errdefs.ErrInvalid)
	}
	id = RunID{AgentID: parts[0], FrameworkID: parts[2], ExecutorID: parts[4], ContainerID: parts[6]}
	return id, strings.Join(parts[7:], "/"), nil
}

// VirtualPath is the files API path of this run:
// /frameworks/<fw>/executors/<exec>/runs/<container_id>.
func (id RunID) VirtualPath() string {
	return path.Join("/", FrameworksDir, id.FrameworkID, ExecutorsDir, id.ExecutorID, RunsDir, id.ContainerID)
}

// VirtualLatestPath is the files API path Mesos hands out for an executor:
// /frameworks/<fw>/executors/<exec>/runs/latest.
func VirtualLatestPath(frameworkID, executorID string) string {
	return path.Join("/", FrameworksDir, frameworkID, ExecutorsDir, executorID, RunsDir, LatestLink)
}
