package ha

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

// Defaults of ProxyConfig, Marathon's (--leader_proxy_connection_timeout,
// --leader_proxy_read_timeout).
const (
	DefaultProxyConnectTimeout = 5 * time.Second
	DefaultProxyReadTimeout    = 10 * time.Second
)

// Marathon's words for a request the standby could not pass on.
const (
	msgProxyLoop      = "Detected proxying loop."
	msgLeaderRefused  = "Connection to leader refused."
	msgLeaderTimedOut = "Connection to leader timed out."
	msgLeaderFailed   = "Failed to successfully establish a connection to the leader."
)

// ProxyConfig configures Proxy.
type ProxyConfig struct {
	// Via is the header that marks a proxied request and its answer, with
	// "1.1 <host:port>" of the standby that passed it on (Marathon's
	// X-Marathon-Via). A standby refuses a request that already carries
	// it: a request is proxied once at most, so that two instances that
	// each take the other for the leader cannot pass one back and forth.
	Via string
	// TLS verifies an https leader; nil: the system's roots.
	TLS *tls.Config
	// ConnectTimeout bounds the connection to the leader; ReadTimeout the
	// wait for its answer's header and for each read of its body (but an
	// event stream's, which may be quiet for long).
	ConnectTimeout, ReadTimeout time.Duration
	// MaxBody bounds the request body passed on (0: not bounded here; the
	// service's own bounds apply).
	MaxBody int64
	// Error writes an answer of the service's own form; nil: plain text.
	Error func(w http.ResponseWriter, status int, msg string)
}

// Proxy is the handler that serves the term's API while leading and, on a
// standby, passes each request on to the leader and its answer back
// (Marathon's way; ServeHTTP redirects instead, as Chronos does). The
// request goes with its method, path, query, headers (Authorization
// among them: the leader authenticates it again) and body, plus
// X-Forwarded-For/-Host/-Proto and the Via header; the answer comes back
// with the leader's status, headers (they replace this server's of the
// same name) and body, streamed: server-sent events pass as they come.
// While no leader is elected it answers 503 with Retry-After; when the
// leader cannot be reached, 502 (refused), or 504 (timed out).
func (h *HA) Proxy(cfg ProxyConfig) http.Handler {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultProxyConnectTimeout
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = DefaultProxyReadTimeout
	}
	if cfg.Error == nil {
		cfg.Error = func(w http.ResponseWriter, status int, msg string) { http.Error(w, msg, status) }
	}
	p := &proxy{h: h, cfg: cfg, via: "1.1 " + h.self}
	p.rp = &httputil.ReverseProxy{
		Rewrite: p.rewrite,
		Transport: &http.Transport{
			// Never through an HTTP proxy of the environment: the leader is
			// a peer on the cluster's network.
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 15 * time.Second}).DialContext,
			TLSClientConfig:       cfg.TLS,
			TLSHandshakeTimeout:   cfg.ConnectTimeout,
			ResponseHeaderTimeout: cfg.ReadTimeout,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
		},
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.fail,
		ErrorLog:       slog.NewLogLogger(h.log.Handler(), slog.LevelDebug),
	}
	return p
}

type proxy struct {
	h   *HA
	cfg ProxyConfig
	via string
	rp  *httputil.ReverseProxy
}

// proxyCtxKey carries the request's cancel function to modifyResponse.
type proxyCtxKey struct{}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.h.mu.Lock()
	term, leader := p.h.term, p.h.leader
	p.h.mu.Unlock()
	if term != nil {
		term.ServeHTTP(w, r)
		return
	}
	if leader == "" || leader == p.h.self {
		// None elected, or ours is elected and its term is starting.
		w.Header().Set("Retry-After", "1")
		p.cfg.Error(w, http.StatusServiceUnavailable, "Could not determine the current leader")
		return
	}
	if len(r.Header.Values(p.cfg.Via)) > 0 {
		// Proxied once already, by an instance that takes this one for
		// the leader: passing it on could send it back.
		p.h.log.Warn("refusing a request proxied to this standby", "method", r.Method, "path", r.URL.Path, "via", r.Header.Values(p.cfg.Via), "leader", leader)
		p.cfg.Error(w, http.StatusBadGateway, msgProxyLoop)
		return
	}
	if p.cfg.MaxBody > 0 && r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, p.cfg.MaxBody)
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	ctx = context.WithValue(ctx, proxyCtxKey{}, cancel)
	target := &url.URL{Scheme: p.h.cfg.Scheme, Host: leader}
	ctx = context.WithValue(ctx, targetCtxKey{}, target)
	p.rp.ServeHTTP(&replacingWriter{ResponseWriter: w, h: http.Header{}}, r.WithContext(ctx))
}

type targetCtxKey struct{}

func (p *proxy) rewrite(pr *httputil.ProxyRequest) {
	target := pr.In.Context().Value(targetCtxKey{}).(*url.URL)
	pr.SetURL(target)
	// SetURL joins the paths; the leader's base has none, so the path and
	// query are the request's own, escaped as they came.
	pr.Out.Host = target.Host
	// X-Forwarded-For keeps the hops before this one, as Marathon's does.
	if prior := pr.In.Header.Values("X-Forwarded-For"); len(prior) > 0 {
		pr.Out.Header["X-Forwarded-For"] = prior
	}
	pr.SetXForwarded()
	pr.Out.Header.Set(p.cfg.Via, p.via)
}

func (p *proxy) modifyResponse(resp *http.Response) error {
	resp.Header.Add(p.cfg.Via, p.via)
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		return nil
	}
	cancel, _ := resp.Request.Context().Value(proxyCtxKey{}).(context.CancelFunc)
	if cancel != nil && resp.Body != nil {
		resp.Body = newIdleReader(resp.Body, p.cfg.ReadTimeout, cancel)
	}
	return nil
}

func (p *proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooLarge):
		p.cfg.Error(w, http.StatusRequestEntityTooLarge, "Request body is too large")
	case r.Context().Err() != nil:
		// The client went away (or the server stops): nobody to answer.
		w.WriteHeader(http.StatusBadGateway)
	case errors.As(err, &netErr) && netErr.Timeout():
		p.h.log.Warn("proxying to the leader timed out", "method", r.Method, "path", r.URL.Path, "err", err)
		p.cfg.Error(w, http.StatusGatewayTimeout, msgLeaderTimedOut)
	case isRefused(err):
		p.h.log.Warn("proxying to the leader refused", "method", r.Method, "path", r.URL.Path, "err", err)
		p.cfg.Error(w, http.StatusBadGateway, msgLeaderRefused)
	default:
		p.h.log.Warn("proxying to the leader failed", "method", r.Method, "path", r.URL.Path, "err", err)
		p.cfg.Error(w, http.StatusBadGateway, msgLeaderFailed)
	}
}

func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// idleReader cancels the request when one read of the leader's answer
// takes longer than timeout (the response is then cut short: its status
// is sent already). Time spent writing to the client does not count.
type idleReader struct {
	io.ReadCloser
	timeout time.Duration
	timer   *time.Timer
}

func newIdleReader(rc io.ReadCloser, timeout time.Duration, cancel context.CancelFunc) *idleReader {
	r := &idleReader{ReadCloser: rc, timeout: timeout, timer: time.AfterFunc(timeout, cancel)}
	r.timer.Stop()
	return r
}

func (r *idleReader) Read(b []byte) (int, error) {
	r.timer.Reset(r.timeout)
	defer r.timer.Stop()
	return r.ReadCloser.Read(b)
}

func (r *idleReader) Close() error {
	r.timer.Stop()
	return r.ReadCloser.Close()
}

// replacingWriter lets the leader's answer headers replace this server's
// of the same name (the ones its middleware set before, such as the
// leader's URL) instead of adding a second value; the others stay.
type replacingWriter struct {
	http.ResponseWriter
	h     http.Header
	wrote bool
}

func (w *replacingWriter) Header() http.Header { return w.h }

func (w *replacingWriter) WriteHeader(code int) {
	dst := w.ResponseWriter.Header()
	for k, v := range w.h {
		dst[k] = v
	}
	if code >= 200 {
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *replacingWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController flush the underlying writer (event
// streams pass as they come).
func (w *replacingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
