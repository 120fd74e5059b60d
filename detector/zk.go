package detector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

// Labels of the znodes masters create, as Mesos names them.
const (
	// LabelJSON marks a znode holding MasterInfo as JSON (Mesos >= 0.24).
	LabelJSON = "json.info"
	// labelProtobuf marks a znode holding binary MasterInfo (older Mesos).
	labelProtobuf = "info"
)

// ZKURL is a parsed zk:// URL.
type ZKURL struct {
	Servers []string // host:port
	Path    string   // the group's znode, never "/"
	// Auth is "user:password" for digest authentication, or empty.
	Auth string
}

func (u ZKURL) String() string {
	return "zk://" + strings.Join(u.Servers, ",") + u.Path
}

// ParseZK parses zk://[user:pass@]host[:port][,host[:port]...]/path. Ports
// default to 2181. Errors wrap errdefs.ErrInvalid.
func ParseZK(s string) (ZKURL, error) {
	rest, ok := strings.CutPrefix(s, "zk://")
	if !ok {
		return ZKURL{}, fmt.Errorf("%q is not a zk:// URL: %w", s, errdefs.ErrInvalid)
	}
	var u ZKURL
	if at := strings.LastIndex(rest, "@"); at >= 0 && at < strings.Index(rest+"/", "/") {
		u.Auth, rest = rest[:at], rest[at+1:]
		if !strings.Contains(u.Auth, ":") {
			return ZKURL{}, fmt.Errorf("%q: credentials must be user:password: %w", s, errdefs.ErrInvalid)
		}
	}
	hosts, p, ok := strings.Cut(rest, "/")
	if !ok || p == "" {
		return ZKURL{}, fmt.Errorf("%q: expecting a (chroot) path for ZooKeeper ('/' is not supported): %w", s, errdefs.ErrInvalid)
	}
	u.Path = path.Clean("/" + p)
	if u.Path == "/" {
		return ZKURL{}, fmt.Errorf("%q: expecting a (chroot) path for ZooKeeper ('/' is not supported): %w", s, errdefs.ErrInvalid)
	}
	for _, h := range strings.Split(hosts, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(strings.Trim(h, "[]"), "2181")
		} else if n, err := strconv.Atoi(port); err != nil || n <= 0 || n > 65535 {
			return ZKURL{}, fmt.Errorf("%q: bad port in %q: %w", s, h, errdefs.ErrInvalid)
		}
		u.Servers = append(u.Servers, h)
	}
	if len(u.Servers) == 0 {
		return ZKURL{}, fmt.Errorf("%q: no ZooKeeper servers: %w", s, errdefs.ErrInvalid)
	}
	return u, nil
}

// slogAdapter sends go-zookeeper's chatter to slog at debug level.
type slogAdapter struct{ log *slog.Logger }

func (a slogAdapter) Printf(format string, args ...any) {
	a.log.Debug(fmt.Sprintf(format, args...))
}

func connect(u ZKURL, o options) (*zk.Conn, <-chan zk.Event, error) {
	conn, events, err := zk.Connect(u.Servers, o.sessionTimeout, zk.WithLogger(slogAdapter{o.log}), zk.WithLogInfo(false))
	if err != nil {
		return nil, nil, fmt.Errorf("connect to ZooKeeper %s: %w: %w", u, errdefs.ErrUnavailable, err)
	}
	if u.Auth != "" {
		if err := conn.AddAuth("digest", []byte(u.Auth)); err != nil {
			conn.Close()
			return nil, nil, fmt.Errorf("authenticate to ZooKeeper %s: %w", u, err)
		}
	}
	return conn, events, nil
}

// member is one contender's znode.
type member struct {
	name  string
	label string
	seq   int64
}

// parseMember reads `<label>_<10-digit seq>` or a bare sequence; other
// children of the group's znode are not contenders.
func parseMember(name string) (member, bool) {
	label, seqText := "", name
	if i := strings.LastIndex(name, "_"); i >= 0 {
		label, seqText = name[:i], name[i+1:]
	}
	if len(seqText) < 10 {
		return member{}, false
	}
	seq, err := strconv.ParseInt(seqText, 10, 64)
	if err != nil || seq < 0 {
		return member{}, false
	}
	return member{name: name, label: label, seq: seq}, true
}

// lowest returns the contender with the lowest sequence among children.
func lowest(children []string) (member, bool) {
	var best member
	found := false
	for _, c := range children {
		m, ok := parseMember(c)
		if ok && (!found || m.seq < best.seq) {
			best, found = m, true
		}
	}
	return best, found
}

// decodeMember reads a contender's data according to its label.
func decodeMember(m member, data []byte) (MasterInfo, error) {
	switch m.label {
	case LabelJSON:
		var info MasterInfo
		if err := info.UnmarshalJSON(data); err != nil {
			return MasterInfo{}, fmt.Errorf("znode %s: %w", m.name, err)
		}
		return info, nil
	case labelProtobuf:
		var pb mesos.MasterInfo
		if err := proto.Unmarshal(data, &pb); err != nil {
			return MasterInfo{}, fmt.Errorf("znode %s: %w", m.name, err)
		}
		info := MasterInfo{ID: pb.GetId(), Port: int(pb.GetPort()), PID: pb.GetPid(), Hostname: pb.GetHostname(), Version: pb.GetVersion(), IP: Uint32ToIP(pb.GetIp())}
		if a := pb.GetAddress(); a.GetIp() != "" {
			info.IP = a.GetIp()
		}
		return info, nil
	case "":
		// The oldest format: a bare PID, master@ip:port.
		info, err := ParseHostPort(strings.TrimSpace(string(data)))
		if err != nil {
			return MasterInfo{}, fmt.Errorf("znode %s: %w", m.name, err)
		}
		return info, nil
	default:
		return MasterInfo{}, fmt.Errorf("znode %s: unknown label %q: %w", m.name, m.label, errdefs.ErrInvalid)
	}
}

// zkDetector follows the group under a path.
type zkDetector struct {
	url  ZKURL
	conn *zk.Conn
	log  *slog.Logger

	mu      sync.Mutex
	leader  MasterInfo
	known   bool          // a first answer (leader or none) is in
	changed chan struct{} // closed and replaced on every change
	lastErr error         // the latest failed read, while none succeeded

	cancel context.CancelFunc
	done   chan struct{}
}

func newZKDetector(u ZKURL, o options) (*zkDetector, error) {
	conn, _, err := connect(u, o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	d := &zkDetector{url: u, conn: conn, log: o.log.With("zk", u.String()), changed: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go d.loop(ctx)
	return d, nil
}

func (d *zkDetector) set(info MasterInfo) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.known && d.leader == info {
		return
	}
	if info.IsZero() {
		d.log.Info("no leading master")
	} else {
		d.log.Info("leading master detected", "master", info.HostPort(), "id", info.ID)
	}
	d.leader, d.known = info, true
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *zkDetector) loop(ctx context.Context) {
	defer close(d.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		wait, err := d.detectOnce()
		d.mu.Lock()
		d.lastErr = err
		d.mu.Unlock()
		if err != nil {
			if !errors.Is(err, zk.ErrClosing) && !errors.Is(err, zk.ErrConnectionClosed) {
				d.log.Debug("ZooKeeper read failed, retrying", "error", err)
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		select {
		case <-ctx.Done():
			return
		case <-wait:
		}
	}
}

// detectOnce reads the current leader and returns a channel that fires when
// it may have changed.
func (d *zkDetector) detectOnce() (<-chan zk.Event, error) {
	children, _, watch, err := d.conn.ChildrenW(d.url.Path)
	if errors.Is(err, zk.ErrNoNode) {
		exists, _, ewatch, err := d.conn.ExistsW(d.url.Path)
		if err != nil {
			return nil, err
		}
		if exists {
			// Created between the two reads: an exists watch on a node
			// that exists fires on its deletion only, so waiting on it
			// would miss every contender from now on. Read again.
			now := make(chan zk.Event, 1)
			now <- zk.Event{}
			return now, nil
		}
		d.set(MasterInfo{})
		return ewatch, nil
	}
	if err != nil {
		return nil, err
	}
	m, ok := lowest(children)
	if !ok {
		d.set(MasterInfo{})
		return watch, nil
	}
	data, _, err := d.conn.Get(d.url.Path + "/" + m.name)
	if errors.Is(err, zk.ErrNoNode) {
		// The leader left between the list and the read; the children
		// watch has fired or will.
		return watch, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := decodeMember(m, data)
	if err != nil {
		// An unreadable leader is no leader: say so rather than keep
		// pointing at the previous one.
		d.log.Warn("cannot read the leading master's znode", "error", err)
		d.set(MasterInfo{})
		return watch, nil
	}
	d.set(info)
	return watch, nil
}

func (d *zkDetector) current() (MasterInfo, bool, <-chan struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.leader, d.known, d.changed
}

func (d *zkDetector) Leader(ctx context.Context) (MasterInfo, error) {
	for {
		info, known, changed := d.current()
		if known && !info.IsZero() {
			return info, nil
		}
		select {
		case <-ctx.Done():
			// Say which: ZooKeeper never answered, or it did and no
			// master is elected.
			d.mu.Lock()
			lastErr := d.lastErr
			d.mu.Unlock()
			switch {
			case known:
				return MasterInfo{}, errdefs.Classf(errdefs.ErrUnavailable, "no master is elected in %s (ZooKeeper answers; are the masters running with --zk=%s?)", d.url, d.url)
			case lastErr != nil:
				return MasterInfo{}, errdefs.Classf(errdefs.ErrUnavailable, "ZooKeeper at %s did not answer (%v)", d.url, lastErr)
			}
			return MasterInfo{}, errdefs.Classf(errdefs.ErrUnavailable, "ZooKeeper at %s did not answer", d.url)
		case <-d.done:
			return MasterInfo{}, fmt.Errorf("detector closed: %w", errdefs.ErrUnavailable)
		case <-changed:
		}
	}
}

func (d *zkDetector) Watch(ctx context.Context) <-chan MasterInfo {
	ch := make(chan MasterInfo, 1)
	go func() {
		defer close(ch)
		var last MasterInfo
		sent := false
		for {
			info, known, changed := d.current()
			if known && (!sent || info != last) {
				// Replace an unread value rather than block on a slow reader.
				select {
				case <-ch:
				default:
				}
				ch <- info
				last, sent = info, true
			}
			select {
			case <-ctx.Done():
				return
			case <-d.done:
				return
			case <-changed:
			}
		}
	}()
	return ch
}

func (d *zkDetector) Close() error {
	d.cancel()
	d.conn.Close()
	<-d.done
	return nil
}
