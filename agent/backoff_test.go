package agent

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestRegistrationBackoff drives the policy through sequences of outcomes
// and checks the last wait against its bounds: the random part is fixed
// at its lowest (min) and its highest (max).
func TestRegistrationBackoff(t *testing.T) {
	const factor = 100 * time.Millisecond
	tests := []struct {
		name     string
		factor   time.Duration
		outcomes []attempt
		reset    bool // reset before the last outcome, as a new leader does
		min, max time.Duration
	}{
		{name: "first failure doubles the factor", factor: factor, outcomes: []attempt{attemptFailed}, min: 100 * time.Millisecond, max: 200 * time.Millisecond},
		{name: "third failure", factor: factor, outcomes: []attempt{attemptFailed, attemptFailed, attemptFailed}, min: 400 * time.Millisecond, max: 800 * time.Millisecond},
		{name: "capped at a minute", factor: factor, outcomes: repeat(attemptFailed, 40), min: 30 * time.Second, max: time.Minute},
		{name: "default factor capped at a minute", factor: time.Second, outcomes: repeat(attemptFailed, 7), min: 30 * time.Second, max: time.Minute},
		{name: "many failures do not overflow", factor: time.Hour, outcomes: repeat(attemptFailed, 100), min: 30 * time.Second, max: time.Minute},
		{name: "lost stream retries soon", factor: factor, outcomes: []attempt{attemptLost}, min: 50 * time.Millisecond, max: 100 * time.Millisecond},
		{name: "lost stream forgets earlier failures", factor: factor, outcomes: append(repeat(attemptFailed, 10), attemptLost, attemptFailed), min: 100 * time.Millisecond, max: 200 * time.Millisecond},
		{name: "503 is asked again in 200-400 ms", factor: factor, outcomes: []attempt{attemptBusy}, min: 200 * time.Millisecond, max: 400 * time.Millisecond},
		{name: "503 after a grown backoff", factor: factor, outcomes: append(repeat(attemptFailed, 8), attemptBusy), min: 200 * time.Millisecond, max: 400 * time.Millisecond},
		{name: "503 with a large factor", factor: time.Second, outcomes: []attempt{attemptBusy}, min: 200 * time.Millisecond, max: 400 * time.Millisecond},
		{name: "failure after a 503 starts low", factor: factor, outcomes: append(repeat(attemptFailed, 8), attemptBusy, attemptFailed), min: 100 * time.Millisecond, max: 200 * time.Millisecond},
		{name: "503s without end grow like failures", factor: factor, outcomes: repeat(attemptBusy, busyRetries+3), min: 400 * time.Millisecond, max: 800 * time.Millisecond},
		{name: "new leader resets the backoff", factor: factor, outcomes: append(repeat(attemptFailed, 8), attemptFailed), reset: true, min: 100 * time.Millisecond, max: 200 * time.Millisecond},
		{name: "new leader resets the 503 count", factor: factor, outcomes: append(repeat(attemptBusy, busyRetries+5), attemptBusy), reset: true, min: 200 * time.Millisecond, max: 400 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, bound := range []struct {
				want time.Duration
				rnd  func(int64) int64
			}{
				{tt.min, func(int64) int64 { return 0 }},
				{tt.max, func(n int64) int64 { return n - 1 }},
			} {
				b := registrationBackoff{factor: tt.factor, randN: bound.rnd}
				last := len(tt.outcomes) - 1
				for _, o := range tt.outcomes[:last] {
					b.next(o)
				}
				if tt.reset {
					b.reset()
				}
				if got := b.next(tt.outcomes[last]); got != bound.want {
					t.Errorf("wait = %s, want %s", got, bound.want)
				}
			}
		})
	}
}

func repeat(a attempt, n int) []attempt {
	out := make([]attempt, n)
	for i := range out {
		out[i] = a
	}
	return out
}

// TestWaitEndsOnNewLeader: a wait of an hour ends as soon as the leader
// func names another master, and returns that master.
func TestWaitEndsOnNewLeader(t *testing.T) {
	var mu sync.Mutex
	leader := "10.0.0.1:5050"
	m := &masterLink{leader: func(ctx context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		return leader, nil
	}}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type result struct {
		addr string
		ok   bool
	}
	done := make(chan result, 1)
	go func() {
		addr, ok := m.wait(ctx, time.Hour, "10.0.0.1:5050")
		done <- result{addr, ok}
	}()
	mu.Lock()
	leader = "10.0.0.2:5050"
	mu.Unlock()
	if r := <-done; !r.ok || r.addr != "10.0.0.2:5050" {
		t.Fatalf("wait = %q, %v; want the new leader", r.addr, r.ok)
	}
}

// TestWaitKeepsBackoffForSameLeader: while the leader func names the
// master that just failed, a wait lasts until ctx ends.
func TestWaitKeepsBackoffForSameLeader(t *testing.T) {
	asked := make(chan struct{}, 10)
	m := &masterLink{leader: func(ctx context.Context) (string, error) {
		select {
		case asked <- struct{}{}:
		default:
		}
		return "10.0.0.1:5050", nil
	}}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan bool, 1)
	go func() {
		_, ok := m.wait(ctx, time.Hour, "10.0.0.1:5050")
		done <- ok
	}()
	// Asked a few times without ending the wait.
	for range 3 {
		<-asked
	}
	select {
	case <-done:
		t.Fatal("wait ended while the leader stayed the same")
	default:
	}
	cancel()
	if ok := <-done; ok {
		t.Fatal("wait = ok after ctx ended")
	}
}

func TestRedirectTarget(t *testing.T) {
	tests := []struct{ from, location, want string }{
		{"10.0.0.1:5050", "//10.0.0.2:5050/api/v1/agent", "10.0.0.2:5050"},
		{"10.0.0.1:5050", "//10.0.0.2:5050", "10.0.0.2:5050"},
		{"https://10.0.0.1:5050", "//10.0.0.2:5050/api/v1/agent", "https://10.0.0.2:5050"},
		{"10.0.0.1:5050", "https://10.0.0.2:5050/api/v1/agent", "https://10.0.0.2:5050"},
		{"10.0.0.1:5050", "http://10.0.0.2:5050/x", "10.0.0.2:5050"},
		{"10.0.0.1:5050", "", ""},
		{"10.0.0.1:5050", "//nohostport/api", ""},
	}
	for _, tt := range tests {
		t.Run(tt.location, func(t *testing.T) {
			if got := redirectTarget(tt.from, tt.location); got != tt.want {
				t.Errorf("redirectTarget(%q, %q) = %q, want %q", tt.from, tt.location, got, tt.want)
			}
		})
	}
}
