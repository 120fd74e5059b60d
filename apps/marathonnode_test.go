package apps_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/internal/testutil"
)

// TestMarathonNodeClient drives the apps service with npm's marathon-node
// (vendored with its lock file in testdata/marathon-node), a client written
// against Marathon itself: testdata/marathon-node/drive.js creates, scales,
// restarts, kills with scale, reads versions, tasks, the queue and the
// event stream, and destroys, as its users do.
func TestMarathonNodeClient(t *testing.T) {
	node, err := exec.LookPath("node")
	testutil.Require(t, err == nil, "node is not installed: the marathon-node client test needs Node.js")
	dir, err := filepath.Abs("testdata/marathon-node")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "marathon-node")); err != nil {
		t.Fatalf("testdata/marathon-node/node_modules is not there (run npm ci in %s): %v", dir, err)
	}
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{Hostname: "127.0.0.1"})
	s := startApps(t, c.Addr, t.TempDir())

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "drive.js")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "MARATHON_URL="+s.url)
	out, err := cmd.CombinedOutput()
	t.Logf("node drive.js:\n%s", out)
	if err != nil {
		t.Fatalf("marathon-node: %v", err)
	}
}
