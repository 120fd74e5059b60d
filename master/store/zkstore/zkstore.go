package zkstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/mesolite/mesolite/detector"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/master/store"
)

// ErrDeposed is returned by Apply when another master has claimed the
// registry since this one did: this master no longer leads.
var ErrDeposed = fmt.Errorf("the registry was claimed by a newer leading master: %w", errdefs.ErrConflict)

// maxRecord is the largest record written: ZooKeeper refuses znodes and
// requests over jute.maxbuffer (1 MB by default), and a multi-op
// transaction carries its records plus framing.
const maxRecord = 900 << 10

// maxTxn bounds the data of one multi-op transaction; a longer list of ops
// is applied as several transactions, in order.
const maxTxn = 512 << 10

// maxTxnOps bounds the ops of one transaction.
const maxTxnOps = 1000

// readers is how many reads Load keeps in flight on the connection.
const readers = 32

// Config configures Open.
type Config struct {
	// URL is the --zk value, zk://[user:pass@]host:port[,...]/path.
	URL string
	// SessionTimeout of the registry's own ZooKeeper session.
	SessionTimeout time.Duration
	// Owner names the master in the epoch znode, for operators.
	Owner string
	// Logger; nothing is logged when nil.
	Logger *slog.Logger
}

// Store is a registry in ZooKeeper. Load and Apply must not run
// concurrently with each other (the master has one writer); Apply's ops
// are applied in order.
type Store struct {
	conn  *zk.Conn
	root  string // <path>/registry
	owner string
	log   *slog.Logger
	acl   []zk.ACL

	mu    sync.Mutex
	epoch int32 // the epoch znode's version after our claim; -1 before
	// exists is every znode of the registry this store knows to exist,
	// kept so that an Apply knows whether to create or set, and which
	// children a removal must delete first.
	exists map[string]bool
	// children of tasks/<fw> parents, for removing a framework's tasks.
	children map[string]map[string]bool
}

// Open connects to ZooKeeper. Nothing is read or claimed until Load.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	u, err := detector.ParseZK(cfg.URL)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	timeout := cfg.SessionTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	conn, _, err := zk.Connect(u.Servers, timeout, zk.WithLogger(quiet{log}), zk.WithLogInfo(false))
	if err != nil {
		return nil, fmt.Errorf("connect to ZooKeeper %s: %w: %w", u, errdefs.ErrUnavailable, err)
	}
	s := &Store{conn: conn, root: u.Path + "/registry", owner: cfg.Owner, log: log.With("component", "registry", "zk", u.String()),
		acl: zk.WorldACL(zk.PermAll), epoch: -1}
	if u.Auth != "" {
		if err := conn.AddAuth("digest", []byte(u.Auth)); err != nil {
			conn.Close()
			return nil, fmt.Errorf("authenticate to ZooKeeper %s: %w", u, err)
		}
		// Records hold token digests and principals: readable and
		// writable by the credentials the masters use only.
		s.acl = zk.DigestACL(zk.PermAll, strings.SplitN(u.Auth, ":", 2)[0], strings.SplitN(u.Auth, ":", 2)[1])
	}
	if err := s.ensureBase(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// quiet sends go-zookeeper's chatter to slog at debug level.
type quiet struct{ log *slog.Logger }

func (q quiet) Printf(format string, args ...any) { q.log.Debug(fmt.Sprintf(format, args...)) }

// Kind names the registry in /master/state's flags.
func (s *Store) Kind() string { return "zookeeper" }

// Close ends the session.
func (s *Store) Close() error {
	s.conn.Close()
	return nil
}

func (s *Store) epochPath() string   { return s.root + "/epoch" }
func (s *Store) agentsDir() string   { return s.root + "/agents" }
func (s *Store) fwsDir() string      { return s.root + "/frameworks" }
func (s *Store) tasksDir() string    { return s.root + "/tasks" }
func (s *Store) settingsDir() string { return s.root + "/settings" }

// call runs a ZooKeeper call, giving up on it when ctx ends: go-zookeeper
// calls take no context and wait for a reconnection.
func call[T any](ctx context.Context, f func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, fmt.Errorf("ZooKeeper: %w: %w", errdefs.ErrUnavailable, ctx.Err())
	}
}

// retry runs f until it succeeds, fails for good, or ctx ends. Connection
// trouble is retried; ZooKeeper's answers are not.
func retry(ctx context.Context, f func() error) error {
	backoff := 50 * time.Millisecond
	for {
		err := f()
		if err == nil || !transient(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("ZooKeeper: %w: %w (last error: %w)", errdefs.ErrUnavailable, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// transient tells connection trouble, after which a call may be retried,
// from ZooKeeper's answers.
func transient(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, zk.ErrSessionMoved) || errors.Is(err, zk.ErrUnknown)
}

func (s *Store) ensureBase(ctx context.Context) error {
	var dirs []string
	p := ""
	for _, part := range strings.Split(strings.TrimPrefix(s.root, "/"), "/") {
		p += "/" + part
		dirs = append(dirs, p)
	}
	dirs = append(dirs, s.agentsDir(), s.fwsDir(), s.tasksDir(), s.settingsDir())
	for _, d := range dirs {
		err := retry(ctx, func() error {
			_, err := call(ctx, func() (string, error) { return s.conn.Create(d, nil, 0, s.acl) })
			if errors.Is(err, zk.ErrNodeExists) {
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
	}
	return nil
}

type epochRecord struct {
	Leader    string    `json:"leader"`
	ClaimedAt time.Time `json:"claimed_at"`
}

// get reads a znode, giving up when ctx ends.
func (s *Store) get(ctx context.Context, p string) ([]byte, *zk.Stat, error) {
	type got struct {
		b  []byte
		st *zk.Stat
	}
	g, err := call(ctx, func() (got, error) {
		b, st, err := s.conn.Get(p)
		return got{b, st}, err
	})
	return g.b, g.st, err
}

func (s *Store) childrenOf(ctx context.Context, p string) ([]string, error) {
	return call(ctx, func() ([]string, error) {
		c, _, err := s.conn.Children(p)
		return c, err
	})
}

// claim makes this store the registry's writer: a compare-and-set of the
// epoch znode on the version just read. Any master that claimed before
// is deposed: its next Apply fails.
func (s *Store) claim(ctx context.Context) error {
	data, err := json.Marshal(epochRecord{Leader: s.owner, ClaimedAt: time.Now().UTC()})
	if err != nil {
		return err
	}
	return retry(ctx, func() error {
		for {
			_, st, err := s.get(ctx, s.epochPath())
			if errors.Is(err, zk.ErrNoNode) {
				_, err := call(ctx, func() (string, error) { return s.conn.Create(s.epochPath(), data, 0, s.acl) })
				if errors.Is(err, zk.ErrNodeExists) {
					continue
				}
				if err != nil {
					return err
				}
				s.setEpoch(0)
				return nil
			}
			if err != nil {
				return err
			}
			nst, err := call(ctx, func() (*zk.Stat, error) { return s.conn.Set(s.epochPath(), data, st.Version) })
			if errors.Is(err, zk.ErrBadVersion) || errors.Is(err, zk.ErrNoNode) {
				// Another master claimed in between; claim on top of it.
				continue
			}
			if err != nil {
				return err
			}
			s.setEpoch(nst.Version)
			return nil
		}
	})
}

func (s *Store) setEpoch(v int32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch = v
}

// Epoch is the version of the epoch znode this store claimed, -1 before
// Load.
func (s *Store) Epoch() int32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.epoch
}

// Load claims the registry for this master and reads it all. Call it once
// elected and before serving: reading after the claim means no write of a
// previous leader can land after the read.
func (s *Store) Load(ctx context.Context) (*store.Snapshot, error) {
	if err := s.claim(ctx); err != nil {
		return nil, fmt.Errorf("claim the registry: %w", err)
	}
	exists := map[string]bool{}
	children := map[string]map[string]bool{}
	snap := &store.Snapshot{Tasks: map[string][]store.CompletedTask{}, Settings: map[string][]byte{}}

	agentNames, err := s.list(ctx, s.agentsDir())
	if err != nil {
		return nil, err
	}
	fwNames, err := s.list(ctx, s.fwsDir())
	if err != nil {
		return nil, err
	}
	taskDirs, err := s.list(ctx, s.tasksDir())
	if err != nil {
		return nil, err
	}
	settingNames, err := s.list(ctx, s.settingsDir())
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, n := range agentNames {
		paths = append(paths, s.agentsDir()+"/"+n)
	}
	for _, n := range fwNames {
		paths = append(paths, s.fwsDir()+"/"+n)
	}
	for _, n := range settingNames {
		paths = append(paths, s.settingsDir()+"/"+n)
	}
	for _, d := range taskDirs {
		dir := s.tasksDir() + "/" + d
		exists[dir] = true
		children[dir] = map[string]bool{}
		names, err := s.list(ctx, dir)
		if err != nil {
			return nil, err
		}
		for _, n := range names {
			paths = append(paths, dir+"/"+n)
		}
	}
	data, err := s.readAll(ctx, paths)
	if err != nil {
		return nil, err
	}
	for _, p := range paths {
		v, ok := data[p]
		if !ok {
			continue // gone between the listing and the read
		}
		exists[p] = true
		dir, name := path.Split(p)
		dir = strings.TrimSuffix(dir, "/")
		switch {
		case dir == s.agentsDir():
			a, err := store.DecodeAgent(unescape(name), v)
			if err != nil {
				return nil, err
			}
			snap.Agents = append(snap.Agents, a)
		case dir == s.fwsDir():
			f, err := store.DecodeFramework(unescape(name), v)
			if err != nil {
				return nil, err
			}
			snap.Frameworks = append(snap.Frameworks, f)
		case dir == s.settingsDir():
			snap.Settings[name] = v
		default:
			t, err := store.DecodeTask(v)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			children[dir][p] = true
			fw := unescape(path.Base(dir))
			snap.Tasks[fw] = append(snap.Tasks[fw], t)
		}
	}
	slices.SortFunc(snap.Agents, func(a, b store.Agent) int { return strings.Compare(a.ID, b.ID) })
	slices.SortFunc(snap.Frameworks, func(a, b store.Framework) int { return strings.Compare(a.ID, b.ID) })
	for _, ts := range snap.Tasks {
		store.SortTasks(ts)
	}
	s.mu.Lock()
	s.exists, s.children = exists, children
	s.mu.Unlock()
	return snap, nil
}

func (s *Store) list(ctx context.Context, dir string) ([]string, error) {
	var names []string
	err := retry(ctx, func() error {
		var err error
		names, err = s.childrenOf(ctx, dir)
		if errors.Is(err, zk.ErrNoNode) {
			names, err = nil, nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	return names, nil
}

// readAll reads znodes with several reads in flight; go-zookeeper pipelines
// concurrent calls on its one connection.
func (s *Store) readAll(ctx context.Context, paths []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(paths))
	var mu sync.Mutex
	var firstErr error
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(readers, len(paths)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				var v []byte
				err := retry(ctx, func() error {
					var err error
					v, _, err = s.get(ctx, p)
					return err
				})
				mu.Lock()
				switch {
				case err == nil:
					out[p] = v
				case errors.Is(err, zk.ErrNoNode):
				case firstErr == nil:
					firstErr = fmt.Errorf("read %s: %w", p, err)
				}
				mu.Unlock()
			}
		}()
	}
	for _, p := range paths {
		work <- p
	}
	close(work)
	wg.Wait()
	return out, firstErr
}

// overlay is what a transaction being built changes in the index: path to
// whether it exists afterwards.
type overlay map[string]bool

func (s *Store) has(ov overlay, p string) bool {
	if v, ok := ov[p]; ok {
		return v
	}
	return s.exists[p]
}

// childrenNow lists the known children of a tasks directory as the
// transaction being built leaves them.
func (s *Store) childrenNow(ov overlay, dir string) []string {
	var out []string
	for c := range s.children[dir] {
		if v, ok := ov[c]; !ok || v {
			out = append(out, c)
		}
	}
	for p, v := range ov {
		if v && path.Dir(p) == dir && !s.children[dir][p] {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// translate turns one op into ZooKeeper requests against the index as ov
// leaves it, recording its effect in ov. It returns the requests and their
// data size.
func (s *Store) translate(op store.Op, ov overlay) ([]any, int, error) {
	var reqs []any
	size := 0
	put := func(p string, data []byte) error {
		if len(data) > maxRecord {
			return fmt.Errorf("registry record %s is %d bytes, more than the %d a znode holds: %w", p, len(data), maxRecord, errdefs.ErrInvalid)
		}
		if s.has(ov, p) {
			reqs = append(reqs, &zk.SetDataRequest{Path: p, Data: data, Version: -1})
		} else {
			reqs = append(reqs, &zk.CreateRequest{Path: p, Data: data, Acl: s.acl})
		}
		ov[p] = true
		size += len(data) + len(p)
		return nil
	}
	del := func(p string) {
		if s.has(ov, p) {
			reqs = append(reqs, &zk.DeleteRequest{Path: p, Version: -1})
			ov[p] = false
			size += len(p)
		}
	}
	delTasks := func(fwID string) {
		dir := s.tasksDir() + "/" + escape(fwID)
		for _, c := range s.childrenNow(ov, dir) {
			del(c)
		}
		del(dir)
	}
	switch op := op.(type) {
	case store.PutAgent:
		data, err := store.EncodeAgent(op.Agent)
		if err != nil {
			return nil, 0, err
		}
		if err := put(s.agentsDir()+"/"+escape(op.Agent.ID), data); err != nil {
			return nil, 0, err
		}
	case store.RemoveAgent:
		del(s.agentsDir() + "/" + escape(op.ID))
	case store.PutFramework:
		data, err := store.EncodeFramework(op.Framework)
		if err != nil {
			return nil, 0, err
		}
		if err := put(s.fwsDir()+"/"+escape(op.Framework.ID), data); err != nil {
			return nil, 0, err
		}
	case store.RemoveFramework:
		delTasks(op.ID)
		del(s.fwsDir() + "/" + escape(op.ID))
	case store.PutTask:
		data, err := store.EncodeTask(op.Task)
		if err != nil {
			return nil, 0, err
		}
		dir := s.tasksDir() + "/" + escape(op.FrameworkID)
		if !s.has(ov, dir) {
			reqs = append(reqs, &zk.CreateRequest{Path: dir, Acl: s.acl})
			ov[dir] = true
		}
		if err := put(dir+"/"+escape(op.Task.Task.GetTaskId().GetValue()), data); err != nil {
			return nil, 0, err
		}
	case store.RemoveTask:
		del(s.tasksDir() + "/" + escape(op.FrameworkID) + "/" + escape(op.TaskID))
	case store.RemoveTasks:
		delTasks(op.FrameworkID)
	case store.PutSetting:
		if !store.ValidSettingKey(op.Key) {
			return nil, 0, fmt.Errorf("setting key %q: %w", op.Key, errdefs.ErrInvalid)
		}
		if len(op.Value) == 0 {
			del(s.settingsDir() + "/" + op.Key)
		} else if err := put(s.settingsDir()+"/"+op.Key, op.Value); err != nil {
			return nil, 0, err
		}
	default:
		return nil, 0, fmt.Errorf("unknown registry operation %T: %w", op, errdefs.ErrInvalid)
	}
	return reqs, size, nil
}

// Apply applies ops in order. Each transaction checks the epoch this store
// claimed; ErrDeposed means another master claimed the registry since, and
// nothing of that transaction was written. Ops too large for one
// transaction are split into several, applied in order. An op that cannot
// be written at all (a record over the znode limit) fails Apply with
// errdefs.ErrInvalid before anything of its transaction is written.
func (s *Store) Apply(ctx context.Context, ops []store.Op) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epoch < 0 {
		return fmt.Errorf("the registry was not claimed (Load first): %w", errdefs.ErrConflict)
	}
	var chunk []store.Op
	ov := overlay{}
	n, size := 0, 0
	for _, op := range ops {
		reqs, sz, err := s.translate(op, ov)
		if err != nil {
			return err
		}
		if len(chunk) > 0 && (n+len(reqs) > maxTxnOps || size+sz > maxTxn) {
			if err := s.commit(ctx, chunk); err != nil {
				return err
			}
			chunk, ov, n, size = nil, overlay{}, 0, 0
			if reqs, sz, err = s.translate(op, ov); err != nil {
				return err
			}
		}
		chunk = append(chunk, op)
		n += len(reqs)
		size += sz
	}
	if len(chunk) == 0 {
		return nil
	}
	return s.commit(ctx, chunk)
}

// commit writes ops as one transaction guarded by the epoch. When its
// outcome is unknown (the connection dropped) or the index was wrong, the
// touched znodes are looked up again and the transaction rebuilt.
func (s *Store) commit(ctx context.Context, ops []store.Op) error {
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ov := overlay{}
		reqs := []any{&zk.CheckVersionRequest{Path: s.epochPath(), Version: s.epoch}}
		for _, op := range ops {
			r, _, err := s.translate(op, ov)
			if err != nil {
				return err
			}
			reqs = append(reqs, r...)
		}
		if len(reqs) == 1 {
			return nil
		}
		res, err := call(ctx, func() ([]zk.MultiResponse, error) { return s.conn.Multi(reqs...) })
		if err == nil {
			s.commitIndex(ov)
			return nil
		}
		if len(res) > 0 && (errors.Is(res[0].Error, zk.ErrBadVersion) || errors.Is(res[0].Error, zk.ErrNoNode)) {
			return ErrDeposed
		}
		stale := errors.Is(err, zk.ErrNodeExists) || errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrNotEmpty)
		if ctx.Err() != nil || !(transient(err) || (stale && attempt < 4)) {
			return fmt.Errorf("write the registry: %w", err)
		}
		s.log.Debug("registry write failed, looking the znodes up again", "attempt", attempt, "error", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("write the registry: %w: %w (last error: %w)", errdefs.ErrUnavailable, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
		if err := s.refresh(ctx, reqs[1:]); err != nil {
			return err
		}
	}
}

// commitIndex records a committed transaction's effect.
func (s *Store) commitIndex(ov overlay) {
	for p, v := range ov {
		dir := path.Dir(p)
		if v {
			s.exists[p] = true
			if dir == s.tasksDir() {
				if s.children[p] == nil {
					s.children[p] = map[string]bool{}
				}
			} else if path.Dir(dir) == s.tasksDir() {
				if s.children[dir] == nil {
					s.children[dir] = map[string]bool{}
				}
				s.children[dir][p] = true
			}
			continue
		}
		delete(s.exists, p)
		if dir == s.tasksDir() {
			delete(s.children, p)
		} else if c := s.children[dir]; c != nil {
			delete(c, p)
		}
	}
}

// refresh looks up again whether the znodes of reqs exist, and the
// children of task directories they touch.
func (s *Store) refresh(ctx context.Context, reqs []any) error {
	seen := map[string]bool{}
	for _, r := range reqs {
		var p string
		switch r := r.(type) {
		case *zk.CreateRequest:
			p = r.Path
		case *zk.SetDataRequest:
			p = r.Path
		case *zk.DeleteRequest:
			p = r.Path
		}
		if p == "" || seen[p] {
			continue
		}
		seen[p] = true
		var ok bool
		err := retry(ctx, func() error {
			var err error
			ok, err = call(ctx, func() (bool, error) {
				ok, _, err := s.conn.Exists(p)
				return ok, err
			})
			return err
		})
		if err != nil {
			return fmt.Errorf("look up %s: %w", p, err)
		}
		s.commitIndex(overlay{p: ok})
		if ok && path.Dir(p) == s.tasksDir() {
			names, err := s.list(ctx, p)
			if err != nil {
				return err
			}
			c := map[string]bool{}
			for _, n := range names {
				c[p+"/"+n] = true
				s.exists[p+"/"+n] = true
			}
			s.children[p] = c
		}
	}
	return nil
}

// escape makes an id a znode name: bytes outside [A-Za-z0-9_-] and dots
// that would make "." or ".." become %XX.
func escape(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		case c == '.' && id != "." && id != "..":
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// unescape reverses escape; a name it cannot read is returned as is.
func unescape(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] == '%' && i+2 < len(name) {
			if c, err := strconv.ParseUint(name[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(c))
				i += 2
				continue
			}
		}
		b.WriteByte(name[i])
	}
	return b.String()
}
