package jobs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mesolite/mesolite/errdefs"
)

// Failure notices. Chronos tells a job's owners when it fails; here each
// run that fails for good (after its retries), and each job disabled after
// --disable_after_failures, makes a Notice, delivered to each configured
// sink: --http_notification_url (POSTed as JSON) and --mail_server (mailed
// to the job's owners, mail.go). Each sink has its own queue and sender,
// so a dead mail server does not hold up the webhook: the notices go out
// in the background, one at a time per sink, each attempt within
// notifyTimeout, retried after a backoff (noticeBackoff, doubling) up to
// maxNoticeAttempts unless the receiver refused it for good; a backlog
// beyond maxPendingNotices is dropped with a log line. The scheduler only
// ever queues without waiting.

const (
	notifyTimeout        = 10 * time.Second
	maxPendingNotices    = 100
	maxNoticeAttempts    = 4
	defaultNoticeBackoff = 2 * time.Second
)

// Notice is what --http_notification_url receives, and what a mail tells.
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
	// Cluster is --cluster_name.
	Cluster string `json:"cluster,omitempty"`
}

// maxClusterName bounds --cluster_name, which goes into mail subjects.
const maxClusterName = 100

// ValidClusterName checks --cluster_name: it goes into a mail's Subject
// header, so no control characters (a line break would start a header of
// the name's choosing), and at most maxClusterName bytes.
func ValidClusterName(name string) error {
	if len(name) > maxClusterName || !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) {
		return fmt.Errorf("--cluster_name %.40q: at most %d bytes of UTF-8 text without control characters: %w", name, maxClusterName, errdefs.ErrInvalid)
	}
	return nil
}

// noticeSink delivers notices to one receiver, from its own bounded
// queue.
type noticeSink struct {
	name    string // for logs: "webhook", "mail"
	pending chan Notice
	deliver func(ctx context.Context, n Notice) error
}

// notifier is the sinks configured.
type notifier struct {
	sinks   []*noticeSink
	backoff time.Duration // before the second attempt; doubles
}

// permanent marks a delivery error that trying again would not mend (a
// receiver's refusal, a notice without recipients).
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// setupNotices makes the sinks the configuration asks for.
func (s *Service) setupNotices() {
	s.notes.backoff = s.cfg.NoticeBackoff
	if s.notes.backoff <= 0 {
		s.notes.backoff = defaultNoticeBackoff
	}
	add := func(name string, deliver func(context.Context, Notice) error) {
		s.notes.sinks = append(s.notes.sinks, &noticeSink{name: name, pending: make(chan Notice, maxPendingNotices), deliver: deliver})
	}
	client := &http.Client{Timeout: notifyTimeout}
	if s.cfg.NotificationTLS != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = s.cfg.NotificationTLS.Clone()
		client.Transport = tr
	}
	if s.cfg.NotificationURL != "" {
		add("webhook", func(ctx context.Context, n Notice) error {
			body, _ := json.Marshal(n)
			return s.post(ctx, client, s.cfg.NotificationURL, body, s.cfg.NotificationUser, s.cfg.NotificationPassword)
		})
	}
	// Slack's incoming webhooks and Mattermost's take the same message.
	for _, chat := range []struct{ name, url string }{{"slack", s.cfg.SlackURL}, {"mattermost", s.cfg.MattermostURL}} {
		if chat.url == "" {
			continue
		}
		add(chat.name, func(ctx context.Context, n Notice) error {
			body, _ := json.Marshal(map[string]string{"text": s.chatText(n)})
			return s.post(ctx, client, chat.url, body, "", "")
		})
	}
	if s.cfg.Mail != nil {
		m := &mailer{cfg: *s.cfg.Mail, pageURL: s.scheme() + "://" + s.self() + "/", log: s.log}
		add("mail", m.send)
	}
}

// notifyFailure queues a notice of j's failed run for each sink. s.mu is
// held; nothing here blocks.
func (s *Service) notifyFailure(j Job, taskID, state, message string, disabled bool, now time.Time) {
	if len(s.notes.sinks) == 0 {
		return
	}
	n := Notice{Job: j.Name, Owners: splitOwners(j.Owner), OwnerName: j.OwnerName, TaskID: taskID, TaskState: state,
		Message: truncate(message, 1024), Failures: j.ErrorsSinceSuccess, Disabled: disabled, Time: now.UTC().Format(timeFormat),
		Cluster: s.cfg.ClusterName}
	for _, sink := range s.notes.sinks {
		select {
		case sink.pending <- n:
		default:
			s.log.Warn("failure notices are backing up; one dropped", "sink", sink.name, "job", j.Name, "task_id", taskID)
		}
	}
}

// sendNotices delivers the queued notices, a sender per sink, until ctx
// ends.
func (s *Service) sendNotices(ctx context.Context) {
	done := make(chan struct{})
	for _, sink := range s.notes.sinks {
		go func() {
			defer func() { done <- struct{}{} }()
			for {
				select {
				case <-ctx.Done():
					return
				case n := <-sink.pending:
					s.deliver(ctx, sink, n)
				}
			}
		}()
	}
	for range s.notes.sinks {
		<-done
	}
}

// deliver tries a notice on a sink until it is delivered, refused for
// good, out of attempts, or ctx ends.
func (s *Service) deliver(ctx context.Context, sink *noticeSink, n Notice) {
	wait := s.notes.backoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, notifyTimeout)
		err := sink.deliver(actx, n)
		cancel()
		if err == nil {
			s.log.Debug("failure notice delivered", "sink", sink.name, "job", n.Job, "task_id", n.TaskID)
			return
		}
		var p permanent
		if errors.As(err, &p) || attempt >= maxNoticeAttempts || ctx.Err() != nil {
			s.log.Warn("failure notice not delivered", "sink", sink.name, "job", n.Job, "task_id", n.TaskID, "attempts", attempt, "err", err)
			return
		}
		s.log.Info("failure notice not delivered; trying again", "sink", sink.name, "job", n.Job, "attempt", attempt, "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// post POSTs a notice's JSON body to url (with HTTP Basic when user is
// set). A 4xx (or 3xx) answer is a refusal for good; a 5xx or no answer is
// tried again.
func (s *Service) post(ctx context.Context, client *http.Client, url string, body []byte, user, password string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return permanent{fmt.Errorf("making the request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	// Where it went is said without the URL itself: a chat webhook's URL
	// is its secret, and it would end up in the log.
	switch {
	case resp.StatusCode >= 500:
		return fmt.Errorf("%s answered %s", req.URL.Host, resp.Status)
	case resp.StatusCode >= 300:
		return permanent{fmt.Errorf("%s answered %s", req.URL.Host, resp.Status)}
	}
	return nil
}

// chatEscaper escapes what Slack (and Mattermost) read as markup in a
// message: a task's message or an owner could otherwise mention
// @channel (<!channel>) or make a link say something else (<url|text>).
var chatEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// chatText is notice n as one chat message: what a mail's subject and
// body say, with a link to the job's page; what jobs and tasks say is
// escaped.
func (s *Service) chatText(n Notice) string {
	// n is a copy, its Owners not: the other sinks share them.
	n.Message, n.Cluster = chatEscaper.Replace(n.Message), chatEscaper.Replace(n.Cluster)
	owners := make([]string, len(n.Owners))
	for i, o := range n.Owners {
		owners[i] = chatEscaper.Replace(o)
	}
	n.Owners = owners
	var b strings.Builder
	if n.Cluster != "" {
		fmt.Fprintf(&b, "[%s] ", n.Cluster)
	}
	if n.Disabled {
		fmt.Fprintf(&b, "[Chronos] job '%s' disabled after %d failures", n.Job, n.Failures)
	} else {
		fmt.Fprintf(&b, "[Chronos] job '%s' failed!", n.Job)
	}
	fmt.Fprintf(&b, "\nTask: %s\nState: %s", n.TaskID, n.TaskState)
	if n.Message != "" {
		fmt.Fprintf(&b, "\nMessage: %s", bodyText(n.Message))
	}
	fmt.Fprintf(&b, "\nTime: %s\nFailures since the last success: %d", n.Time, n.Failures)
	if len(n.Owners) > 0 {
		fmt.Fprintf(&b, "\nOwners: %s", strings.Join(n.Owners, ", "))
	}
	fmt.Fprintf(&b, "\n%s://%s/#/job/%s", s.scheme(), s.self(), url.PathEscape(n.Job))
	return b.String()
}

func splitOwners(s string) []string {
	out := []string{}
	for o := range strings.SplitSeq(s, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// truncate is s cut to at most n bytes, at the start of a character: cut
// inside one, a message would be invalid UTF-8 in a mail said to be
// UTF-8 (and a U+FFFD in the webhook's JSON).
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
