package driver

import (
	"context"
	"net"
	"sync"
	"time"
)

// spareMaxAge bounds how long a spare connection waits for its request:
// well inside the agent's 10 s header timeout, so it is never handed out
// already closed by the other side.
const spareMaxAge = time.Second

// spareDialer keeps at most one connection to the agent dialed ahead. An
// executor's SUBSCRIBE holds its connection for the event stream, so its
// first update (TASK_STARTING, right after LAUNCH arrives) would dial anew:
// a TCP handshake and the agent accepting, a millisecond or more on the
// launch path. The spare is dialed while the events are read instead.
type spareDialer struct {
	net.Dialer
	maxAge time.Duration // spareMaxAge when zero

	mu    sync.Mutex
	spare net.Conn
	addr  string
}

func (p *spareDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	p.mu.Lock()
	c, caddr := p.spare, p.addr
	p.spare = nil
	p.mu.Unlock()
	if c != nil {
		if caddr == network+" "+addr {
			return c, nil
		}
		c.Close()
	}
	return p.Dialer.DialContext(ctx, network, addr)
}

// prime dials a spare connection in the background, replacing any other.
// It is closed if nothing takes it within spareMaxAge.
func (p *spareDialer) prime(network, addr string) {
	age := p.maxAge
	if age == 0 {
		age = spareMaxAge
	}
	go func() {
		// A spare that takes longer than its lifetime to dial is no use.
		d := p.Dialer
		d.Timeout = age
		c, err := d.Dial(network, addr)
		if err != nil {
			return // the request that needs one dials as usual
		}
		p.mu.Lock()
		old := p.spare
		p.spare, p.addr = c, network+" "+addr
		p.mu.Unlock()
		if old != nil {
			old.Close()
		}
		time.AfterFunc(age, func() {
			p.mu.Lock()
			stale := p.spare == c
			if stale {
				p.spare = nil
			}
			p.mu.Unlock()
			if stale {
				c.Close()
			}
		})
	}()
}
