package jobs

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// Run statistics, as Chronos's /scheduler/job/stat and /scheduler/stats
// answer them: how long each job's successful runs took, over its latest
// runs. Chronos keeps them in Cassandra when one is configured; here they
// are kept in memory by the leader (a restart or takeover starts them
// afresh), maxStatRuns per job.

const maxStatRuns = 100

// runStat is one ended run, in Chronos's taskStatHistory shape.
type runStat struct {
	TaskID    string  `json:"taskId"`
	JobName   string  `json:"jobName"`
	SlaveID   string  `json:"slaveId"`
	TaskState string  `json:"taskState"`
	Started   string  `json:"taskStart,omitempty"`
	Ended     string  `json:"taskEnd"`
	Seconds   float64 `json:"elapsedSeconds"`
	// Elements and StatusMessage are the run's own report of its
	// progress, Chronos's numElementsProcessed (progress.go).
	Elements      *int64 `json:"numElementsProcessed,omitempty"`
	StatusMessage string `json:"statusMessage,omitempty"`
	succeeded     bool
}

// noteRunLocked keeps the end of run r. s.mu must be held.
func (s *Service) noteRunLocked(r *run, state string, succeeded bool, now time.Time) {
	if s.stats == nil {
		s.stats = map[string][]runStat{}
	}
	st := statOf(r, state, now)
	st.Ended, st.succeeded = now.UTC().Format(timeFormat), succeeded
	list := append(s.stats[r.job], st)
	if len(list) > maxStatRuns {
		list = slices.Delete(list, 0, len(list)-maxStatRuns)
	}
	s.stats[r.job] = list
}

// statOf is run r in taskStatHistory's shape, in state at now (not
// ended).
func statOf(r *run, state string, now time.Time) runStat {
	st := runStat{TaskID: r.taskID, JobName: r.job, SlaveID: r.agentID, TaskState: state,
		Elements: r.progress.elements, StatusMessage: r.progress.message}
	if !r.startedAt.IsZero() {
		st.Started = r.startedAt.UTC().Format(timeFormat)
		st.Seconds = now.Sub(r.startedAt).Seconds()
	}
	return st
}

// histogram is Chronos's, over the durations of a job's successful runs.
type histogram struct {
	Count  int     `json:"count"`
	Mean   float64 `json:"mean"`
	Median float64 `json:"median"`
	P75    float64 `json:"75thPercentile"`
	P95    float64 `json:"95thPercentile"`
	P98    float64 `json:"98thPercentile"`
	P99    float64 `json:"99thPercentile"`
}

// durations are the seconds the job's timed successful runs took, sorted.
func durations(list []runStat) []float64 {
	var d []float64
	for _, st := range list {
		if st.succeeded && st.Started != "" {
			d = append(d, st.Seconds)
		}
	}
	slices.Sort(d)
	return d
}

// percentile of sorted d, nearest rank.
func percentile(d []float64, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	i := int(math.Ceil(p*float64(len(d)))) - 1
	return d[max(0, min(i, len(d)-1))]
}

func histogramOf(d []float64) histogram {
	h := histogram{Count: len(d)}
	if len(d) == 0 {
		return h
	}
	sum := 0.0
	for _, x := range d {
		sum += x
	}
	h.Mean = sum / float64(len(d))
	h.Median, h.P75, h.P95, h.P98, h.P99 = percentile(d, 0.5), percentile(d, 0.75), percentile(d, 0.95), percentile(d, 0.98), percentile(d, 0.99)
	return h
}

// handleJobStat is GET /scheduler/job/stat/{name}: the histogram of the
// job's run times and its latest runs.
func (s *Service) handleJobStat(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.mu.Lock()
	_, known := s.jobs[name]
	list := slices.Clone(s.stats[name])
	// The runs in flight follow the ended ones, as Chronos lists its
	// running tasks, with their progress so far.
	now := time.Now()
	var live []runStat
	for _, r := range s.runs.byTask {
		if r.job == name && !r.stopped {
			state := "TASK_STAGING"
			switch r.state {
			case runRunning:
				state = "TASK_RUNNING"
			case runAwaiting:
				state = "TASK_FINISHED" // awaiting the job's report
			}
			live = append(live, statOf(r, state, now))
		}
	}
	s.mu.Unlock()
	slices.SortFunc(live, func(a, b runStat) int { return strings.Compare(a.TaskID, b.TaskID) })
	list = append(list, live...)
	if !known {
		errdefs.HTTPError(w, errdefs.Classf(errdefs.ErrNotFound, "no job %q", name))
		return
	}
	if list == nil {
		list = []runStat{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"histogram": histogramOf(durations(list)), "taskStatHistory": list})
}

// statKinds are the names /scheduler/stats/{kind} takes.
var statKinds = map[string]func([]float64) float64{
	"99thPercentile": func(d []float64) float64 { return percentile(d, 0.99) },
	"98thPercentile": func(d []float64) float64 { return percentile(d, 0.98) },
	"95thPercentile": func(d []float64) float64 { return percentile(d, 0.95) },
	"75thPercentile": func(d []float64) float64 { return percentile(d, 0.75) },
	"median":         func(d []float64) float64 { return percentile(d, 0.5) },
	"mean":           func(d []float64) float64 { return histogramOf(d).Mean },
}

// handleStats is GET /scheduler/stats/{kind}: that figure of every job
// with timed runs, the slowest first, as Chronos lists them.
func (s *Service) handleStats(w http.ResponseWriter, r *http.Request) {
	kind := r.PathValue("kind")
	f, ok := statKinds[kind]
	if !ok {
		errdefs.HTTPError(w, errdefs.Classf(errdefs.ErrNotFound, "no statistic %q: 99thPercentile, 98thPercentile, 95thPercentile, 75thPercentile, median or mean", kind))
		return
	}
	type entry struct {
		Job  string  `json:"jobNameLabel"`
		Time float64 `json:"time"`
	}
	out := []entry{}
	s.mu.Lock()
	for name, list := range s.stats {
		if d := durations(list); len(d) > 0 {
			out = append(out, entry{name, f(d)})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b entry) int {
		if a.Time != b.Time {
			if a.Time > b.Time {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Job, b.Job)
	})
	writeJSON(w, http.StatusOK, out)
}

// handleGraphCSV is GET /scheduler/graph/csv: "node,NAME,STATUS,STATE" for
// each job (fresh/success/failure, idle/queued/running) and
// "link,PARENT,CHILD" for each dependency, as Chronos's UI reads it.
func (s *Service) handleGraphCSV(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	sums := s.summaries()
	for _, sum := range sums {
		state := sum.State
		if strings.HasSuffix(state, " running") {
			state = "running"
		}
		fmt.Fprintf(&b, "node,%s,%s,%s\n", csvField(sum.Name), sum.Status, state)
	}
	for _, sum := range sums {
		for _, p := range sum.Parents {
			fmt.Fprintf(&b, "link,%s,%s\n", csvField(p), csvField(sum.Name))
		}
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	io.WriteString(w, b.String())
}

// csvField quotes a job name that holds a comma or a quote (names are
// validated, so this is belt and braces).
func csvField(s string) string {
	if !strings.ContainsAny(s, ",\"\n") {
		return s
	}
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// handleMetrics is GET /metrics in the shape of the Dropwizard metrics
// Chronos serves: gauges of the jobs and runs, counters of run results.
func (s *Service) handleMetrics(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	gauges := map[string]any{
		"jobs.count":   map[string]int{"value": len(s.jobs)},
		"runs.queued":  map[string]int{"value": len(s.runs.queue)},
		"runs.running": map[string]int{"value": len(s.runs.byTask)},
	}
	counters := map[string]any{}
	var ok, failed int64
	for _, j := range s.jobs {
		ok += j.SuccessCount
		failed += j.ErrorCount
	}
	counters["runs.succeeded"] = map[string]int64{"count": ok}
	counters["runs.failed"] = map[string]int64{"count": failed}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"version": "3.0.0", "gauges": gauges, "counters": counters,
		"histograms": map[string]any{}, "meters": map[string]any{}, "timers": map[string]any{}})
}
