package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/detector"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

// APIPath is the scheduler endpoint on the master.
const APIPath = "/api/v1/scheduler"

// StreamIDHeader carries the subscription's id on every call.
const StreamIDHeader = "Mesos-Stream-Id"

// maxRedirects bounds a chain of 307s: masters that disagree about who
// leads (an election in progress) must not keep a client bouncing forever.
const maxRedirects = 5

// Client is one framework's subscription with the leading master. Its
// methods are safe for concurrent use.
type Client struct {
	cfg    Config
	hc     *http.Client
	log    *slog.Logger
	events chan *schedv1.Event
	done   chan struct{}
	cancel context.CancelFunc
	acks   inflight
	// det follows the leader when Master is zk://: one ZooKeeper session
	// for the client's life rather than one per attempt, and a leader
	// change wakes a waiting re-subscription at once.
	det detector.Detector

	mu         sync.Mutex
	framework  *mesos.FrameworkInfo // Id filled in from SUBSCRIBED
	master     string               // host:port of the master holding the stream
	scheme     string               // http or https, for master
	streamID   string               // empty while not subscribed
	masterInfo *mesos.MasterInfo
	heartbeat  time.Duration
	closed     bool // Close or Teardown: the end of the stream is wanted
	err        error
}

// stream is one SUBSCRIBE connection, from its SUBSCRIBED event on.
type stream struct {
	master   string
	scheme   string
	streamID string
	body     io.ReadCloser
	dec      *recordio.Decoder
	cancel   context.CancelFunc
	first    *schedv1.Event
}

func (s *stream) close() {
	s.cancel()
	s.body.Close()
}

// Subscribe connects to the leading master, subscribes the framework and
// returns once the master has answered SUBSCRIBED; that event is the first
// one Events delivers. ctx bounds the whole subscription, not only this
// call: when it is done the client stops. A master that cannot be reached
// gives an *UnreachableError; one that refuses the framework an error with
// its reason, wrapping the errdefs class of its status.
func Subscribe(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var det detector.Detector
	if strings.HasPrefix(strings.TrimSpace(cfg.Master), "zk://") {
		if det, err = detector.New(strings.TrimSpace(cfg.Master)); err != nil {
			return nil, fmt.Errorf("master %s: %w", cfg.Master, err)
		}
	}
	life, cancel := context.WithCancel(ctx)
	c := &Client{
		det:       det,
		cfg:       cfg,
		hc:        withoutRedirects(cfg.HTTPClient),
		log:       cfg.Logger.With("component", "scheduler-client"),
		events:    make(chan *schedv1.Event),
		done:      make(chan struct{}),
		cancel:    cancel,
		framework: cfg.Framework,
		acks:      newInflight(),
	}
	s, err := c.subscribe(life)
	if err != nil {
		cancel()
		if det != nil {
			det.Close()
		}
		return nil, err
	}
	// Recorded before Subscribe returns, not when the event loop gets to
	// it: a caller may ask for FrameworkID or make a call (RECONCILE,
	// say) at once, before it has read SUBSCRIBED from Events.
	c.connected(s)
	go c.run(life, s)
	return c, nil
}

// Events delivers every event of the subscription in order, starting with
// SUBSCRIBED. It is closed when the client stops; Err then says why. The
// caller must keep receiving: the client reads the stream only as fast as
// events are taken (time spent waiting for the caller does not count as
// missed heartbeats).
func (c *Client) Events() <-chan *schedv1.Event { return c.events }

// Done is closed when the client has stopped and Events is closed.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err is why the client stopped: nil after Close or Teardown, the context's
// error when the context given to Subscribe ended it, otherwise the error
// that could not be recovered from. It is nil while the client runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close stops the client without tearing the framework down: the master
// keeps its tasks for the framework's failover_timeout, so another process
// can subscribe with the same id. It waits until Events is closed.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	<-c.done
	return nil
}

// FrameworkID is the framework's id, assigned by the master on the first
// SUBSCRIBED.
func (c *Client) FrameworkID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.framework.GetId().GetValue()
}

// Master is the host:port of the master the client is (or was last)
// subscribed with: the leader, after redirects.
func (c *Client) Master() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.master
}

// MasterInfo is what the master said about itself in SUBSCRIBED, if anything.
func (c *Client) MasterInfo() *mesos.MasterInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.masterInfo
}

// StreamID is the Mesos-Stream-Id of the current subscription, empty while
// the client is re-subscribing.
func (c *Client) StreamID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streamID
}

// subscribe resolves the master, follows redirects to the leader and reads
// SUBSCRIBED. The stream lives as long as ctx.
func (c *Client) subscribe(ctx context.Context) (*stream, error) {
	master, https, err := c.resolve(ctx)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if https || c.cfg.TLS != nil {
		scheme = "https"
	}
	c.mu.Lock()
	fw := proto.Clone(c.framework).(*mesos.FrameworkInfo)
	c.mu.Unlock()
	call := &schedv1.Call{
		Type:        schedv1.Call_SUBSCRIBE.Enum(),
		FrameworkId: fw.GetId(),
		Subscribe:   &schedv1.Call_Subscribe{FrameworkInfo: fw},
	}
	body, err := c.cfg.Codec.Marshal(call)
	if err != nil {
		return nil, fmt.Errorf("encoding SUBSCRIBE: %w", err)
	}
	for hop := 0; ; hop++ {
		s, leader, err := c.subscribeOnce(ctx, scheme, master, body)
		if err != nil || s != nil {
			return s, err
		}
		if hop == maxRedirects {
			return nil, fmt.Errorf("SUBSCRIBE: more than %d redirects between masters, last to %s: %w",
				maxRedirects, leader, errdefs.ErrUnavailable)
		}
		c.log.Debug("master redirected to the leader", "master", master, "leader", leader)
		master = leader
	}
}

// resolve finds the master to ask: the leader the client's detector knows
// for zk://, else what ResolveMasterScheme makes of Config.Master.
func (c *Client) resolve(ctx context.Context) (string, bool, error) {
	if c.det == nil {
		return ResolveMasterScheme(ctx, c.cfg.Master)
	}
	lctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	mi, err := c.det.Leader(lctx)
	if err != nil {
		return "", false, fmt.Errorf("no leading master in %s: %w: %w", c.cfg.Master, errdefs.ErrUnavailable, err)
	}
	return mi.Addr(), false, nil
}

// subscribeOnce posts SUBSCRIBE to one master. It returns the stream, or
// the leader's address when this master is not it.
func (c *Client) subscribeOnce(ctx context.Context, scheme, master string, body []byte) (*stream, string, error) {
	sctx, cancel := context.WithCancelCause(ctx)
	// A master that accepts the connection but never answers must not hang
	// the subscription: SUBSCRIBED comes at once or not at all.
	errSilent := fmt.Errorf("no SUBSCRIBED within %s", c.cfg.CallTimeout)
	handshake := time.AfterFunc(c.cfg.CallTimeout, func() { cancel(errSilent) })
	fail := func(err error) (*stream, string, error) {
		handshake.Stop()
		cancel(nil)
		if ctx.Err() != nil {
			return nil, "", fmt.Errorf("subscribing with master at %s: %w", master, context.Cause(ctx))
		}
		if errors.Is(context.Cause(sctx), errSilent) {
			err = &UnreachableError{Master: master, Err: errSilent}
		}
		return nil, "", err
	}

	req, err := http.NewRequestWithContext(sctx, http.MethodPost, scheme+"://"+master+APIPath, bytes.NewReader(body))
	if err != nil {
		return fail(fmt.Errorf("SUBSCRIBE request to %s: %w", master, errdefs.ErrInvalid))
	}
	req.Header.Set("Content-Type", c.cfg.Codec.MediaType())
	req.Header.Set("Accept", c.cfg.Codec.MediaType())
	c.cfg.authorize(req)
	resp, err := c.hc.Do(req)
	if err != nil {
		return fail(unreachable(master, err))
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		resp.Body.Close()
		handshake.Stop()
		cancel(nil)
		leader, err := MasterFromLocation(resp.Header.Get("Location"))
		if err != nil {
			return nil, "", fmt.Errorf("SUBSCRIBE: %w", err)
		}
		return nil, leader, nil
	default:
		err := statusError("SUBSCRIBE", master, resp)
		resp.Body.Close()
		if resp.StatusCode == http.StatusServiceUnavailable {
			// A master that is there but not ready (elected and still
			// reading its registry, or between leaders).
			err = &busyError{err}
		}
		return fail(err)
	}

	cdc, err := codec.ForContentType(resp.Header.Get("Content-Type"))
	if err != nil {
		resp.Body.Close()
		return fail(fmt.Errorf("SUBSCRIBE: master at %s answered in an encoding this client cannot read: %w", master, err))
	}
	dec := recordio.NewDecoder(resp.Body, cdc, 0)
	first := new(schedv1.Event)
	err = dec.Decode(first)
	if !handshake.Stop() && err == nil {
		err = errSilent
	}
	if err != nil {
		resp.Body.Close()
		return fail(&UnreachableError{Master: master, Err: fmt.Errorf("reading SUBSCRIBED: %w", err)})
	}
	switch first.GetType() {
	case schedv1.Event_SUBSCRIBED:
	case schedv1.Event_ERROR:
		resp.Body.Close()
		return fail(fmt.Errorf("SUBSCRIBE: master at %s sent ERROR: %s: %w", master, first.GetError().GetMessage(), errdefs.ErrForbidden))
	default:
		resp.Body.Close()
		return fail(fmt.Errorf("SUBSCRIBE: master at %s sent %s before SUBSCRIBED: %w", master, first.GetType(), errdefs.ErrUnavailable))
	}
	sid := resp.Header.Get(StreamIDHeader)
	if sid == "" {
		c.log.Warn("master sent no "+StreamIDHeader+" header; it will likely refuse our calls", "master", master)
	}
	return &stream{
		master:   master,
		scheme:   scheme,
		streamID: sid,
		body:     resp.Body,
		dec:      dec,
		cancel:   func() { cancel(nil) },
		first:    first,
	}, "", nil
}

// run serves streams until the client stops, re-subscribing after each
// loss.
func (c *Client) run(ctx context.Context, s *stream) {
	defer c.finish()
	for {
		err := c.serve(ctx, s)
		c.mu.Lock()
		c.streamID = ""
		closed := c.closed
		c.mu.Unlock()
		switch {
		case closed:
			return
		case ctx.Err() != nil:
			c.setErr(ctx.Err())
			return
		case fatal(err):
			c.setErr(err)
			return
		}
		c.log.Warn("lost the master; re-subscribing", "master", s.master, "framework_id", c.FrameworkID(), "err", err)
		s, err = c.resubscribe(ctx)
		if err != nil {
			c.mu.Lock()
			closed = c.closed
			c.mu.Unlock()
			if !closed {
				c.setErr(err)
			}
			return
		}
		c.connected(s)
	}
}

func (c *Client) setErr(err error) {
	c.mu.Lock()
	c.err = err
	c.mu.Unlock()
}

func (c *Client) finish() {
	c.cancel()
	if c.det != nil {
		c.det.Close()
	}
	c.acks.wait(context.Background()) // they end quickly: their context is done
	close(c.events)
	close(c.done)
}

// fatal tells errors re-subscribing cannot help with (the master refused
// the framework) from those it can (a master gone, a stream cut).
func fatal(err error) bool {
	for _, class := range []error{errdefs.ErrInvalid, errdefs.ErrForbidden, errdefs.ErrUnauthorized,
		errdefs.ErrNotFound, errdefs.ErrConflict, errdefs.ErrGone} {
		if errors.Is(err, class) {
			return !errors.Is(err, errdefs.ErrUnavailable)
		}
	}
	return false
}

// connected records a new subscription.
func (c *Client) connected(s *stream) {
	sub := s.first.GetSubscribed()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.master, c.scheme = s.master, s.scheme
	c.streamID = s.streamID
	if id := sub.GetFrameworkId(); id != nil {
		c.framework.Id = proto.Clone(id).(*mesos.FrameworkID)
	}
	c.masterInfo = sub.GetMasterInfo()
	c.heartbeat = DefaultHeartbeatInterval
	if secs := sub.GetHeartbeatIntervalSeconds(); secs > 0 {
		c.heartbeat = time.Duration(secs * float64(time.Second))
	}
}

// serve delivers the events of one stream until it ends, and says why.
// The stream was recorded (connected) by whoever subscribed it.
func (c *Client) serve(ctx context.Context, s *stream) error {
	defer s.close()
	c.log.Info("subscribed", "master", s.master, "framework_id", c.FrameworkID())
	if !c.deliver(ctx, s.first) {
		return ctx.Err()
	}
	c.mu.Lock()
	silence := c.heartbeat * time.Duration(c.cfg.MissedHeartbeats)
	c.mu.Unlock()
	var missed atomic.Bool
	watchdog := time.AfterFunc(silence, func() {
		missed.Store(true)
		s.cancel()
	})
	defer watchdog.Stop()
	for {
		ev := new(schedv1.Event)
		err := s.dec.Decode(ev)
		watchdog.Stop()
		switch {
		case err == nil:
			// An event that made it in just as the watchdog fired is still
			// handled; the next read reports the dead stream.
		case missed.Load():
			return &UnreachableError{Master: s.master,
				Err: fmt.Errorf("no event for %s (%d heartbeat intervals)", silence, c.cfg.MissedHeartbeats)}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, errdefs.ErrInvalid):
			// One record that does not decode; the framing is intact.
			c.log.Warn("dropping an event that does not decode", "master", s.master, "err", err)
			watchdog.Reset(silence)
			continue
		case errors.Is(err, io.EOF):
			return &UnreachableError{Master: s.master, Err: errors.New("the master closed the event stream")}
		default:
			return &UnreachableError{Master: s.master, Err: fmt.Errorf("reading events: %w", err)}
		}

		switch ev.GetType() {
		case schedv1.Event_SUBSCRIBED:
			c.connected(&stream{master: s.master, scheme: s.scheme, streamID: s.streamID, first: ev})
		case schedv1.Event_ERROR:
			c.deliver(ctx, ev)
			return fmt.Errorf("master at %s sent ERROR: %s: %w", s.master, ev.GetError().GetMessage(), errdefs.ErrForbidden)
		}
		st := ev.GetUpdate().GetStatus()
		ack := ev.GetType() == schedv1.Event_UPDATE && len(st.GetUuid()) > 0 && !c.cfg.ManualAcknowledge
		if ack {
			// Counted before the caller can see the update, so that a
			// Teardown it makes next waits for this acknowledgement.
			c.acks.add()
		}
		if !c.deliver(ctx, ev) {
			if ack {
				c.acks.done()
			}
			return ctx.Err()
		}
		if ack {
			c.acknowledgeAsync(ctx, st)
		}
		watchdog.Reset(silence)
	}
}

func (c *Client) deliver(ctx context.Context, ev *schedv1.Event) bool {
	select {
	case c.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// acknowledgeAsync acknowledges without holding up the stream. A lost
// acknowledgement costs little: the agent resends the update and it is
// acknowledged again.
func (c *Client) acknowledgeAsync(ctx context.Context, st *mesos.TaskStatus) {
	go func() {
		defer c.acks.done()
		if err := c.Acknowledge(ctx, st); err != nil && ctx.Err() == nil {
			c.log.Warn("acknowledging a status update failed; the agent will resend it",
				"task_id", st.GetTaskId().GetValue(), "state", st.GetState(), "err", err)
		}
	}()
}

// busyError is a 503 answer to SUBSCRIBE: the master is up but not ready,
// typically a new leader reading its registry; worth asking again soon.
type busyError struct{ err error }

func (e *busyError) Error() string { return e.err.Error() }
func (e *busyError) Unwrap() error { return e.err }

// busyRetry is the wait before asking a busy master again.
const busyRetry = 200 * time.Millisecond

// resubscribe tries, with jittered exponential backoff, until a master
// takes the framework back, refuses it, or ReconnectTimeout passes.
func (c *Client) resubscribe(ctx context.Context) (*stream, error) {
	start := time.Now()
	backoff := c.cfg.BackoffMin
	// With ZooKeeper, a new leader is worth trying at once: the backoff
	// grew while the dead leader's znode waited for its session to expire.
	var leaders <-chan detector.MasterInfo
	if c.det != nil {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		leaders = c.det.Watch(wctx)
		select {
		case <-leaders: // the current one, which just failed us
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for attempt := 1; ; attempt++ {
		// Half to all of the backoff, so that many frameworks that lost
		// the same master do not come back in lockstep.
		wait := backoff/2 + rand.N(backoff/2+1)
		t := time.NewTimer(wait)
	wait:
		for {
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, ctx.Err()
			case <-t.C:
				break wait
			case mi, ok := <-leaders:
				if !ok {
					leaders = nil
					continue
				}
				if !mi.IsZero() {
					t.Stop()
					c.log.Info("a new leading master was elected; re-subscribing now", "master", mi.Addr())
					break wait
				}
			}
		}
		s, err := c.subscribe(ctx)
		if err == nil {
			c.log.Info("re-subscribed", "master", s.master, "attempts", attempt)
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if fatal(err) {
			return nil, fmt.Errorf("re-subscribing: %w", err)
		}
		if c.cfg.ReconnectTimeout > 0 && time.Since(start) >= c.cfg.ReconnectTimeout {
			return nil, fmt.Errorf("gave up re-subscribing after %s: %w", time.Since(start).Round(time.Millisecond), err)
		}
		c.log.Warn("re-subscribing failed; retrying", "attempt", attempt, "err", err)
		var busy *busyError
		if errors.As(err, &busy) {
			// A new leader getting ready: it will be soon, and the
			// backoff grown against a dead one must not delay us.
			backoff = min(2*busyRetry, c.cfg.BackoffMax)
			continue
		}
		backoff = min(2*backoff, c.cfg.BackoffMax)
	}
}

// inflight counts acknowledgements being sent, and lets a caller wait for
// none to be left with a context (which sync.WaitGroup cannot).
type inflight struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed while n == 0
}

func newInflight() inflight {
	idle := make(chan struct{})
	close(idle)
	return inflight{idle: idle}
}

func (f *inflight) add() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		f.idle = make(chan struct{})
	}
	f.n++
}

func (f *inflight) done() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.n--
	if f.n == 0 {
		close(f.idle)
	}
}

func (f *inflight) wait(ctx context.Context) error {
	f.mu.Lock()
	idle := f.idle
	f.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
