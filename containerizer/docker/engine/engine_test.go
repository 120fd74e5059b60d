package engine_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/go-connections/nat"
	"github.com/mesolite/mesolite/containerizer/docker/dockertest"
	"github.com/mesolite/mesolite/containerizer/docker/engine"
	"github.com/mesolite/mesolite/internal/testutil"
)

func randomID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

type fixture struct {
	eng   *engine.Engine
	owner string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dockertest.Images(t)
	eng, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close() })
	f := &fixture{eng: eng, owner: "enginetest-" + randomID(t)}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cs, _ := eng.List(ctx, map[string]string{engine.LabelOwner: f.owner})
		for _, c := range cs {
			_ = eng.Remove(ctx, c.ID)
		}
	})
	return f
}

// create makes a labelled container running cmd in image.
func (f *fixture) create(t *testing.T, image string, cmd []string, mutate func(*container.Config, *container.HostConfig)) string {
	t.Helper()
	name := engine.ContainerName(randomID(t))
	cfg := &container.Config{
		Image:  image,
		Cmd:    cmd,
		Labels: map[string]string{engine.LabelOwner: f.owner},
	}
	hc := &container.HostConfig{NetworkMode: "none"}
	if mutate != nil {
		mutate(cfg, hc)
	}
	if _, err := f.eng.Create(context.Background(), name, cfg, hc, nil); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestRunAttachWait(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tests := []struct {
		name       string
		image      string
		cmd        []string
		wantOut    string
		wantErrOut string
		wantCode   int
	}{
		{"echo", dockertest.BusyboxImage, []string{"sh", "-c", "echo out; echo err >&2"}, "out\n", "err\n", 0},
		{"exit code", dockertest.BusyboxImage, []string{"sh", "-c", "exit 7"}, "", "", 7},
		{"image entrypoint", dockertest.EchoArgsImage, nil, "entrypoint: image-default-cmd\n", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := f.create(t, tt.image, tt.cmd, nil)
			var out, errOut testutil.SyncBuffer
			done, err := f.eng.Attach(ctx, name, false, &out, &errOut)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.eng.Start(ctx, name); err != nil {
				t.Fatal(err)
			}
			x, err := f.eng.Wait(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Errorf("attach: %v", err)
			}
			if x.Code != tt.wantCode || x.OOMKilled {
				t.Errorf("exit %+v, want code %d", x, tt.wantCode)
			}
			if out.String() != tt.wantOut || errOut.String() != tt.wantErrOut {
				t.Errorf("stdout %q stderr %q, want %q %q", out.String(), errOut.String(), tt.wantOut, tt.wantErrOut)
			}
		})
	}
}

func TestStopFollowsGracePeriod(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tests := []struct {
		name     string
		script   string
		grace    time.Duration
		wantOut  string
		minTaken time.Duration
		wantCode int
	}{
		// The handler runs and the container exits on its own within the grace period.
		{"handles TERM", "trap 'echo got TERM; exit 3' TERM; echo ready; while true; do sleep 0.1; done", 5 * time.Second, "got TERM", 0, 3},
		// TERM ignored: SIGKILL comes only once the grace period has passed.
		{"ignores TERM", "trap 'echo ignoring TERM' TERM; echo ready; while true; do sleep 0.1; done", 1500 * time.Millisecond, "ignoring TERM", 1500 * time.Millisecond, 137},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := f.create(t, dockertest.BusyboxImage, []string{"sh", "-c", tt.script}, nil)
			var out testutil.SyncBuffer
			done, err := f.eng.Attach(ctx, name, false, &out, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if err := f.eng.Start(ctx, name); err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool { return strings.Contains(out.String(), "ready") }, "container ready")
			start := time.Now()
			if err := f.eng.Stop(ctx, name, "", tt.grace); err != nil {
				t.Fatal(err)
			}
			taken := time.Since(start)
			<-done
			x, err := f.eng.ExitOf(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if taken < tt.minTaken {
				t.Errorf("stopped after %s, before the grace period %s", taken, tt.minTaken)
			}
			if x.Code != tt.wantCode {
				t.Errorf("exit code %d, want %d", x.Code, tt.wantCode)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output %q lacks %q", out.String(), tt.wantOut)
			}
		})
	}
}

func TestOOMKilled(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	name := f.create(t, dockertest.BusyboxImage, []string{"sh", "-c", "head -c 200m /dev/zero | tail"}, func(_ *container.Config, hc *container.HostConfig) {
		hc.Memory = 32 << 20
		hc.MemorySwap = 32 << 20
	})
	if err := f.eng.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	x, err := f.eng.Wait(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if !x.OOMKilled || x.MemoryLimit != 32<<20 {
		t.Errorf("exit %+v, want OOMKilled with a 32 MiB limit", x)
	}
}

func TestBridgePortMapping(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	port := testutil.FreePort(t)
	name := f.create(t, dockertest.HTTPImage, nil, func(cfg *container.Config, hc *container.HostConfig) {
		cfg.ExposedPorts = nat.PortSet{"8080/tcp": {}}
		hc.NetworkMode = "bridge"
		hc.PortBindings = nat.PortMap{"8080/tcp": {{HostIP: "127.0.0.1", HostPort: strconv.Itoa(port)}}}
	})
	if err := f.eng.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	ins, err := f.eng.Inspect(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	if v4, _ := engine.IPAddresses(ins); len(v4) != 1 {
		t.Errorf("bridge addresses %v, want one IPv4", v4)
	}
	var body string
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK
	}, "HTTP on 127.0.0.1:%d", port)
	if body != dockertest.HTTPBody {
		t.Errorf("body %q, want %q", body, dockertest.HTTPBody)
	}
	if err := f.eng.Stop(ctx, name, "", 0); err != nil {
		t.Fatal(err)
	}
}

func TestListByLabelOnlyOurs(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ours := f.create(t, dockertest.BusyboxImage, []string{"true"}, nil)
	other := f.create(t, dockertest.BusyboxImage, []string{"true"}, func(cfg *container.Config, _ *container.HostConfig) {
		cfg.Labels = map[string]string{engine.LabelOwner: f.owner + "-other"}
	})
	t.Cleanup(func() { _ = f.eng.Remove(context.Background(), other) })
	cs, err := f.eng.List(ctx, map[string]string{engine.LabelOwner: f.owner})
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Names[0] != "/"+ours {
		t.Errorf("listed %v, want only %s", cs, ours)
	}
	if err := f.eng.Remove(ctx, ours); err != nil {
		t.Fatal(err)
	}
	if err := f.eng.Remove(ctx, ours); err != nil {
		t.Errorf("removing a removed container: %v", err)
	}
}

func TestPullFailureReportsEngineMessage(t *testing.T) {
	f := newFixture(t)
	var log bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A registry on a closed loopback port: fails fast, sends nothing off the host.
	err := f.eng.Pull(ctx, "127.0.0.1:1/mesolite/nope:latest", engine.PullOptions{Log: &log})
	if err == nil {
		t.Fatal("pull from a closed port succeeded")
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("error %q does not name the registry", err)
	}
	ok, err := f.eng.ImageExists(ctx, dockertest.BusyboxImage)
	if err != nil || !ok {
		t.Errorf("ImageExists(busybox) = %v, %v", ok, err)
	}
	ok, err = f.eng.ImageExists(ctx, "mesolite-test/absent:latest")
	if err != nil || ok {
		t.Errorf("ImageExists(absent) = %v, %v", ok, err)
	}
}

func TestUnreachableDaemon(t *testing.T) {
	eng, err := engine.New("unix:///nonexistent/mesolite-test-docker.sock")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = eng.Ping(ctx)
	if !engine.IsUnavailable(err) {
		t.Fatalf("ping of a missing socket: %v, want unavailable", err)
	}
	if !strings.Contains(err.Error(), "/nonexistent/mesolite-test-docker.sock") {
		t.Errorf("error %q does not name the socket", err)
	}
	if _, err := eng.ImageExists(ctx, "x"); !engine.IsUnavailable(err) {
		t.Errorf("ImageExists: %v, want unavailable", err)
	}
}

// TestExec runs commands inside a running container: output, exit status,
// environment and working directory, and a refusal for a stopped one.
func TestExec(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	name := f.create(t, dockertest.BusyboxImage, []string{"sleep", "60"}, nil)
	if err := f.eng.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	var out, errOut testutil.SyncBuffer
	code, err := f.eng.Exec(ctx, name, engine.ExecOptions{
		Cmd: []string{"sh", "-c", "echo $GREETING from $(pwd); echo oops >&2; exit 3"}, Env: []string{"GREETING=hello"}, Dir: "/tmp",
		Stdout: &out, Stderr: &errOut,
	})
	if err != nil || code != 3 || out.String() != "hello from /tmp\n" || errOut.String() != "oops\n" {
		t.Fatalf("exec: code %d err %v stdout %q stderr %q", code, err, out.String(), errOut.String())
	}
	if code, err := f.eng.Exec(ctx, name, engine.ExecOptions{Cmd: []string{"true"}}); err != nil || code != 0 {
		t.Fatalf("exec true: %d %v", code, err)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := f.eng.Exec(short, name, engine.ExecOptions{Cmd: []string{"sleep", "30"}}); err == nil {
		t.Fatal("an exec that outlived its context returned no error")
	}
	if err := f.eng.Stop(ctx, name, "SIGKILL", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.eng.Exec(ctx, name, engine.ExecOptions{Cmd: []string{"true"}}); err == nil {
		t.Fatal("exec in a stopped container succeeded")
	}
}
