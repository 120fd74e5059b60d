package driver

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
)

// listen accepts on loopback and hands over each server-side connection.
func listen(t *testing.T) (string, <-chan net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	return l.Addr().String(), conns
}

func accepted(t *testing.T, conns <-chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

// closedByPeer reports whether the client closed the connection whose
// server side is c.
func closedByPeer(c net.Conn) bool {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF)
}

func (p *spareDialer) hasSpare() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spare != nil
}

func TestSpareDialer(t *testing.T) {
	ctx := context.Background()
	a, connsA := listen(t)
	b, connsB := listen(t)

	t.Run("taken once", func(t *testing.T) {
		p := &spareDialer{}
		p.prime("tcp", a)
		server := accepted(t, connsA)
		testutil.Eventually(t, 5*time.Second, time.Millisecond, p.hasSpare, "spare ready")
		c, err := p.DialContext(ctx, "tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if c.LocalAddr().String() != server.RemoteAddr().String() {
			t.Errorf("dial returned the connection from %s, not the spare from %s", c.LocalAddr(), server.RemoteAddr())
		}
		c2, err := p.DialContext(ctx, "tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		if second := accepted(t, connsA); c2.LocalAddr().String() != second.RemoteAddr().String() {
			t.Errorf("second dial %s is not the new connection %s", c2.LocalAddr(), second.RemoteAddr())
		}
	})

	t.Run("other address", func(t *testing.T) {
		p := &spareDialer{}
		p.prime("tcp", a)
		spare := accepted(t, connsA)
		testutil.Eventually(t, 5*time.Second, time.Millisecond, p.hasSpare, "spare ready")
		c, err := p.DialContext(ctx, "tcp", b)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if got := accepted(t, connsB); c.LocalAddr().String() != got.RemoteAddr().String() {
			t.Errorf("dial %s returned %s, not a connection to it", b, c.LocalAddr())
		}
		if !closedByPeer(spare) {
			t.Error("the spare for the other address was not closed")
		}
	})

	t.Run("replaced", func(t *testing.T) {
		p := &spareDialer{}
		p.prime("tcp", a)
		first := accepted(t, connsA)
		testutil.Eventually(t, 5*time.Second, time.Millisecond, p.hasSpare, "spare ready")
		p.prime("tcp", a)
		accepted(t, connsA)
		if !closedByPeer(first) {
			t.Error("a replaced spare was not closed")
		}
	})

	t.Run("stale", func(t *testing.T) {
		p := &spareDialer{maxAge: 20 * time.Millisecond}
		p.prime("tcp", a)
		spare := accepted(t, connsA)
		if !closedByPeer(spare) {
			t.Error("an unused spare was not closed after maxAge")
		}
		if p.hasSpare() {
			t.Error("a stale spare is still offered")
		}
	})
}
