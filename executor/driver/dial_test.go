package driver

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
)

// countingListener accepts on loopback and counts the connections.
func countingListener(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			t.Cleanup(func() { c.Close() })
		}
	}()
	return l.Addr().String(), &n
}

func (p *spareDialer) hasSpare() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spare != nil
}

func TestSpareDialer(t *testing.T) {
	ctx := context.Background()
	a, accepted := countingListener(t)
	b, acceptedB := countingListener(t)
	p := &spareDialer{}

	p.prime("tcp", a)
	testutil.Eventually(t, 5*time.Second, time.Millisecond, p.hasSpare, "spare dialed")
	c, err := p.DialContext(ctx, "tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.Eventually(t, 5*time.Second, time.Millisecond, func() bool { return accepted.Load() == 1 }, "one connection accepted")
	if p.hasSpare() {
		t.Error("spare still held after it was taken")
	}
	// Taken once only: the next dial is a new connection.
	c2, err := p.DialContext(ctx, "tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	testutil.Eventually(t, 5*time.Second, time.Millisecond, func() bool { return accepted.Load() == 2 }, "a second connection accepted")

	// A spare for another address is not handed out.
	p.prime("tcp", a)
	testutil.Eventually(t, 5*time.Second, time.Millisecond, p.hasSpare, "spare dialed")
	cb, err := p.DialContext(ctx, "tcp", b)
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if got := cb.RemoteAddr().String(); got != b {
		t.Errorf("dial %s returned a connection to %s", b, got)
	}
	testutil.Eventually(t, 5*time.Second, time.Millisecond, func() bool { return acceptedB.Load() == 1 }, "dialed %s", b)

	// An unused spare is closed after spareMaxAge.
	p = &spareDialer{maxAge: 20 * time.Millisecond}
	p.prime("tcp", a)
	testutil.Eventually(t, 5*time.Second, time.Millisecond, p.hasSpare, "spare dialed")
	testutil.Eventually(t, 5*time.Second, time.Millisecond, func() bool { return !p.hasSpare() }, "stale spare dropped")
}
