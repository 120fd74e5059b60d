package scheduler_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/mesolite/mesolite/master"
	"github.com/mesolite/mesolite/scheduler"
)

// realMaster runs a master in this process, without authentication.
func realMaster(t *testing.T) string {
	t.Helper()
	cfg := master.DefaultConfig()
	cfg.IP, cfg.Hostname, cfg.WorkDir = "127.0.0.1", "127.0.0.1", t.TempDir()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := master.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

// TestReadyWhenSubscribeReturns: once Subscribe has returned, the client
// knows its framework id and stream and takes calls, before the caller has
// read SUBSCRIBED from Events (a framework reconciles first thing). It
// used to record them only when its event loop got to the stream, so a
// call made at once could fail as "not subscribed" and the id read empty.
func TestReadyWhenSubscribeReturns(t *testing.T) {
	addr := realMaster(t)
	for i := range 20 {
		ctx, cancel := context.WithCancel(context.Background())
		c, err := scheduler.Subscribe(ctx, testConfig(addr))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		id, sid := c.FrameworkID(), c.StreamID()
		err = c.Reconcile(ctx)
		c.Close()
		cancel()
		if id == "" || sid == "" {
			t.Fatalf("subscription %d: framework id %q, stream id %q right after Subscribe", i, id, sid)
		}
		if err != nil {
			t.Fatalf("subscription %d: RECONCILE right after Subscribe: %v", i, err)
		}
	}
}
