package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mesolite/mesolite/errdefs"
)

// Task progress, Chronos's for data processing jobs
// (dataProcessingJobType): a run reports how many more elements it has
// processed, POST /scheduler/job/{jobName}/task/{taskId}/progress (or
// /scheduler/task/{taskId}/progress, the job read from the task id) with
// {"numAdditionalElementsProcessed": N, "statusMessage": "..."}; the
// counts add up in the run, the message replaces the last one. Both are
// stored with the run (a takeover keeps them) and shown with it by
// /scheduler/job/stat/{name} (numElementsProcessed, statusMessage) and the
// job's page. What a task sends is bounded: a body of maxProgressBody
// bytes, a count of at most math.MaxInt32 a report (Chronos's Int), a
// message of maxStatusMessage bytes of printable text.

const (
	maxProgressBody  = 4 << 10
	maxStatusMessage = 1024
)

// runProgress is what a run reported of its progress.
type runProgress struct {
	elements *int64 // nil until it reports a count
	message  string
}

// TaskProgress is a progress report's body.
type TaskProgress struct {
	NumAdditionalElementsProcessed *int64  `json:"numAdditionalElementsProcessed"`
	StatusMessage                  *string `json:"statusMessage"`
}

// validStatusMessage checks a run's status message: UTF-8, printable
// (spaces, no control characters, so it cannot forge lines in a log or
// the page), at most maxStatusMessage bytes.
func validStatusMessage(m string) error {
	switch {
	case len(m) > maxStatusMessage:
		return fmt.Errorf("statusMessage is %d bytes, at most %d: %w", len(m), maxStatusMessage, errdefs.ErrInvalid)
	case !utf8.ValidString(m):
		return fmt.Errorf("statusMessage is not UTF-8: %w", errdefs.ErrInvalid)
	case strings.ContainsFunc(m, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }):
		return fmt.Errorf("statusMessage holds a control character: %w", errdefs.ErrInvalid)
	}
	return nil
}

// Progress records run taskID's report of its progress. jobName, when not
// empty, is the job the caller names, which must be the task's. The job
// must be a data processing job and the run in flight; the refusals are
// errdefs.ErrInvalid or ErrNotFound with Chronos's reasons.
func (s *Service) Progress(ctx context.Context, jobName, taskID string, p TaskProgress) error {
	name, _, ok := ParseTaskID(taskID)
	if !ok {
		return fmt.Errorf("Invalid task id format %s: %w", taskID, errdefs.ErrInvalid)
	}
	if jobName != "" && jobName != name {
		return fmt.Errorf("task %s is not a run of job %s: %w", taskID, jobName, errdefs.ErrInvalid)
	}
	if n := p.NumAdditionalElementsProcessed; n != nil && (*n < 0 || *n > math.MaxInt32) {
		return fmt.Errorf("numAdditionalElementsProcessed (%d) must be 0 to %d: %w", *n, math.MaxInt32, errdefs.ErrInvalid)
	}
	if m := p.StatusMessage; m != nil {
		if err := validStatusMessage(*m); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[name]
	if j == nil {
		return errNoJob(name)
	}
	if !j.DataProcessingJob {
		return fmt.Errorf("Job '%s' is not enabled to track data: %w", name, errdefs.ErrInvalid)
	}
	r := s.runs.byTask[taskID]
	if r == nil || r.stopped {
		return fmt.Errorf("no run of task %s is in flight: %w", taskID, errdefs.ErrNotFound)
	}
	was := r.progress
	if n := p.NumAdditionalElementsProcessed; n != nil {
		total := *n
		if was.elements != nil {
			total = min(*was.elements, math.MaxInt64-*n) + *n // saturates
		}
		r.progress.elements = &total
	}
	if m := p.StatusMessage; m != nil {
		r.progress.message = *m
	}
	if r.progress == was {
		return nil
	}
	if err := s.store.Apply(ctx, putRun(r)); err != nil {
		r.progress = was
		return fmt.Errorf("storing the progress of task %s: %w: %w", taskID, errdefs.ErrUnavailable, err)
	}
	return nil
}

// handleProgress is POST /scheduler/job/{jobName}/task/{taskId}/progress
// and /scheduler/task/{taskId}/progress: 204, or 400 with the reason.
func (s *Service) handleProgress(w http.ResponseWriter, r *http.Request) {
	var p TaskProgress
	r.Body = http.MaxBytesReader(w, r.Body, maxProgressBody)
	b, err := readBody(w, r)
	if err == nil {
		if err = json.Unmarshal(b, &p); err != nil {
			err = fmt.Errorf(`the progress is not {"numAdditionalElementsProcessed": N, "statusMessage": "..."}: %v: %w`, err, errdefs.ErrInvalid)
		}
	}
	if err == nil {
		err = s.Progress(r.Context(), r.PathValue("jobName"), r.PathValue("taskId"), p)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
