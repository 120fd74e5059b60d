package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// HTTP bounds (DESIGN.md: every server is bounded), as apps has them.
const (
	maxBodyBytes      = 1 << 20
	bodyReadTimeout   = 30 * time.Second
	writeTimeout      = 60 * time.Second
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	maxSearchLimit    = 10000
)

// routes is Chronos's API, on its plain and its /v1 paths.
func (s *Service) routes() http.Handler {
	mux := http.NewServeMux()
	for _, prefix := range []string{"", "/v1"} {
		mux.HandleFunc("GET "+prefix+"/scheduler/jobs", s.handleList)
		mux.HandleFunc("GET "+prefix+"/scheduler/jobs/search", s.handleSearch)
		mux.HandleFunc("GET "+prefix+"/scheduler/jobs/summary", s.handleSummary)
		mux.HandleFunc("POST "+prefix+"/scheduler/iso8601", s.handleAdd(true))
		mux.HandleFunc("POST "+prefix+"/scheduler/dependency", s.handleAdd(false))
		mux.HandleFunc("PUT "+prefix+"/scheduler/dependency", s.handleAdd(false))
		mux.HandleFunc("DELETE "+prefix+"/scheduler/job/{name}", s.handleDelete)
		mux.HandleFunc("PUT "+prefix+"/scheduler/job/{name}", s.handleStart)
		mux.HandleFunc("PUT "+prefix+"/scheduler/job/success/{name}", s.handleSuccess)
		mux.HandleFunc("DELETE "+prefix+"/scheduler/task/kill/{name}", s.handleKill)
		mux.HandleFunc("GET "+prefix+"/scheduler/leader", s.handleLeader)
		mux.HandleFunc("GET "+prefix+"/scheduler/graph/dot", s.handleGraphDot)
		mux.HandleFunc("GET "+prefix+"/scheduler/graph/csv", s.handleGraphCSV)
		mux.HandleFunc("PUT "+prefix+"/scheduler/task/{taskId}", s.handleCompleteAsync)
		mux.HandleFunc("POST "+prefix+"/scheduler/task/{taskId}/progress", s.handleProgress)
		mux.HandleFunc("POST "+prefix+"/scheduler/job/{jobName}/task/{taskId}/progress", s.handleProgress)
		mux.HandleFunc("GET "+prefix+"/scheduler/job/stat/{name}", s.handleJobStat)
		mux.HandleFunc("GET "+prefix+"/scheduler/stats/{kind}", s.handleStats)
	}
	mux.HandleFunc("GET /leader", s.handleLeader)
	mux.HandleFunc("GET /metrics", s.handleMetrics)
	mux.HandleFunc("GET /ui/info", s.handleUIInfo)
	mux.Handle("/ui/", page)
	mux.Handle("/static/", page)
	mux.Handle("/{$}", page)
	mux.HandleFunc("/ping", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "pong\n")
	})
	return mux
}

// bounded caps request bodies and sets the headers every answer carries.
func bounded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodyBytes {
			writeError(w, errdefs.Statusf(http.StatusRequestEntityTooLarge, "Request body is larger than %d bytes", maxBodyBytes))
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		errdefs.HTTPError(w, fmt.Errorf("encoding the answer: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
}

// writeError answers as Chronos does: a refused request (bad JSON, an
// invalid job, an unknown job name) is 400 with the reason as plain
// text; a server failure is 500 without detail.
func writeError(w http.ResponseWriter, err error) {
	code := errdefs.HTTPStatus(err)
	if code == http.StatusInternalServerError || code == http.StatusServiceUnavailable {
		errdefs.HTTPError(w, err)
		return
	}
	if code == http.StatusNotFound || code == http.StatusConflict {
		code = http.StatusBadRequest
	}
	msg := err.Error()
	for _, class := range []error{errdefs.ErrNotFound, errdefs.ErrConflict, errdefs.ErrInvalid} {
		msg = strings.TrimSuffix(msg, ": "+class.Error())
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	io.WriteString(w, msg+"\n")
}

// readBody reads a JSON request body within the bounds.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			// A form or text body is what a cross-site page can send
			// without asking: only JSON changes anything.
			return nil, errdefs.Statusf(http.StatusUnsupportedMediaType, "Unsupported media type %q: send application/json", ct)
		}
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, errdefs.Statusf(http.StatusRequestEntityTooLarge, "Request body is larger than %d bytes", mb.Limit)
		}
		return nil, fmt.Errorf("reading the request body: %w: %w", errdefs.ErrInvalid, err)
	}
	return b, nil
}

// sortedJobs is a copy of every job, by name.
func (s *Service) sortedJobs() []Job {
	s.mu.Lock()
	out := make([]Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, *j)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Job) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(s.listJSON())
}

// encodedJob is a job's JSON, valid while the job is that *Job: jobs are
// replaced on every change, never changed in place.
type encodedJob struct {
	job *Job
	b   []byte
}

// listJSON is every job, by name, as json.Marshal writes a []Job, from
// each job's JSON kept since it last changed: with 10,000 jobs, encoding
// them all made most of the time of GET /scheduler/jobs.
func (s *Service) listJSON() []byte {
	s.mu.Lock()
	jobs := make([]*Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		jobs = append(jobs, j)
	}
	s.mu.Unlock()
	slices.SortFunc(jobs, func(a, b *Job) int { return strings.Compare(a.Name, b.Name) })
	s.listMu.Lock()
	defer s.listMu.Unlock()
	cache := make(map[string]encodedJob, len(jobs))
	parts := make([][]byte, 0, len(jobs))
	size := 2
	for _, j := range jobs {
		e, ok := s.listCache[j.Name]
		if !ok || e.job != j {
			b, err := json.Marshal(j)
			if err != nil {
				s.log.Warn("cannot encode a job; left out of the list", "job", j.Name, "err", err)
				continue
			}
			e = encodedJob{job: j, b: b}
		}
		cache[j.Name] = e
		parts = append(parts, e.b)
		size += len(e.b) + 1
	}
	s.listCache = cache
	out := make([]byte, 0, size)
	out = append(out, '[')
	for i, b := range parts {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, b...)
	}
	return append(out, ']')
}

// handleSearch is /scheduler/jobs/search: name, command and any match as
// lower-case substrings; limit and offset page the result.
func (s *Service) handleSearch(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name, command, anyTerm := strings.ToLower(q.Get("name")), strings.ToLower(q.Get("command")), strings.ToLower(q.Get("any"))
	num := func(key string, def int) (int, error) {
		v := q.Get(key)
		if v == "" {
			return def, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("%s=%q is not a count: %w", key, v, errdefs.ErrInvalid)
		}
		return n, nil
	}
	limit, err := num("limit", maxSearchLimit)
	if err != nil {
		writeError(w, err)
		return
	}
	offset, err := num("offset", 0)
	if err != nil {
		writeError(w, err)
		return
	}
	out := []Job{}
	for _, j := range s.sortedJobs() {
		ln, lc := strings.ToLower(j.Name), strings.ToLower(j.Command)
		if name != "" && !strings.Contains(ln, name) ||
			command != "" && !strings.Contains(lc, command) ||
			anyTerm != "" && !strings.Contains(ln, anyTerm) && !strings.Contains(lc, anyTerm) {
			continue
		}
		out = append(out, j)
	}
	out = out[min(offset, len(out)):]
	out = out[:min(limit, len(out))]
	writeJSON(w, http.StatusOK, out)
}

func (s *Service) handleAdd(scheduled bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := readBody(w, r)
		if err != nil {
			writeError(w, err)
			return
		}
		j, err := s.cfg.Defaults.Decode(b)
		if err == nil {
			err = s.AddJob(r.Context(), j, scheduled)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.DeleteJob(r.Context(), r.PathValue("name")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleStart is PUT /scheduler/job/{name}: run now, with ?arguments=
// appended to the command (ignored by a shell job, as Chronos does).
func (s *Service) handleStart(w http.ResponseWriter, r *http.Request) {
	if err := s.StartNow(r.Context(), r.PathValue("name"), r.URL.Query().Get("arguments")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleSuccess is PUT /scheduler/job/success/{name}: Chronos answers
// true.
func (s *Service) handleSuccess(w http.ResponseWriter, r *http.Request) {
	if err := s.MarkSuccess(r.Context(), r.PathValue("name")); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, true)
}

func (s *Service) handleKill(w http.ResponseWriter, r *http.Request) {
	if err := s.KillRuns(r.Context(), r.PathValue("name")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) handleLeader(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"leader": s.leader()})
}

// handleGraphDot is the dependency graph in Graphviz's dot language: a
// node per job, filled by its last result (green: success, red:
// failure, white: none yet), an edge from each parent to its child.
func (s *Service) handleGraphDot(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	b.WriteString("digraph G {\n  node [style=filled];\n")
	jobs := s.sortedJobs()
	for _, j := range jobs {
		color := "white"
		switch ls, le := latest(j.LastSuccess), latest(j.LastError); {
		case ls.IsZero() && le.IsZero():
		case ls.After(le):
			color = "green"
		default:
			color = "red"
		}
		fmt.Fprintf(&b, "  %s [fillcolor=%s];\n", strconv.Quote(j.Name), color)
	}
	for _, j := range jobs {
		for _, p := range j.Parents {
			fmt.Fprintf(&b, "  %s -> %s;\n", strconv.Quote(p), strconv.Quote(j.Name))
		}
	}
	b.WriteString("}\n")
	w.Header().Set("Content-Type", "text/vnd.graphviz; charset=utf-8")
	io.WriteString(w, b.String())
}

// jobSummary is one job in Chronos's /scheduler/jobs/summary.
type jobSummary struct {
	Name     string   `json:"name"`
	Status   string   `json:"status"` // fresh, success, failure
	State    string   `json:"state"`  // idle, queued, "<n> running"
	Schedule string   `json:"schedule"`
	Parents  []string `json:"parents"`
	Disabled bool     `json:"disabled"`
}

func (s *Service) handleSummary(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"jobs": s.summaries()})
}

// summaries are every job's name, last result and state.
func (s *Service) summaries() []jobSummary {
	list := s.sortedJobs()
	out := make([]jobSummary, 0, len(list))
	s.mu.Lock()
	running, queued := map[string]int{}, map[string]bool{}
	for _, r := range s.runs.byTask {
		if !r.stopped {
			running[r.job]++
		}
	}
	for _, r := range s.runs.queue {
		queued[r.job] = true
	}
	for _, j := range list {
		sum := jobSummary{Name: j.Name, Status: "fresh", State: "idle", Schedule: j.Schedule, Parents: nonNil(j.Parents), Disabled: j.Disabled}
		switch ls, le := latest(j.LastSuccess), latest(j.LastError); {
		case ls.IsZero() && le.IsZero():
		case ls.After(le):
			sum.Status = "success"
		default:
			sum.Status = "failure"
		}
		switch n := running[j.Name]; {
		case n > 0:
			sum.State = strconv.Itoa(n) + " running"
		case queued[j.Name]:
			sum.State = "queued"
		}
		out = append(out, sum)
	}
	s.mu.Unlock()
	return out
}

// handleCompleteAsync is PUT /scheduler/task/{taskId} with
// {"statusCode": N}: an async job reports how its run ended (0: success).
func (s *Service) handleCompleteAsync(w http.ResponseWriter, r *http.Request) {
	var body struct {
		StatusCode *int `json:"statusCode"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	if err := dec.Decode(&body); err != nil || body.StatusCode == nil {
		msg := `expected {"statusCode": N}`
		if err != nil {
			msg += ": " + err.Error()
		}
		errdefs.HTTPError(w, errdefs.Classf(errdefs.ErrInvalid, "%s", msg))
		return
	}
	if err := s.CompleteAsync(r.Context(), r.PathValue("taskId"), *body.StatusCode); err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
