package fetcher

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
)

// When the agent runs as root and a task as another user, the fetch child
// runs as that user and may not write the cache: a task of the same user
// could otherwise rewrite what the next task of any framework is handed.
// The child asks the agent instead, over a socket pair passed as
// --cache_fd, one JSON request per line and one reply each:
//
//	lock, unlock      key's entry lock, held by the agent for the child
//	use, unuse        key's in-use mark
//	get, touch        the index
//	insert            copy <sandbox>/<staged> into the cache, hash the copy
//	evict             drop a corrupt entry
//
// The child only reads entries, which are world-readable and read-only.
// The agent trusts nothing in a request: the key must be a cache key, the
// staged name a staging file inside this child's sandbox (opened through
// an os.Root, never through a link), and the size and sha256 recorded are
// those of the agent's own copy. Locks die with the connection, so a child
// killed mid-fetch cannot leave an entry locked. The key must also be that
// of a cached URI of the request the child was started for: a process of
// the task user that got hold of the socket cannot lock or store any other
// URI of that user's cache.

type brokerRequest struct {
	Op        string      `json:"op"`
	Key       string      `json:"key,omitempty"`
	Validated bool        `json:"validated,omitempty"`
	Staged    string      `json:"staged,omitempty"`
	SHA256    string      `json:"sha256,omitempty"`
	Ino       uint64      `json:"ino,omitempty"`
	Entry     *cacheEntry `json:"entry,omitempty"`
}

type brokerReply struct {
	Error  string      `json:"error,omitempty"`
	Class  string      `json:"class,omitempty"`
	Entry  *cacheEntry `json:"entry,omitempty"`
	Stored bool        `json:"stored,omitempty"`
}

// maxBrokerLine bounds one request; real ones are a few hundred bytes.
const maxBrokerLine = 64 << 10

var (
	cacheKeyPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)
	sha256Pattern   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// parseBrokerRequest decodes and checks one request line from a child.
func parseBrokerRequest(line []byte) (*brokerRequest, error) {
	var r brokerRequest
	if err := json.Unmarshal(line, &r); err != nil {
		return nil, fmt.Errorf("bad cache request: %v: %w", err, errdefs.ErrInvalid)
	}
	if !cacheKeyPattern.MatchString(r.Key) {
		return nil, fmt.Errorf("bad cache key %q: %w", r.Key, errdefs.ErrInvalid)
	}
	switch r.Op {
	case "lock", "unlock", "use", "unuse", "get", "touch":
	case "evict":
		if !sha256Pattern.MatchString(r.SHA256) {
			return nil, fmt.Errorf("evict needs the entry's sha256: %w", errdefs.ErrInvalid)
		}
	case "insert":
		if err := checkStagedName(r.Staged); err != nil {
			return nil, err
		}
		if r.Entry == nil {
			return nil, fmt.Errorf("insert without an entry: %w", errdefs.ErrInvalid)
		}
		e := r.Entry
		if e.SHA256 != "" && !sha256Pattern.MatchString(e.SHA256) {
			return nil, fmt.Errorf("bad sha256 %q: %w", e.SHA256, errdefs.ErrInvalid)
		}
		if len(e.URI) > 8192 || len(e.ETag) > 1024 || len(e.LastModified) > 256 {
			return nil, fmt.Errorf("cache entry fields too long: %w", errdefs.ErrInvalid)
		}
		// What the agent records beyond these it measures itself.
		r.Entry = &cacheEntry{URI: e.URI, Mode: e.Mode & 0o777, SHA256: e.SHA256, ETag: e.ETag,
			LastModified: e.LastModified, SrcSize: e.SrcSize, SrcMtime: e.SrcMtime}
	default:
		return nil, fmt.Errorf("unknown cache request %q: %w", r.Op, errdefs.ErrInvalid)
	}
	return &r, nil
}

// checkStagedName accepts only <staging dir>/data, the one file a fetch
// stages.
func checkStagedName(name string) error {
	dir, file, ok := strings.Cut(name, "/")
	if !ok || file != "data" || !strings.HasPrefix(dir, stagingPrefix) || !filepath.IsLocal(dir) || strings.ContainsAny(dir, "/\x00") {
		return fmt.Errorf("bad staged file %q: %w", name, errdefs.ErrInvalid)
	}
	return nil
}

// brokerClient is the child's side: a cacheStore whose writes the agent does.
type brokerClient struct {
	mu     sync.Mutex
	conn   net.Conn
	r      *bufio.Reader
	dir    string // the user's cache directory, for reading entries
	broken error
}

func newBrokerClient(f *os.File, dir string) (*brokerClient, error) {
	conn, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	return &brokerClient{conn: conn, r: bufio.NewReaderSize(conn, maxBrokerLine), dir: dir}, nil
}

func (b *brokerClient) call(ctx context.Context, req brokerRequest) (*brokerReply, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.broken != nil {
		return nil, b.broken
	}
	stop := context.AfterFunc(ctx, func() { _ = b.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	line, err := json.Marshal(req)
	if err == nil {
		_, err = b.conn.Write(append(line, '\n'))
	}
	var rep brokerReply
	if err == nil {
		var l []byte
		if l, err = b.r.ReadSlice('\n'); err == nil {
			err = json.Unmarshal(l, &rep)
		}
	}
	if err != nil {
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		// A reply may still be on its way: the stream is out of step.
		b.broken = fmt.Errorf("fetcher cache broker: %w", err)
		return nil, b.broken
	}
	if rep.Error != "" {
		return nil, errorFromClass(rep.Error, rep.Class)
	}
	return &rep, nil
}

func (b *brokerClient) lock(ctx context.Context, key string) (func(), error) {
	if _, err := b.call(ctx, brokerRequest{Op: "lock", Key: key}); err != nil {
		return nil, err
	}
	return func() { _, _ = b.call(context.Background(), brokerRequest{Op: "unlock", Key: key}) }, nil
}

func (b *brokerClient) use(ctx context.Context, key string) (func(), error) {
	if _, err := b.call(ctx, brokerRequest{Op: "use", Key: key}); err != nil {
		return nil, err
	}
	return func() { _, _ = b.call(context.Background(), brokerRequest{Op: "unuse", Key: key}) }, nil
}

func (b *brokerClient) get(ctx context.Context, key string) (*cacheEntry, error) {
	rep, err := b.call(ctx, brokerRequest{Op: "get", Key: key})
	if err != nil {
		return nil, err
	}
	return rep.Entry, nil
}

func (b *brokerClient) touch(ctx context.Context, key string, validated bool) error {
	_, err := b.call(ctx, brokerRequest{Op: "touch", Key: key, Validated: validated})
	return err
}

func (b *brokerClient) insert(ctx context.Context, key string, _ *os.Root, staged string, e *cacheEntry) (bool, error) {
	rep, err := b.call(ctx, brokerRequest{Op: "insert", Key: key, Staged: staged, Entry: e})
	if err != nil {
		return false, err
	}
	return rep.Stored, nil
}

func (b *brokerClient) evictCorrupt(ctx context.Context, key, sha string, ino uint64) error {
	_, err := b.call(ctx, brokerRequest{Op: "evict", Key: key, SHA256: sha, Ino: ino})
	return err
}

func (b *brokerClient) entryPath(key string) string { return filepath.Join(b.dir, "entries", key) }

// brokerServer is the agent's side for one child.
type brokerServer struct {
	cfg     Config
	user    string
	sandbox string
	log     *slog.Logger

	// keys are the cache keys of the URIs of the request being served,
	// the only ones the child may name.
	keys map[string]bool
	// refused counts requests for other keys; only the first is logged, so
	// that a hostile child cannot flood the agent's log.
	refused int

	c     *cache
	sb    *os.Root
	locks map[string]func()
	uses  map[string][]func()
}

// newBrokerPair returns the agent's end of a new socket pair and the end
// to hand to the child.
func newBrokerPair() (net.Conn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	mine := os.NewFile(uintptr(fds[0]), "fetch-broker")
	conn, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return conn, os.NewFile(uintptr(fds[1]), "fetch-broker-child"), nil
}

// requestKeys are the cache keys a child fetching req may ask about: those
// of its cached URIs.
func requestKeys(req Request) map[string]bool {
	keys := map[string]bool{}
	for _, u := range req.URIs {
		if u.Cache {
			keys[cacheKey(u.Value)] = true
		}
	}
	return keys
}

// serveBroker answers the cache requests of a child fetching req until the
// connection closes or ctx ends (the agent cancels it once the child is
// gone), then lets go of whatever the child still held. A broker serves
// one request: a child that fetches another gets a broker of its own, with
// that request's keys.
func serveBroker(ctx context.Context, conn net.Conn, cfg Config, req Request, log *slog.Logger) {
	s := &brokerServer{cfg: cfg, user: req.User, sandbox: req.SandboxDir, log: log, keys: requestKeys(req),
		locks: map[string]func(){}, uses: map[string][]func(){}}
	defer s.close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r := bufio.NewReaderSize(conn, maxBrokerLine)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, net.ErrClosed) && err.Error() != "EOF" {
				log.Warn("fetch child's cache request unreadable; closing", "error", err.Error())
			}
			return
		}
		rep := s.handle(ctx, line)
		b, _ := json.Marshal(rep)
		if _, err := conn.Write(append(b, '\n')); err != nil {
			return
		}
	}
}

func (s *brokerServer) close() {
	for _, u := range s.uses {
		for _, release := range u {
			release()
		}
	}
	for _, unlock := range s.locks {
		unlock()
	}
	if s.sb != nil {
		s.sb.Close()
	}
}

func (s *brokerServer) handle(ctx context.Context, line []byte) brokerReply {
	rep, err := s.do(ctx, line)
	if err != nil {
		return brokerReply{Error: err.Error(), Class: className(err)}
	}
	return rep
}

func (s *brokerServer) do(ctx context.Context, line []byte) (brokerReply, error) {
	req, err := parseBrokerRequest(line)
	if err != nil {
		return brokerReply{}, err
	}
	if !s.keys[req.Key] {
		// Not a URI this fetch was asked for: a child that does this is
		// not ours any more (or never was).
		if s.refused++; s.refused == 1 {
			s.log.Error("fetch child asked about a cache entry of no URI of its request; refused",
				"op", req.Op, "key", req.Key, "user", s.user, "sandbox", s.sandbox)
		}
		return brokerReply{}, fmt.Errorf("cache key %s is not that of a URI of this fetch: %w", req.Key, errdefs.ErrForbidden)
	}
	if s.c == nil {
		if s.c, err = openCache(s.cfg, s.user, s.log); err != nil {
			return brokerReply{}, err
		}
	}
	k := req.Key
	switch req.Op {
	case "lock":
		if s.locks[k] != nil {
			return brokerReply{}, fmt.Errorf("entry already locked by this fetch: %w", errdefs.ErrConflict)
		}
		unlock, err := s.c.lock(ctx, k)
		if err != nil {
			return brokerReply{}, err
		}
		s.locks[k] = unlock
	case "unlock":
		if unlock := s.locks[k]; unlock != nil {
			unlock()
			delete(s.locks, k)
		}
	case "use":
		release, err := s.c.use(ctx, k)
		if err != nil {
			return brokerReply{}, err
		}
		s.uses[k] = append(s.uses[k], release)
	case "unuse":
		if u := s.uses[k]; len(u) > 0 {
			u[len(u)-1]()
			s.uses[k] = u[:len(u)-1]
		}
	case "get", "touch", "insert", "evict":
		// Index changes and stores happen under the entry lock, as they
		// do in a child that writes the cache itself.
		if s.locks[k] == nil && req.Op != "evict" {
			return brokerReply{}, fmt.Errorf("%s without the entry lock: %w", req.Op, errdefs.ErrConflict)
		}
		return s.index(ctx, req)
	}
	return brokerReply{}, nil
}

func (s *brokerServer) index(ctx context.Context, req *brokerRequest) (brokerReply, error) {
	switch req.Op {
	case "get":
		e, err := s.c.get(ctx, req.Key)
		return brokerReply{Entry: e}, err
	case "touch":
		return brokerReply{}, s.c.touch(ctx, req.Key, req.Validated)
	case "evict":
		return brokerReply{}, s.c.evictCorrupt(ctx, req.Key, req.SHA256, req.Ino)
	}
	if s.sb == nil {
		sb, err := os.OpenRoot(s.sandbox)
		if err != nil {
			return brokerReply{}, fmt.Errorf("cannot open the sandbox: %w", errdefs.ErrNotFound)
		}
		s.sb = sb
	}
	ok, err := s.c.insert(ctx, req.Key, s.sb, req.Staged, req.Entry)
	return brokerReply{Stored: ok}, err
}

// brokered reports whether a fetch needs the agent to write the cache: the
// child runs as someone else and at least one URI goes through the cache.
func brokered(cfg Config, req Request, cred *syscall.Credential) bool {
	if cred == nil || !cfg.cacheEnabled() {
		return false
	}
	for _, u := range req.URIs {
		if u.Cache {
			return true
		}
	}
	return false
}
