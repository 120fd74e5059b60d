// Package loglevel moves a process's slog level for the operator APIs'
// SET_LOGGING_LEVEL, and moves it back after the duration asked for. The
// master and the agent each hold one Control over the LevelVar their
// logger was built with.
//
// Mesos's level is glog's verbosity: 0 is the default, higher is more
// verbose. Here 0 is the level the process started with (--logging_level),
// 1 is DEBUG, and each level above goes one slog level below DEBUG.
package loglevel

import (
	"log/slog"
	"sync"
	"time"
)

// MaxDuration bounds how long a level set through the API lasts, so a
// typo cannot leave a process logging at DEBUG for a century.
const MaxDuration = 30 * 24 * time.Hour

// Control moves one LevelVar. The zero value is a fixed level (Adjustable
// reports false) until Init gives it one; it is safe for concurrent use
// after Init.
type Control struct {
	mu     sync.Mutex
	v      *slog.LevelVar // nil: the level cannot be changed
	base   slog.Level
	revert *time.Timer
}

// Init makes v the level moved; its level now is the one reverted to.
// nil leaves the level fixed.
func (c *Control) Init(v *slog.LevelVar) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.v = v
	if v != nil {
		c.base = v.Level()
	}
}

// Adjustable reports whether Set can move the level.
func (c *Control) Adjustable() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.v != nil
}

// Get is the current level as Mesos's verbosity.
func (c *Control) Get() uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.v == nil {
		return 0
	}
	cur := c.v.Level()
	if cur == c.base || cur > slog.LevelDebug {
		return 0
	}
	return uint32(slog.LevelDebug-cur) + 1
}

// Set makes the level verbosity for d (at most MaxDuration), then reverts
// to the starting level; a later Set replaces an earlier one's revert. It
// does nothing on a fixed level.
func (c *Control) Set(verbosity uint32, d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.v == nil {
		return
	}
	d = min(d, MaxDuration)
	level := c.base
	if verbosity > 0 {
		// Capped far below where slog.Level would wrap.
		level = min(c.base, slog.LevelDebug-slog.Level(min(verbosity, 64)-1))
	}
	c.v.Set(level)
	if c.revert != nil {
		c.revert.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.revert == t {
			c.v.Set(c.base)
			c.revert = nil
		}
	})
	c.revert = t
}
