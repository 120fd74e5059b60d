package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"

	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/cliflags"
)

// Exit statuses shared by the commands.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// command is a flag set with the plumbing every command repeats: usage to
// stdout on --help, errors to stderr, positional arguments allowed between
// flags (`logs TASK_ID --master=...` as well as `logs --master=... TASK_ID`).
type command struct {
	*cliflags.FlagSet
	name           string
	stdout, stderr io.Writer
	// creds are the credential flags, defined with --master; principal
	// and secret their values once parsed.
	creds             *credentials
	principal, secret string
	// master and sslCA are --master and --ssl_ca_file, defined together;
	// transport what they (and the environment) settle on.
	master, sslCA *string
	transport     *transport
}

func newCommand(name, synopsis string, stdout, stderr io.Writer) *command {
	// The scheduler client logs from its own goroutines to stderr too.
	stderr = &lockedWriter{w: stderr}
	fs := cliflags.New(name, synopsis)
	// The flag package prints its own errors and usage; we print ours, to
	// the right stream.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	// --help is printed by parse, to the command's stdout.
	fs.HelpOutput = nil
	return &command{FlagSet: fs, name: name, stdout: stdout, stderr: stderr}
}

// parse parses args and returns the positional arguments, or an exit
// status when the command must stop: 0 after --help, 2 for bad flags.
func (c *command) parse(args []string) (positional []string, exit int, stop bool) {
	for {
		err := c.Parse(args)
		switch {
		case errors.Is(err, flag.ErrHelp):
			c.PrintUsage(c.stdout)
			return nil, exitOK, true
		case err != nil:
			return nil, c.usageError("%v", err), true
		}
		rest := c.Args()
		// The flag package eats a "--" that ends the flags it parsed:
		// everything after it is positional, dashes or not.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			positional = append(positional, rest...)
			exit, stop := c.resolveCredentials()
			return positional, exit, stop
		}
		// Go's flag package stops at the first positional argument; take
		// it and go on parsing the flags after it. "--" ends the flags.
		i := 0
		for i < len(rest) && !strings.HasPrefix(rest[i], "-") {
			i++
		}
		positional = append(positional, rest[:i]...)
		if i == len(rest) || rest[i] == "--" {
			if i < len(rest) {
				positional = append(positional, rest[i+1:]...)
			}
			exit, stop := c.resolveCredentials()
			return positional, exit, stop
		}
		args = rest[i:]
	}
}

// resolveCredentials reads the credential and TLS flags once parsing is
// done.
func (c *command) resolveCredentials() (exit int, stop bool) {
	if c.creds == nil {
		return 0, false
	}
	var err error
	if c.principal, c.secret, err = c.creds.resolve(); err != nil {
		return c.usageError("%v", err), true
	}
	if c.transport, err = resolveTLS(*c.sslCA, *c.master, os.Getenv); err != nil {
		return c.usageError("%v", err), true
	}
	return 0, false
}

// context makes requests sent with ctx carry the command's credentials and
// speak its TLS setting.
func (c *command) context(ctx context.Context) context.Context {
	return withTransport(withCredentials(ctx, c.principal, c.secret), c.transport)
}

// tls is the configuration the scheduler client speaks to the master
// with; nil for plain http.
func (c *command) tls() *tls.Config {
	if c.transport == nil {
		return nil
	}
	return c.transport.tls
}

// usageError reports bad usage and returns exitUsage.
func (c *command) usageError(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "mesolite %s: %s\nRun 'mesolite %s --help' for usage.\n", c.name, fmt.Sprintf(format, args...), c.name)
	return exitUsage
}

// fail reports a failure and returns exitFail.
func (c *command) fail(format string, args ...any) int {
	fmt.Fprintf(c.stderr, "mesolite %s: %s\n", c.name, fmt.Sprintf(format, args...))
	return exitFail
}

// given reports whether a flag was set, on the command line or from the
// environment.
func (c *command) given(name string) bool {
	set := false
	c.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// masterFlag defines --master the same way for every command.
func (c *command) masterFlag() *string {
	c.creds = c.credentialFlags()
	c.sslCA = c.String("ssl_ca_file", "", "CA bundle to verify the master and the agents with; giving it makes the command\n"+
		"speak https (so do --master=https://... and LIBPROCESS_SSL_ENABLED=true, with the system's roots)")
	c.master = c.String("master", "127.0.0.1:5050",
		"the master: host:port (any master of the cluster; a non-leading one redirects\n"+
			"to the leader), http(s)://host:port, zk://host:2181/path, or file:///path naming a file that holds one")
	return c.master
}

// logger is for the scheduler client: its warnings (a lost master,
// re-subscription attempts) go to stderr, the rest is the command's own
// output.
func (c *command) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// credentials are --principal and --secret (or --secret_file): HTTP Basic
// credentials for a master started with --authenticate_frameworks, and
// for masters and agents with --authenticate_http_readonly.
type credentials struct {
	principal, secret, secretFile *string
}

func (c *command) credentialFlags() *credentials {
	return &credentials{
		principal:  c.String("principal", "", "the principal to authenticate as (and the framework's principal, which owns its id)"),
		secret:     c.String("secret", "", "the principal's secret (visible to other users in the process list: prefer --secret_file)"),
		secretFile: c.String("secret_file", "", "a file holding the principal's secret"),
	}
}

// resolve returns the principal and secret; a secret without a principal,
// or both --secret and --secret_file, is a usage error.
func (f *credentials) resolve() (principal, secret string, err error) {
	principal, secret = *f.principal, *f.secret
	if *f.secretFile != "" {
		if secret != "" {
			return "", "", errors.New("give --secret or --secret_file, not both")
		}
		if secret, err = httpauth.ReadSecretFile(*f.secretFile); err != nil {
			return "", "", err
		}
	}
	if secret != "" && principal == "" {
		return "", "", errors.New("--secret needs --principal")
	}
	return principal, secret, nil
}

type credentialsKey struct{}

// withCredentials makes the requests the commands send with ctx carry the
// credentials.
func withCredentials(ctx context.Context, principal, secret string) context.Context {
	if secret == "" {
		return ctx
	}
	return context.WithValue(ctx, credentialsKey{}, [2]string{principal, secret})
}

// authorize adds the credentials of req's context, if any.
func authorize(req *http.Request) *http.Request {
	if c, ok := req.Context().Value(credentialsKey{}).([2]string); ok {
		req.SetBasicAuth(c[0], c[1])
	}
	return req
}
