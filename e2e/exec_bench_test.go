package e2e

import (
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/mesolite/mesolite/containerizer/docker/dockertest"
	"github.com/mesolite/mesolite/internal/testutil"
)

// BenchmarkExecStart is `mesolite exec TASK -- true` against `docker exec
// CONTAINER true` into the same running docker task's container, each op
// one of each, interleaved: from the command's start to its exit, so
// mesolite's figure holds the task's lookup in the master's state, the
// agent's session call and dockerd's exec. The mesos sub-benchmark is
// `mesolite exec` into a mesos-containerizer task (no docker to compare).
func BenchmarkExecStart(b *testing.B) {
	testutil.RequireDocker(b)
	dockertest.Images(b)
	c := startCluster(b, "--containerizers=docker,mesos")
	runningTask(b, c, "--name=execbench", "--id=execbench-1", "--docker_image="+dockertest.BusyboxImage, "--command=sleep 100000")
	name := "mesolite-" + onlyContainer(b, c)
	runningTask(b, c, "--name=execbench-mesos", "--id=execbench-2", "--command=sleep 100000")
	run := func(args ...string) time.Duration {
		start := time.Now()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", args, err, out)
		}
		return time.Since(start)
	}
	p50 := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.Run("docker", func(b *testing.B) {
		// One of each first: images, connections and caches warm.
		run(binary, "exec", "--master="+c.masterAddr, "execbench-1", "--", "true")
		run("docker", "exec", name, "true")
		var ours, theirs []time.Duration
		b.ResetTimer()
		for i := range b.N {
			if i%2 == 0 {
				ours = append(ours, run(binary, "exec", "--master="+c.masterAddr, "execbench-1", "--", "true"))
				theirs = append(theirs, run("docker", "exec", name, "true"))
			} else {
				theirs = append(theirs, run("docker", "exec", name, "true"))
				ours = append(ours, run(binary, "exec", "--master="+c.masterAddr, "execbench-1", "--", "true"))
			}
		}
		b.StopTimer()
		b.ReportMetric(ms(p50(ours)), "mesolite-p50-ms")
		b.ReportMetric(ms(p50(theirs)), "docker-p50-ms")
		b.ReportMetric(float64(p50(ours))/float64(p50(theirs)), "ratio-p50")
	})
	b.Run("mesos", func(b *testing.B) {
		run(binary, "exec", "--master="+c.masterAddr, "execbench-2", "--", "true")
		var ours []time.Duration
		b.ResetTimer()
		for range b.N {
			ours = append(ours, run(binary, "exec", "--master="+c.masterAddr, "execbench-2", "--", "true"))
		}
		b.StopTimer()
		b.ReportMetric(ms(p50(ours)), "mesolite-p50-ms")
	})
}
