package fetcher

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
)

// Options configure RunChild.
type Options struct {
	// Binary is the executable to start, normally the mesolite binary
	// (os.Executable()).
	Binary string
	// Args come before ours, normally []string{"fetch"}; RunChild appends
	// --result_fd=3.
	Args []string
	// Env is the child's environment; nil inherits the agent's (which
	// carries HADOOP_HOME, proxies and cloud credentials).
	Env []string
	// Config is the agent's fetcher configuration, sent to the child.
	Config Config
	// Timeout bounds the whole fetch; 0 leaves only ctx.
	Timeout time.Duration
	// Logger receives the parent-side record of each fetch; nil discards.
	Logger *slog.Logger
	// Stats, when not nil, counts fetches (Mesos's task_fetches_succeeded
	// and task_fetches_failed).
	Stats *Stats
	// Pool, when not nil, holds children started ahead with this Binary,
	// Args and Env; a fetch that runs as the agent's own user takes one
	// instead of starting a process on the launch path.
	Pool *ChildPool
}

// Stats counts fetches by outcome; safe for concurrent use.
type Stats struct {
	succeeded atomic.Uint64
	failed    atomic.Uint64
}

// Succeeded is the number of requests whose URIs were all fetched.
func (s *Stats) Succeeded() uint64 { return s.succeeded.Load() }

// Failed is the number of requests that failed.
func (s *Stats) Failed() uint64 { return s.failed.Load() }

// childInput is the JSON document the child reads from stdin.
type childInput struct {
	Config   Config    `json:"config"`
	Request  Request   `json:"request"`
	Deadline time.Time `json:"deadline,omitzero"`
}

// ChildMain is the hidden `mesolite fetch` subcommand. It reads one
// {"config":…, "request":…} document from stdin, fetches, logs to stderr
// (which the parent copies to the sandbox's stderr) and, with
// --result_fd=N, writes one JSON event per line to fd N. Exit status: 0 all
// fetched, 1 a URI failed, 2 bad invocation.
func ChildMain(ctx context.Context, args []string, stdin io.Reader, stderr io.Writer) int {
	fs := flag.NewFlagSet("fetch", flag.ContinueOnError)
	fs.SetOutput(stderr)
	resultFD := fs.Int("result_fd", -1, "file descriptor to write per-URI JSON events to")
	cacheFD := fs.Int("cache_fd", -1, "socket to ask the agent for fetcher cache writes on")
	runAs := fs.String("run_as", "", "uid:gid[:group,...] to fetch as, taken after PR_SET_DUMPABLE is off")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// Another process of the task user must not attach to this one (ptrace,
	// /proc/<pid>/mem, pidfd_getfd of --cache_fd) and change what it writes
	// into a sandbox or the cache. Started as root with --run_as, it is out
	// of the user's reach from exec until here, and becomes the user only
	// once it is not dumpable.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil && *runAs != "" {
		fmt.Fprintf(stderr, "mesolite fetch: cannot turn PR_SET_DUMPABLE off: %v\n", err)
		return 2
	}
	if *runAs != "" {
		if err := dropTo(*runAs); err != nil {
			fmt.Fprintf(stderr, "mesolite fetch: cannot become the task user: %v\n", err)
			return 2
		}
	}
	var enc *json.Encoder
	if *resultFD >= 0 {
		rf := os.NewFile(uintptr(*resultFD), "result")
		if rf == nil {
			fmt.Fprintf(stderr, "mesolite fetch: bad --result_fd=%d\n", *resultFD)
			return 2
		}
		defer rf.Close()
		enc = json.NewEncoder(rf)
		// The runtime is up: a prestarted child waits for the request here.
		_ = enc.Encode(event{Type: "ready"})
	}
	var in childInput
	if err := json.NewDecoder(stdin).Decode(&in); err != nil {
		fmt.Fprintf(stderr, "mesolite fetch: cannot read the request from stdin: %v\n", err)
		return 2
	}
	if !in.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, in.Deadline)
		defer cancel()
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	f := New(in.Config, log)
	var notifyMu sync.Mutex
	notify := func(ev event) {
		notifyMu.Lock()
		defer notifyMu.Unlock()
		if enc != nil {
			_ = enc.Encode(ev)
		}
	}
	// The kernel's bound under ours: no file this process or a helper it
	// starts (the Hadoop client, git) writes can pass the request's budget
	// by more than the slack that lets our own checks, which name the limit,
	// speak first.
	if lim := newBudget(in.Config, in.Request).limit; lim > 0 && lim < math.MaxInt64-rlimitSlack {
		fsize := uint64(lim + rlimitSlack)
		if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: fsize, Max: fsize}); err != nil {
			log.Warn("cannot set RLIMIT_FSIZE", "error", err.Error())
		}
	}
	f.onSpawn = func(pid int) { notify(event{Type: "spawn", Pid: pid}) }
	f.onBytes = func(done, total int64) { notify(event{Type: "progress", Bytes: done, Total: total}) }
	if *cacheFD >= 0 {
		sub, err := userDirName(in.Request.User)
		if err == nil {
			f.broker, err = newBrokerClient(os.NewFile(uintptr(*cacheFD), "cache"), filepath.Join(in.Config.CacheDir, sub))
		}
		if err != nil {
			fmt.Fprintf(stderr, "mesolite fetch: bad --cache_fd=%d: %v\n", *cacheFD, err)
			return 2
		}
	}
	if _, err := f.fetchAll(ctx, in.Request, notify); err != nil {
		var ue *URIError
		if !errors.As(err, &ue) {
			// A request-level failure (bad sandbox) before any URI.
			log.Error("fetch failed", "error", err.Error())
			notify(event{Type: "done", Error: err.Error(), Class: className(err)})
		}
		return 1
	}
	return 0
}

// rlimitSlack is how far past the budget RLIMIT_FSIZE sits.
const rlimitSlack = 1 << 20

// RunChild fetches req in a child process (Options.Binary, normally
// `mesolite fetch`), copying its log lines to stderr (the sandbox's stderr
// file). It returns nil when every URI was fetched, else a *URIError naming
// the URI that failed, whose cause keeps its errdefs class:
// ErrInvalid/ErrForbidden for a bad URI, output_file or hostile archive,
// ErrNotFound for a missing artifact, ErrUnavailable for network failures,
// stalls, timeouts and crashes. A request without URIs starts nothing.
func RunChild(ctx context.Context, opts Options, req Request, stderr io.Writer) error {
	err := runChild(ctx, opts, req, stderr)
	if opts.Stats != nil {
		if err == nil {
			opts.Stats.succeeded.Add(1)
		} else {
			opts.Stats.failed.Add(1)
		}
	}
	return err
}

func runChild(ctx context.Context, opts Options, req Request, stderr io.Writer) error {
	if len(req.URIs) == 0 {
		return nil
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "fetcher")
	if stderr == nil {
		stderr = io.Discard
	}
	first := redactValue(req.URIs[0].Value)
	if opts.Binary == "" {
		return &URIError{URI: first, Err: fmt.Errorf("no fetcher binary configured: %w", errdefs.ErrInvalid)}
	}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	in := childInput{Config: opts.Config, Request: req}
	if dl, ok := ctx.Deadline(); ok {
		in.Deadline = dl
	}
	input, err := json.Marshal(in)
	if err != nil {
		return &URIError{URI: first, Err: err}
	}

	cred, err := userCredential(opts.Config, req, log)
	if err != nil {
		return &URIError{URI: first, Err: err}
	}
	var c *childProc
	if cred == nil && opts.Pool != nil {
		defer opts.Pool.refill()
		c = opts.Pool.take()
	}
	pooled := c != nil
	start := time.Now()
	// The child has its own process group, so a timeout also kills what it
	// started (the Hadoop client's JVM, git). The kill is armed before the
	// request is written: a stuck child must not block a large write.
	stop := func() bool { return false }
	if c != nil {
		stop = context.AfterFunc(ctx, c.kill)
		again, err := c.wake()
		if err == nil {
			err = c.send(input)
		}
		if err != nil {
			// It died waiting (killed, out of memory): start a fresh one.
			stop()
			c.discard()
			c, pooled = nil, false
		} else {
			again()
		}
	}
	var brokerDone chan struct{}
	stopBroker := func() {}
	if c == nil {
		var brokerEnd *os.File
		if brokered(opts.Config, req, cred) {
			conn, end, err := newBrokerPair()
			if err != nil {
				return &URIError{URI: first, Err: fmt.Errorf("fetcher cache broker: %v: %w", err, errdefs.ErrUnavailable)}
			}
			bctx, cancel := context.WithCancel(ctx)
			brokerDone = make(chan struct{})
			go func() {
				defer close(brokerDone)
				defer conn.Close()
				serveBroker(bctx, conn, opts.Config, req, log)
			}()
			stopBroker = func() {
				cancel()
				<-brokerDone
			}
			brokerEnd = end
		}
		c, err = startChild(opts, cred, brokerEnd)
		if brokerEnd != nil {
			brokerEnd.Close()
		}
		if err != nil {
			stopBroker()
			log.Error("cannot start the fetch child", "binary", opts.Binary, "error", err.Error())
			// The binary's path is the agent's business, not the task's.
			cause := err
			if u := errors.Unwrap(err); u != nil {
				cause = u
			}
			return &URIError{URI: first, Err: fmt.Errorf("start fetcher: %v: %w", cause, errdefs.ErrUnavailable)}
		}
		stop = context.AfterFunc(ctx, c.kill)
		if err := c.send(input); err != nil {
			stop()
			c.discard()
			stopBroker()
			return &URIError{URI: first, Err: fmt.Errorf("send the request to the fetcher: %v: %w", err, errdefs.ErrUnavailable)}
		}
	}
	// Disarmed once the child is waited for (below): its pid, and so its
	// group id, may belong to someone else after that.
	defer func() { stop() }()
	cmd, resultR, logR, dec := c.cmd, c.resultR, c.logR, c.dec
	defer resultR.Close()
	defer logR.Close()

	var wg sync.WaitGroup
	var logTail tailBuffer
	wg.Add(2)
	go func() {
		defer wg.Done()
		copyLines(stderr, logR, &logTail)
	}()
	var (
		mu       sync.Mutex
		inflight = first
		failure  *event
		done     int
		started  bool // the child read the request and began a URI
		rate     progressRate
	)
	go func() {
		defer wg.Done()
		for {
			var ev event
			if err := dec.Decode(&ev); err != nil {
				return
			}
			mu.Lock()
			switch {
			case ev.Type == "start":
				inflight = ev.URI
				started = true
			case ev.Type == "spawn":
				c.addGroup(ev.Pid)
			case ev.Type == "progress":
				p := rate.next(inflight, ev.Bytes, ev.Total, time.Now())
				mu.Unlock()
				fmt.Fprintf(stderr, "mesolite: %s\n", p)
				if req.Progress != nil {
					req.Progress(p)
				}
				continue
			case ev.Type == "done" && ev.Error != "":
				e := ev
				failure = &e
			case ev.Type == "done":
				done++
			}
			mu.Unlock()
		}
	}()
	waitErr := cmd.Wait()
	stop()
	// The child is gone: whatever it still held in the cache is let go.
	stopBroker()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if pooled && waitErr != nil && !started && failure == nil && ctx.Err() == nil {
		// The waiting child died before it read the request (a write into
		// a dying child's pipe can still succeed): nothing was fetched, so
		// a fresh child can do it all.
		log.Warn("prestarted fetch child died before the request; starting a fresh one", "error", waitErr)
		fresh := opts
		fresh.Pool = nil
		return runChild(ctx, fresh, req, stderr)
	}
	elapsed := time.Since(start).Round(time.Millisecond)
	var result error
	switch {
	case failure != nil:
		u := failure.URI
		if u == "" {
			u = inflight
		}
		result = &URIError{URI: u, Err: errorFromClass(failure.Error, failure.Class)}
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		msg := fmt.Sprintf("fetch timed out after %s; fetcher process killed", elapsed)
		fmt.Fprintf(stderr, "mesolite: %s while fetching '%s'\n", msg, inflight)
		result = &URIError{URI: inflight, Err: fmt.Errorf("%s: %w", msg, errdefs.ErrUnavailable)}
	case ctx.Err() != nil:
		result = &URIError{URI: inflight, Err: fmt.Errorf("fetch canceled: %w", context.Cause(ctx))}
	case waitErr != nil:
		msg := fmt.Sprintf("fetcher process failed (%v)", waitErr)
		if t := logTail.String(); t != "" {
			msg += ": " + t
		}
		fmt.Fprintf(stderr, "mesolite: fetcher process failed (%v) while fetching '%s'\n", waitErr, inflight)
		result = &URIError{URI: inflight, Err: fmt.Errorf("%s: %w", msg, errdefs.ErrUnavailable)}
	case done != len(req.URIs):
		result = &URIError{URI: inflight, Err: fmt.Errorf("fetcher process exited after %d of %d URIs: %w", done, len(req.URIs), errdefs.ErrUnavailable)}
	}
	if result != nil {
		// A killed child cannot clean up after itself: its partial
		// download is removed here.
		removeStaging(req.SandboxDir)
		log.Warn("fetch failed", "sandbox", req.SandboxDir, "error", result.Error(), "duration", elapsed)
	} else {
		log.Info("fetch succeeded", "sandbox", req.SandboxDir, "uris", len(req.URIs), "duration", elapsed)
	}
	return result
}

// removeStaging deletes the staging directories a child left in the
// sandbox (the partial download of a fetch that was killed).
func removeStaging(sandbox string) {
	root, err := os.OpenRoot(sandbox)
	if err != nil {
		return
	}
	defer root.Close()
	d, err := root.Open(".")
	if err != nil {
		return
	}
	names, _ := d.Readdirnames(-1)
	d.Close()
	for _, n := range names {
		if strings.HasPrefix(n, stagingPrefix) {
			_ = root.RemoveAll(n)
		}
	}
}

// userCredential is who the child fetches as: the task user when the agent
// is root, as Mesos does with os::su, after handing the sandbox to the
// user; nil means the agent's own user. The cache stays the agent's: such
// a child writes it through the agent (broker.go).
func userCredential(cfg Config, req Request, log *slog.Logger) (*syscall.Credential, error) {
	if req.User == "" || os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(req.User)
	if err != nil {
		return nil, fmt.Errorf("look up user %q: %v: %w", req.User, err, errdefs.ErrNotFound)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %q has a non-numeric uid/gid: %w", req.User, errdefs.ErrInvalid)
	}
	if uid == 0 {
		return nil, nil
	}
	var groups []uint32
	if ids, err := u.GroupIds(); err == nil {
		for _, g := range ids {
			if n, err := strconv.Atoi(g); err == nil {
				groups = append(groups, uint32(n))
			}
		}
	}
	if err := os.Chown(req.SandboxDir, uid, gid); err != nil {
		return nil, fmt.Errorf("chown sandbox to %q: %v: %w", req.User, err, errdefs.ErrForbidden)
	}
	log.Info("fetching as task user", "user", req.User, "uid", uid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}, nil
}

// formatRunAs writes cred as --run_as takes it: uid:gid[:g1,g2,...].
func formatRunAs(cred *syscall.Credential) string {
	s := fmt.Sprintf("%d:%d", cred.Uid, cred.Gid)
	if len(cred.Groups) > 0 {
		gs := make([]string, len(cred.Groups))
		for i, g := range cred.Groups {
			gs[i] = strconv.FormatUint(uint64(g), 10)
		}
		s += ":" + strings.Join(gs, ",")
	}
	return s
}

// parseRunAs reads formatRunAs's output. uid 0 is refused: a child that is
// to stay root is not given --run_as.
func parseRunAs(s string) (uid, gid int, groups []int, err error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return 0, 0, nil, fmt.Errorf("bad --run_as %q", s)
	}
	u, err1 := strconv.ParseUint(parts[0], 10, 32)
	g, err2 := strconv.ParseUint(parts[1], 10, 32)
	if err1 != nil || err2 != nil || u == 0 {
		return 0, 0, nil, fmt.Errorf("bad --run_as %q", s)
	}
	groups = []int{}
	if len(parts) == 3 && parts[2] != "" {
		for _, f := range strings.Split(parts[2], ",") {
			n, err := strconv.ParseUint(f, 10, 32)
			if err != nil {
				return 0, 0, nil, fmt.Errorf("bad --run_as %q", s)
			}
			groups = append(groups, int(n))
		}
	}
	return int(u), int(g), groups, nil
}

// dropTo makes this process (all its threads) the --run_as user for good:
// groups, then gids, then uids, real, effective and saved alike. The
// credential change also leaves it not dumpable; that is set again in case
// the system's suid_dumpable says otherwise.
func dropTo(runAs string) error {
	uid, gid, groups, err := parseRunAs(runAs)
	if err != nil {
		return err
	}
	if err := syscall.Setgroups(groups); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setresgid(gid, gid, gid); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	if err := syscall.Setresuid(uid, uid, uid); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_DUMPABLE: %w", err)
	}
	if os.Getuid() != uid || os.Geteuid() != uid || os.Getgid() != gid || os.Getegid() != gid {
		return fmt.Errorf("still uid %d/%d gid %d/%d", os.Getuid(), os.Geteuid(), os.Getgid(), os.Getegid())
	}
	return nil
}

// copyLines copies r to w a line at a time, so the child's lines reach the
// sandbox whole, and keeps the last lines for error messages.
func copyLines(w io.Writer, r io.Reader, t *tailBuffer) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			_, _ = w.Write(line)
			t.add(line)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return
		}
	}
}

// tailBuffer keeps the last few hundred bytes of the child's log.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailSize = 512

func (t *tailBuffer) add(p []byte) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > tailSize {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailSize:]...)
	}
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}

// Progress is how far a fetch's download is, reported about once a second
// while it runs.
type Progress struct {
	URI          string  // redacted
	Bytes, Total int64   // Total -1: unknown
	Rate         float64 // bytes a second since the last report
}

func (p Progress) String() string {
	s := fmt.Sprintf("Fetching '%s': %s", p.URI, humanBytes(p.Bytes))
	if p.Total >= 0 {
		s += " of " + humanBytes(p.Total)
		if p.Total > 0 {
			s += fmt.Sprintf(" (%d%%)", p.Bytes*100/p.Total)
		}
	}
	return s + fmt.Sprintf(", %s/s", humanBytes(int64(p.Rate)))
}

// progressRate turns the child's byte counts into rates.
type progressRate struct {
	uri   string
	bytes int64
	at    time.Time
}

func (r *progressRate) next(uri string, bytes, total int64, now time.Time) Progress {
	p := Progress{URI: uri, Bytes: bytes, Total: total}
	if r.uri == uri && !r.at.IsZero() && now.After(r.at) && bytes >= r.bytes {
		p.Rate = float64(bytes-r.bytes) / now.Sub(r.at).Seconds()
	}
	r.uri, r.bytes, r.at = uri, bytes, now
	return p
}

// humanBytes writes n in binary units, one decimal.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
