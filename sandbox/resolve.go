package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/mesolite/mesolite/errdefs"
)

// Resolver maps a path from a user to a file inside exactly one executor run
// directory. It accepts the two spellings Mesos clients send for the same
// files:
//
//	/frameworks/<fw>/executors/<exec>/runs/<container_id|latest>[/rest]     (this agent)
//	<work_dir>/slaves/<agent>/frameworks/<fw>/executors/<exec>/runs/<container_id|latest>[/rest]
//
// The second one is what Mesos's web UI sends (the sandbox "directory" from
// /state). The ids part is parsed by hand, `latest` is read and checked by
// hand, and everything below the run directory is opened through an os.Root
// rooted there, so neither "..", nor a symlink a task planted, nor a forged
// latest link can reach another sandbox or the host.
type Resolver struct {
	layout    Layout
	agentID   string
	prefixes  []string // "<work_dir>/slaves/" spellings, each ending in '/'
	collected func(hostPath string) bool
	cache     *rootCache
	// logs are the process's own log files attached at a virtual path
	// (/master/log, /slave/log), as Mesos attaches --log_dir's or
	// --external_log_file's; set before the resolver serves.
	logs map[string]string
}

// AttachLog serves the log file hostPath at the virtual path (Mesos's
// /master/log or /slave/log). Call it before the resolver serves requests.
func (r *Resolver) AttachLog(virtual, hostPath string) {
	if r.logs == nil {
		r.logs = map[string]string{}
	}
	// The operator's path may be a link (/var/log/mesos.log to a dated
	// file): it is resolved here, once, since serving opens the file by
	// its name in its directory and follows no link.
	if real, err := filepath.EvalSymlinks(hostPath); err == nil {
		hostPath = real
	}
	r.logs[virtual] = hostPath
}

// rootCacheSize bounds the directories kept open between requests.
const rootCacheSize = 256

// NewResolver returns a resolver for the sandboxes of agentID under layout.
// collected, when not nil, reports whether the GC removed a path (or one of
// its parents); missing sandboxes it knows of answer ErrGone, not ErrNotFound.
func NewResolver(layout Layout, agentID string, collected func(hostPath string) bool) *Resolver {
	r := &Resolver{layout: layout, agentID: agentID, collected: collected, cache: newRootCache(rootCacheSize)}
	add := func(p string) {
		if p == "" {
			return
		}
		p = filepath.Clean(p) + "/"
		for _, q := range r.prefixes {
			if q == p {
				return
			}
		}
		r.prefixes = append(r.prefixes, p)
	}
	slaves := layout.SlavesDir()
	add(slaves)
	if abs, err := filepath.Abs(slaves); err == nil {
		add(abs)
	}
	// The UI may show the work directory with or without symlinks resolved.
	if real, err := filepath.EvalSymlinks(layout.WorkDir); err == nil {
		add(filepath.Join(real, SlavesDir))
	}
	return r
}

// Target is a resolved request: one run directory, opened as an os.Root, and
// a relative path inside it. Close releases the root.
type Target struct {
	// ID is the run, with `latest` replaced by the container id it named.
	ID RunID
	// RunDir is the host path of the run directory.
	RunDir string
	// Rel is the slash-separated path inside RunDir; "." is RunDir itself.
	Rel string
	// Virtual is the request path with trailing slashes removed; listings
	// name their entries under it, as Mesos does.
	Virtual string
	// Log: the target is an attached log file (AttachLog), not a sandbox;
	// ID is zero.
	Log bool

	root  *os.Root
	entry *rootEntry // the cache entry holding root; nil when root is the Target's own
	cache *rootCache
}

// Root is the os.Root of the run directory; every access below it must go
// through it.
func (t *Target) Root() *os.Root { return t.root }

// Close releases the run directory.
func (t *Target) Close() error {
	if t.entry == nil {
		return t.root.Close()
	}
	t.cache.release(t.entry)
	return nil
}

// HostPath is the host path of the target, for /files/debug and logs only:
// never open it directly.
func (t *Target) HostPath() string { return filepath.Join(t.RunDir, filepath.FromSlash(t.Rel)) }

// Open opens the target for reading through the run directory's root.
func (t *Target) Open() (*os.File, error) {
	f, err := t.root.Open(t.Rel)
	if err != nil {
		return nil, classify(err, t.Virtual)
	}
	return f, nil
}

// Stat follows symlinks (inside the run directory only), as Mesos's stat does.
func (t *Target) Stat() (fs.FileInfo, error) {
	fi, err := t.root.Stat(t.Rel)
	if err != nil {
		return nil, classify(err, t.Virtual)
	}
	return fi, nil
}

// Resolve parses p and opens its run directory. Errors carry errdefs
// classes: ErrInvalid (empty or malformed), ErrForbidden (any attempt to
// leave the run directory), ErrNotFound, ErrGone (collected by the GC).
func (r *Resolver) Resolve(p string) (*Target, error) {
	if p == "" {
		return nil, fmt.Errorf("expecting 'path=value' in query: %w", errdefs.ErrInvalid)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return nil, fmt.Errorf("path contains a NUL byte: %w", errdefs.ErrInvalid)
	}
	virtual := strings.TrimRight(p, "/")
	if virtual == "" {
		virtual = "/"
	}
	p = strings.TrimPrefix(p, "file://")
	if host, ok := r.logs[virtual]; ok {
		// The operator's own file, opened as the one name in its
		// directory's root: no path from the request goes below it.
		dir := filepath.Dir(host)
		root, err := os.OpenRoot(dir)
		if err != nil {
			return nil, classify(err, virtual)
		}
		return &Target{RunDir: dir, Rel: filepath.Base(host), Virtual: virtual, Log: true, root: root}, nil
	}
	if r.layout.WorkDir == "" {
		// No sandboxes here (a master serving its log only): a relative
		// "slaves/..." must not resolve against the working directory.
		return nil, fmt.Errorf("%s: no such file: %w", virtual, errdefs.ErrNotFound)
	}

	agentID, tail, ok := r.split(p)
	if !ok {
		return nil, fmt.Errorf("%s: no such sandbox: %w", virtual, errdefs.ErrNotFound)
	}
	if agentID == ".." {
		return nil, fmt.Errorf("%s: '..' is not allowed in a sandbox path: %w", virtual, errdefs.ErrForbidden)
	}
	parts, err := components(tail)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", virtual, err)
	}
	if len(parts) < 6 || parts[0] != FrameworksDir || parts[2] != ExecutorsDir || parts[4] != RunsDir {
		return nil, fmt.Errorf("%s: no such sandbox: %w", virtual, errdefs.ErrNotFound)
	}
	id := RunID{AgentID: agentID, FrameworkID: parts[1], ExecutorID: parts[3], ContainerID: parts[5]}
	for _, v := range []string{id.AgentID, id.FrameworkID, id.ExecutorID, id.ContainerID} {
		if ValidateID(v) != nil {
			return nil, fmt.Errorf("%s: no such sandbox: %w", virtual, errdefs.ErrNotFound)
		}
	}

	runsDir := r.layout.RunsDir(id.AgentID, id.FrameworkID, id.ExecutorID)
	if id.ContainerID == LatestLink {
		runs, err := r.runs(id)
		if err != nil {
			return nil, r.missing(classify(err, virtual), runsDir, virtual)
		}
		target, err := runs.root.Readlink(LatestLink)
		r.cache.release(runs)
		if err != nil {
			return nil, r.missing(classify(err, virtual), runsDir, virtual)
		}
		cid, err := latestTarget(runsDir, target)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", virtual, err)
		}
		id.ContainerID = cid
	}
	runDir := r.layout.RunDir(id)
	run, err := r.cache.get("run:"+relRunDir(id), func() (*os.Root, error) { return r.openRun(id) })
	if err != nil {
		if errors.Is(err, errdefs.ErrForbidden) {
			return nil, fmt.Errorf("%s: %w", virtual, err)
		}
		// The run directory and every directory above it count: the GC
		// may have taken the executor or the framework directory.
		return nil, r.missing(classify(err, virtual), runDir, virtual)
	}
	inner := "."
	if len(parts) > 6 {
		inner = strings.Join(parts[6:], "/")
	}
	return &Target{ID: id, RunDir: runDir, Rel: inner, Virtual: virtual, root: run.root, entry: run, cache: r.cache}, nil
}

// runs returns the (cached) runs directory of id's executor.
func (r *Resolver) runs(id RunID) (*rootEntry, error) {
	key := relRunsDir(id.AgentID, id.FrameworkID, id.ExecutorID)
	return r.cache.get("runs:"+key, func() (*os.Root, error) {
		slaves, err := r.cache.get("slaves", func() (*os.Root, error) { return os.OpenRoot(r.layout.SlavesDir()) })
		if err != nil {
			return nil, err
		}
		defer r.cache.release(slaves)
		return slaves.root.OpenRoot(key)
	})
}

// openRun opens a run directory from its runs directory, refusing a run
// directory that is a symlink: that would let one run's virtual path show
// another run's files.
func (r *Resolver) openRun(id RunID) (*os.Root, error) {
	runs, err := r.runs(id)
	if err != nil {
		return nil, err
	}
	defer r.cache.release(runs)
	fi, err := runs.root.Lstat(id.ContainerID)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("run directory is not a directory: %w", errdefs.ErrForbidden)
	}
	return runs.root.OpenRoot(id.ContainerID)
}

// Close releases the directories the resolver keeps open.
func (r *Resolver) Close() { r.cache.close() }

// split finds which spelling p uses and returns the agent id and the path
// from "frameworks/" on.
func (r *Resolver) split(p string) (agentID, tail string, ok bool) {
	for _, prefix := range r.prefixes {
		if rest, found := strings.CutPrefix(p, prefix); found {
			agent, tail, _ := strings.Cut(rest, "/")
			return agent, tail, true
		}
	}
	if strings.HasPrefix(p, "/") {
		return r.agentID, p[1:], true
	}
	return "", "", false
}

// components splits a slash path, dropping empty and "." elements and
// refusing "..": the path is never cleaned first, because cleaning
// "runs/a/../../other/runs/b" would quietly turn it into another sandbox.
func components(p string) ([]string, error) {
	var out []string
	for c := range strings.SplitSeq(p, "/") {
		switch c {
		case "", ".":
		case "..":
			return nil, fmt.Errorf("'..' is not allowed in a sandbox path: %w", errdefs.ErrForbidden)
		default:
			out = append(out, c)
		}
	}
	return out, nil
}

// missing turns a not-found error into ErrGone when the GC removed hostPath.
func (r *Resolver) missing(err error, hostPath, virtual string) error {
	if errors.Is(err, errdefs.ErrNotFound) && r.collected != nil && r.collected(hostPath) {
		return fmt.Errorf("%s: sandbox was garbage collected: %w", virtual, errdefs.ErrGone)
	}
	return err
}

// errPathEscapes is os.Root's (unexported) answer to a path or symlink that
// leads out of the root; TestResolveEscapeIs403 pins the text.
const errPathEscapes = "path escapes from parent"

// classify maps a filesystem error to an errdefs class. Messages name the
// virtual path only: host paths are not the client's business.
func classify(err error, virtual string) error {
	var errno syscall.Errno
	var pe *fs.PathError
	switch {
	case errors.As(err, &pe) && pe.Err != nil && pe.Err.Error() == errPathEscapes:
		return fmt.Errorf("%s: path leads outside the sandbox: %w", virtual, errdefs.ErrForbidden)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%s: no such file or directory: %w", virtual, errdefs.ErrNotFound)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s: permission denied: %w", virtual, errdefs.ErrForbidden)
	case errors.As(err, &errno) && errno == syscall.ELOOP:
		return fmt.Errorf("%s: too many levels of symbolic links: %w", virtual, errdefs.ErrNotFound)
	case errors.As(err, &errno) && errno == syscall.ENAMETOOLONG:
		return fmt.Errorf("%s: name too long: %w", virtual, errdefs.ErrInvalid)
	}
	return fmt.Errorf("%s: %w", virtual, err)
}
