package loglevel

import (
	"log/slog"
	"testing"
	"time"
)

func TestControl(t *testing.T) {
	var fixed Control
	if fixed.Adjustable() || fixed.Get() != 0 {
		t.Fatalf("zero Control: adjustable %v, level %d", fixed.Adjustable(), fixed.Get())
	}
	fixed.Set(3, time.Hour) // no LevelVar: nothing to move, no panic

	v := new(slog.LevelVar)
	v.Set(slog.LevelInfo)
	var c Control
	c.Init(v)
	for _, tc := range []struct {
		verbosity uint32
		want      slog.Level
	}{
		{1, slog.LevelDebug},
		{3, slog.LevelDebug - 2},
		{1000, slog.LevelDebug - 63},
		{0, slog.LevelInfo},
	} {
		c.Set(tc.verbosity, time.Hour)
		if v.Level() != tc.want {
			t.Errorf("Set(%d): level %v, want %v", tc.verbosity, v.Level(), tc.want)
		}
		if want := min(tc.verbosity, 64); c.Get() != want {
			t.Errorf("Set(%d): Get() = %d, want %d", tc.verbosity, c.Get(), want)
		}
	}
	c.Set(2, 10*time.Millisecond)
	deadline := time.Now().Add(5 * time.Second)
	for v.Level() != slog.LevelInfo {
		if time.Now().After(deadline) {
			t.Fatalf("level %v never reverted to INFO", v.Level())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if c.Get() != 0 {
		t.Errorf("after the revert Get() = %d, want 0", c.Get())
	}
}
