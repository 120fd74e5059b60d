package master

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"google.golang.org/protobuf/proto"
)

// maxQueuedEvents bounds what a stream buffers for a peer that does not
// read. Past it the stream is closed: the peer reconnects and catches up
// through re-subscription and reconciliation, which is cheaper than a
// master that grows until it dies.
const maxQueuedEvents = 100_000

// errStreamOverflow ends a stream whose peer fell too far behind.
var errStreamOverflow = errors.New("event stream overflow: the peer is not reading")

// stream is one subscriber's event stream (a framework's SUBSCRIBE or an
// agent's REGISTER). The master queues encoded events with send while
// holding its lock, which never blocks; the HTTP handler that owns the
// connection writes them out in serve.
type stream struct {
	id    string
	codec codec.Codec

	mu      sync.Mutex
	queue   [][]byte
	closing bool // no more events; serve ends once the queue is written
	err     error
	wake    chan struct{}
}

func newStream(id string, c codec.Codec) *stream {
	return &stream{id: id, codec: c, wake: make(chan struct{}, 1)}
}

// send queues an event. It fails with errStreamClosed once the stream is
// closing, errStreamOverflow when the peer fell too far behind, or an
// encoding error (a bug, logged by the caller).
func (s *stream) send(m proto.Message) error {
	data, err := s.codec.Marshal(m)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return errStreamClosed
	}
	if len(s.queue) >= maxQueuedEvents {
		s.closing, s.err, s.queue = true, errStreamOverflow, nil
		s.notify()
		return errStreamOverflow
	}
	s.queue = append(s.queue, data)
	s.notify()
	return nil
}

var errStreamClosed = errors.New("event stream closed")

// close makes serve return after writing what is queued.
func (s *stream) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	s.notify()
}

func (s *stream) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *stream) take() (batch [][]byte, closing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	batch, s.queue = s.queue, nil
	return batch, s.closing
}

// serve writes the stream's events as RecordIO records until the stream
// is closed, the client goes away (ctx) or a write fails or stalls for
// longer than writeTimeout. heartbeat, when not nil, is written every
// interval. The response headers must have been written.
func (s *stream) serve(ctx context.Context, w http.ResponseWriter, heartbeat []byte, interval, writeTimeout time.Duration) error {
	rc := http.NewResponseController(w)
	rw := recordio.NewWriter(w)
	write := func(rec []byte) error {
		if writeTimeout > 0 {
			// Not every ResponseWriter supports deadlines (test
			// recorders); the stream still works without one.
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		}
		return rw.WriteRecord(rec)
	}
	var tick <-chan time.Time
	if heartbeat != nil && interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		batch, closing := s.take()
		for _, rec := range batch {
			if err := write(rec); err != nil {
				return err
			}
		}
		if closing && len(batch) == 0 {
			s.mu.Lock()
			err := s.err
			s.mu.Unlock()
			return err
		}
		if len(batch) > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
		case <-tick:
			if err := write(heartbeat); err != nil {
				return err
			}
		}
	}
}
