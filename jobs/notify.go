package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"
)

// Failure notices. Chronos tells a job's owners when it fails (mail, and
// a URL it POSTs to); here --http_notification_url is that URL: each run
// that fails for good (after its retries), and each job disabled after
// --disable_after_failures, is POSTed to it as JSON. The notices go out in
// the background, one at a time, each within notifyTimeout; a backlog
// beyond maxPendingNotices is dropped with a log line, so a dead receiver
// never holds up scheduling.

const (
	notifyTimeout     = 10 * time.Second
	maxPendingNotices = 100
)

// Notice is what --http_notification_url receives.
type Notice struct {
	Job       string   `json:"job"`
	Owners    []string `json:"owners"`
	OwnerName string   `json:"ownerName,omitempty"`
	TaskID    string   `json:"taskId"`
	TaskState string   `json:"taskState"`
	Message   string   `json:"message,omitempty"`
	// Failures is the job's failures since its last success.
	Failures int64 `json:"errorsSinceLastSuccess"`
	// Disabled: this failure disabled the job (--disable_after_failures).
	Disabled bool   `json:"disabled"`
	Time     string `json:"time"`
}

type notifier struct {
	once    sync.Once
	pending chan Notice
}

// notifyFailure queues a notice of j's failed run. s.mu is held; nothing
// here blocks.
func (s *Service) notifyFailure(j Job, taskID, state, message string, disabled bool, now time.Time) {
	if s.cfg.NotificationURL == "" {
		return
	}
	s.notes.once.Do(func() { s.notes.pending = make(chan Notice, maxPendingNotices) })
	n := Notice{Job: j.Name, Owners: splitOwners(j.Owner), OwnerName: j.OwnerName, TaskID: taskID, TaskState: state,
		Message: truncate(message, 1024), Failures: j.ErrorsSinceSuccess, Disabled: disabled, Time: now.UTC().Format(timeFormat)}
	select {
	case s.notes.pending <- n:
	default:
		s.log.Warn("failure notices are backing up; one dropped", "job", j.Name, "task_id", taskID)
	}
}

// sendNotices POSTs the queued notices until ctx ends.
func (s *Service) sendNotices(ctx context.Context) {
	if s.cfg.NotificationURL == "" {
		return
	}
	s.notes.once.Do(func() { s.notes.pending = make(chan Notice, maxPendingNotices) })
	client := &http.Client{Timeout: notifyTimeout}
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-s.notes.pending:
			body, _ := json.Marshal(n)
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.NotificationURL, bytes.NewReader(body))
			if err != nil {
				s.log.Warn("cannot make the failure notice", "url", s.cfg.NotificationURL, "err", err)
				continue
			}
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				s.log.Warn("failure notice not delivered", "job", n.Job, "url", s.cfg.NotificationURL, "err", err)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode >= 300 {
				s.log.Warn("failure notice refused", "job", n.Job, "url", s.cfg.NotificationURL, "status", resp.Status)
			}
		}
	}
}

func splitOwners(s string) []string {
	out := []string{}
	for _, o := range bytes.Split([]byte(s), []byte(",")) {
		if o = bytes.TrimSpace(o); len(o) > 0 {
			out = append(out, string(o))
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
