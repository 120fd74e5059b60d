package apps

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// Event types, as Marathon names them on /v2/events.
const (
	EventAPIPost            = "api_post_event"
	EventStatusUpdate       = "status_update_event"
	EventInstanceChanged    = "instance_changed_event"
	EventHealthChanged      = "health_status_changed_event"
	EventDeploymentInfo     = "deployment_info"
	EventDeploymentSuccess  = "deployment_success"
	EventDeploymentFailed   = "deployment_failed"
	EventAppTerminated      = "app_terminated_event"
	EventStreamAttached     = "event_stream_attached"
	EventUnhealthyTaskKill  = "unhealthy_instance_kill_event"
	EventGroupChangeSuccess = "group_change_success"
	EventGroupChangeFailed  = "group_change_failed"
	eventSubscriberCapacity = 1024
)

// Event is one event, encoded once for every subscriber.
type Event struct {
	Type string
	Data []byte
}

// newEvent encodes fields with eventType and timestamp added, as Marathon
// writes every event.
func newEvent(typ string, now time.Time, fields map[string]any) Event {
	fields["eventType"] = typ
	fields["timestamp"] = FormatTime(now)
	b, err := json.Marshal(fields)
	if err != nil {
		panic(fmt.Sprintf("apps: event %s does not encode: %v", typ, err))
	}
	return Event{Type: typ, Data: b}
}

// eventBus fans events out to the /v2/events streams. A subscriber that
// falls behind by eventSubscriberCapacity events is dropped (its stream
// ends; the client reconnects) rather than slowing the framework down.
type eventBus struct {
	mu    sync.Mutex
	subs  map[*subscriber]struct{}
	max   int
	perIP map[string]int
	maxIP int
}

type subscriber struct {
	ip     string
	ch     chan Event
	filter map[string]bool // nil: every type
	// gone is closed when the bus dropped the subscriber.
	gone chan struct{}
}

// maxStreamsPerIP bounds the event streams of one client address, so one
// client cannot take every stream the bus allows.
const maxStreamsPerIP = 16

func newEventBus(max int) *eventBus {
	return &eventBus{subs: map[*subscriber]struct{}{}, max: max, perIP: map[string]int{}, maxIP: maxStreamsPerIP}
}

// subscribe adds a subscriber at client address ip for the event types in
// filter (all when empty); it fails with errdefs.ErrUnavailable past the
// bus's limits.
func (b *eventBus) subscribe(ip string, filter []string) (*subscriber, error) {
	s := &subscriber{ip: ip, ch: make(chan Event, eventSubscriberCapacity), gone: make(chan struct{})}
	if len(filter) > 0 {
		s.filter = map[string]bool{}
		for _, f := range filter {
			s.filter[f] = true
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.subs) >= b.max {
		return nil, fmt.Errorf("%d event streams open already: %w", b.max, errdefs.ErrUnavailable)
	}
	if b.perIP[ip] >= b.maxIP {
		return nil, fmt.Errorf("%d event streams open from %s already: %w", b.maxIP, ip, errdefs.ErrUnavailable)
	}
	b.subs[s] = struct{}{}
	b.perIP[ip]++
	return s, nil
}

func (b *eventBus) unsubscribe(s *subscriber) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.drop(s)
}

// drop removes s, under b.mu.
func (b *eventBus) drop(s *subscriber) {
	if _, ok := b.subs[s]; !ok {
		return
	}
	delete(b.subs, s)
	close(s.gone)
	if b.perIP[s.ip]--; b.perIP[s.ip] <= 0 {
		delete(b.perIP, s.ip)
	}
}

func (b *eventBus) publish(evs ...Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ev := range evs {
		for s := range b.subs {
			if s.filter != nil && !s.filter[ev.Type] {
				continue
			}
			select {
			case s.ch <- ev:
			default:
				b.drop(s)
			}
		}
	}
}

func (b *eventBus) count() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs)
}
