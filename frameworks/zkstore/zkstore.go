package zkstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/mesolite/mesolite/detector"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
)

// ErrDeposed is returned by Apply when the fencing znode is gone: this
// instance no longer leads, and nothing of the Apply was written.
var ErrDeposed = fmt.Errorf("this instance no longer leads (its election znode is gone): %w", errdefs.ErrConflict)

const (
	// txnDir is the journals' directory under the store's path.
	txnDir = "TXN"
	// commitName marks a journal as committed.
	commitName = "commit"
	// maxTxnBytes bounds the request of one multi, below ZooKeeper's
	// default jute.maxbuffer (1 MB) with room for framing.
	maxTxnBytes = 768 << 10
	// chunkBytes bounds one journal chunk (its JSON, values in base64).
	chunkBytes = 700 << 10
	// opOverhead is what one request of a multi costs besides its path
	// and data: headers, version, flags, an ACL.
	opOverhead = 96
	// readers is how many reads a List keeps in flight.
	readers = 16
	// maxReadBuffer bounds what one ZooKeeper answer may allocate.
	maxReadBuffer = 4 << 20
)

// Config configures Open.
type Config struct {
	// URL is zk://[user:password@]host:port[,host:port...]/path; the
	// store's znodes are under path.
	URL string
	// Fence, when set, is a znode every write checks (see the package
	// documentation): the leader's election znode.
	Fence string
	// SessionTimeout of the store's ZooKeeper session; default 10 s.
	SessionTimeout time.Duration
	// OpTimeout is how long one call waits for a connection before it
	// fails with errdefs.ErrUnavailable; default SessionTimeout.
	OpTimeout time.Duration
	Logger    *slog.Logger
}

// Store is a frameworks.Store in ZooKeeper. It is safe for concurrent
// use; Applys are made one at a time, in the order they are called.
type Store struct {
	url       detector.ZKURL
	conn      *zk.Conn
	root      string
	fence     string
	acl       []zk.ACL
	log       *slog.Logger
	opTimeout time.Duration
	events    chan struct{}

	// writeMu orders Applys and journal recovery.
	writeMu sync.Mutex
	// mu guards the fields below.
	mu sync.Mutex
	// buckets known to exist.
	buckets map[string]bool
	// pending: a committed journal may be left to roll forward (an
	// Apply failed after its commit); reads and writes roll it forward
	// first.
	pending bool
	// downSince is when the connection was lost; zero while connected.
	downSince time.Time
}

var _ frameworks.Store = (*Store)(nil)

// Open connects to ZooKeeper, creates the store's path if needed and
// rolls forward (or drops) a journal an earlier writer left. Errors wrap
// errdefs.ErrInvalid for a bad URL and errdefs.ErrUnavailable when
// ZooKeeper does not answer before ctx ends.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	u, err := detector.ParseZK(cfg.URL)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "zkstore", "zk", u.String())
	timeout := cfg.SessionTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	s := &Store{url: u, root: u.Path, fence: cfg.Fence, log: log, opTimeout: cfg.OpTimeout, acl: zk.WorldACL(zk.PermAll),
		events: make(chan struct{}), buckets: map[string]bool{}}
	if s.opTimeout <= 0 {
		s.opTimeout = timeout
	}
	conn, events, err := zk.Connect(u.Servers, timeout, zk.WithLogger(quiet{log}), zk.WithLogInfo(false), zk.WithMaxBufferSize(maxReadBuffer))
	if err != nil {
		return nil, fmt.Errorf("connect to ZooKeeper %s: %w: %w", u, errdefs.ErrUnavailable, err)
	}
	s.conn = conn
	go s.watch(events)
	if u.Auth != "" {
		user, pass, _ := strings.Cut(u.Auth, ":")
		if err := conn.AddAuth("digest", []byte(u.Auth)); err != nil {
			s.Close()
			return nil, fmt.Errorf("authenticate to ZooKeeper %s as %s: %w", u, user, err)
		}
		// The state holds what the framework runs (commands, secrets in
		// environments): only the credentials it was given may read it.
		s.acl = zk.DigestACL(zk.PermAll, user, pass)
	}
	if err := s.ensurePath(ctx, s.root+"/"+txnDir); err != nil {
		s.Close()
		return nil, err
	}
	s.writeMu.Lock()
	err = s.rollForward(ctx)
	s.writeMu.Unlock()
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// quiet sends go-zookeeper's chatter to slog at debug level.
type quiet struct{ log *slog.Logger }

func (q quiet) Printf(format string, args ...any) { q.log.Debug(fmt.Sprintf(format, args...)) }

// watch logs the connection's changes until the connection is closed.
func (s *Store) watch(events <-chan zk.Event) {
	defer close(s.events)
	for ev := range events {
		if ev.Type != zk.EventSession {
			continue
		}
		switch ev.State {
		case zk.StateDisconnected:
			s.log.Warn("ZooKeeper connection lost; reconnecting")
			s.setDown(true)
		case zk.StateExpired:
			s.log.Warn("ZooKeeper session expired; starting a new one")
			s.setDown(true)
		case zk.StateHasSession:
			s.log.Debug("ZooKeeper session established", "server", ev.Server)
			s.setDown(false)
		}
	}
}

func (s *Store) setDown(down bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case !down:
		s.downSince = time.Time{}
	case s.downSince.IsZero():
		s.downSince = time.Now()
	}
}

// Disconnected is how long the store has been without a ZooKeeper
// session; zero while it has one.
func (s *Store) Disconnected() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.downSince.IsZero() {
		return 0
	}
	return time.Since(s.downSince)
}

// Close ends the session.
func (s *Store) Close() error {
	s.conn.Close()
	return nil
}

// errTimedOut stands for a call abandoned because its context ended.
var errTimedOut = errors.New("no answer in time")

// do runs a ZooKeeper call, retrying it with backoff while the connection
// is down, for at most the operation timeout (and never past ctx). A call
// that could not be made fails with errdefs.ErrUnavailable and why.
func (s *Store) do(ctx context.Context, what string, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, s.opTimeout)
	defer cancel()
	backoff := 50 * time.Millisecond
	for {
		err := callCtx(ctx, f)
		if err == nil || !transient(err) && !errors.Is(err, errTimedOut) {
			return err
		}
		if ctx.Err() == nil {
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
				backoff = min(2*backoff, time.Second)
				continue
			}
		}
		return fmt.Errorf("%s: ZooKeeper %s unreachable (connection %s, last error: %v): %w",
			what, strings.Join(s.url.Servers, ","), s.conn.State(), err, errdefs.ErrUnavailable)
	}
}

// callCtx runs f, giving up on it when ctx ends: go-zookeeper's calls take
// no context and wait for a reconnection.
func callCtx(ctx context.Context, f func() error) error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return errTimedOut
	}
}

// transient tells connection trouble, after which a call may be made
// again, from ZooKeeper's answers.
func transient(err error) bool {
	return errors.Is(err, zk.ErrConnectionClosed) || errors.Is(err, zk.ErrNoServer) ||
		errors.Is(err, zk.ErrSessionExpired) || errors.Is(err, zk.ErrSessionMoved)
}

// ensurePath creates p and its ancestors as persistent znodes.
func (s *Store) ensurePath(ctx context.Context, p string) error {
	cur := ""
	for _, part := range strings.Split(strings.TrimPrefix(p, "/"), "/") {
		cur += "/" + part
		err := s.do(ctx, "create "+cur, func() error {
			_, err := s.conn.Create(cur, nil, 0, s.acl)
			if errors.Is(err, zk.ErrNodeExists) {
				return nil
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("create %s: %w", cur, err)
		}
	}
	return nil
}

func (s *Store) bucketPath(bucket string) string   { return s.root + "/" + bucket }
func (s *Store) keyPath(bucket, key string) string { return s.root + "/" + bucket + "/" + escape(key) }

// recover rolls a journal left by a failed Apply forward before a read or
// write, so that nobody sees half of an Apply.
func (s *Store) recoverPending(ctx context.Context, locked bool) error {
	s.mu.Lock()
	pending := s.pending
	s.mu.Unlock()
	if !pending {
		return nil
	}
	if !locked {
		s.writeMu.Lock()
		defer s.writeMu.Unlock()
	}
	return s.rollForward(ctx)
}

// Get implements frameworks.Store.
func (s *Store) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	if err := frameworks.CheckOps([]frameworks.Op{frameworks.Delete(bucket, key)}); err != nil {
		return nil, err
	}
	if err := s.recoverPending(ctx, false); err != nil {
		return nil, err
	}
	p := s.keyPath(bucket, key)
	var v []byte
	err := s.do(ctx, "get "+p, func() error {
		var err error
		v, _, err = s.conn.Get(p)
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return nil, fmt.Errorf("%s/%s: %w", bucket, key, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store get %s/%s: %w", bucket, key, err)
	}
	if err := checkRead(p, v); err != nil {
		return nil, err
	}
	return v, nil
}

// checkRead refuses a value no Apply could have written.
func checkRead(p string, v []byte) error {
	if len(v) > frameworks.MaxValueBytes {
		return fmt.Errorf("znode %s holds %d bytes, more than the %d a value may have: not written by this store", p, len(v), frameworks.MaxValueBytes)
	}
	return nil
}

// List implements frameworks.Store.
func (s *Store) List(ctx context.Context, bucket string) ([]frameworks.Entry, error) {
	if err := frameworks.CheckOps([]frameworks.Op{frameworks.Delete(bucket, "x")}); err != nil {
		return nil, err
	}
	if err := s.recoverPending(ctx, false); err != nil {
		return nil, err
	}
	dir := s.bucketPath(bucket)
	var names []string
	err := s.do(ctx, "list "+dir, func() error {
		var err error
		names, _, err = s.conn.Children(dir)
		return err
	})
	if errors.Is(err, zk.ErrNoNode) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("store list %s: %w", bucket, err)
	}
	keys := make(map[string]string, len(names)) // znode name -> key
	for _, n := range names {
		k, err := unescape(n)
		if err != nil {
			s.log.Warn("ignoring a znode that is not an escaped key", "znode", dir+"/"+n)
			continue
		}
		keys[n] = k
	}
	values, err := s.readAll(ctx, dir, slices.Collect(func(yield func(string) bool) {
		for n := range keys {
			if !yield(n) {
				return
			}
		}
	}))
	if err != nil {
		return nil, fmt.Errorf("store list %s: %w", bucket, err)
	}
	out := make([]frameworks.Entry, 0, len(values))
	for n, v := range values {
		out = append(out, frameworks.Entry{Key: keys[n], Value: v})
	}
	slices.SortFunc(out, func(a, b frameworks.Entry) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// readAll reads the children names of dir with several reads in flight
// (go-zookeeper pipelines them on its connection). A child deleted since
// it was listed is left out.
func (s *Store) readAll(ctx context.Context, dir string, names []string) (map[string][]byte, error) {
	out := make(map[string][]byte, len(names))
	var mu sync.Mutex
	var firstErr error
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(readers, len(names)) {
		wg.Go(func() {
			for n := range work {
				p := dir + "/" + n
				var v []byte
				err := s.do(ctx, "get "+p, func() error {
					var err error
					v, _, err = s.conn.Get(p)
					return err
				})
				if err == nil {
					err = checkRead(p, v)
				}
				mu.Lock()
				switch {
				case err == nil:
					out[n] = v
				case errors.Is(err, zk.ErrNoNode):
				case firstErr == nil:
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	return out, firstErr
}

// Apply implements frameworks.Store: one multi, or a journal when the
// changes do not fit in one (see the package documentation). With a
// fence, ErrDeposed says this instance no longer leads and nothing was
// written. An Apply that fails with errdefs.ErrUnavailable may have been
// made (the answer was lost), as with any remote store.
func (s *Store) Apply(ctx context.Context, ops ...frameworks.Op) error {
	if err := frameworks.CheckOps(ops); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.recoverPending(ctx, true); err != nil {
		return err
	}
	if err := s.ensureBuckets(ctx, ops); err != nil {
		return err
	}
	size := 0
	for _, op := range ops {
		size += opOverhead + len(s.keyPath(op.Bucket, op.Key)) + len(op.Value)
	}
	if size > maxTxnBytes {
		return s.applyJournal(ctx, ops)
	}
	return s.applyOnce(ctx, ops)
}

// ensureBuckets creates the buckets ops put values in: a key's znode needs
// its parent. An empty bucket left behind is harmless.
func (s *Store) ensureBuckets(ctx context.Context, ops []frameworks.Op) error {
	for _, op := range ops {
		s.mu.Lock()
		known := s.buckets[op.Bucket]
		s.mu.Unlock()
		if known || op.Delete {
			continue
		}
		if err := s.ensurePath(ctx, s.bucketPath(op.Bucket)); err != nil {
			return fmt.Errorf("store apply: %w", err)
		}
		s.mu.Lock()
		s.buckets[op.Bucket] = true
		s.mu.Unlock()
	}
	return nil
}

// applyOnce makes ops one multi. When its view of which znodes exist was
// stale (someone changed them in between, or a lost answer hid that an
// earlier attempt succeeded) it looks again and retries.
func (s *Store) applyOnce(ctx context.Context, ops []frameworks.Op) error {
	for attempt := 1; ; attempt++ {
		reqs, err := s.build(ctx, ops)
		if err != nil {
			return fmt.Errorf("store apply: %w", err)
		}
		err = s.multi(ctx, reqs)
		if err == nil || errors.Is(err, ErrDeposed) {
			return err
		}
		stale := errors.Is(err, zk.ErrNodeExists) || errors.Is(err, zk.ErrNoNode) || errors.Is(err, zk.ErrNotEmpty)
		if !stale || attempt >= 4 {
			return fmt.Errorf("store apply: %w", err)
		}
		s.log.Debug("store write met a change it did not expect; looking again", "attempt", attempt, "error", err)
	}
}

// multi runs reqs as one transaction, behind the fence when there is one.
func (s *Store) multi(ctx context.Context, reqs []any) error {
	if len(reqs) == 0 {
		return nil
	}
	if s.fence != "" {
		reqs = append([]any{&zk.CheckVersionRequest{Path: s.fence, Version: 0}}, reqs...)
	}
	var res []zk.MultiResponse
	err := s.do(ctx, "write", func() error {
		var err error
		res, err = s.conn.Multi(reqs...)
		return err
	})
	if err != nil && s.fence != "" && len(res) > 0 && (errors.Is(res[0].Error, zk.ErrNoNode) || errors.Is(res[0].Error, zk.ErrBadVersion)) {
		return ErrDeposed
	}
	return err
}

// build turns ops into requests: a create or a set for a Put, a delete
// for the Delete of a key that exists, in order.
func (s *Store) build(ctx context.Context, ops []frameworks.Op) ([]any, error) {
	paths := make([]string, 0, len(ops))
	for _, op := range ops {
		paths = append(paths, s.keyPath(op.Bucket, op.Key))
	}
	exists, err := s.existing(ctx, paths)
	if err != nil {
		return nil, err
	}
	reqs := make([]any, 0, len(ops))
	for i, op := range ops {
		p := paths[i]
		switch {
		case op.Delete && exists[p]:
			reqs = append(reqs, &zk.DeleteRequest{Path: p, Version: -1})
			exists[p] = false
		case op.Delete:
		case exists[p]:
			reqs = append(reqs, &zk.SetDataRequest{Path: p, Data: nonNil(op.Value), Version: -1})
		default:
			reqs = append(reqs, &zk.CreateRequest{Path: p, Data: nonNil(op.Value), Acl: s.acl})
			exists[p] = true
		}
	}
	return reqs, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// existing looks up which of paths exist, several lookups in flight.
func (s *Store) existing(ctx context.Context, paths []string) (map[string]bool, error) {
	unique := slices.Compact(slices.Sorted(slices.Values(paths)))
	out := make(map[string]bool, len(unique))
	var mu sync.Mutex
	var firstErr error
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(readers, len(unique)) {
		wg.Go(func() {
			for p := range work {
				var ok bool
				err := s.do(ctx, "look up "+p, func() error {
					var err error
					ok, _, err = s.conn.Exists(p)
					return err
				})
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				out[p] = ok
				mu.Unlock()
			}
		})
	}
	for _, p := range unique {
		work <- p
	}
	close(work)
	wg.Wait()
	return out, firstErr
}

// journalOp is one op in a journal chunk.
type journalOp struct {
	Bucket string `json:"b"`
	Key    string `json:"k"`
	Value  []byte `json:"v,omitempty"`
	Delete bool   `json:"d,omitempty"`
}

// applyJournal makes an Apply too large for one multi: chunks, a commit
// mark, the changes in several multis, then the journal removed.
func (s *Store) applyJournal(ctx context.Context, ops []frameworks.Op) error {
	var chunks [][]byte
	var cur []journalOp
	curSize := 0
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		b, err := json.Marshal(cur)
		if err != nil {
			return err
		}
		chunks = append(chunks, b)
		cur, curSize = nil, 0
		return nil
	}
	for _, op := range ops {
		// base64 and the JSON around it.
		sz := len(op.Bucket) + 2*len(op.Key) + (len(op.Value)+2)/3*4 + 32
		if curSize+sz > chunkBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		cur = append(cur, journalOp{Bucket: op.Bucket, Key: op.Key, Value: op.Value, Delete: op.Delete})
		curSize += sz
	}
	if err := flush(); err != nil {
		return err
	}

	txns := s.root + "/" + txnDir
	var dir string
	err := s.do(ctx, "create a journal", func() error {
		var err error
		dir, err = s.conn.Create(txns+"/j-", nil, zk.FlagSequence, s.acl)
		return err
	})
	if err != nil {
		return fmt.Errorf("store apply: %w", err)
	}
	drop := func() {
		// Uncommitted: whoever rolls forward next drops it anyway.
		if err := s.deleteJournal(ctx, dir, len(chunks), false); err != nil {
			s.log.Debug("cannot drop an uncommitted journal yet", "journal", dir, "error", err)
		}
	}
	for i, c := range chunks {
		if err := s.multi(ctx, []any{&zk.CreateRequest{Path: chunkPath(dir, i), Data: c, Acl: s.acl}}); err != nil {
			drop()
			return fmt.Errorf("store apply (journal chunk %d of %d): %w", i+1, len(chunks), err)
		}
	}
	if err := s.multi(ctx, []any{&zk.CreateRequest{Path: dir + "/" + commitName, Data: []byte{}, Acl: s.acl}}); err != nil {
		if !errors.Is(err, zk.ErrNodeExists) {
			drop()
			return fmt.Errorf("store apply (journal commit): %w", err)
		}
	}
	// Committed: the Apply happens, now or at the next roll forward.
	if err := s.replay(ctx, dir, ops, len(chunks)); err != nil {
		s.mu.Lock()
		s.pending = true
		s.mu.Unlock()
		return fmt.Errorf("store apply (committed; it is completed later): %w", err)
	}
	return nil
}

func chunkPath(dir string, i int) string { return fmt.Sprintf("%s/c-%06d", dir, i) }

// replay applies a committed journal's ops in multis that each fit, then
// deletes the journal. Each op sets the final value of its key, so
// replaying again after a partial replay ends in the same state.
func (s *Store) replay(ctx context.Context, dir string, ops []frameworks.Op, chunks int) error {
	if err := s.ensureBuckets(ctx, ops); err != nil {
		return err
	}
	start, size := 0, 0
	for i, op := range ops {
		sz := opOverhead + len(s.keyPath(op.Bucket, op.Key)) + len(op.Value)
		if i > start && size+sz > maxTxnBytes {
			if err := s.applyOnce(ctx, ops[start:i]); err != nil {
				return err
			}
			start, size = i, 0
		}
		size += sz
	}
	if err := s.applyOnce(ctx, ops[start:]); err != nil {
		return err
	}
	return s.deleteJournal(ctx, dir, chunks, true)
}

// deleteJournal removes a journal: its commit mark first, so that a
// journal is never seen committed with chunks missing.
func (s *Store) deleteJournal(ctx context.Context, dir string, chunks int, committed bool) error {
	var reqs []any
	if committed {
		reqs = append(reqs, &zk.DeleteRequest{Path: dir + "/" + commitName, Version: -1})
	}
	for i := range chunks {
		reqs = append(reqs, &zk.DeleteRequest{Path: chunkPath(dir, i), Version: -1})
	}
	reqs = append(reqs, &zk.DeleteRequest{Path: dir, Version: -1})
	return s.multi(ctx, reqs)
}

// rollForward completes every committed journal and drops the others, in
// the order they were written. writeMu is held.
func (s *Store) rollForward(ctx context.Context) error {
	txns := s.root + "/" + txnDir
	var names []string
	err := s.do(ctx, "list "+txns, func() error {
		var err error
		names, _, err = s.conn.Children(txns)
		return err
	})
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("store recovery: %w", err)
	}
	slices.Sort(names) // j-<10-digit sequence>
	for _, n := range names {
		dir := txns + "/" + n
		var parts []string
		if err := s.do(ctx, "list "+dir, func() error {
			var err error
			parts, _, err = s.conn.Children(dir)
			return err
		}); err != nil {
			return fmt.Errorf("store recovery: %w", err)
		}
		committed := slices.Contains(parts, commitName)
		var chunkNames []string
		for _, p := range parts {
			if strings.HasPrefix(p, "c-") {
				chunkNames = append(chunkNames, p)
			}
		}
		slices.Sort(chunkNames)
		if !committed {
			s.log.Info("dropping an uncommitted store journal", "journal", dir)
			var reqs []any
			for _, c := range chunkNames {
				reqs = append(reqs, &zk.DeleteRequest{Path: dir + "/" + c, Version: -1})
			}
			reqs = append(reqs, &zk.DeleteRequest{Path: dir, Version: -1})
			if err := s.multi(ctx, reqs); err != nil {
				return fmt.Errorf("store recovery: drop %s: %w", dir, err)
			}
			continue
		}
		values, err := s.readAll(ctx, dir, chunkNames)
		if err != nil {
			return fmt.Errorf("store recovery: %w", err)
		}
		var ops []frameworks.Op
		for i, c := range chunkNames {
			if c != strings.TrimPrefix(chunkPath("", i), "/") {
				return fmt.Errorf("store recovery: journal %s lacks chunk %d", dir, i)
			}
			var jops []journalOp
			if err := json.Unmarshal(values[c], &jops); err != nil {
				return fmt.Errorf("store recovery: journal %s/%s: %w", dir, c, err)
			}
			for _, o := range jops {
				ops = append(ops, frameworks.Op{Bucket: o.Bucket, Key: o.Key, Value: o.Value, Delete: o.Delete})
			}
		}
		if err := frameworks.CheckOps(ops); err != nil {
			return fmt.Errorf("store recovery: journal %s: %w", dir, err)
		}
		s.log.Info("completing a committed store journal", "journal", dir, "ops", len(ops))
		if err := s.replay(ctx, dir, ops, len(chunkNames)); err != nil {
			return fmt.Errorf("store recovery: %w", err)
		}
	}
	s.mu.Lock()
	s.pending = false
	s.mu.Unlock()
	return nil
}

// escape makes a key a znode name: bytes outside [A-Za-z0-9_.-] become
// %XX, and so do the dots of "." and "..".
func escape(key string) string {
	var b strings.Builder
	for i := 0; i < len(key); i++ {
		c := key[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		case c == '.' && key != "." && key != "..":
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// unescape reverses escape.
func unescape(name string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		if name[i] != '%' {
			b.WriteByte(name[i])
			continue
		}
		if i+2 >= len(name) {
			return "", fmt.Errorf("znode name %q: a cut escape: %w", name, errdefs.ErrInvalid)
		}
		c, err := strconv.ParseUint(name[i+1:i+3], 16, 8)
		if err != nil {
			return "", fmt.Errorf("znode name %q: %w", name, errdefs.ErrInvalid)
		}
		b.WriteByte(byte(c))
		i += 2
	}
	return b.String(), nil
}
