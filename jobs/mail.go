package jobs

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/tlsconfig"
)

// Mail notices (Chronos's --mail_server): each failure notice is mailed to
// the job's owners, the addresses in its comma-separated `owner`, through
// one SMTP server. With --mail_ssl the connection is TLS from the first
// byte (SMTPS, port 465 as a rule); without it, STARTTLS is used when the
// server offers it. The server's certificate is verified against the
// system's roots and --ssl_ca_file's CA, for the host of --mail_server; a
// handshake that fails, STARTTLS's included, ends the session before
// anything else is sent (the notice is tried again, then logged).
// Credentials (--mail_user, --mail_password) go only over TLS, or to a
// server on loopback (net/smtp's PLAIN refuses otherwise). Nothing a job
// says reaches a header unchecked: owners are parsed as addresses, the
// subject holds only the job's validated name, and the task's message
// goes into the body with control characters replaced.

// MailConfig is where and how failure notices are mailed.
type MailConfig struct {
	// Server is --mail_server, host:port.
	Server string
	// From is --mail_from, the sender's address.
	From string
	// User and Password are --mail_user and --mail_password; empty: no
	// authentication.
	User, Password string
	// SSL is --mail_ssl: TLS from the first byte.
	SSL bool
	// TLS verifies the server: --ssl_ca_file's CA besides the system's
	// roots; nil: the system's roots. The certificate must name Server's
	// host (ServerName, when empty, is set to it).
	TLS *tls.Config
}

// Validate checks the mail settings.
func (c MailConfig) Validate() error {
	host, port, err := net.SplitHostPort(c.Server)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("--mail_server %q: want host:port: %w", c.Server, errdefs.ErrInvalid)
	}
	if c.From == "" {
		return fmt.Errorf("--mail_from is required with --mail_server: %w", errdefs.ErrInvalid)
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return fmt.Errorf("--mail_from %q: %v: %w", c.From, err, errdefs.ErrInvalid)
	}
	if (c.User == "") != (c.Password == "") {
		return fmt.Errorf("--mail_user and --mail_password go together: %w", errdefs.ErrInvalid)
	}
	return nil
}

// mailer sends notices by mail.
type mailer struct {
	cfg MailConfig
	// pageURL is the jobs page, for a link to the job.
	pageURL string
	log     *slog.Logger
}

// send mails notice n to the job's owners: no owner with an address is a
// permanent error, as is a refusal (5xx) by the server; a 4xx or a broken
// connection is worth another attempt.
func (m *mailer) send(ctx context.Context, n Notice) error {
	var to []string
	var bad []string
	for _, o := range n.Owners {
		a, err := mail.ParseAddress(o)
		if err != nil {
			bad = append(bad, o)
			continue
		}
		to = append(to, a.Address)
	}
	if len(to) == 0 {
		return permanent{fmt.Errorf("job %s has no owner with a mail address (owner %q)", n.Job, strings.Join(n.Owners, ","))}
	}
	msg, err := m.message(n, to, time.Now())
	if err != nil {
		return permanent{err}
	}
	err = m.transmit(ctx, to, msg)
	var te *textproto.Error
	if errors.As(err, &te) && te.Code >= 500 {
		return permanent{err}
	}
	if err == nil && len(bad) > 0 {
		m.log.Warn("failure notice mailed, but some owners are not mail addresses", "job", n.Job, "owners", bad)
	}
	return err
}

// message is the mail of notice n, headers and body, with CRLF line ends.
func (m *mailer) message(n Notice, to []string, now time.Time) ([]byte, error) {
	from, err := mail.ParseAddress(m.cfg.From)
	if err != nil {
		return nil, fmt.Errorf("--mail_from: %w", err)
	}
	subject := fmt.Sprintf("[Chronos] job '%s' failed!", n.Job)
	if n.Disabled {
		subject = fmt.Sprintf("[Chronos] job '%s' disabled after %d failures", n.Job, n.Failures)
	}
	if n.Cluster != "" {
		// As Chronos: the cluster first, so that one inbox tells clusters
		// apart (the name has no control characters: ValidClusterName).
		subject = "[" + n.Cluster + "] " + subject
	}
	id := make([]byte, 12)
	rand.Read(id)
	var rcpts []string
	for _, a := range to {
		rcpts = append(rcpts, (&mail.Address{Address: a}).String())
	}
	var b bytes.Buffer
	header := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	header("From", from.String())
	header("To", strings.Join(rcpts, ", "))
	// A cluster name may be UTF-8, which a header carries encoded.
	header("Subject", mime.QEncoding.Encode("utf-8", subject))
	header("Date", now.Format(time.RFC1123Z))
	header("Message-ID", "<"+hex.EncodeToString(id)+"@mesolite.jobs>")
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "8bit")
	header("Auto-Submitted", "auto-generated")
	b.WriteString("\r\n")
	line := func(format string, a ...any) { b.WriteString(fmt.Sprintf(format, a...) + "\r\n") }
	if n.Disabled {
		line("Job %s failed and was disabled after %d failures in a row.", n.Job, n.Failures)
	} else {
		line("Job %s failed.", n.Job)
	}
	line("")
	line("Task:    %s", n.TaskID)
	line("State:   %s", n.TaskState)
	if n.Message != "" {
		line("Message: %s", bodyText(n.Message))
	}
	if n.Cluster != "" {
		line("Cluster: %s", n.Cluster)
	}
	line("Time:    %s", n.Time)
	line("Failures since the last success: %d", n.Failures)
	if n.OwnerName != "" {
		line("Owner:   %s", bodyText(n.OwnerName))
	}
	line("")
	line("%s#/job/%s", m.pageURL, url.PathEscape(n.Job))
	return b.Bytes(), nil
}

// bodyText is s on one line of the body: control characters (line
// breaks among them) become spaces.
func bodyText(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
}

// transmit is one SMTP session delivering msg to the recipients, within
// ctx and notifyTimeout.
func (m *mailer) transmit(ctx context.Context, to []string, msg []byte) error {
	host, _, _ := net.SplitHostPort(m.cfg.Server)
	tlsConfig := &tls.Config{}
	if m.cfg.TLS != nil {
		tlsConfig = m.cfg.TLS.Clone()
	}
	if tlsConfig.ServerName == "" {
		// net/smtp's StartTLS, unlike tls.Dial, would not fill it in and
		// every handshake would fail.
		tlsConfig.ServerName = host
	}
	deadline := time.Now().Add(notifyTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	dialer := &net.Dialer{Deadline: deadline}
	var conn net.Conn
	var err error
	if m.cfg.SSL {
		conn, err = (&tls.Dialer{NetDialer: dialer, Config: tlsConfig}).DialContext(ctx, "tcp", m.cfg.Server)
	} else {
		conn, err = dialer.DialContext(ctx, "tcp", m.cfg.Server)
	}
	if err != nil {
		return fmt.Errorf("connecting to the mail server %s: %w", m.cfg.Server, explainMailTLS(err, true))
	}
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("mail server %s: %w", m.cfg.Server, err)
	}
	defer c.Close()
	step := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("mail server %s: %s: %w", m.cfg.Server, what, err)
		}
		return nil
	}
	if err := step("EHLO", c.Hello("mesolite")); err != nil {
		return err
	}
	if !m.cfg.SSL {
		if ok, _ := c.Extension("STARTTLS"); ok {
			// A failed STARTTLS ends the session: nothing, the password
			// least of all, is sent in clear after an offer of TLS.
			if err := step("STARTTLS", explainMailTLS(c.StartTLS(tlsConfig), false)); err != nil {
				return err
			}
		}
	}
	if m.cfg.User != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return permanent{fmt.Errorf("mail server %s offers no authentication, and --mail_user is set", m.cfg.Server)}
		}
		if err := step("AUTH", c.Auth(smtp.PlainAuth("", m.cfg.User, m.cfg.Password, host))); err != nil {
			return err
		}
	}
	from, _ := mail.ParseAddress(m.cfg.From)
	if err := step("MAIL FROM", c.Mail(from.Address)); err != nil {
		return err
	}
	for _, a := range to {
		if err := step("RCPT TO "+a, c.Rcpt(a)); err != nil {
			return err
		}
	}
	w, err := c.Data()
	if err := step("DATA", err); err != nil {
		return err
	}
	if _, err := w.Write(msg); err != nil {
		return step("DATA", err)
	}
	if err := step("DATA", w.Close()); err != nil {
		return err
	}
	return step("QUIT", c.Quit())
}

// explainMailTLS says what a failed TLS handshake with the mail server
// means and what mends it, for a session in TLS from the first byte
// (implicit) or after STARTTLS; errors.Is finds tlsconfig.ErrUntrusted or
// ErrNotTLS in it, and the handshake's own error. Others are returned as
// they are.
func explainMailTLS(err error, implicit bool) error {
	var (
		hostname x509.HostnameError
		verify   *tls.CertificateVerificationError
		record   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &hostname):
		return fmt.Errorf("%w: %w (the certificate must name the host of --mail_server)", tlsconfig.ErrUntrusted, err)
	case errors.As(err, &verify):
		return fmt.Errorf("%w: %w (give the CA that signed it with --ssl_ca_file)", tlsconfig.ErrUntrusted, err)
	case errors.As(err, &record) && !implicit:
		return fmt.Errorf("%w: %w (the server offered STARTTLS and answered it, then did not speak TLS)", tlsconfig.ErrNotTLS, err)
	case errors.As(err, &record):
		return fmt.Errorf("%w: %w (--mail_ssl wants TLS from the first byte, as on port 465; leave it out for STARTTLS, as on ports 25 and 587)", tlsconfig.ErrNotTLS, err)
	}
	return err
}
