package docker_test

import (
	"context"
	osexec "os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/containerizer/docker/dockertest"
	"google.golang.org/protobuf/proto"
)

// BenchmarkDockerLaunch compares, in one run, the time from Launch to
// TASK_RUNNING of a docker task (containerizer: image inspect, create,
// executor start; executor: subscribe, attach, start, inspect, update)
// with the time `docker run -d` of the same image and command on the same
// network takes to return. Target: ratio <= 1.10. With bridge networking
// both are dominated by dockerd's network setup; "none" shows our own
// overhead more plainly.
func BenchmarkDockerLaunch(b *testing.B) {
	for _, nw := range []struct {
		name string
		mode mesos.ContainerInfo_DockerInfo_Network
	}{
		{"bridge", mesos.ContainerInfo_DockerInfo_BRIDGE},
		{"none", mesos.ContainerInfo_DockerInfo_NONE},
	} {
		b.Run("network="+nw.name, func(b *testing.B) { benchmarkLaunch(b, nw.name, nw.mode) })
	}
}

func benchmarkLaunch(b *testing.B, network string, mode mesos.ContainerInfo_DockerInfo_Network) {
	h := newHarness(b, nil)
	ctx := context.Background()
	cmd := []string{"sleep", "3600"}

	ours := func() time.Duration {
		task := dockerTask("bench-"+randomID(b), dockertest.BusyboxImage, mode,
			&mesos.CommandInfo{Shell: proto.Bool(false), Value: proto.String(cmd[0]), Arguments: cmd[1:]})
		spec, agent := specFor(b, task, framework(false))
		start := time.Now()
		if _, err := h.cz.Launch(ctx, spec); err != nil {
			b.Fatal(err)
		}
		if _, err := agent.AwaitState(mesos.TaskState_TASK_RUNNING, time.Minute); err != nil {
			b.Fatal(err)
		}
		took := time.Since(start)
		dctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := h.cz.Destroy(dctx, spec.ContainerID); err != nil {
			b.Fatal(err)
		}
		return took
	}
	dockerRun := func() time.Duration {
		start := time.Now()
		out, err := osexec.Command("docker", append([]string{"run", "-d", "--network", network, "--label", "org.mesolite.owner=" + h.owner, dockertest.BusyboxImage}, cmd...)...).CombinedOutput()
		took := time.Since(start)
		if err != nil {
			b.Fatalf("docker run -d: %v: %s", err, out)
		}
		if out, err := osexec.Command("docker", "rm", "-f", strings.TrimSpace(string(out))).CombinedOutput(); err != nil {
			b.Fatalf("docker rm: %v: %s", err, out)
		}
		return took
	}

	// One of each untimed: first runs pay for cold caches.
	ours()
	dockerRun()
	var mine, theirs []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// Alternate the order so that neither side always runs on a
		// daemon still busy cleaning up after the other.
		if i%2 == 0 {
			mine = append(mine, ours())
			theirs = append(theirs, dockerRun())
		} else {
			theirs = append(theirs, dockerRun())
			mine = append(mine, ours())
		}
	}
	b.StopTimer()
	p50m, p50d := median(mine), median(theirs)
	meanM, meanD := mean(mine), mean(theirs)
	b.ReportMetric(ms(p50m), "mesolite-p50-ms")
	b.ReportMetric(ms(p50d), "docker-run-p50-ms")
	b.ReportMetric(ms(meanM), "mesolite-mean-ms")
	b.ReportMetric(ms(meanD), "docker-run-mean-ms")
	b.ReportMetric(float64(p50m)/float64(p50d), "ratio-p50")
	b.ReportMetric(float64(meanM)/float64(meanD), "ratio-mean")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}
