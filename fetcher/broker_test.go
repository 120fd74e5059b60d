package fetcher

import (
	"context"
	"errors"
	"github.com/mesolite/mesolite/internal/testutil"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mesolite/mesolite/errdefs"
)

// TestAttackBrokerForeignKey: a process of the task user that got hold of
// the fetch child's --cache_fd socket speaks the broker protocol itself. It
// may lock and store the entries of the URIs of the request the child was
// started for, and nothing else: a lock, a read or an insert under the key
// of another URI (another framework's artifact in the same user's cache)
// is refused and logged, and that entry is never written.
func TestAttackBrokerForeignKey(t *testing.T) {
	base := t.TempDir()
	sandbox := filepath.Join(base, "sandbox")
	staged := stagingPrefix + "0a0b0c/data"
	if err := os.MkdirAll(filepath.Join(sandbox, filepath.Dir(staged)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sandbox, staged), []byte("evil payload"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := Config{CacheDir: filepath.Join(base, "cache"), CacheSize: DefaultCacheSize}
	own := "http://example.test/mine.tar.gz"
	victim := "http://example.test/theirs/tool.sh"
	req := Request{SandboxDir: sandbox, URIs: []URI{
		{Value: own, Cache: true},
		{Value: "http://example.test/uncached", Cache: false},
	}}

	var logBuf testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	agentEnd, childEnd, err := newBrokerPair()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		defer agentEnd.Close()
		serveBroker(ctx, agentEnd, cfg, req, log)
	}()
	defer func() {
		cancel()
		<-served
	}()

	// The fake child, on the other end of the socket pair.
	child, err := newBrokerClient(childEnd, filepath.Join(cfg.CacheDir, "shared"))
	if err != nil {
		t.Fatal(err)
	}
	defer child.conn.Close()
	forbidden := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, errdefs.ErrForbidden) {
			t.Fatalf("%s: got %v, want a refusal (forbidden)", what, err)
		}
	}
	theirs := cacheKey(victim)
	_, err = child.lock(ctx, theirs)
	forbidden("lock of another URI's key", err)
	_, err = child.use(ctx, theirs)
	forbidden("use of another URI's key", err)
	_, err = child.get(ctx, theirs)
	forbidden("get of another URI's key", err)
	forbidden("evict of another URI's key", child.evictCorrupt(ctx, theirs, strings.Repeat("0", 64), 0))
	_, err = child.lock(ctx, cacheKey("http://example.test/uncached"))
	forbidden("lock of an uncached URI's key", err)

	// Its own key works, and holding that lock opens no other.
	mine := cacheKey(own)
	unlock, err := child.lock(ctx, mine)
	if err != nil {
		t.Fatalf("lock of the request's own key: %v", err)
	}
	_, err = child.insert(ctx, theirs, nil, staged, &cacheEntry{URI: victim, Mode: 0o755})
	forbidden("insert under another URI's key", err)
	stored, err := child.insert(ctx, mine, nil, staged, &cacheEntry{URI: own, Mode: 0o644})
	if err != nil || !stored {
		t.Fatalf("insert under the request's own key: stored %v, %v", stored, err)
	}
	unlock()

	entries := filepath.Join(cfg.CacheDir, "shared", "entries")
	if _, err := os.Stat(filepath.Join(entries, mine)); err != nil {
		t.Fatalf("own entry not stored: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(entries, theirs)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("another URI's entry exists: %v", err)
	}
	if l := logBuf.String(); !strings.Contains(l, "level=ERROR") || !strings.Contains(l, theirs) {
		t.Fatalf("refusal not logged as an error:\n%s", l)
	}
	if n := strings.Count(logBuf.String(), "no URI of its request"); n != 1 {
		t.Fatalf("refusal logged %d times, want once", n)
	}
}

// TestRunAsRoundTrip: what startChild passes as --run_as is what the child
// takes, and uid 0 or junk is refused.
func TestRunAsRoundTrip(t *testing.T) {
	uid, gid, groups, err := parseRunAs(formatRunAs(&syscall.Credential{Uid: 65534, Gid: 65533, Groups: []uint32{1, 2, 65533}}))
	if err != nil || uid != 65534 || gid != 65533 || len(groups) != 3 || groups[2] != 65533 {
		t.Fatalf("got %d %d %v %v", uid, gid, groups, err)
	}
	if _, _, groups, err := parseRunAs("7:8"); err != nil || groups == nil || len(groups) != 0 {
		t.Fatalf("no groups: %v %v", groups, err)
	}
	for _, bad := range []string{"", "0:0", "0:5", "x:1", "1", "1:2:3:4", "1:2:a", "-1:2", "1:2:,"} {
		if _, _, _, err := parseRunAs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
