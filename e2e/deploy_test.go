package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/containerizer/docker/dockertest"
	"github.com/mesolite/mesolite/internal/testutil"
)

// TestDockerImage builds the image of the repository's Dockerfile (on the
// busybox test base: no registry here) from the static binaries and runs a
// master and an agent from it with the seeds' docker run lines: host
// network, configuration in MESOS_* variables (some of them flags mesolite
// does not have, which it warns about), and a task run through them from
// the host.
func TestDockerImage(t *testing.T) {
	dockertest.Images(t)
	root, err := filepath.Abs("..") // tests run in their package's directory
	if err != nil {
		t.Fatal(err)
	}
	// The static build compiles the standard library without cgo the
	// first time: minutes on a busy machine.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	docker := func(args ...string) string {
		t.Helper()
		out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	name := "mesolite-test-" + hex.EncodeToString(suffix)
	image := "mesolite-test/mesolite:" + hex.EncodeToString(suffix)

	// The build context as `make static` leaves it: the Dockerfile, its
	// .dockerignore, bin/mesolite-static and bin/mesolite-executor-static.
	buildDir := t.TempDir()
	for bin, pkg := range map[string]string{"mesolite-static": "./cmd/mesolite", "mesolite-executor-static": "./cmd/mesolite-executor"} {
		static := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(buildDir, "bin", bin), pkg)
		static.Dir, static.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := static.CombinedOutput(); err != nil {
			t.Fatalf("static build of %s: %v\n%s", pkg, err, out)
		}
	}
	for _, f := range []string{"Dockerfile", ".dockerignore"} {
		data, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(buildDir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	docker("build", "-q", "--build-arg", "BASE="+dockertest.BusyboxImage, "-t", image, buildDir)
	t.Cleanup(func() { _ = exec.Command("docker", "rmi", "-f", image).Run() })
	if out := docker("run", "--rm", image, "version"); !strings.Contains(out, "mesolite") {
		t.Fatalf("mesolite version in the image: %q", out)
	}

	masterPort, agentPort := testutil.FreePort(t), testutil.FreePort(t)
	masterAddr := "127.0.0.1:" + strconv.Itoa(masterPort)
	run := func(role string, args ...string) {
		t.Helper()
		c := name + "-" + role
		t.Cleanup(func() {
			if t.Failed() {
				out, _ := exec.Command("docker", "logs", c).CombinedOutput()
				t.Logf("%s's log:\n%s", c, out)
			}
			_ = exec.Command("docker", "rm", "-f", "-v", c).Run()
		})
		docker(append(append([]string{"run", "-d", "--name", c, "--net=host"}, args...), image, role)...)
	}
	run("master", "-e", "MESOS_IP=127.0.0.1", "-e", "MESOS_HOSTNAME=127.0.0.1", "-e", "MESOS_PORT="+strconv.Itoa(masterPort),
		"-e", "MESOS_WORK_DIR=/var/lib/mesolite/master", "-e", "MESOS_REGISTRY=in_memory", "-e", "MESOS_LOG_DIR=/var/log/mesos", "-e", "MESOS_LOGBUFSECS=0")
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
		resp, err := http.Get("http://" + masterAddr + "/master/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "master in a container healthy at %s", masterAddr)
	if logs, _ := exec.Command("docker", "logs", name+"-master").CombinedOutput(); !strings.Contains(string(logs), "--logbufsecs") {
		t.Errorf("the master did not warn about MESOS_LOGBUFSECS, a Mesos flag without effect here:\n%s", logs)
	}

	// The documented line runs the agent --privileged with /sys/fs/cgroup
	// for the cgroups isolators; the dockerd of the test machines may
	// refuse --privileged (they run in containers themselves), so the
	// agent here isolates with posix/* only, which needs neither.
	run("agent", "-e", "MESOS_MASTER="+masterAddr, "-e", "MESOS_IP=127.0.0.1", "-e", "MESOS_HOSTNAME=127.0.0.1",
		"-e", "MESOS_PORT="+strconv.Itoa(agentPort), "-e", "MESOS_WORK_DIR=/var/lib/mesolite/agent",
		"-e", "MESOS_CONTAINERIZERS=mesos", "-e", "MESOS_RESOURCES=cpus:1;mem:256;disk:256;ports:[31000-31010]")
	c := &cluster{masterAddr: masterAddr}
	c.waitAgents(t, 1)

	out, code := mesolite(t, time.Minute, "run", "--master="+masterAddr, "--name=in-a-container",
		"--command=echo hello from the containerised agent; cat /proc/1/comm", "--resources=cpus:0.1;mem:32")
	if code != 0 || !strings.Contains(out, "hello from the containerised agent") || !strings.Contains(out, "TASK_FINISHED") {
		t.Fatalf("run through the containers: exit %d\n%s", code, out)
	}
	// The image ships the helper beside the binary, and the agent uses it.
	if logs, _ := exec.Command("docker", "logs", name+"-agent").CombinedOutput(); !strings.Contains(string(logs), "built-in executors run from mesolite-executor") {
		t.Errorf("the agent in the image does not run its executors from /usr/bin/mesolite-executor:\n%s", logs)
	}
}

// TestSystemdUnits checks deploy/systemd's units with systemd-analyze, each
// pointed at a real binary.
func TestSystemdUnits(t *testing.T) {
	_, err := exec.LookPath("systemd-analyze")
	testutil.Require(t, err == nil, "systemd-analyze is not installed")
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	units, err := filepath.Glob(filepath.Join(root, "deploy", "systemd", "*.service"))
	if err != nil || len(units) != 4 {
		t.Fatalf("units %v (%v), want master, agent, apps and jobs", units, err)
	}
	dir := t.TempDir()
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if !strings.Contains(text, "Restart=always") {
			t.Errorf("%s does not restart", filepath.Base(u))
		}
		if strings.Contains(u, "agent") && !strings.Contains(text, "KillMode=process") {
			t.Errorf("%s would kill the tasks when the agent stops", filepath.Base(u))
		}
		path := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "/usr/bin/mesolite", binary)), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("systemd-analyze verify %s: %v\n%s", filepath.Base(u), err, out)
		}
	}
}
