package docker_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dockercontainer "github.com/docker/docker/api/types/container"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/docker"
	"github.com/mesolite/mesolite/containerizer/docker/dockertest"
	"github.com/mesolite/mesolite/containerizer/docker/engine"
	"github.com/mesolite/mesolite/errdefs"
	dockerexec "github.com/mesolite/mesolite/executor/docker"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

// The test binary doubles as the docker executor, as the agent binary does
// with `mesolite executor docker`.
const executorEnv = "MESOLITE_TEST_DOCKER_EXECUTOR"

func TestMain(m *testing.M) {
	if os.Getenv(executorEnv) == "1" {
		os.Exit(dockerexec.Main(context.Background(), os.Args[1:]))
	}
	os.Exit(m.Run())
}

func randomID(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

type harness struct {
	cz    *docker.Containerizer
	eng   *engine.Engine
	owner string
	opts  docker.Options
}

func newHarness(t testing.TB, mutate func(*docker.Options)) *harness {
	t.Helper()
	dockertest.Images(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts := docker.DefaultOptions()
	opts.Owner = "dockertest-" + randomID(t)
	opts.PublishIP = dockertest.LoopbackIP
	opts.ExecutorCommand = []string{self}
	opts.Logger = testLogger(t)
	if mutate != nil {
		mutate(&opts)
	}
	h := &harness{owner: opts.Owner, opts: opts}
	h.cz = newContainerizer(t, opts)
	h.eng = h.cz.Engine()
	t.Cleanup(func() { h.removeAll(t) })
	return h
}

func newContainerizer(t testing.TB, opts docker.Options) *docker.Containerizer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cz, err := docker.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return cz
}

func (h *harness) removeAll(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eng, err := engine.New("")
	if err != nil {
		return
	}
	defer eng.Close()
	cs, _ := eng.List(ctx, map[string]string{engine.LabelOwner: h.owner})
	for _, c := range cs {
		_ = eng.Remove(ctx, c.ID)
	}
}

type testWriter struct {
	mu sync.Mutex
	t  testing.TB
	ok bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.ok {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// testLogger logs into the test's output until it ends (goroutines of the
// containerizer may outlive it).
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t, ok: true}
	t.Cleanup(func() {
		w.mu.Lock()
		w.ok = false
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func exec(name string, args ...string) error {
	out, err := osexec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %w: %s", name, args, err, out)
	}
	return nil
}

func scalar(name string, v float64) *mesos.Resource {
	return &mesos.Resource{Name: proto.String(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(v)}}
}

func ports(begin, end uint64) *mesos.Resource {
	return &mesos.Resource{Name: proto.String("ports"), Type: mesos.Value_RANGES.Enum(), Ranges: &mesos.Value_Ranges{Range: []*mesos.Value_Range{{Begin: proto.Uint64(begin), End: proto.Uint64(end)}}}}
}

type taskOpt func(*mesos.TaskInfo)

func withPorts(hostPort, containerPort uint32, begin, end uint64) taskOpt {
	return func(t *mesos.TaskInfo) {
		di := t.Container.Docker
		di.PortMappings = append(di.PortMappings, &mesos.ContainerInfo_DockerInfo_PortMapping{HostPort: proto.Uint32(hostPort), ContainerPort: proto.Uint32(containerPort)})
		t.Resources = append(t.Resources, ports(begin, end))
	}
}

func withMem(mb float64) taskOpt {
	return func(t *mesos.TaskInfo) {
		for i, r := range t.Resources {
			if r.GetName() == "mem" {
				t.Resources[i] = scalar("mem", mb)
			}
		}
	}
}

func withGrace(d time.Duration) taskOpt {
	return func(t *mesos.TaskInfo) {
		t.KillPolicy = &mesos.KillPolicy{GracePeriod: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(d))}}
	}
}

func withParams(kv ...string) taskOpt {
	return func(t *mesos.TaskInfo) {
		for i := 0; i+1 < len(kv); i += 2 {
			t.Container.Docker.Parameters = append(t.Container.Docker.Parameters, &mesos.Parameter{Key: proto.String(kv[i]), Value: proto.String(kv[i+1])})
		}
	}
}

// dockerTask is a command task running image with cmd (nil: no command).
func dockerTask(id, image string, network mesos.ContainerInfo_DockerInfo_Network, cmd *mesos.CommandInfo, opts ...taskOpt) *mesos.TaskInfo {
	if cmd == nil {
		cmd = &mesos.CommandInfo{Shell: proto.Bool(false)}
	}
	t := &mesos.TaskInfo{
		Name:      proto.String(id),
		TaskId:    &mesos.TaskID{Value: proto.String(id)},
		AgentId:   &mesos.AgentID{Value: proto.String("fake-agent")},
		Resources: []*mesos.Resource{scalar("cpus", 0.1), scalar("mem", 64)},
		Command:   cmd,
		Container: &mesos.ContainerInfo{
			Type:   mesos.ContainerInfo_DOCKER.Enum(),
			Docker: &mesos.ContainerInfo_DockerInfo{Image: proto.String(image), Network: network.Enum()},
		},
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

func shell(s string) *mesos.CommandInfo {
	return &mesos.CommandInfo{Shell: proto.Bool(true), Value: proto.String(s)}
}

func framework(killing bool) *mesos.FrameworkInfo {
	fw := &mesos.FrameworkInfo{User: proto.String("root"), Name: proto.String("dockertest"), Id: &mesos.FrameworkID{Value: proto.String("fw-1")}}
	if killing {
		fw.Capabilities = []*mesos.FrameworkInfo_Capability{{Type: mesos.FrameworkInfo_Capability_TASK_KILLING_STATE.Enum()}}
	}
	return fw
}

// launched is one task launched through the containerizer and its executor.
type launched struct {
	cid     string
	sandbox string
	agent   *dockertest.FakeAgent
	handle  containerizer.Handle
	spec    containerizer.LaunchSpec
}

func (l *launched) stdout(t testing.TB) string {
	return readFile(t, filepath.Join(l.sandbox, "stdout"))
}
func (l *launched) stderr(t testing.TB) string {
	return readFile(t, filepath.Join(l.sandbox, "stderr"))
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

// specFor builds the LaunchSpec the agent would for a command task.
func specFor(t testing.TB, task *mesos.TaskInfo, fw *mesos.FrameworkInfo) (containerizer.LaunchSpec, *dockertest.FakeAgent) {
	t.Helper()
	cid := "c" + randomID(t)
	dir := t.TempDir()
	for _, f := range []string{"stdout", "stderr"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	agent := dockertest.NewFakeAgent(t, fw, task, cid)
	env := append(agent.Env(dir), executorEnv+"=1", "PATH="+os.Getenv("PATH"))
	spec := containerizer.LaunchSpec{
		ContainerID: cid,
		Executor: &mesos.ExecutorInfo{
			ExecutorId: &mesos.ExecutorID{Value: task.TaskId.Value},
			Command:    &mesos.CommandInfo{Value: proto.String("executor")},
			Container:  task.GetContainer(),
		},
		Task:       task,
		Framework:  fw,
		SandboxDir: dir,
		Env:        env,
		Resources:  task.GetResources(),
		StdoutPath: filepath.Join(dir, "stdout"),
		StderrPath: filepath.Join(dir, "stderr"),
	}
	return spec, agent
}

func (h *harness) launch(t testing.TB, task *mesos.TaskInfo, fw *mesos.FrameworkInfo) *launched {
	t.Helper()
	spec, agent := specFor(t, task, fw)
	handle, err := h.cz.Launch(context.Background(), spec)
	if err != nil {
		t.Fatalf("launch: %v", err)
	}
	l := &launched{cid: spec.ContainerID, sandbox: spec.SandboxDir, agent: agent, handle: handle, spec: spec}
	t.Cleanup(func() { _ = h.cz.Destroy(context.Background(), l.cid) })
	return l
}

// finish waits for the executor to end and destroys the container, as the
// agent does.
func (h *harness) finish(t testing.TB, l *launched) containerizer.Termination {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	term, err := h.cz.Wait(ctx, l.cid)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	if err := h.cz.Destroy(ctx, l.cid); err != nil {
		t.Fatalf("destroy: %v", err)
	}
	return term
}

const waitLong = 60 * time.Second

func TestBridgeNetworkingAndPortMapping(t *testing.T) {
	h := newHarness(t, nil)
	port := testutil.FreePort(t)
	task := dockerTask("web", dockertest.HTTPImage, mesos.ContainerInfo_DockerInfo_BRIDGE, nil, withPorts(uint32(port), 8080, uint64(port), uint64(port)))
	l := h.launch(t, task, framework(true))
	running := l.agent.WaitState(t, mesos.TaskState_TASK_RUNNING, waitLong)
	nis := running.GetContainerStatus().GetNetworkInfos()
	if len(nis) != 1 || len(nis[0].GetIpAddresses()) == 0 {
		t.Fatalf("container_status %v: want the bridge address", running.GetContainerStatus())
	}
	ip := nis[0].GetIpAddresses()[0].GetIpAddress()
	if ip == "" || strings.HasPrefix(ip, "127.") {
		t.Errorf("task address %q, want one on the docker bridge", ip)
	}
	if pm := nis[0].GetPortMappings(); len(pm) != 1 || pm[0].GetHostPort() != uint32(port) || pm[0].GetContainerPort() != 8080 {
		t.Errorf("port mappings %v, want %d->8080", pm, port)
	}
	if len(running.GetData()) == 0 || !strings.Contains(string(running.GetData()), l.cid) {
		t.Errorf("TASK_RUNNING data lacks the docker inspect JSON")
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
	ins, err := h.eng.Inspect(context.Background(), engine.ContainerName(l.cid))
	if err != nil {
		t.Fatal(err)
	}
	if b := ins.HostConfig.PortBindings["8080/tcp"]; len(b) != 1 || b[0].HostIP != "127.0.0.1" {
		t.Errorf("port published on %v, want 127.0.0.1 only", b)
	}
	for k, want := range map[string]string{engine.LabelOwner: h.owner, engine.LabelContainerID: l.cid, engine.LabelTaskID: "web", engine.LabelAgentID: "fake-agent", engine.LabelFrameworkID: "fw-1"} {
		if got := ins.Config.Labels[k]; got != want {
			t.Errorf("label %s=%q, want %q", k, got, want)
		}
	}
	usage, err := h.cz.Usage(context.Background(), l.cid)
	if err != nil {
		t.Fatal(err)
	}
	if usage.GetMemLimitBytes() != 64<<20 || usage.GetCpusLimit() < 0.09 {
		t.Errorf("usage %v: want the 64 MB limit and 0.1 cpus", usage)
	}
	l.agent.Kill(nil)
	l.agent.WaitState(t, mesos.TaskState_TASK_KILLED, waitLong)
	h.finish(t, l)
}

func TestCommandSemantics(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name       string
		image      string
		cmd        *mesos.CommandInfo
		opts       []taskOpt
		wantOut    []string
		wantErrOut string
	}{
		{"no value runs the image entrypoint and cmd", dockertest.EchoArgsImage, &mesos.CommandInfo{Shell: proto.Bool(false)}, nil,
			[]string{"entrypoint: image-default-cmd\n"}, ""},
		{"shell=false passes value and arguments to the entrypoint", dockertest.EchoArgsImage,
			&mesos.CommandInfo{Shell: proto.Bool(false), Value: proto.String("hello"), Arguments: []string{"big", "world"}}, nil,
			[]string{"entrypoint: hello big world\n"}, ""},
		{"shell=false with arguments only", dockertest.EchoArgsImage,
			&mesos.CommandInfo{Shell: proto.Bool(false), Arguments: []string{"just", "args"}}, nil,
			[]string{"entrypoint: just args\n"}, ""},
		{"shell=true overrides the entrypoint", dockertest.EchoArgsImage, shell("echo from-shell"), nil,
			[]string{"from-shell\n"}, ""},
		{"environment and sandbox", dockertest.BusyboxImage,
			&mesos.CommandInfo{Value: proto.String(`echo "task=$MESOS_TASK_ID name=$MESOS_CONTAINER_NAME sandbox=$MESOS_SANDBOX mine=$MINE param=$PARAM"; echo to-stderr >&2; echo file > $MESOS_SANDBOX/written`),
				Environment: &mesos.Environment{Variables: []*mesos.Environment_Variable{{Name: proto.String("MINE"), Value: proto.String("yes")}}}},
			[]taskOpt{withParams("env", "PARAM=p1", "label", "team=infra")},
			[]string{"task=env-", "name=mesolite-c", "sandbox=/mnt/mesos/sandbox mine=yes param=p1\n"}, "to-stderr\n"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := fmt.Sprintf("env-%d", i)
			l := h.launch(t, dockerTask(id, tt.image, mesos.ContainerInfo_DockerInfo_NONE, tt.cmd, tt.opts...), framework(false))
			st := l.agent.WaitState(t, mesos.TaskState_TASK_FINISHED, waitLong)
			if st.GetMessage() != "Container exited with status 0" {
				t.Errorf("message %q", st.GetMessage())
			}
			if term := h.finish(t, l); term.ExitStatus != 0 {
				t.Errorf("executor wait status %d, want 0", term.ExitStatus)
			}
			out := l.stdout(t)
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout %q lacks %q", out, w)
				}
			}
			if tt.wantErrOut != "" && !strings.Contains(l.stderr(t), tt.wantErrOut) {
				t.Errorf("stderr %q lacks %q", l.stderr(t), tt.wantErrOut)
			}
			if strings.HasPrefix(tt.name, "environment") {
				if got := readFile(t, filepath.Join(l.sandbox, "written")); got != "file\n" {
					t.Errorf("file written to $MESOS_SANDBOX: %q", got)
				}
			}
			if got := l.agent.States(); len(got) != 3 || got[0] != mesos.TaskState_TASK_STARTING || got[1] != mesos.TaskState_TASK_RUNNING {
				t.Errorf("states %v, want STARTING, RUNNING, FINISHED", got)
			}
		})
	}
}

func TestExitStatusFailsTask(t *testing.T) {
	h := newHarness(t, nil)
	l := h.launch(t, dockerTask("fail", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("echo bye; exit 3")), framework(false))
	st := l.agent.WaitState(t, mesos.TaskState_TASK_FAILED, waitLong)
	if st.GetMessage() != "Container exited with status 3" || st.Reason != nil {
		t.Errorf("status %v, want message with status 3 and no reason", st)
	}
	h.finish(t, l)
}

func TestKillFollowsGracePeriod(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name        string
		killingCap  bool
		script      string
		grace       time.Duration
		minDuration time.Duration
		wantOut     string
	}{
		{"TERM ignored: SIGKILL after the grace period", true,
			"trap 'echo got TERM' TERM; echo ready; while true; do sleep 0.1; done", 1500 * time.Millisecond, 1500 * time.Millisecond, "got TERM"},
		{"TERM handled: exits within the grace period", false,
			"trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.1; done", 20 * time.Second, 0, "bye"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := h.launch(t, dockerTask(fmt.Sprintf("kill-%d", i), dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell(tt.script), withGrace(tt.grace)), framework(tt.killingCap))
			l.agent.WaitState(t, mesos.TaskState_TASK_RUNNING, waitLong)
			testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool { return strings.Contains(l.stdout(t), "ready") }, "task ready")
			start := time.Now()
			l.agent.Kill(nil)
			st := l.agent.WaitState(t, mesos.TaskState_TASK_KILLED, waitLong)
			took := time.Since(start)
			if took < tt.minDuration {
				t.Errorf("killed after %s, before the grace period %s", took, tt.minDuration)
			}
			if tt.grace > 5*time.Second && took > tt.grace/2 {
				t.Errorf("a task that exits on TERM took %s to be killed", took)
			}
			states := l.agent.States()
			hasKilling := false
			for _, s := range states {
				hasKilling = hasKilling || s == mesos.TaskState_TASK_KILLING
			}
			if hasKilling != tt.killingCap {
				t.Errorf("states %v: TASK_KILLING sent=%v, want %v (framework capability)", states, hasKilling, tt.killingCap)
			}
			h.finish(t, l)
			if !strings.Contains(l.stdout(t), tt.wantOut) {
				t.Errorf("stdout %q lacks %q", l.stdout(t), tt.wantOut)
			}
			_ = st
		})
	}
}

func TestOOMReportedWithReason(t *testing.T) {
	h := newHarness(t, nil)
	l := h.launch(t, dockerTask("oom", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("head -c 200m /dev/zero | tail"), withMem(32)), framework(false))
	st := l.agent.WaitState(t, mesos.TaskState_TASK_FAILED, waitLong)
	if st.GetReason() != mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY {
		t.Errorf("reason %v, want REASON_CONTAINER_LIMITATION_MEMORY (message %q)", st.GetReason(), st.GetMessage())
	}
	if !strings.Contains(st.GetMessage(), "32 MB") {
		t.Errorf("message %q does not give the limit", st.GetMessage())
	}
	if lt, hit := h.cz.Limitation(context.Background(), l.cid); !hit || lt.Reason != mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY {
		t.Errorf("Limitation() = %v, %v", lt, hit)
	}
	term := h.finish(t, l)
	if !term.Limitation || term.Reason != mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY {
		t.Errorf("termination %+v, want the memory limitation", term)
	}
}

func TestPortOutsideResourcesRefused(t *testing.T) {
	h := newHarness(t, nil)
	task := dockerTask("badport", dockertest.HTTPImage, mesos.ContainerInfo_DockerInfo_BRIDGE, nil, withPorts(31005, 8080, 31000, 31004))
	spec, _ := specFor(t, task, framework(false))
	_, err := h.cz.Launch(context.Background(), spec)
	if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "31005") || !strings.Contains(err.Error(), "[31000-31004]") {
		t.Fatalf("launch: %v, want ErrInvalid naming port 31005 and the range", err)
	}
	if _, err := h.eng.Inspect(context.Background(), engine.ContainerName(spec.ContainerID)); !engine.IsNotFound(err) {
		t.Errorf("a refused launch left a container: %v", err)
	}
	if ids, _ := h.cz.Containers(context.Background()); len(ids) != 0 {
		t.Errorf("containers %v after a refused launch", ids)
	}
}

func TestRefusedConfigurations(t *testing.T) {
	h := newHarness(t, nil)
	tests := []struct {
		name string
		task *mesos.TaskInfo
		is   error
		msg  string
	}{
		{"privileged", dockerTask("priv", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("true"), func(t *mesos.TaskInfo) { t.Container.Docker.Privileged = proto.Bool(true) }),
			errdefs.ErrForbidden, "--docker_allow_privileged"},
		{"unknown parameter", dockerTask("param", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("true"), withParams("frobnicate", "1")),
			errdefs.ErrInvalid, `"frobnicate" is not supported`},
		{"parameter owned by a field", dockerTask("net", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("true"), withParams("net", "host")),
			errdefs.ErrInvalid, "container.docker.network"},
		{"port mapping on host network", dockerTask("hostport", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_HOST, shell("true"), withPorts(31000, 80, 31000, 31000)),
			errdefs.ErrInvalid, "BRIDGE or USER"},
		{"volume out of the sandbox", dockerTask("vol", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("true"), func(t *mesos.TaskInfo) {
			t.Container.Volumes = []*mesos.Volume{{ContainerPath: proto.String("/data"), HostPath: proto.String("../../etc"), Mode: mesos.Volume_RW.Enum()}}
		}), errdefs.ErrInvalid, "inside the sandbox"},
		// Escapes from the container through dockerd, with the agent's
		// default --docker_allow_privileged=false and no allowances.
		{"host root bind-mounted", dockerTask("root", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("cat /host/etc/shadow"), func(t *mesos.TaskInfo) {
			t.Container.Volumes = []*mesos.Volume{{ContainerPath: proto.String("/host"), HostPath: proto.String("/"), Mode: mesos.Volume_RW.Enum()}}
		}), errdefs.ErrForbidden, "--docker_volume_allowed_paths"},
		{"docker socket through volume=", dockerTask("sock", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("true"), withParams("volume", "/var/run/docker.sock:/var/run/docker.sock")),
			errdefs.ErrForbidden, "--docker_volume_allowed_paths"},
		{"host device", dockerTask("dev", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("true"), withParams("device", "/dev/mem")),
			errdefs.ErrForbidden, "--docker_allowed_parameters=device"},
		{"host pid namespace", dockerTask("pid", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("true"), withParams("pid", "host")),
			errdefs.ErrForbidden, "--docker_allowed_parameters=pid"},
		{"capability", dockerTask("cap", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("true"), withParams("cap-add", "SYS_ADMIN")),
			errdefs.ErrForbidden, "--docker_allowed_parameters=cap-add"},
		{"another container's network", dockerTask("netns", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_USER, shell("true"), func(t *mesos.TaskInfo) {
			t.Container.NetworkInfos = []*mesos.NetworkInfo{{Name: proto.String("container:some-other-container")}}
		}), errdefs.ErrForbidden, "--docker_allowed_parameters=network-container"},
		{"another framework's named volume", dockerTask("namedvol", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("cat /data/*"), withParams("volume", "other-framework-data:/data")),
			errdefs.ErrForbidden, "--docker_allowed_parameters=named-volume"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, _ := specFor(t, tt.task, framework(false))
			_, err := h.cz.Launch(context.Background(), spec)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("launch: %v, want %v mentioning %q", err, tt.is, tt.msg)
			}
		})
	}
}

func TestOrphansCleanedForeignLeftAlone(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	run := func(name string, labels map[string]string) string {
		t.Helper()
		_, err := h.eng.Create(ctx, name, &dockercontainer.Config{Image: dockertest.BusyboxImage, Cmd: []string{"sleep", "3600"}, Labels: labels}, &dockercontainer.HostConfig{NetworkMode: "none"}, nil)
		if errors.Is(err, errdefs.ErrConflict) && labels == nil {
			// Somebody's own mesolite-foo: not ours to remove, use another name.
			name += "-" + randomID(t)
			_, err = h.eng.Create(ctx, name, &dockercontainer.Config{Image: dockertest.BusyboxImage, Cmd: []string{"sleep", "3600"}}, &dockercontainer.HostConfig{NetworkMode: "none"}, nil)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := h.eng.Start(ctx, name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = h.eng.Remove(context.Background(), name) })
		return name
	}
	orphan := engine.ContainerName("orphan-" + randomID(t))
	exited := engine.ContainerName("exited-" + randomID(t))
	otherAgent := engine.ContainerName("other-" + randomID(t))
	run(orphan, map[string]string{engine.LabelOwner: h.owner, engine.LabelContainerID: strings.TrimPrefix(orphan, engine.NamePrefix)})
	run(exited, map[string]string{engine.LabelOwner: h.owner, engine.LabelContainerID: strings.TrimPrefix(exited, engine.NamePrefix)})
	if err := h.eng.Stop(ctx, exited, "", 0); err != nil {
		t.Fatal(err)
	}
	run(otherAgent, map[string]string{engine.LabelOwner: h.owner + "-other", engine.LabelContainerID: "x"})
	foreign := run("mesolite-foo", nil)

	if err := h.cz.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{orphan, exited} {
		if _, err := h.eng.Inspect(ctx, name); !engine.IsNotFound(err) {
			t.Errorf("orphan %s still there: %v", name, err)
		}
	}
	for _, name := range []string{foreign, otherAgent} {
		ins, err := h.eng.Inspect(ctx, name)
		if err != nil || !ins.State.Running {
			t.Errorf("container %s not ours was touched: %v", name, err)
		}
	}
}

func TestKillOrphansOffLeavesThemRunning(t *testing.T) {
	h := newHarness(t, func(o *docker.Options) { o.KillOrphans = false })
	ctx := context.Background()
	name := engine.ContainerName("orphan-" + randomID(t))
	if _, err := h.eng.Create(ctx, name, &dockercontainer.Config{Image: dockertest.BusyboxImage, Cmd: []string{"sleep", "3600"}, Labels: map[string]string{engine.LabelOwner: h.owner}}, &dockercontainer.HostConfig{NetworkMode: "none"}, nil); err != nil {
		t.Fatal(err)
	}
	if err := h.eng.Start(ctx, name); err != nil {
		t.Fatal(err)
	}
	if err := h.cz.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if ins, err := h.eng.Inspect(ctx, name); err != nil || !ins.State.Running {
		t.Errorf("orphan stopped although --docker_kill_orphans=false: %v", err)
	}
}

func TestRecoverReattachesAfterAgentRestart(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	l := h.launch(t, dockerTask("survivor", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("trap 'exit 0' TERM; while true; do sleep 0.1; done")), framework(false))
	l.agent.WaitState(t, mesos.TaskState_TASK_RUNNING, waitLong)

	// A new containerizer for the same agent: what a restarted agent builds.
	cz2 := newContainerizer(t, h.opts)
	if err := cz2.Recover(ctx, []containerizer.Handle{l.handle}); err != nil {
		t.Fatal(err)
	}
	ids, _ := cz2.Containers(ctx)
	if len(ids) != 1 || ids[0] != l.cid {
		t.Fatalf("recovered %v, want [%s]", ids, l.cid)
	}
	if ins, err := h.eng.Inspect(ctx, engine.ContainerName(l.cid)); err != nil || !ins.State.Running {
		t.Fatalf("recovered container was treated as an orphan: %v", err)
	}
	l.agent.Kill(nil)
	l.agent.WaitState(t, mesos.TaskState_TASK_KILLED, waitLong)
	wctx, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	if _, err := cz2.Wait(wctx, l.cid); err != nil {
		t.Fatal(err)
	}
	if err := cz2.Destroy(wctx, l.cid); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveDelay(t *testing.T) {
	tests := []struct {
		name  string
		delay time.Duration
	}{
		{"removed at once", 0},
		{"kept, then removed", 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(o *docker.Options) { o.RemoveDelay = tt.delay })
			l := h.launch(t, dockerTask("rm", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("true")), framework(false))
			l.agent.WaitState(t, mesos.TaskState_TASK_FINISHED, waitLong)
			h.finish(t, l)
			name := engine.ContainerName(l.cid)
			_, err := h.eng.Inspect(context.Background(), name)
			if tt.delay == 0 {
				if !engine.IsNotFound(err) {
					t.Errorf("container still there after Destroy with no delay: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("container removed before the delay: %v", err)
			}
			testutil.Eventually(t, tt.delay+10*time.Second, 100*time.Millisecond, func() bool {
				_, err := h.eng.Inspect(context.Background(), name)
				return engine.IsNotFound(err)
			}, "exited container removed after the delay")
		})
	}
}

func TestUpdateChangesLimits(t *testing.T) {
	h := newHarness(t, func(o *docker.Options) { o.EnableCFS = true })
	ctx := context.Background()
	l := h.launch(t, dockerTask("upd", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("trap 'exit 0' TERM; while true; do sleep 0.1; done")), framework(false))
	l.agent.WaitState(t, mesos.TaskState_TASK_RUNNING, waitLong)
	ins, err := h.eng.Inspect(ctx, engine.ContainerName(l.cid))
	if err != nil {
		t.Fatal(err)
	}
	if hc := ins.HostConfig; hc.CPUShares != 102 || hc.Memory != 64<<20 || hc.MemorySwap != 64<<20 || hc.CPUQuota != 10000 || hc.CPUPeriod != 100000 {
		t.Errorf("limits shares=%d mem=%d swap=%d quota=%d period=%d", hc.CPUShares, hc.Memory, hc.MemorySwap, hc.CPUQuota, hc.CPUPeriod)
	}
	if err := h.cz.Update(ctx, l.cid, []*mesos.Resource{scalar("cpus", 2), scalar("mem", 128)}); err != nil {
		t.Fatal(err)
	}
	ins, err = h.eng.Inspect(ctx, engine.ContainerName(l.cid))
	if err != nil {
		t.Fatal(err)
	}
	if hc := ins.HostConfig; hc.CPUShares != 2048 || hc.Memory != 128<<20 || hc.CPUQuota != 200000 {
		t.Errorf("after update shares=%d mem=%d quota=%d", hc.CPUShares, hc.Memory, hc.CPUQuota)
	}
	l.agent.Kill(nil)
	l.agent.WaitState(t, mesos.TaskState_TASK_KILLED, waitLong)
	h.finish(t, l)
}

func TestCustomExecutorRunsInImage(t *testing.T) {
	tests := []struct {
		name    string
		script  string
		mem     float64
		wantOut string
		oom     bool
		status  int
	}{
		{"output and exit status", `echo "dir=$MESOS_DIRECTORY sandbox=$MESOS_SANDBOX agent=$MESOS_AGENT_ENDPOINT"; exit 2`, 64, "dir=/mnt/mesos/sandbox sandbox=/mnt/mesos/sandbox agent=127.0.0.1:", false, 2 << 8},
		{"OOM", "head -c 200m /dev/zero | tail", 32, "", true, 137 << 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			fw := framework(false)
			exInfo := &mesos.ExecutorInfo{
				ExecutorId: &mesos.ExecutorID{Value: proto.String("custom")},
				Command:    shell(tt.script),
				Resources:  []*mesos.Resource{scalar("cpus", 0.1), scalar("mem", tt.mem)},
				Container: &mesos.ContainerInfo{Type: mesos.ContainerInfo_DOCKER.Enum(),
					Docker: &mesos.ContainerInfo_DockerInfo{Image: proto.String(dockertest.BusyboxImage)}},
			}
			task := dockerTask("custom", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_HOST, nil)
			spec, _ := specFor(t, task, fw)
			spec.Task = nil
			spec.Executor = exInfo
			spec.Resources = exInfo.Resources
			handle, err := h.cz.Launch(context.Background(), spec)
			if err != nil {
				t.Fatal(err)
			}
			if handle.Containerizer != docker.Name || handle.ContainerID != spec.ContainerID {
				t.Errorf("handle %+v", handle)
			}
			l := &launched{cid: spec.ContainerID, sandbox: spec.SandboxDir}
			term := h.finish(t, l)
			if term.ExitStatus != tt.status || term.Limitation != tt.oom {
				t.Errorf("termination %+v, want status %d limitation %v", term, tt.status, tt.oom)
			}
			if tt.oom && term.Reason != mesos.TaskStatus_REASON_CONTAINER_LIMITATION_MEMORY {
				t.Errorf("reason %v", term.Reason)
			}
			if !strings.Contains(l.stdout(t), tt.wantOut) {
				t.Errorf("stdout %q lacks %q", l.stdout(t), tt.wantOut)
			}
		})
	}
}

func TestPullFailureFailsLaunch(t *testing.T) {
	h := newHarness(t, nil)
	var progress []string
	var mu sync.Mutex
	// A registry on a closed loopback port: nothing leaves the host.
	task := dockerTask("pull", "127.0.0.1:1/mesolite/absent:latest", mesos.ContainerInfo_DockerInfo_NONE, shell("true"))
	spec, _ := specFor(t, task, framework(false))
	spec.Progress = func(m string) {
		mu.Lock()
		progress = append(progress, m)
		mu.Unlock()
	}
	_, err := h.cz.Launch(context.Background(), spec)
	if !errors.Is(err, containerizer.ErrLaunchFailed) || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("launch: %v, want ErrLaunchFailed with the engine's message", err)
	}
	if !strings.Contains(readFile(t, spec.StderrPath), "Failed to pull image 127.0.0.1:1/mesolite/absent:latest") {
		t.Errorf("sandbox stderr %q lacks the pull failure", readFile(t, spec.StderrPath))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(progress) == 0 || !strings.HasPrefix(progress[0], "Pulling image") {
		t.Errorf("progress %v, want a pull message", progress)
	}
}

func TestForcePullOfLocalImageFails(t *testing.T) {
	h := newHarness(t, nil)
	// force_pull_image pulls even when the image is present; with no
	// registry reachable that must fail the launch, never run a stale image.
	task := dockerTask("force", "127.0.0.1:1/mesolite/forced:latest", mesos.ContainerInfo_DockerInfo_NONE, shell("true"), func(t *mesos.TaskInfo) {
		t.Container.Docker.ForcePullImage = proto.Bool(true)
	})
	ctx := context.Background()
	if err := exec("docker", "tag", dockertest.BusyboxImage, "127.0.0.1:1/mesolite/forced:latest"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec("docker", "rmi", "127.0.0.1:1/mesolite/forced:latest") })
	spec, _ := specFor(t, task, framework(false))
	if _, err := h.cz.Launch(ctx, spec); !errors.Is(err, containerizer.ErrLaunchFailed) {
		t.Fatalf("launch with force_pull_image: %v, want ErrLaunchFailed", err)
	}
	task.Container.Docker.ForcePullImage = proto.Bool(false)
	spec2, agent := specFor(t, task, framework(false))
	if _, err := h.cz.Launch(ctx, spec2); err != nil {
		t.Fatalf("launch of the present image: %v", err)
	}
	agent.WaitState(t, mesos.TaskState_TASK_FINISHED, waitLong)
	h.finish(t, &launched{cid: spec2.ContainerID})
}

func TestDockerdUnreachable(t *testing.T) {
	self, _ := os.Executable()
	opts := docker.DefaultOptions()
	opts.Owner = "dockertest-down"
	opts.DockerHost = "unix:///nonexistent/mesolite-test-docker.sock"
	opts.ExecutorCommand = []string{self}
	opts.Logger = testLogger(t)
	cz := newContainerizer(t, opts)
	if err := cz.Recover(context.Background(), nil); err != nil {
		t.Fatalf("recover with dockerd down: %v", err)
	}
	task := dockerTask("down", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("true"))
	spec, _ := specFor(t, task, framework(false))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := cz.Launch(ctx, spec)
	if !errors.Is(err, containerizer.ErrLaunchFailed) || !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("launch: %v, want ErrLaunchFailed and ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "/nonexistent/mesolite-test-docker.sock") {
		t.Errorf("error %q does not name the socket", err)
	}
	if ctx.Err() != nil {
		t.Errorf("launch took until the deadline")
	}
}

// proxyDocker serves a unix socket at path that forwards to the real dockerd.
func proxyDocker(t *testing.T, path string) {
	t.Helper()
	real, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	target := strings.TrimPrefix(real.Host(), "unix://")
	real.Close()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				d, err := net.Dial("unix", target)
				if err != nil {
					return
				}
				defer d.Close()
				go func() { _, _ = io.Copy(d, c) }()
				_, _ = io.Copy(c, d)
			}()
		}
	}()
}

func TestDockerdComesBack(t *testing.T) {
	dockertest.Images(t)
	sock := filepath.Join(t.TempDir(), "docker.sock")
	h := newHarness(t, func(o *docker.Options) {
		o.DockerHost = sock
		o.HealthInterval = 100 * time.Millisecond
	})
	ctx := context.Background()
	if err := h.cz.Recover(ctx, nil); err != nil {
		t.Fatal(err)
	}
	task := dockerTask("later", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_NONE, shell("echo back"))
	spec, _ := specFor(t, task, framework(false))
	if _, err := h.cz.Launch(ctx, spec); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("launch with dockerd away: %v", err)
	}

	// An orphan of ours waits for the deferred cleanup.
	direct, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close()
	orphan := engine.ContainerName("orphan-" + randomID(t))
	if _, err := direct.Create(ctx, orphan, &dockercontainer.Config{Image: dockertest.BusyboxImage, Cmd: []string{"sleep", "3600"}, Labels: map[string]string{engine.LabelOwner: h.owner}}, &dockercontainer.HostConfig{NetworkMode: "none"}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = direct.Remove(context.Background(), orphan) })

	proxyDocker(t, sock)
	spec2, agent := specFor(t, task, framework(false))
	if _, err := h.cz.Launch(ctx, spec2); err != nil {
		t.Fatalf("launch once dockerd is back: %v", err)
	}
	agent.WaitState(t, mesos.TaskState_TASK_FINISHED, waitLong)
	h.finish(t, &launched{cid: spec2.ContainerID})
	testutil.Eventually(t, 10*time.Second, 50*time.Millisecond, func() bool {
		_, err := direct.Inspect(ctx, orphan)
		return engine.IsNotFound(err)
	}, "orphan removed once dockerd answered")
}

// TestPlantedLogSymlinkNotFollowedOnRecover is the attack of a container
// that replaces its sandbox's stdout and stderr with symlinks to a host
// file, then waits for the agent to restart: recovery reopens the logs of
// an executor container as root, and must replace the links rather than
// append the container's output to the host file.
func TestPlantedLogSymlinkNotFollowedOnRecover(t *testing.T) {
	h := newHarness(t, nil)
	ctx := context.Background()
	victim := filepath.Join(t.TempDir(), "host-file")
	if err := os.WriteFile(victim, []byte("host data\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// The container sees its sandbox at /mnt/mesos/sandbox; the links'
	// target is a host path, which only the agent (on the host) resolves.
	script := "ln -sf " + victim + " /mnt/mesos/sandbox/stdout && ln -sf " + victim + " /mnt/mesos/sandbox/stderr && touch /mnt/mesos/sandbox/planted; " +
		"trap 'exit 0' TERM; while true; do echo pwned; echo pwned >&2; sleep 0.1; done"
	exInfo := &mesos.ExecutorInfo{
		ExecutorId: &mesos.ExecutorID{Value: proto.String("planter")},
		Command:    shell(script),
		Resources:  []*mesos.Resource{scalar("cpus", 0.1), scalar("mem", 64)},
		Container: &mesos.ContainerInfo{Type: mesos.ContainerInfo_DOCKER.Enum(),
			Docker: &mesos.ContainerInfo_DockerInfo{Image: proto.String(dockertest.BusyboxImage)}},
	}
	spec, _ := specFor(t, dockerTask("planter", dockertest.BusyboxImage, mesos.ContainerInfo_DockerInfo_HOST, nil), framework(false))
	spec.Task, spec.Executor, spec.Resources = nil, exInfo, exInfo.Resources
	handle, err := h.cz.Launch(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.cz.Destroy(context.Background(), spec.ContainerID) })
	stdout := filepath.Join(spec.SandboxDir, "stdout")
	testutil.Eventually(t, waitLong, 20*time.Millisecond, func() bool {
		_, err := os.Stat(filepath.Join(spec.SandboxDir, "planted"))
		return err == nil
	}, "the container never planted its links")

	// What a restarted agent builds and recovers.
	cz2 := newContainerizer(t, h.opts)
	if err := cz2.Recover(ctx, []containerizer.Handle{handle}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, waitLong, 20*time.Millisecond, func() bool {
		fi, err := os.Lstat(stdout)
		return err == nil && fi.Mode().IsRegular() && strings.Contains(readFile(t, stdout), "pwned")
	}, "the recovered log follower never wrote into a fresh stdout")
	if b, _ := os.ReadFile(victim); string(b) != "host data\n" {
		t.Fatalf("the agent wrote the container's output through its symlink into a host file: %q", b)
	}
	wctx, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	if err := cz2.Destroy(wctx, spec.ContainerID); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(victim); string(b) != "host data\n" {
		t.Fatalf("host file written: %q", b)
	}
}
