package jobs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/containerizer/fake"
	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/jobs"
	"github.com/mesolite/mesolite/master"
)

// Benchmarks of one jobs service with 10,000 jobs (docs/benchmarks.md):
//
//	go test -run '^$' -bench 10k -benchtime 1x ./jobs
//
// They run a real master (its default 1 s allocation interval) and a real
// agent in this process; the agent's containerizer is the scriptable fake,
// so a launch costs the master, the agent and the jobs service what it
// costs them in a deployment, but no process: what is measured is the
// scheduler, not fork and exec. Each job runs every minute and its run
// ends after a second.

// benchJobs is how many jobs (JOBS_BENCH_N, to try the benchmarks
// smaller).
var benchJobs = func() int {
	if n, err := strconv.Atoi(os.Getenv("JOBS_BENCH_N")); err == nil && n > 0 {
		return n
	}
	return 10000
}()

// benchCluster is a master with defaults and one agent on the fake
// containerizer, large enough for every run at once; launched is called
// with each task id as the agent's containerizer launches it.
func benchCluster(b *testing.B, launched func(taskID string, at time.Time)) *clustertest.Cluster {
	c := clustertest.New(b, func(cfg *master.Config) { cfg.AllocationInterval = time.Second })
	fk := fake.New(fake.Options{Script: func(spec containerizer.LaunchSpec) fake.Script {
		launched(spec.Task.GetTaskId().GetValue(), time.Now())
		return fake.Script{Exit: true, ExitAfter: time.Second}
	}})
	agents := 10
	if n, err := strconv.Atoi(os.Getenv("JOBS_BENCH_AGENTS")); err == nil && n > 0 {
		agents = n
	}
	// Agents of 100 runs each at most: the runs are spread over them, as
	// over a cluster's nodes.
	for i := range agents {
		c.AddAgent(b, clustertest.AgentOptions{Hostname: fmt.Sprintf("bench-%d", i), Containerizer: fk,
			Resources: "cpus:1;mem:1600;disk:1000;ports:[31000-31999]"})
	}
	return c
}

// startBenchJobs is the jobs service with its defaults (1 s tick, the
// driver's decline and revive timings), as `mesolite jobs` runs.
func startBenchJobs(b *testing.B, masterAddr string) *service {
	return startJobs(b, masterAddr, b.TempDir(), func(cfg *jobs.Config) {
		cfg.Logger = clustertest.Logger().With("process", "jobs")
		cfg.Tick, cfg.RetryBackoff = 0, 0
		cfg.DeclineIdle, cfg.DeclineBusy, cfg.MinReviveInterval = 0, 0, 0
	})
}

// benchJob is job i as a client posts it: every minute from start.
func benchJob(i int, start time.Time) []byte {
	b, _ := json.Marshal(map[string]any{
		"name": fmt.Sprintf("job-%05d", i), "command": "echo " + strconv.Itoa(i) + " && sleep 1",
		"schedule": "R/" + start.UTC().Format(time.RFC3339) + "/PT1M", "epsilon": "PT30S", "retries": 0,
		"owner": "ops@example.com", "cpus": 0.01, "mem": 16, "disk": 0,
		"environmentVariables": []map[string]string{{"name": "STAGE", "value": "prod"}},
	})
	return b
}

// postJobs posts n jobs through the API, 32 at a time; start(i) is job
// i's first run.
func postJobs(b *testing.B, url string, n int, start func(i int) time.Time) {
	b.Helper()
	var wg sync.WaitGroup
	next := make(chan int)
	errc := make(chan error, 1)
	for range 32 {
		wg.Go(func() {
			for i := range next {
				resp, err := http.Post(url+"/scheduler/iso8601", "application/json", bytes.NewReader(benchJob(i, start(i))))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusNoContent {
						err = fmt.Errorf("job %d: %s", i, resp.Status)
					}
				}
				if err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errc:
		b.Fatal(err)
	default:
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkScheduleDelay10k: 10,000 jobs every minute, staggered over the
// minute by whole seconds (about 167 due each second, all at once), for
// JOBS_BENCH_MINUTES (2) minutes after a first minute of warm-up. The
// delay of a run is from the time its schedule says to the time the
// agent's containerizer is asked to launch its task; a run never launched
// in time is counted as missed.
func BenchmarkScheduleDelay10k(b *testing.B) {
	minutes := 2
	if v, err := strconv.Atoi(os.Getenv("JOBS_BENCH_MINUTES")); err == nil && v > 0 {
		minutes = v
	}
	var mu sync.Mutex
	launches := map[string][]time.Time{} // by job name
	c := benchCluster(b, func(taskID string, at time.Time) {
		if name, _, ok := jobs.ParseTaskID(taskID); ok {
			mu.Lock()
			launches[name] = append(launches[name], at)
			mu.Unlock()
		}
	})
	s := startBenchJobs(b, c.Addr)
	// The first runs begin on the next whole minute at least 40 s away,
	// so that posting the jobs is over by then.
	base := time.Now().Add(40 * time.Second).Truncate(time.Minute).Add(time.Minute)
	if time.Until(base) > 100*time.Second {
		base = base.Add(-time.Minute)
	}
	first := func(i int) time.Time { return base.Add(time.Duration(i%60) * time.Second) }
	t0 := time.Now()
	postJobs(b, s.url, benchJobs, first)
	b.Logf("posted %d jobs in %s; first runs at %s", benchJobs, time.Since(t0).Round(time.Millisecond), base.Format(time.TimeOnly))
	if time.Now().After(base) {
		b.Fatalf("posting the jobs took past the first runs")
	}
	// Warm-up: the first minute. Then the window, then a margin for its
	// last runs.
	from, to := base.Add(time.Minute), base.Add(time.Duration(1+minutes)*time.Minute)
	time.Sleep(time.Until(from))
	cpu0, wall0 := cpuTime(), time.Now()
	time.Sleep(time.Until(to))
	cpu, wall := cpuTime()-cpu0, time.Since(wall0)
	time.Sleep(30 * time.Second)

	mu.Lock()
	defer mu.Unlock()
	var delays []time.Duration
	launched := 0
	for i := range benchJobs {
		name := fmt.Sprintf("job-%05d", i)
		for _, at := range launches[name] {
			k := at.Sub(first(i)) / time.Minute
			due := first(i).Add(k * time.Minute)
			if due.Before(from) || !due.Before(to) {
				continue
			}
			launched++
			delays = append(delays, at.Sub(due))
		}
	}
	want := benchJobs * minutes
	slices.Sort(delays)
	pct := func(p float64) time.Duration {
		if len(delays) == 0 {
			return 0
		}
		return delays[min(len(delays)-1, int(p*float64(len(delays))))]
	}
	b.ReportMetric(float64(pct(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(pct(1).Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(want-launched), "missed")
	b.ReportMetric(100*cpu.Seconds()/wall.Seconds(), "cpu-%")
	b.Logf("%d runs due in %d min, %d launched: delay p50 %s p99 %s max %s; process CPU %.1f%% of one core (master, agent, jobs)",
		want, minutes, launched, pct(0.5), pct(0.99), pct(1), 100*cpu.Seconds()/wall.Seconds())
}

// BenchmarkIdleScheduler10k: the CPU the process uses over
// JOBS_BENCH_IDLE (30 s) with the master, the agent and the jobs service
// running and no job, then with 10,000 jobs none of which is due.
func BenchmarkIdleScheduler10k(b *testing.B) {
	window := 30 * time.Second
	if d, err := time.ParseDuration(os.Getenv("JOBS_BENCH_IDLE")); err == nil && d > 0 {
		window = d
	}
	c := benchCluster(b, func(string, time.Time) {})
	s := startBenchJobs(b, c.Addr)
	measure := func() float64 {
		time.Sleep(5 * time.Second) // settle
		cpu0, wall0 := cpuTime(), time.Now()
		time.Sleep(window)
		return 100 * (cpuTime() - cpu0).Seconds() / time.Since(wall0).Seconds()
	}
	empty := measure()
	tomorrow := time.Now().Add(24 * time.Hour).Truncate(time.Minute)
	postJobs(b, s.url, benchJobs, func(i int) time.Time { return tomorrow.Add(time.Duration(i%60) * time.Second) })
	loaded := measure()
	b.ReportMetric(empty, "cpu-%-no-jobs")
	b.ReportMetric(loaded, "cpu-%-10k-jobs")
	b.Logf("process CPU over %s, %% of one core: %.2f with no job, %.2f with %d jobs not due", window, empty, loaded, benchJobs)
}

// BenchmarkListJobs10k: GET /scheduler/jobs with 10,000 jobs, over
// loopback, the whole answer read.
func BenchmarkListJobs10k(b *testing.B) {
	c := benchCluster(b, func(string, time.Time) {})
	s := startBenchJobs(b, c.Addr)
	tomorrow := time.Now().Add(24 * time.Hour).Truncate(time.Minute)
	postJobs(b, s.url, benchJobs, func(i int) time.Time { return tomorrow.Add(time.Duration(i%60) * time.Second) })
	ctx := context.Background()
	get := func() int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/scheduler/jobs", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		n, _ := io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET /scheduler/jobs: %s", resp.Status)
		}
		return int(n)
	}
	size := get()
	var times []time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		get()
		times = append(times, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(size), "bytes")
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max-ms")
}
