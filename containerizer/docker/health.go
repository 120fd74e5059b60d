package docker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/mesolite/mesolite/containerizer/docker/engine"
	"github.com/mesolite/mesolite/errdefs"
)

// health tracks whether dockerd answers. While it does not, launches fail
// at once with the reason, and a monitor retries with backoff and says in
// the log when dockerd is back.
type health struct {
	c    *Containerizer
	kick chan struct{}

	mu        sync.Mutex
	checked   bool
	up        bool
	downSince time.Time
	lastErr   error
	lastLog   time.Time
}

func newHealth(c *Containerizer) *health {
	return &health{c: c, kick: make(chan struct{}, 1)}
}

func (h *health) isUp() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.up
}

// check pings dockerd and records the outcome.
func (h *health) check(ctx context.Context) error {
	if err := h.c.eng.Ping(ctx); err != nil {
		h.markDown(err)
		return err
	}
	h.mu.Lock()
	wasUp, first := h.up, !h.checked
	h.checked, h.up, h.lastErr = true, true, nil
	down := h.downSince
	h.mu.Unlock()
	var version string
	if !wasUp {
		version, _ = h.c.eng.Version(ctx)
	}
	switch {
	case first:
		h.c.log.Info("using dockerd", "host", h.c.eng.Host(), "version", version)
	case !wasUp:
		h.c.log.Info("dockerd is reachable again; docker tasks can launch", "host", h.c.eng.Host(), "version", version, "was_down_for", time.Since(down).Round(time.Second))
	}
	if !wasUp {
		h.c.mu.Lock()
		pending := h.c.needCleanup
		h.c.mu.Unlock()
		if pending {
			go func() {
				if err := h.c.cleanupOrphans(h.c.ctx); err != nil {
					h.c.log.Warn("orphan cleanup", "error", err)
				}
			}()
		}
	}
	return nil
}

// failed notes an engine error; one that says dockerd is unreachable marks
// it down and wakes the monitor.
func (h *health) failed(err error) {
	if !engine.IsUnavailable(err) {
		return
	}
	h.markDown(err)
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

func (h *health) markDown(err error) {
	h.mu.Lock()
	wasUp, first := h.up, !h.checked
	h.checked, h.up, h.lastErr = true, false, err
	if wasUp || first {
		h.downSince = time.Now()
	}
	logNow := wasUp || first || time.Since(h.lastLog) >= time.Minute
	if logNow {
		h.lastLog = time.Now()
	}
	h.mu.Unlock()
	if logNow {
		h.c.log.Error("cannot reach dockerd: docker tasks fail with REASON_CONTAINER_LAUNCH_FAILED until it answers; retrying with backoff",
			"host", h.c.eng.Host(), "error", err)
	}
}

// ready returns nil when dockerd answers, asking it again at once when it
// was last seen down, or an error that says since when it is unreachable.
func (h *health) ready(ctx context.Context) error {
	if h.isUp() {
		return nil
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := h.check(pctx); err == nil {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return fmt.Errorf("dockerd at %s is unreachable (since %s): %w: %w", h.c.eng.Host(), h.downSince.Format(time.RFC3339), errdefs.ErrUnavailable, h.lastErr)
}

// run pings every HealthInterval while dockerd is up, and with backoff
// from one second to thirty while it is down.
func (h *health) run(ctx context.Context) {
	backoff := time.Second
	for {
		wait := h.c.opts.HealthInterval
		if !h.isUp() {
			wait = backoff
			backoff = min(backoff*2, 30*time.Second)
		} else {
			backoff = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-h.kick:
			t.Stop()
			continue
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_ = h.check(pctx)
		cancel()
	}
}
