package apps

import (
	"errors"
	"testing"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// TestEventBus: a subscriber gets the types it asked for; one that falls
// behind is dropped; streams are bounded in all and per client address.
func TestEventBus(t *testing.T) {
	b := newEventBus(3)
	all, err := b.subscribe("10.0.0.1", nil)
	if err != nil {
		t.Fatal(err)
	}
	some, err := b.subscribe("10.0.0.1", []string{EventStatusUpdate})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	b.publish(newEvent(EventAPIPost, now, map[string]any{}), newEvent(EventStatusUpdate, now, map[string]any{"taskId": "t"}))
	if len(all.ch) != 2 || len(some.ch) != 1 || (<-some.ch).Type != EventStatusUpdate {
		t.Fatalf("queued %d and %d", len(all.ch), len(some.ch))
	}
	for range eventSubscriberCapacity {
		b.publish(newEvent(EventAPIPost, now, map[string]any{}))
	}
	select {
	case <-all.gone:
	default:
		t.Fatal("a subscriber that fell behind was kept")
	}
	if _, err := b.subscribe("10.0.0.2", nil); err != nil {
		t.Fatalf("room freed by the dropped one: %v", err)
	}
	if _, err := b.subscribe("10.0.0.3", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.subscribe("10.0.0.4", nil); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("past the limit: %v", err)
	}
	one := newEventBus(100)
	for range maxStreamsPerIP {
		if _, err := one.subscribe("10.0.0.9", nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := one.subscribe("10.0.0.9", nil); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("past the limit of one address: %v", err)
	}
}
