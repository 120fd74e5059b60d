package master

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/recordio"
)

// Bounds of the operator event streams. An event of the operator API is
// built once under the master's lock and queued, unencoded, on every
// subscriber; each subscriber's handler writes its own queue, encoding an
// event only if no other subscriber with its codec did already (opEvent).
// A subscriber whose queue reaches maxOperatorQueue (it stopped reading, or
// reads slower than the cluster changes) is dropped: it resubscribes and
// gets a fresh SUBSCRIBED, which is cheaper than a master that holds an
// ever longer backlog for it. Mesos caps the subscribers at 1000
// (--max_operator_event_stream_subscribers).
const (
	maxOperatorQueue       = 10_000
	maxOperatorSubscribers = 1000
)

var (
	errOperatorOverflow = errors.New("operator event stream overflow: the subscriber does not read fast enough")
	errOperatorShutdown = errors.New("the master is shutting down or lost its leadership")
)

// opEvent is one event of the operator streams, shared by every queue it
// is on and encoded at most once per codec.
type opEvent struct {
	ev *masterpb.Event
	// encs are the task encodings of a SUBSCRIBED snapshot.
	encs     taskEncodings
	pb, json atomic.Pointer[parts]
}

func (e *opEvent) encode(c codec.Codec) (*parts, error) {
	slot := &e.pb
	if c.MediaType() == codec.MediaTypeJSON {
		slot = &e.json
	}
	if p := slot.Load(); p != nil {
		return p, nil
	}
	p, err := e.encs.encodeEvent(c, e.ev)
	if err != nil {
		return nil, err
	}
	// Two subscribers may encode it at once: the same bytes either way.
	slot.Store(p)
	return p, nil
}

// opSubscriber is one SUBSCRIBE of the operator API. The master queues
// events with send while holding its lock, which never blocks; serve, in
// the subscriber's handler, encodes and writes them outside it.
type opSubscriber struct {
	id     string
	codec  codec.Codec
	remote string
	max    int

	mu      sync.Mutex
	queue   []*opEvent
	closing bool  // no more events; serve ends once the queue is written
	reason  error // why the stream ends, nil for the client going away
	wake    chan struct{}
	// viewer is what the subscriber may see under --acls; nil: all.
	viewer *viewer
}

func newOpSubscriber(id string, c codec.Codec, remote string, max int) *opSubscriber {
	return &opSubscriber{id: id, codec: c, remote: remote, max: max, wake: make(chan struct{}, 1)}
}

// send queues ev. It reports false when the subscriber is gone: closed, or
// dropped now because its queue is full (then its reason says so).
func (s *opSubscriber) send(ev *opEvent) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	if len(s.queue) >= s.max {
		s.closing, s.reason, s.queue = true, errOperatorOverflow, nil
		s.notify()
		return false
	}
	s.queue = append(s.queue, ev)
	s.notify()
	return true
}

// close ends the stream once what is queued is written.
func (s *opSubscriber) close(reason error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		s.closing, s.reason = true, reason
	}
	s.notify()
}

func (s *opSubscriber) notify() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *opSubscriber) take() (batch []*opEvent, closing bool, reason error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	batch, s.queue = s.queue, nil
	return batch, s.closing, s.reason
}

// serve encodes and writes the queued events as RecordIO records, and a
// HEARTBEAT every interval, until the stream is closed, the client goes
// away (ctx) or a write fails or stalls past writeTimeout. The response
// headers must have been written. It returns why the stream ended.
func (s *opSubscriber) serve(ctx context.Context, w http.ResponseWriter, interval, writeTimeout time.Duration) error {
	rc := http.NewResponseController(w)
	rw := recordio.NewWriter(w)
	deadline := func() {
		if writeTimeout > 0 {
			// Not every ResponseWriter supports deadlines (test
			// writers); the stream still works without one.
			_ = rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		}
	}
	write := func(rec ...[]byte) error {
		deadline()
		return rw.WriteRecordParts(rec)
	}
	heartbeat, err := s.codec.Marshal(&masterpb.Event{Type: masterpb.Event_HEARTBEAT.Enum()})
	if err != nil {
		return err
	}
	var tick <-chan time.Time
	if interval > 0 {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		batch, closing, reason := s.take()
		// What is queued goes out together, flushed once: a write (a
		// system call) per event per subscriber was most of the cost of
		// 100 subscribers.
		if len(batch) > 0 {
			deadline()
		}
		for _, ev := range batch {
			rec, err := ev.encode(s.codec)
			if err != nil {
				// A bug (a required field the master left unset): the
				// subscriber cannot trust the stream any more.
				return err
			}
			if err := rw.BufferRecordParts(rec.Parts()); err != nil {
				return err
			}
		}
		if len(batch) > 0 {
			if err := rw.Flush(); err != nil {
				return err
			}
		}
		if closing && len(batch) == 0 {
			return reason
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
