package jobs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/internal/tlsconfig"
)

// Notices over TLS: mail against the SMTP server of mail_test.go speaking
// SMTPS or STARTTLS, and --http_notification_url over https, with
// certificates made here and trusted as --ssl_ca_file makes them.

const (
	mailUser, mailPassword = "mailer", "s3cret"
	mailJob                = "nightly"
)

// mailSecrets are what must never cross the wire in clear: the password,
// and AUTH PLAIN's base64 of the credentials.
var mailSecrets = []string{mailPassword, base64.StdEncoding.EncodeToString([]byte("\x00" + mailUser + "\x00" + mailPassword))}

// testCA is a certificate authority of the test's own making.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// file is its certificate in PEM, as --ssl_ca_file takes it.
	file string
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, file: file}
}

// server is a server's TLS configuration with a certificate the CA signed
// for names (IP addresses or host names).
func (ca *testCA) server(t *testing.T, names ...string) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}

// trusting is the client configuration `mesolite jobs --ssl_ca_file`
// makes of the CA's file.
func trusting(t *testing.T, ca *testCA) *tls.Config {
	t.Helper()
	cfg, err := tlsconfig.Files{CA: ca.file}.ClientWithSystemRoots()
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// mailService is a Service mailing its notices as mc says, with its
// sender running, and its log.
func mailService(t *testing.T, mc MailConfig) (*Service, *testutil.SyncBuffer) {
	t.Helper()
	return noticeService(t, Config{HTTPPort: 4400, Mail: &mc}, `{"name":"`+mailJob+`","command":"backup.sh","schedule":"R/2030-01-01T00:00:00Z/P1D","retries":0,
		"owner":"ops@example.com","ownerName":"Ops Team"}`)
}

// noticeService is a Service with cfg's notice receivers (its store,
// master, backoff and logger filled in), its sender running and the job
// jobJSON added, and its log.
func noticeService(t *testing.T, cfg Config, jobJSON string) (*Service, *testutil.SyncBuffer) {
	t.Helper()
	st, err := frameworks.OpenLocalStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testutil.SyncBuffer{}
	cfg.Master, cfg.Hostname, cfg.Store = "127.0.0.1:1", "jobs.example", st
	cfg.NoticeBackoff, cfg.Logger = 10*time.Millisecond, slog.New(slog.NewTextHandler(logs, nil))
	s, err := New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.sendNotices(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	j, err := DecodeJob([]byte(jobJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddJob(ctx, j, true); err != nil {
		t.Fatal(err)
	}
	return s, logs
}

// checkWire fails the test if a secret, or anything of the notice,
// crossed the wire in clear.
func checkWire(t *testing.T, smtpd *smtpServer) {
	t.Helper()
	smtpd.mu.Lock()
	wire := smtpd.wire.String()
	smtpd.mu.Unlock()
	for _, secret := range append(mailSecrets, mailJob, "ops@example.com", "chronos@example.com") {
		if strings.Contains(wire, secret) {
			t.Errorf("%q crossed the wire in clear", secret)
		}
	}
}

func (s *smtpServer) sent() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}

// TestMailOverTLS: a notice mailed over SMTPS (--mail_ssl) and over
// STARTTLS to a server whose certificate a CA of the test's own signed,
// trusted through --ssl_ca_file's configuration: AUTH and the mail go
// only over TLS (nothing of either crosses the wire in clear), the server
// gets the credentials, and the mail arrives intact.
func TestMailOverTLS(t *testing.T) {
	ca := newTestCA(t, "mail test CA")
	for _, c := range []struct {
		name string
		ssl  bool
		host string // what --mail_server names
	}{
		{"implicit TLS", true, "127.0.0.1"},
		{"STARTTLS", false, "localhost"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := &smtpServer{}
			if c.ssl {
				srv.implicit = ca.server(t, "127.0.0.1", "localhost")
			} else {
				srv.starttls = ca.server(t, "127.0.0.1", "localhost")
			}
			smtpd := serveSMTP(t, srv)
			_, port, _ := net.SplitHostPort(smtpd.ln.Addr().String())
			s, _ := mailService(t, MailConfig{Server: net.JoinHostPort(c.host, port), From: "Chronos <chronos@example.com>",
				User: mailUser, Password: mailPassword, SSL: c.ssl, TLS: trusting(t, ca)})
			message := strings.Repeat("ünïcødé ✓ ", 40) + "the end"
			taskID := failRun(t, s, mailJob, message)
			testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { m, _ := smtpd.got(); return len(m) == 1 }, "the notice mailed")

			mails, sessions := smtpd.got()
			if sessions != 1 {
				t.Errorf("%d sessions, want 1", sessions)
			}
			m := mails[0]
			if !m.authTLS || !m.dataTLS || m.auth != "\x00"+mailUser+"\x00"+mailPassword {
				t.Errorf("AUTH %q (over TLS: %v), DATA over TLS: %v; want the credentials, both over TLS", m.auth, m.authTLS, m.dataTLS)
			}
			want := []string{"tls EHLO", "tls AUTH", "tls MAIL", "tls RCPT", "tls DATA", "tls QUIT"}
			if !c.ssl {
				want = append([]string{"plain EHLO", "plain STARTTLS"}, want...)
			}
			if got := smtpd.sent(); strings.Join(got, ",") != strings.Join(want, ",") {
				t.Errorf("commands %q, want %q", got, want)
			}
			checkWire(t, smtpd)

			if m.from != "FROM:<chronos@example.com>" || strings.Join(m.to, " ") != "TO:<ops@example.com>" {
				t.Errorf("envelope from %q to %q", m.from, m.to)
			}
			msg, err := mail.ReadMessage(strings.NewReader(m.data))
			if err != nil {
				t.Fatalf("%v\n%s", err, m.data)
			}
			h := msg.Header
			if h.Get("From") != `"Chronos" <chronos@example.com>` || h.Get("To") != "<ops@example.com>" ||
				h.Get("Subject") != "[Chronos] job 'nightly' failed!" || h.Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Errorf("headers %v", h)
			}
			body, _ := io.ReadAll(msg.Body)
			lines := strings.Split(string(body), "\n")
			if len(lines) > 5 && strings.HasPrefix(lines[5], "Time:    ") {
				at, err := time.Parse(timeFormat, strings.TrimPrefix(lines[5], "Time:    "))
				if err != nil || time.Since(at) > time.Minute {
					t.Errorf("time %q: %v", lines[5], err)
				}
				lines[5] = "Time:    (checked)"
			}
			wantBody := []string{"Job nightly failed.", "", "Task:    " + taskID, "State:   TASK_FAILED", "Message: " + message,
				"Time:    (checked)", "Failures since the last success: 1", "Owner:   Ops Team", "", "http://jobs.example:4400/#/job/nightly", ""}
			if strings.Join(lines, "\n") != strings.Join(wantBody, "\n") {
				t.Errorf("body:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(wantBody, "\n"))
			}
		})
	}
}

// givenUp waits until the service gives the notice up, every attempt
// made, and returns the log line that says so; it fails the test at once
// if the notice reached smtpd.
func givenUp(t *testing.T, logs *testutil.SyncBuffer, smtpd *smtpServer) string {
	t.Helper()
	var line string
	testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() bool {
		if m, _ := smtpd.got(); len(m) > 0 {
			return true
		}
		for l := range strings.SplitSeq(logs.String(), "\n") {
			if strings.Contains(l, `msg="failure notice not delivered"`) {
				line = l
				return true
			}
		}
		return false
	}, "the notice given up")
	if m, _ := smtpd.got(); len(m) > 0 {
		t.Errorf("the notice was mailed: AUTH %q (over TLS: %v), DATA over TLS: %v", m[0].auth, m[0].authTLS, m[0].dataTLS)
	}
	if !strings.Contains(line, "attempts="+strconv.Itoa(maxNoticeAttempts)) {
		t.Errorf("given up after other than %d attempts: %s", maxNoticeAttempts, line)
	}
	return line
}

// TestMailTLSUntrusted: a mail server whose certificate does not verify
// (signed by a CA --ssl_ca_file does not give, or for another host), over
// SMTPS or STARTTLS, or one that does not speak TLS at all under
// --mail_ssl, gets nothing: no AUTH, no mail, nothing secret in clear.
// The error says what is wrong and what mends it, each attempt is made,
// and the notice is reported as not delivered.
func TestMailTLSUntrusted(t *testing.T) {
	trusted, rogue := newTestCA(t, "mail test CA"), newTestCA(t, "someone else's CA")
	for _, c := range []struct {
		name  string
		ssl   bool
		cert  *tls.Config // nil: the server speaks no TLS
		class error
		says  string
	}{
		{"implicit TLS, unknown CA", true, rogue.server(t, "127.0.0.1"), tlsconfig.ErrUntrusted, "give the CA that signed it with --ssl_ca_file"},
		{"implicit TLS, another host", true, trusted.server(t, "mail.example.com"), tlsconfig.ErrUntrusted, "must name the host of --mail_server"},
		{"STARTTLS, unknown CA", false, rogue.server(t, "127.0.0.1"), tlsconfig.ErrUntrusted, "give the CA that signed it with --ssl_ca_file"},
		{"STARTTLS, another host", false, trusted.server(t, "mail.example.com"), tlsconfig.ErrUntrusted, "must name the host of --mail_server"},
		{"implicit TLS to a plain server", true, nil, tlsconfig.ErrNotTLS, "--mail_ssl wants TLS from the first byte"},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := &smtpServer{}
			if c.ssl {
				srv.implicit = c.cert
			} else {
				srv.starttls = c.cert
			}
			smtpd := serveSMTP(t, srv)
			mc := MailConfig{Server: smtpd.ln.Addr().String(), From: "chronos@example.com",
				User: mailUser, Password: mailPassword, SSL: c.ssl, TLS: trusting(t, trusted)}

			err := (&mailer{cfg: mc, log: slog.New(slog.DiscardHandler)}).send(context.Background(),
				Notice{Job: mailJob, Owners: []string{"ops@example.com"}, TaskID: "t", TaskState: "TASK_FAILED"})
			t.Logf("error: %v", err)
			var p permanent
			if !errors.Is(err, c.class) || errors.As(err, &p) || !strings.Contains(err.Error(), c.says) {
				t.Errorf("error %v: want %v, not permanent, saying %q", err, c.class, c.says)
			}

			s, logs := mailService(t, mc)
			failRun(t, s, mailJob, "exit status 1")
			line := givenUp(t, logs, smtpd)
			if !strings.Contains(line, c.says) {
				t.Errorf("the log does not say %q: %s", c.says, line)
			}
			mails, sessions := smtpd.got()
			if len(mails) != 0 || sessions != 1+maxNoticeAttempts {
				t.Errorf("%d mails in %d sessions, want none in %d", len(mails), sessions, 1+maxNoticeAttempts)
			}
			for _, cmd := range smtpd.sent() {
				if !c.ssl && cmd != "plain EHLO" && cmd != "plain STARTTLS" {
					t.Errorf("the server was sent %s", cmd)
				}
			}
			checkWire(t, smtpd)
		})
	}
}

// TestMailSTARTTLSAttack: a server (or a man in the middle) that offers
// STARTTLS and then refuses it, answers it without speaking TLS, or
// drops the connection is never sent the password, even on loopback
// where net/smtp would send it in clear: the session ends there, and the
// notice is tried again and reported.
func TestMailSTARTTLSAttack(t *testing.T) {
	ca := newTestCA(t, "mail test CA")
	for _, how := range []string{"refuse", "not TLS", "close"} {
		t.Run(how, func(t *testing.T) {
			smtpd := serveSMTP(t, &smtpServer{starttls: ca.server(t, "127.0.0.1"), breakTLS: how})
			s, logs := mailService(t, MailConfig{Server: smtpd.ln.Addr().String(), From: "chronos@example.com",
				User: mailUser, Password: mailPassword, TLS: trusting(t, ca)})
			failRun(t, s, mailJob, "exit status 1")
			line := givenUp(t, logs, smtpd)
			if !strings.Contains(line, "STARTTLS") {
				t.Errorf("the log does not say STARTTLS failed: %s", line)
			}
			mails, sessions := smtpd.got()
			if len(mails) != 0 || sessions != maxNoticeAttempts {
				t.Errorf("%d mails in %d sessions, want none in %d", len(mails), sessions, maxNoticeAttempts)
			}
			for _, cmd := range smtpd.sent() {
				if cmd != "plain EHLO" && cmd != "plain STARTTLS" {
					t.Errorf("the server was sent %s after a failed STARTTLS", cmd)
				}
			}
			checkWire(t, smtpd)
		})
	}
}

// TestNotificationURLOverTLS: an https --http_notification_url is
// verified with --ssl_ca_file's CA: a receiver whose certificate the CA
// signed gets the notice; one with a certificate of another CA gets
// nothing, and the notice is reported as not delivered.
func TestNotificationURLOverTLS(t *testing.T) {
	trusted, rogue := newTestCA(t, "webhook test CA"), newTestCA(t, "someone else's CA")
	for _, c := range []struct {
		name      string
		cert      *tls.Config
		delivered bool
	}{
		{"trusted", trusted.server(t, "127.0.0.1"), true},
		{"unknown CA", rogue.server(t, "127.0.0.1"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []Notice
			hook := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				var n Notice
				json.NewDecoder(r.Body).Decode(&n)
				mu.Lock()
				got = append(got, n)
				mu.Unlock()
			}))
			hook.TLS = c.cert
			hook.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
			hook.StartTLS()
			t.Cleanup(hook.Close)

			s, logs := noticeService(t, Config{NotificationURL: hook.URL, NotificationTLS: trusting(t, trusted)},
				`{"name":"nightly","command":"false","schedule":"R/2030-01-01T00:00:00Z/P1D","retries":0,"owner":"ops@example.com"}`)
			taskID := failRun(t, s, "nightly", "exit status 1")
			if c.delivered {
				testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { mu.Lock(); defer mu.Unlock(); return len(got) == 1 }, "the notice posted")
				mu.Lock()
				defer mu.Unlock()
				if got[0].Job != "nightly" || got[0].TaskID != taskID {
					t.Errorf("notice %+v", got[0])
				}
				return
			}
			testutil.Eventually(t, 20*time.Second, 10*time.Millisecond, func() bool {
				return strings.Contains(logs.String(), `msg="failure notice not delivered"`)
			}, "the notice given up")
			if l := logs.String(); !strings.Contains(l, "attempts="+strconv.Itoa(maxNoticeAttempts)) || !strings.Contains(l, "certificate signed by unknown authority") {
				t.Errorf("log:\n%s", l)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 0 {
				t.Errorf("%d notices posted to a server with an untrusted certificate", len(got))
			}
		})
	}
}
