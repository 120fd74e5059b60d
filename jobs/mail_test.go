package jobs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"io"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/internal/testutil"
)

// smtpServer is a small SMTP server on loopback: it takes mail as a
// relay would and keeps it; the first tempFail sessions are answered 451
// at MAIL FROM. With implicit it speaks TLS from the first byte; with
// starttls it offers STARTTLS, and breakTLS makes that fail. It keeps
// every command it is sent, and every byte off the wire.
type smtpServer struct {
	ln       net.Listener
	tempFail int
	// implicit: TLS from the first byte (SMTPS); starttls: STARTTLS
	// offered, and then served with this configuration.
	implicit, starttls *tls.Config
	// breakTLS is how an offered STARTTLS fails: "" (it does not),
	// "refuse" (454), "not TLS" (220, then no TLS), "close" (220, then
	// the connection closed).
	breakTLS string

	mu       sync.Mutex
	sessions int
	mails    []smtpMail
	commands []string // "plain VERB" or "tls VERB"
	wire     bytes.Buffer
}

type smtpMail struct {
	auth, from string
	to         []string
	data       string
	// authTLS, dataTLS: AUTH and DATA came over TLS.
	authTLS, dataTLS bool
}

func startSMTP(t *testing.T, tempFail int) *smtpServer {
	t.Helper()
	return serveSMTP(t, &smtpServer{tempFail: tempFail})
}

// serveSMTP starts s on loopback.
func serveSMTP(t *testing.T, s *smtpServer) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln = ln
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.session(c)
		}
	}()
	return s
}

// wireConn keeps what the client sends, as it crossed the wire.
type wireConn struct {
	net.Conn
	s *smtpServer
}

func (w wireConn) Read(b []byte) (int, error) {
	n, err := w.Conn.Read(b)
	w.s.mu.Lock()
	w.s.wire.Write(b[:n])
	w.s.mu.Unlock()
	return n, err
}

func (s *smtpServer) session(raw net.Conn) {
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	wire := wireConn{Conn: raw, s: s}
	var c net.Conn = wire
	inTLS := s.implicit != nil
	if inTLS {
		c = tls.Server(wire, s.implicit)
	}
	tp := textproto.NewConn(c)
	s.mu.Lock()
	s.sessions++
	fail := s.tempFail > 0
	if fail {
		s.tempFail--
	}
	s.mu.Unlock()
	var m smtpMail
	tp.PrintfLine("220 mail.test ESMTP")
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		s.mu.Lock()
		s.commands = append(s.commands, map[bool]string{false: "plain ", true: "tls "}[inTLS]+verb)
		s.mu.Unlock()
		switch verb {
		case "EHLO", "HELO":
			tp.PrintfLine("250-mail.test")
			if s.starttls != nil && !inTLS {
				tp.PrintfLine("250-STARTTLS")
			}
			// AUTH is offered before TLS too, as some servers do: the
			// client must wait for TLS all the same.
			tp.PrintfLine("250 AUTH PLAIN")
		case "STARTTLS":
			if s.starttls == nil || inTLS {
				tp.PrintfLine("503 5.5.1 not now")
				continue
			}
			switch s.breakTLS {
			case "refuse":
				tp.PrintfLine("454 4.7.0 TLS not available")
				continue
			case "close":
				tp.PrintfLine("220 2.0.0 go ahead")
				return
			case "not TLS":
				// The client's hello answered in plain SMTP; whatever it
				// sends after is kept.
				tp.PrintfLine("220 2.0.0 go ahead")
				wire.Read(make([]byte, 4096))
				tp.PrintfLine("250 this is not TLS")
				io.Copy(io.Discard, wire)
				return
			}
			tp.PrintfLine("220 2.0.0 go ahead")
			tc := tls.Server(wire, s.starttls)
			if err := tc.Handshake(); err != nil {
				io.Copy(io.Discard, wire)
				return
			}
			tp, inTLS, m = textproto.NewConn(tc), true, smtpMail{}
		case "AUTH":
			_, b64, _ := strings.Cut(arg, " ")
			b, _ := base64.StdEncoding.DecodeString(b64)
			m.auth, m.authTLS = string(b), inTLS
			tp.PrintfLine("235 2.7.0 accepted")
		case "MAIL":
			if fail {
				tp.PrintfLine("451 4.3.0 try again later")
				continue
			}
			m.from = arg
			tp.PrintfLine("250 ok")
		case "RCPT":
			m.to = append(m.to, arg)
			tp.PrintfLine("250 ok")
		case "DATA":
			tp.PrintfLine("354 go on")
			b, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			m.data, m.dataTLS = string(b), inTLS
			s.mu.Lock()
			s.mails = append(s.mails, m)
			s.mu.Unlock()
			tp.PrintfLine("250 queued")
		case "QUIT":
			tp.PrintfLine("221 bye")
			return
		default:
			tp.PrintfLine("250 ok")
		}
	}
}

func (s *smtpServer) got() ([]smtpMail, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]smtpMail(nil), s.mails...), s.sessions
}

// failRun makes a run of job name fail for good, as a terminal update
// would.
func failRun(t *testing.T, s *Service, name, message string) string {
	t.Helper()
	ctx := context.Background()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	r := s.newRunLocked(s.jobs[name], 0, "", now)
	r.taskID, r.agentID, r.state = TaskID(name, 0, now), "agent-1", runRunning
	s.runs.byTask[r.taskID] = r
	if !s.finishRunLocked(ctx, r, s.jobs[name], false, "TASK_FAILED", message) {
		t.Fatal("the failure was not recorded")
	}
	return r.taskID
}

// TestMailNotices: a failed run, and the job disabled by its failures,
// are mailed to the job's owners through a real SMTP session over
// loopback (AUTH PLAIN, a first attempt answered 451 and retried); the
// headers and the body say what failed; nothing the job or the task says
// reaches a header.
func TestMailNotices(t *testing.T) {
	smtpd := startSMTP(t, 1)
	st, err := frameworks.OpenLocalStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := New(ctx, Config{Master: "127.0.0.1:1", Hostname: "jobs.example", HTTPPort: 4400, Store: st,
		DisableAfterFailures: 2, NoticeBackoff: 10 * time.Millisecond,
		Mail: &MailConfig{Server: smtpd.ln.Addr().String(), From: "Chronos <chronos@example.com>", User: "mailer", Password: "s3cret"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.sendNotices(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	j, _ := DecodeJob([]byte(`{"name":"nightly","command":"backup.sh","schedule":"R/2030-01-01T00:00:00Z/P1D","retries":0,
		"owner":"ops@example.com, Dev Team <dev@example.com>, not an address","ownerName":"Ops\r\nBcc: evil@example.com"}`))
	if err := s.AddJob(ctx, j, true); err != nil {
		t.Fatal(err)
	}
	first := failRun(t, s, "nightly", "exit status 3\r\nBcc: evil@example.com\r\n.\r\nQUIT")
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { m, _ := smtpd.got(); return len(m) == 1 }, "the first notice mailed")
	second := failRun(t, s, "nightly", "exit status 4")
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { m, _ := smtpd.got(); return len(m) == 2 }, "the second notice mailed")

	mails, sessions := smtpd.got()
	if sessions != 3 {
		t.Errorf("%d SMTP sessions, want 3 (the first answered 451 and retried)", sessions)
	}
	for i, m := range mails {
		if m.auth != "\x00mailer\x00s3cret" {
			t.Errorf("mail %d: AUTH PLAIN %q", i, m.auth)
		}
		if m.from != "FROM:<chronos@example.com>" || strings.Join(m.to, " ") != "TO:<ops@example.com> TO:<dev@example.com>" {
			t.Errorf("mail %d: envelope from %q to %q", i, m.from, m.to)
		}
		msg, err := mail.ReadMessage(bufio.NewReader(strings.NewReader(m.data)))
		if err != nil {
			t.Fatalf("mail %d: %v\n%s", i, err, m.data)
		}
		h := msg.Header
		if h.Get("From") != `"Chronos" <chronos@example.com>` || h.Get("To") != "<ops@example.com>, <dev@example.com>" ||
			h.Get("Content-Type") != "text/plain; charset=utf-8" || h.Get("Date") == "" || h.Get("Message-Id") == "" || h.Get("Bcc") != "" {
			t.Errorf("mail %d: headers %v", i, h)
		}
		body := make([]byte, 4096)
		n, _ := msg.Body.Read(body)
		text := string(body[:n])
		want := []string{"Task:    " + first, "State:   TASK_FAILED", "Message: exit status 3  Bcc: evil@example.com  .  QUIT",
			"Owner:   Ops  Bcc: evil@example.com", "http://jobs.example:4400/#/job/nightly"}
		subject := "[Chronos] job 'nightly' failed!"
		if i == 1 {
			want = []string{"disabled after 2 failures", "Task:    " + second, "Message: exit status 4", "Failures since the last success: 2"}
			subject = "[Chronos] job 'nightly' disabled after 2 failures"
		}
		if h.Get("Subject") != subject {
			t.Errorf("mail %d: subject %q, want %q", i, h.Get("Subject"), subject)
		}
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("mail %d: body lacks %q:\n%s", i, w, text)
			}
		}
	}
}

// TestMailNoticeBounded: with the mail server not answering, failures
// never wait for it; notices beyond the queue are dropped.
func TestMailNoticeBounded(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // accepts nothing: every session hangs
	st, err := frameworks.OpenLocalStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, Config{Master: "127.0.0.1:1", Hostname: "jobs.example", Store: st,
		Mail: &MailConfig{Server: ln.Addr().String(), From: "chronos@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.sendNotices(ctx); close(done) }()
	j, _ := DecodeJob([]byte(`{"name":"flaky","command":"false","schedule":"R/2030-01-01T00:00:00Z/P1D","retries":0,"owner":"ops@example.com"}`))
	if err := s.AddJob(ctx, j, true); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for range maxPendingNotices + 20 {
		failRun(t, s, "flaky", "no")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%d failures took %s: the scheduler waited for the mail", maxPendingNotices+20, d)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the mail sender did not stop with its context")
	}
}

func TestMailConfigValidate(t *testing.T) {
	for _, c := range []struct {
		cfg MailConfig
		ok  bool
	}{
		{MailConfig{Server: "smtp.example.com:587", From: "chronos@example.com"}, true},
		{MailConfig{Server: "smtp.example.com:465", From: "Chronos <chronos@example.com>", User: "u", Password: "p", SSL: true}, true},
		{MailConfig{Server: "smtp.example.com", From: "chronos@example.com"}, false},
		{MailConfig{Server: "smtp.example.com:25"}, false},
		{MailConfig{Server: "smtp.example.com:25", From: "not an address"}, false},
		{MailConfig{Server: "smtp.example.com:25", From: "a@example.com", User: "u"}, false},
	} {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v, want ok=%v", c.cfg, err, c.ok)
		}
	}
}

// TestTruncateAtRune: a task's message is cut to 1,024 bytes at the start
// of a character, so that the notice stays valid UTF-8.
func TestTruncateAtRune(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 3, "abc"},
		{"abcd", 3, "abc"},
		{"aü", 2, "a"},   // ü is 2 bytes
		{"a✓b", 3, "a"},  // ✓ is 3 bytes
		{"a✓b", 4, "a✓"}, // cut after it
		{"✓", 1, ""},
		{strings.Repeat("ü", 600), 1024, strings.Repeat("ü", 512)},
		{"a" + strings.Repeat("ü", 600), 1024, "a" + strings.Repeat("ü", 511)},
	} {
		got := truncate(c.s, c.n)
		if got != c.want || !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
	}
}
