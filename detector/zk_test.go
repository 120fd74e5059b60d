package detector

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/detector/zktest"
	"github.com/mesolite/mesolite/errdefs"
)

// TestLeaderSaysWhyNone: without a leader, Leader says whether ZooKeeper
// did not answer or answered with no master elected.
func TestLeaderSaysWhyNone(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	d, err := New("zk://" + dead + "/mesos")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := d.Leader(ctx); err == nil || !strings.Contains(err.Error(), "did not answer") || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("ZooKeeper down: %v", err)
	}

	zk := zktest.Start(t)
	d2, err := New(zk.URL("/nobody"))
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel2()
	if _, err := d2.Leader(ctx2); err == nil || !strings.Contains(err.Error(), "no master is elected") {
		t.Fatalf("no master: %v", err)
	}
}
