package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/internal/testutil"
)

// TestPackageGraph keeps the helper lean: every command task starts it, and
// its start's CPU grows with what it links and initialises.
func TestPackageGraph(t *testing.T) {
	_, err := exec.LookPath("go")
	testutil.Require(t, err == nil, "no go command to list the packages")
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	heavy := []string{
		"github.com/docker/docker/", "github.com/distribution/", "github.com/prometheus/",
		"github.com/mesolite/mesolite/master", "github.com/mesolite/mesolite/agent", "github.com/mesolite/mesolite/webui",
		"github.com/mesolite/mesolite/apps", "github.com/mesolite/mesolite/jobs", "github.com/mesolite/mesolite/containerizer",
		"github.com/mesolite/mesolite/fetcher", "github.com/mesolite/mesolite/cli", "github.com/mesolite/mesolite/scheduler",
		"github.com/mesolite/mesolite/executor/docker",
	}
	for _, pkg := range strings.Fields(string(out)) {
		for _, h := range heavy {
			if strings.HasPrefix(pkg, h) {
				t.Errorf("mesolite-executor links %s", pkg)
			}
		}
	}
}

func TestCommands(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"version"}, &stdout, &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "mesolite ") {
		t.Errorf("version: %d %q", code, stdout.String())
	}
	for _, args := range [][]string{nil, {"agent"}, {"executor", "docker"}, {"executor"}} {
		stderr.Reset()
		if code := run(args, &stdout, &stderr); code != 2 || stderr.Len() == 0 {
			t.Errorf("%q: exit %d, stderr %q; want 2 and a word why", args, code, stderr.String())
		}
	}
}
