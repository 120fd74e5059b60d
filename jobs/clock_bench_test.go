package jobs

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

// BenchmarkSchedulerDrivenClock10k: the jobs service's own part of the
// scheduling delay with 10,000 jobs every minute, staggered by whole
// seconds, its clock driven: for each second of JOBS_BENCH_MINUTES (2)
// minutes after one of warm-up, the scheduler's pass at that second
// (tick), an offer as the master would make it at once (Offers), the
// TASK_RUNNING of the runs launched, and the end (TASK_FINISHED) of those
// launched a second before (Update), on the real local store (fsync) and
// in wall-clock time. A run's delay is the wall time from the start of
// its second's pass to its launch decision, plus the seconds it waited
// (none, when the scheduler keeps up). What it leaves out is the master's
// and the agent's part (BenchmarkScheduleDelay10k runs them).
//
//	go test -run '^$' -bench DrivenClock -benchtime 1x ./jobs
func BenchmarkSchedulerDrivenClock10k(b *testing.B) {
	n, minutes := 10000, 2
	if v, err := strconv.Atoi(os.Getenv("JOBS_BENCH_N")); err == nil && v > 0 {
		n = v
	}
	if v, err := strconv.Atoi(os.Getenv("JOBS_BENCH_MINUTES")); err == nil && v > 0 {
		minutes = v
	}
	st, err := frameworks.OpenLocalStore(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	s, err := New(ctx, Config{Master: "127.0.0.1:1", Hostname: "bench", Store: st})
	if err != nil {
		b.Fatal(err)
	}
	base := time.Now().Truncate(time.Minute).Add(time.Minute)
	for i := range n {
		j, err := DecodeJob(fmt.Appendf(nil, `{"name":"job-%05d","command":"echo %d","schedule":"R/%s/PT1M","epsilon":"PT30S","retries":0,"owner":"ops@example.com","cpus":0.01,"mem":16,"disk":0}`,
			i, i, base.Add(time.Duration(i%60)*time.Second).UTC().Format(time.RFC3339)))
		if err != nil {
			b.Fatal(err)
		}
		if err := s.AddJob(ctx, j, true); err != nil {
			b.Fatal(err)
		}
	}
	big := func(name string, v float64) *mesos.Resource {
		return &mesos.Resource{Name: proto.String(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(v)}}
	}
	offer := func(k int) *mesos.Offer {
		return &mesos.Offer{Id: &mesos.OfferID{Value: proto.String("o" + strconv.Itoa(k))}, FrameworkId: &mesos.FrameworkID{Value: proto.String("fw")},
			AgentId: &mesos.AgentID{Value: proto.String("agent-1")}, Hostname: proto.String("bench"),
			Resources: []*mesos.Resource{big(resources.CPUs, 1000), big(resources.Mem, 1e6), big(resources.Disk, 1e7)}}
	}
	status := func(taskID string, state mesos.TaskState) *mesos.TaskStatus {
		return &mesos.TaskStatus{TaskId: &mesos.TaskID{Value: proto.String(taskID)}, State: state.Enum(),
			AgentId: &mesos.AgentID{Value: proto.String("agent-1")}, Uuid: []byte("u")}
	}
	var (
		delays            []time.Duration
		passes, ends      []time.Duration
		launchedInWindow  int
		running           []string // launched in the previous second
		cpu0              time.Duration
		from              = base.Add(time.Minute)
		to                = from.Add(time.Duration(minutes) * time.Minute)
		dueAt             = map[string]time.Time{} // job -> the due second its queued run stands for
		wallStart         time.Time
		virtualSecondsRun int
	)
	for t := base; t.Before(to); t = t.Add(time.Second) {
		if t.Equal(from) {
			cpu0, wallStart = cpuTime(), time.Now()
		}
		start := time.Now()
		s.tick(ctx, t)
		s.mu.Lock()
		for _, r := range s.runs.queue {
			if _, ok := dueAt[r.job]; !ok {
				dueAt[r.job] = t
			}
		}
		s.mu.Unlock()
		launches, _ := s.Offers(ctx, []*mesos.Offer{offer(int(t.Unix()))})
		decided := time.Since(start)
		passes = append(passes, decided)
		var now []string
		for _, l := range launches {
			for _, task := range l.Tasks {
				id := task.GetTaskId().GetValue()
				job, _, _ := ParseTaskID(id)
				if due := dueAt[job]; !due.Before(from) {
					launchedInWindow++
					delays = append(delays, t.Sub(due)+decided)
				}
				delete(dueAt, job)
				now = append(now, id)
			}
		}
		e0 := time.Now()
		for _, id := range now {
			s.Update(ctx, status(id, mesos.TaskState_TASK_RUNNING), func() {})
		}
		for _, id := range running {
			s.Update(ctx, status(id, mesos.TaskState_TASK_FINISHED), func() {})
		}
		ends = append(ends, time.Since(e0))
		running = now
		if !t.Before(from) {
			virtualSecondsRun++
		}
	}
	cpu := cpuTime() - cpu0
	wall := time.Since(wallStart)
	slices.Sort(delays)
	slices.Sort(passes)
	slices.Sort(ends)
	pct := func(d []time.Duration, p float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		return d[min(len(d)-1, int(p*float64(len(d))))]
	}
	want := n * minutes
	b.ReportMetric(float64(pct(delays, 0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(delays, 0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(want-launchedInWindow), "missed")
	b.ReportMetric(cpu.Seconds()/float64(virtualSecondsRun)*100, "cpu-%-of-real-time")
	b.Logf("%d jobs: %d runs due in %d min, %d launched; delay p50 %s p99 %s max %s; pass+offer per second p50 %s p99 %s; updates per second p50 %s p99 %s; "+
		"CPU %s for %d s of schedule (%.1f%% of one core in real time; %s wall)",
		n, want, minutes, launchedInWindow, pct(delays, 0.5), pct(delays, 0.99), pct(delays, 1), pct(passes, 0.5), pct(passes, 0.99),
		pct(ends, 0.5), pct(ends, 0.99), cpu.Round(time.Millisecond), virtualSecondsRun, cpu.Seconds()/float64(virtualSecondsRun)*100, wall.Round(time.Millisecond))
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
