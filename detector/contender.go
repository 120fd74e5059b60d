package detector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/mesolite/mesolite/errdefs"
)

// Contender is a master's candidacy in a ZooKeeper group.
type Contender struct {
	url  ZKURL
	conn *zk.Conn
	log  *slog.Logger
	node string // our znode's name under url.Path

	elected   chan struct{}
	lost      chan struct{}
	electOnce sync.Once
	loseOnce  sync.Once
	mu        sync.Mutex
	err       error

	cancel context.CancelFunc
	done   chan struct{}
}

// Contend joins the election under zkURL's path with info, and returns
// once its znode exists. Elected fires when it leads; Lost when the
// candidacy ends for good (the session expired or the znode was deleted),
// after which a Mesos master aborts and so should the caller: another
// master may already lead.
func Contend(ctx context.Context, zkURL string, info MasterInfo, opts ...Option) (*Contender, error) {
	o := buildOptions(opts)
	u, err := ParseZK(zkURL)
	if err != nil {
		return nil, err
	}
	data, err := info.MarshalJSON()
	if err != nil {
		return nil, err
	}
	conn, events, err := connect(u, o)
	if err != nil {
		return nil, err
	}
	c := &Contender{url: u, conn: conn, log: o.log.With("zk", u.String()), elected: make(chan struct{}), lost: make(chan struct{}), done: make(chan struct{})}
	name, err := c.join(ctx, data)
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.node = name
	c.log.Info("contending for leadership", "znode", u.Path+"/"+name)
	lctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go c.watchSession(lctx, events)
	go c.loop(lctx)
	return c, nil
}

// join creates the group's path if needed and our ephemeral sequential
// znode, retrying while ZooKeeper is unreachable until ctx ends.
func (c *Contender) join(ctx context.Context, data []byte) (string, error) {
	backoff := 100 * time.Millisecond
	for {
		name, err := c.tryJoin(data)
		if err == nil {
			return name, nil
		}
		c.log.Debug("joining the group failed, retrying", "error", err)
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("join ZooKeeper group %s: %w: %w (last error: %w)", c.url, errdefs.ErrUnavailable, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (c *Contender) tryJoin(data []byte) (string, error) {
	acl := zk.WorldACL(zk.PermAll)
	// Create every missing ancestor as a persistent node.
	parts := strings.Split(strings.TrimPrefix(c.url.Path, "/"), "/")
	p := ""
	for _, part := range parts {
		p += "/" + part
		if _, err := c.conn.Create(p, nil, zk.FlagPersistent, acl); err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return "", fmt.Errorf("create %s: %w", p, err)
		}
	}
	full, err := c.conn.Create(c.url.Path+"/"+LabelJSON+"_", data, zk.FlagEphemeral|zk.FlagSequence, acl)
	if err != nil {
		return "", fmt.Errorf("create contender znode: %w", err)
	}
	return full[strings.LastIndex(full, "/")+1:], nil
}

func (c *Contender) watchSession(ctx context.Context, events <-chan zk.Event) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				return
			}
			if ev.Type == zk.EventSession && ev.State == zk.StateExpired {
				c.lose(fmt.Errorf("ZooKeeper session expired: %w", errdefs.ErrUnavailable))
				return
			}
		}
	}
}

func (c *Contender) loop(ctx context.Context) {
	defer close(c.done)
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		children, _, watch, err := c.conn.ChildrenW(c.url.Path)
		if err != nil {
			select {
			case <-ctx.Done():
				return
			case <-c.lost:
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		mine, ok := parseMember(c.node)
		present := false
		for _, ch := range children {
			if ch == c.node {
				present = true
			}
		}
		if !ok || !present {
			c.lose(fmt.Errorf("our znode %s/%s is gone: %w", c.url.Path, c.node, errdefs.ErrUnavailable))
			return
		}
		if low, ok := lowest(children); ok && low.seq == mine.seq {
			c.electOnce.Do(func() {
				c.log.Info("elected leading master", "znode", c.url.Path+"/"+c.node)
				close(c.elected)
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-c.lost:
			return
		case <-watch:
		}
	}
}

func (c *Contender) lose(err error) {
	c.loseOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		c.log.Warn("lost the candidacy", "error", err)
		close(c.lost)
	})
}

// Elected is closed once this master leads.
func (c *Contender) Elected() <-chan struct{} { return c.elected }

// Lost is closed when the candidacy ended; Err says why.
func (c *Contender) Lost() <-chan struct{} { return c.lost }

// Err is why the candidacy was lost, or nil.
func (c *Contender) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Node is the contender's znode path.
func (c *Contender) Node() string { return c.url.Path + "/" + c.node }

// Close withdraws: the znode is deleted and the session closed, so another
// master takes over at once rather than after the session timeout.
func (c *Contender) Close() error {
	c.cancel()
	// Deleting needs a live session; when ZooKeeper is unreachable the
	// session's expiry removes the znode anyway, so do not wait long.
	res := make(chan error, 1)
	go func() { res <- c.conn.Delete(c.Node(), -1) }()
	var err error
	select {
	case err = <-res:
	case <-time.After(2 * time.Second):
	}
	c.conn.Close()
	<-c.done
	if err != nil && !errors.Is(err, zk.ErrNoNode) && !errors.Is(err, zk.ErrClosing) && !errors.Is(err, zk.ErrConnectionClosed) {
		return fmt.Errorf("withdraw %s: %w", c.Node(), err)
	}
	return nil
}
