package docker_test

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/containerizertest"
	"github.com/mesolite/mesolite/containerizer/docker"
	"github.com/mesolite/mesolite/containerizer/docker/dockertest"
	"github.com/mesolite/mesolite/containerizer/docker/engine"
	"google.golang.org/protobuf/proto"
)

// conformanceScripts are the suite's programs as busybox shell commands.
var conformanceScripts = map[containerizertest.Program]string{
	containerizertest.ExitCode3:      "exit 3",
	containerizertest.RunUntilKilled: "exec sleep 600",
	// tail keeps a line without a newline whole: 200 MB of it.
	containerizertest.ExceedMemory: "head -c 200m /dev/zero | tail",
}

// conformanceSpec is a custom executor running in the busybox image: the
// docker containerizer starts it as the container itself, with no
// executor process of its own on the host.
func conformanceSpec(t *testing.T, id string, p containerizertest.Program) containerizer.LaunchSpec {
	dir := t.TempDir()
	for _, f := range []string{"stdout", "stderr"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return containerizer.LaunchSpec{
		ContainerID: id,
		Executor: &mesos.ExecutorInfo{
			ExecutorId: &mesos.ExecutorID{Value: proto.String(id)},
			Command:    shell(conformanceScripts[p]),
			Resources:  containerizertest.Resources(),
			Container: &mesos.ContainerInfo{Type: mesos.ContainerInfo_DOCKER.Enum(),
				Docker: &mesos.ContainerInfo_DockerInfo{Image: proto.String(dockertest.BusyboxImage), Network: mesos.ContainerInfo_DockerInfo_NONE.Enum()}},
		},
		Framework:  framework(false),
		SandboxDir: dir,
		Resources:  containerizertest.Resources(),
		StdoutPath: filepath.Join(dir, "stdout"),
		StderrPath: filepath.Join(dir, "stderr"),
	}
}

// silentRegistry accepts connections and never answers: a pull from it
// hangs until the puller gives up. Nothing leaves the host.
func silentRegistry(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func TestConformance(t *testing.T) {
	var mu sync.Mutex
	opts := map[containerizer.Containerizer]docker.Options{}
	containerizertest.Run(t, func(t *testing.T) containerizer.Containerizer {
		// Removed at Destroy: the suite checks that nothing is left.
		h := newHarness(t, func(o *docker.Options) { o.RemoveDelay = 0 })
		mu.Lock()
		opts[h.cz] = h.opts
		mu.Unlock()
		return h.cz
	}, containerizertest.Options{
		Spec: conformanceSpec,
		Restart: func(t *testing.T, old containerizer.Containerizer) containerizer.Containerizer {
			mu.Lock()
			defer mu.Unlock()
			return newContainerizer(t, opts[old])
		},
		MemoryLimits: true,
		Leftovers: func(t *testing.T, _ containerizer.Containerizer, id string) []string {
			return dockerContainersOf(t, id)
		},
		HoldLaunch: func(t *testing.T, spec *containerizer.LaunchSpec) {
			spec.Executor.Container.Docker.Image = proto.String(silentRegistry(t) + "/mesolite/held:latest")
		},
	})
}

// dockerContainersOf lists the docker containers of container id, whoever
// made them.
func dockerContainersOf(t *testing.T, id string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	eng, err := engine.New("")
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	cs, err := eng.List(ctx, map[string]string{engine.LabelContainerID: id})
	if err != nil {
		t.Fatalf("list docker containers: %v", err)
	}
	var out []string
	for _, c := range cs {
		out = append(out, "docker container "+c.ID)
	}
	return out
}
