package master

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/detector/zktest"
	"github.com/mesolite/mesolite/internal/testutil"
)

func TestZooKeeperLeaderElection(t *testing.T) {
	zk := zktest.Start(t)
	cfg := func() Config {
		c := DefaultConfig()
		c.IP, c.Hostname = "127.0.0.1", "127.0.0.1"
		c.ZK = zk.URL("/mesolite/ha")
		c.ZKSessionTimeout = 4 * time.Second
		c.Logger = testLogger(t)
		c.AllocationInterval = 20 * time.Millisecond
		return c
	}
	m1, base1, stop1 := runMaster(t, cfg())
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, m1.isLeader, "first master elected")
	m2, base2, _ := runMaster(t, cfg())
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, func() bool {
		m2.mu.Lock()
		defer m2.mu.Unlock()
		return m2.leader.ID == m1.ID()
	}, "second master follows the first")
	if m2.isLeader() {
		t.Fatal("both masters lead")
	}
	u1, _ := url.Parse(base1)

	for _, path := range []string{"/api/v1/scheduler", "/api/v1/agent"} {
		status, _, hdr := post(t, base2+path, "application/json", []byte(`{}`), nil)
		if status != http.StatusTemporaryRedirect || hdr.Get("Location") != "//"+u1.Host+path {
			t.Fatalf("POST %s on the follower: %d Location %q, want 307 //%s%s", path, status, hdr.Get("Location"), u1.Host, path)
		}
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(base2 + "/master/redirect")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") != "//"+u1.Host {
		t.Fatalf("/master/redirect: %s %q", resp.Status, resp.Header.Get("Location"))
	}
	st := getJSON(t, base2+"/master/state")
	if st["leader"] != "master@"+u1.Host || st["elected"] != false {
		t.Fatalf("follower's state: leader %v elected %v", st["leader"], st["elected"])
	}
	li := st["leader_info"].(map[string]any)
	if li["id"] != m1.ID() {
		t.Fatalf("leader_info %v", li)
	}

	// The leader goes; the follower takes over and serves.
	stop1()
	testutil.Eventually(t, 20*time.Second, 20*time.Millisecond, m2.isLeader, "second master elected after the first left")
	sc := subscribeTo(t, base2, frameworkInfo("after-failover"), codec.JSON)
	if sc.fwID == "" {
		t.Fatal("no framework id from the new leader")
	}
	if st := getJSON(t, base2+"/metrics/snapshot"); st["master/elected"] != 1.0 {
		t.Fatalf("master/elected = %v", st["master/elected"])
	}
}
