package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
)

// binary is the mesolite binary the tests build once and run as real
// processes talking over loopback, with mesolite-executor beside it as
// make build leaves them: agents run their inits and built-in executors
// from the helper.
var binary string

func TestMain(m *testing.M) {
	// MESOLITE_E2E_BINARY runs the tests against a binary built elsewhere,
	// for machines without a Go toolchain (the cgroup v2 VM of
	// scripts/test-cgroupv2.sh).
	if binary = os.Getenv("MESOLITE_E2E_BINARY"); binary != "" {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "mesolite-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "mesolite")
	for _, pkg := range []string{"mesolite", "mesolite-executor"} {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, pkg), "../cmd/"+pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build "+pkg+":", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running mesolite process whose output is kept for failures.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *testutil.SyncBuffer
	done chan struct{}
}

func start(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &testutil.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), "MESOS_LOGGING_LEVEL=DEBUG")
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", name, p.out.String())
		}
	})
	return p
}

func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) kill9() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// cluster is a master and an agent on free loopback ports.
type cluster struct {
	master, agent         *proc
	masterAddr, agentAddr string
	masterDir, agentDir   string
	agentArgs             []string
}

func startMaster(t testing.TB) (*proc, string, string) {
	t.Helper()
	port := testutil.FreePort(t)
	dir := t.TempDir()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	m := start(t, "master", "master", "--ip=127.0.0.1", "--port="+strconv.Itoa(port), "--work_dir="+dir)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		resp, err := http.Get("http://" + addr + "/master/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "master healthy at %s", addr)
	return m, addr, dir
}

func (c *cluster) startAgent(t testing.TB) {
	t.Helper()
	port, _ := strconv.Atoi(strings.TrimPrefix(c.agentAddr, "127.0.0.1:"))
	args := append([]string{"agent", "--master=" + c.masterAddr, "--ip=127.0.0.1", "--port=" + strconv.Itoa(port),
		"--work_dir=" + c.agentDir, "--resources=cpus:2;mem:1024;disk:1024;ports:[31000-31100]", "--registration_backoff_factor=100ms"}, c.agentArgs...)
	c.agent = start(t, "agent", args...)
	c.waitAgents(t, 1)
}

func (c *cluster) waitAgents(t testing.TB, n int) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, 50*time.Millisecond, func() bool {
		var st struct {
			Slaves []struct {
				Active bool `json:"active"`
			} `json:"slaves"`
		}
		if err := getJSON("http://"+c.masterAddr+"/master/state", &st); err != nil {
			return false
		}
		active := 0
		for _, s := range st.Slaves {
			if s.Active {
				active++
			}
		}
		return active >= n
	}, "%d active agent(s) at the master", n)
}

func startCluster(t testing.TB, agentArgs ...string) *cluster {
	t.Helper()
	c := &cluster{agentArgs: agentArgs}
	c.master, c.masterAddr, c.masterDir = startMaster(t)
	c.agentAddr = "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	c.agentDir = t.TempDir()
	// Executors outlive their agent by design (a restarted agent recovers
	// them); when the test ends they must not. Registered before the
	// agent starts, so it runs after the agent stopped.
	t.Cleanup(func() {
		for _, pid := range executorsUnder(c.agentDir) {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		removeContainersOf(c.agentDir)
	})
	c.startAgent(t)
	return c
}

func getJSON(url string, v any) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", url, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// mesolite runs a client command to completion and returns its output and
// exit code.
func mesolite(t *testing.T, timeout time.Duration, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run mesolite %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return string(out), code
}

// getJSONAccept is getJSON asking for JSON explicitly (directory indexes).
func getJSONAccept(url string, v any) error {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// removeContainersOf removes the Docker containers an agent on workDir
// made (its owner label), running or exited: the agent keeps exited ones
// for --docker_remove_delay, longer than any test.
func removeContainersOf(workDir string) {
	if _, err := exec.LookPath("docker"); err != nil {
		return
	}
	out, err := exec.Command("docker", "ps", "-aq", "--filter", "label=org.mesolite.owner="+workDir).Output()
	if err != nil {
		return
	}
	if ids := strings.Fields(string(out)); len(ids) > 0 {
		_ = exec.Command("docker", append([]string{"rm", "-f", "-v"}, ids...)...).Run()
	}
}
