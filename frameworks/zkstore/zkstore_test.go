package zkstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/mesolite/mesolite/detector/zktest"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/frameworks/storetest"
)

func open(t *testing.T, cfg Config) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = 4 * time.Second
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestConformance runs frameworks' Store suite on ZooKeeper: one path per
// directory the suite names, so reopening a directory finds its state.
func TestConformance(t *testing.T) {
	srv := zktest.Start(t)
	var mu sync.Mutex
	paths := map[string]string{}
	storetest.Run(t, func(t *testing.T, dir string) frameworks.Store {
		mu.Lock()
		p, ok := paths[dir]
		if !ok {
			p = fmt.Sprintf("/storetest/s%d", len(paths))
			paths[dir] = p
		}
		mu.Unlock()
		return open(t, Config{URL: srv.URL(p)})
	})
}

func TestEscape(t *testing.T) {
	for _, k := range []string{"web", "/prod/db", ".", "..", "a.b", "a b", "ünï", "100%", "ct:1:0:job:"} {
		n := escape(k)
		if strings.ContainsAny(n, "/ :") || n == "." || n == ".." {
			t.Errorf("escape(%q) = %q: not a znode name", k, n)
		}
		if back, err := unescape(n); err != nil || back != k {
			t.Errorf("unescape(escape(%q)) = %q, %v", k, back, err)
		}
	}
	if _, err := unescape("a%2"); !errors.Is(err, errdefs.ErrInvalid) {
		t.Errorf("a cut escape: %v", err)
	}
}

// TestLargeApply: more than one ZooKeeper packet holds goes through the
// journal and is all there afterwards; the journal is gone.
func TestLargeApply(t *testing.T) {
	srv := zktest.Start(t)
	s := open(t, Config{URL: srv.URL("/large")})
	defer s.Close()
	ctx := context.Background()
	var ops []frameworks.Op
	for i := range frameworks.MaxOpsPerApply {
		ops = append(ops, frameworks.Put("instances", fmt.Sprintf("web.%04d", i), bytes.Repeat([]byte{byte('a' + i%26)}, 3000)))
	}
	if err := s.Apply(ctx, ops...); err != nil {
		t.Fatal(err)
	}
	es, err := s.List(ctx, "instances")
	if err != nil || len(es) != frameworks.MaxOpsPerApply {
		t.Fatalf("List: %d entries, %v", len(es), err)
	}
	for i, e := range es {
		if e.Key != fmt.Sprintf("web.%04d", i) || len(e.Value) != 3000 || e.Value[0] != byte('a'+i%26) {
			t.Fatalf("entry %d: %s, %d bytes", i, e.Key, len(e.Value))
		}
	}
	// Two values at the limit: over a packet, through the journal too.
	big := bytes.Repeat([]byte("v"), frameworks.MaxValueBytes)
	if err := s.Apply(ctx, frameworks.Put("blobs", "a", big), frameworks.Put("blobs", "b", big), frameworks.Delete("instances", "web.0000")); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "blobs", "b"); err != nil || len(v) != len(big) {
		t.Fatalf("Get: %d bytes, %v", len(v), err)
	}
	if _, err := s.Get(ctx, "instances", "web.0000"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("deleted in a journaled Apply: %v", err)
	}
	if names, _, err := s.conn.Children("/large/" + txnDir); err != nil || len(names) != 0 {
		t.Fatalf("journals left: %v, %v", names, err)
	}
}

// TestJournalRecovery: a committed journal found at Open is completed, an
// uncommitted one dropped.
func TestJournalRecovery(t *testing.T) {
	srv := zktest.Start(t)
	s := open(t, Config{URL: srv.URL("/recover")})
	ctx := context.Background()
	write := func(name string, ops []journalOp, commit bool) {
		t.Helper()
		b, _ := json.Marshal(ops)
		dir := "/recover/" + txnDir + "/" + name
		for _, p := range []string{dir, chunkPath(dir, 0)} {
			data := []byte{}
			if p != dir {
				data = b
			}
			if _, err := s.conn.Create(p, data, 0, zk.WorldACL(zk.PermAll)); err != nil {
				t.Fatal(err)
			}
		}
		if commit {
			if _, err := s.conn.Create(dir+"/"+commitName, nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Apply(ctx, frameworks.Put("apps", "old", []byte("1"))); err != nil {
		t.Fatal(err)
	}
	write("j-0000000001", []journalOp{{Bucket: "apps", Key: "a", Value: []byte("A")}, {Bucket: "apps", Key: "old", Delete: true}}, true)
	write("j-0000000002", []journalOp{{Bucket: "apps", Key: "b", Value: []byte("B")}}, false)
	s.Close()

	s = open(t, Config{URL: srv.URL("/recover")})
	defer s.Close()
	es, err := s.List(ctx, "apps")
	if err != nil || len(es) != 1 || es[0].Key != "a" || string(es[0].Value) != "A" {
		t.Fatalf("after recovery: %v, %v", es, err)
	}
	if names, _, err := s.conn.Children("/recover/" + txnDir); err != nil || len(names) != 0 {
		t.Fatalf("journals left: %v, %v", names, err)
	}
}

// TestFence: once the fencing znode is gone (the leader's session ended),
// writes fail with ErrDeposed and change nothing; reads go on.
func TestFence(t *testing.T) {
	srv := zktest.Start(t)
	leader, _, err := zk.Connect([]string{srv.Addr}, 4*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer leader.Close()
	ctx := context.Background()
	if _, err := leader.Create("/fenced", nil, 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	node, err := leader.Create("/fenced/leader_", []byte("me"), zk.FlagEphemeral|zk.FlagSequence, zk.WorldACL(zk.PermAll))
	if err != nil {
		t.Fatal(err)
	}
	s := open(t, Config{URL: srv.URL("/fenced/state"), Fence: node})
	defer s.Close()
	if err := s.Apply(ctx, frameworks.Put("jobs", "a", []byte("1"))); err != nil {
		t.Fatalf("while leading: %v", err)
	}
	leader.Close() // the session ends: the ephemeral znode goes
	err = s.Apply(ctx, frameworks.Put("jobs", "a", []byte("2")), frameworks.Put("jobs", "b", []byte("2")))
	if !errors.Is(err, ErrDeposed) || !errors.Is(err, errdefs.ErrConflict) {
		t.Fatalf("after the fence went: %v, want ErrDeposed", err)
	}
	if v, err := s.Get(ctx, "jobs", "a"); err != nil || string(v) != "1" {
		t.Fatalf("a deposed write changed a: %q, %v", v, err)
	}
}

// TestUnavailable: with ZooKeeper gone, calls fail within the operation
// timeout with ErrUnavailable and a reason.
func TestUnavailable(t *testing.T) {
	srv := zktest.Start(t)
	s := open(t, Config{URL: srv.URL("/gone"), OpTimeout: time.Second})
	defer s.Close()
	srv.Stop()
	start := time.Now()
	_, err := s.Get(context.Background(), "jobs", "a")
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), srv.Addr) {
		t.Fatalf("Get without ZooKeeper: %v, want ErrUnavailable naming the server", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
	if err := s.Apply(context.Background(), frameworks.Put("jobs", "a", nil)); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("Apply without ZooKeeper: %v", err)
	}
}

// TestOversizedRead: a znode over the value limit (not written by a
// Store) is refused, not handed on.
func TestOversizedRead(t *testing.T) {
	srv := zktest.Start(t)
	s := open(t, Config{URL: srv.URL("/big")})
	defer s.Close()
	if err := s.Apply(context.Background(), frameworks.Put("apps", "x", []byte("1"))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.conn.Set("/big/apps/x", bytes.Repeat([]byte("v"), frameworks.MaxValueBytes+1), -1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(context.Background(), "apps", "x"); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("Get of an oversized znode: %v", err)
	}
	if _, err := s.List(context.Background(), "apps"); err == nil {
		t.Fatal("List of an oversized znode succeeded")
	}
}

// TestDigestACL: with credentials in the URL the state is readable by
// them only.
func TestDigestACL(t *testing.T) {
	srv := zktest.Start(t)
	s := open(t, Config{URL: "zk://fw:s3cret@" + srv.Addr + "/private"})
	defer s.Close()
	ctx := context.Background()
	if err := s.Apply(ctx, frameworks.Put("apps", "web", []byte(`{"env":{"TOKEN":"x"}}`))); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "apps", "web"); err != nil || len(v) == 0 {
		t.Fatalf("with the credentials: %q, %v", v, err)
	}
	other, _, err := zk.Connect([]string{srv.Addr}, 4*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, _, err := other.Get("/private/apps/web"); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("read without the credentials: %v, want ErrNoAuth", err)
	}
	if _, err := other.Create("/private/apps/evil", nil, 0, zk.WorldACL(zk.PermAll)); !errors.Is(err, zk.ErrNoAuth) {
		t.Fatalf("write without the credentials: %v, want ErrNoAuth", err)
	}
}
