package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/mesolite/mesolite/detector"
	"github.com/mesolite/mesolite/errdefs"
)

// DefaultMasterPort is the port of a master address given without one.
const DefaultMasterPort = "5050"

// UnreachableError says that no connection to a master could be made or
// kept. It wraps the transport error and errdefs.ErrUnavailable.
type UnreachableError struct {
	// Master is the host:port that was tried.
	Master string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach master at %s: %v", e.Master, e.Err)
}

func (e *UnreachableError) Unwrap() []error { return []error{e.Err, errdefs.ErrUnavailable} }

// unreachable wraps a transport error, dropping the *url.Error layer whose
// text repeats the whole request URL.
func unreachable(master string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return &UnreachableError{Master: master, Err: err}
}

// ResolveMaster turns a --master value into the host:port of a master to
// ask: host:port or host (port 5050), http(s)://host:port, the leader
// named in zk://host:2181/path, or file:///path
// naming a file that holds one of those (Mesos's form for a static
// configuration). A non-leading master redirects its callers to the leader,
// so any master of the cluster will do.
func ResolveMaster(ctx context.Context, master string) (string, error) {
	hp, _, err := ResolveMasterScheme(ctx, master)
	return hp, err
}

// ResolveMasterScheme is ResolveMaster that also reports whether the value
// asked for https: https://host:port, or a file holding one. Masters found
// in ZooKeeper carry no scheme (false): the caller's TLS setting decides.
func ResolveMasterScheme(ctx context.Context, master string) (addr string, https bool, err error) {
	s := strings.TrimSpace(master)
	switch {
	case s == "":
		return "", false, fmt.Errorf("no master given (--master=host:port): %w", errdefs.ErrInvalid)
	case strings.HasPrefix(s, "file://"):
		p := strings.TrimPrefix(s, "file://")
		b, err := os.ReadFile(p)
		if err != nil {
			return "", false, fmt.Errorf("reading master address from %s: %w", s, err)
		}
		inner := strings.TrimSpace(string(b))
		if strings.HasPrefix(inner, "file://") {
			return "", false, fmt.Errorf("master file %s points to another file (%s): %w", p, inner, errdefs.ErrInvalid)
		}
		return ResolveMasterScheme(ctx, inner)
	case strings.HasPrefix(s, "zk://"):
		d, err := detector.New(s)
		if err != nil {
			return "", false, fmt.Errorf("master %s: %w", s, err)
		}
		defer d.Close()
		lctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		mi, err := d.Leader(lctx)
		if err != nil {
			return "", false, err
		}
		return mi.Addr(), false, nil
	}
	s, https = strings.CutPrefix(strings.TrimPrefix(s, "http://"), "https://")
	s, _, _ = strings.Cut(s, "/")
	addr, err = hostPort(s)
	return addr, https, err
}

// hostPort checks a host[:port] and adds the default port.
func hostPort(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("empty master address: %w", errdefs.ErrInvalid)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: "host", or "::1" / "[::1]" for IPv6.
		host = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
		port = DefaultMasterPort
	}
	if host == "" || strings.ContainsAny(host, " /?#@") {
		return "", fmt.Errorf("bad master address %q, want host:port: %w", s, errdefs.ErrInvalid)
	}
	return net.JoinHostPort(host, port), nil
}

// MasterFromLocation reads the leader's host:port from the Location header
// of a master's 307 answer: `//host:port` as Mesos writes it, with or
// without a scheme or a path, or a bare `host:port` as Mesos's docs show it.
func MasterFromLocation(location string) (string, error) {
	s := strings.TrimSpace(location)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+len("://"):]
	} else {
		s = strings.TrimPrefix(s, "//")
	}
	s, _, _ = strings.Cut(s, "/")
	hp, err := hostPort(s)
	if err != nil {
		return "", fmt.Errorf("master redirected to %q: %w", location, err)
	}
	return hp, nil
}

// statusError turns a master's non-2xx answer into an error of the
// matching errdefs class, with the reason the master gave in its body.
func statusError(what, master string, resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	reason := strings.TrimSpace(string(body))
	if reason == "" {
		reason = http.StatusText(resp.StatusCode)
	}
	return fmt.Errorf("%s: master at %s answered %s: %s: %w", what, master, resp.Status, reason, statusClass(resp.StatusCode))
}

func statusClass(code int) error {
	switch {
	case code == http.StatusBadRequest, code == http.StatusUnsupportedMediaType,
		code == http.StatusNotAcceptable, code == http.StatusMethodNotAllowed:
		return errdefs.ErrInvalid
	case code == http.StatusUnauthorized:
		return errdefs.ErrUnauthorized
	case code == http.StatusForbidden:
		return errdefs.ErrForbidden
	case code == http.StatusNotFound:
		return errdefs.ErrNotFound
	case code == http.StatusConflict:
		return errdefs.ErrConflict
	case code == http.StatusRequestTimeout, code == http.StatusTooManyRequests, code >= 500:
		return errdefs.ErrUnavailable
	default:
		return errdefs.ErrInvalid
	}
}

// noRedirect makes an http.Client hand 307s back to us: Go would resolve
// `//host:port` to `http://host:port` and post to `/`, losing the API path.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// withoutRedirects copies hc with redirects turned off.
func withoutRedirects(hc *http.Client) *http.Client {
	c := *hc
	c.CheckRedirect = noRedirect
	return &c
}
