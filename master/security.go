package master

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/mesolite/mesolite/httpauth"
)

// Realms of the master's authenticated doors, shown in the challenge.
const (
	// SchedulerRealm is Mesos's realm for HTTP frameworks.
	SchedulerRealm = "mesos-master-scheduler"
	AgentRealm     = "mesolite-master-agent"
)

// AgentTokenHeader carries the registration token: the master hands it to
// an agent on its REGISTER stream, and the agent presents it whenever it
// registers again with its id. It binds an agent id to the agent that was
// given it, with or without --authenticate_agents (docs/agent-protocol.md).
const AgentTokenHeader = "Mesolite-Agent-Token"

// AgentSchemeHeader on a REGISTER is "https" when the agent serves TLS
// (Mesos's MasterInfo-style Address has no scheme); the master puts it in
// the url of the agent's offers.
const AgentSchemeHeader = "Mesolite-Agent-Scheme"

// Server bounds (DESIGN.md: every server is bounded). Event streams live as
// long as their subscription, so there is no WriteTimeout: a stream's
// writes are bounded one by one (AgentPingTimeout) instead.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// bodyReadTimeout bounds reading one call's body, so a client that
	// trickles a body byte by byte cannot hold a handler for ever.
	bodyReadTimeout = 30 * time.Second
	// maxSmallBody is the body cap of every endpoint but the two APIs:
	// they take GETs, or POSTs with no body to speak of.
	maxSmallBody = 64 << 10
)

// newAuthenticators builds the scheduler and agent authenticators from
// cfg; each is nil (lets everything through) when its flag is off.
func newAuthenticators(cfg *Config) (fw, agents *httpauth.Authenticator, err error) {
	opts := func(enabled bool, realm string) httpauth.Options {
		return httpauth.Options{Enabled: enabled, Realm: realm, Credentials: cfg.Credentials, Logger: cfg.Logger}
	}
	fw, err = httpauth.New(opts(cfg.authenticateFrameworks(), SchedulerRealm))
	if err != nil {
		return nil, nil, fmt.Errorf("--authenticate_frameworks: %w", err)
	}
	agents, err = httpauth.New(opts(cfg.AuthenticateAgents, AgentRealm))
	if err != nil {
		return nil, nil, fmt.Errorf("--authenticate_agents: %w", err)
	}
	return fw, agents, nil
}

// bounded caps every request's body (413 past it) and sets the headers
// every answer of the master carries: nosniff, and a policy that forbids
// a JSON answer from being run or framed as a page. The web UI sets its
// own, looser policy on its pages.
func (m *Master) bounded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limit := int64(maxSmallBody)
		if strings.HasPrefix(r.URL.Path, "/api/v1/") {
			limit = maxBodyBytes
		}
		if r.ContentLength > limit {
			http.Error(w, fmt.Sprintf("Request body is larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		next.ServeHTTP(w, r)
	})
}

// ipLimiter counts the requests in progress per client address. An event
// stream is a request that lasts, so this bounds streams per client too.
type ipLimiter struct {
	max int
	mu  sync.Mutex
	n   map[string]int
}

func newIPLimiter(max int) *ipLimiter { return &ipLimiter{max: max, n: make(map[string]int)} }

func (l *ipLimiter) acquire(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[ip] >= l.max {
		return false
	}
	l.n[ip]++
	return true
}

func (l *ipLimiter) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n[ip]--; l.n[ip] <= 0 {
		delete(l.n, ip)
	}
}

// limitPerIP answers 429 to a client address with MaxRequestsPerIP
// requests in progress already.
func (m *Master) limitPerIP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			ip = r.RemoteAddr
		}
		if !m.perIP.acquire(ip) {
			m.log.Warn("too many concurrent requests from one client, refused", "remote_addr", ip, "max", m.cfg.MaxRequestsPerIP, "path", r.URL.Path)
			http.Error(w, fmt.Sprintf("Too many concurrent requests from %s: at most %d (--max_requests_per_ip)", ip, m.cfg.MaxRequestsPerIP), http.StatusTooManyRequests)
			return
		}
		defer m.perIP.release(ip)
		next.ServeHTTP(w, r)
	})
}

// newServer is the master's HTTP server with its bounds.
func (m *Master) newServer(ctx context.Context) *http.Server {
	return &http.Server{
		Handler:           m.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
	}
}

// warnIfOpen says once, at start, what is unauthenticated when the master
// listens beyond loopback: anyone who reaches the port may then subscribe
// frameworks or register agents.
func (m *Master) warnIfOpen(ln net.Listener) {
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok || tcp.IP.IsLoopback() {
		return
	}
	var open []string
	if m.fwAuth == nil {
		open = append(open, "frameworks (--authenticate_frameworks)")
	}
	if m.agentAuth == nil {
		open = append(open, "agents (--authenticate_agents)")
	}
	if len(open) > 0 {
		m.log.Warn("authentication is off and the master listens beyond loopback: anyone who reaches it can act as one of the "+
			strings.Join(open, " or ")+"; framework ids are then bound to the principal they claim", "address", ln.Addr().String())
	}
}

// newAgentToken makes a registration token and its digest; the master
// keeps only the digest.
func newAgentToken() (token string, digest []byte) {
	var b [32]byte
	_, _ = rand.Read(b[:])
	token = hex.EncodeToString(b[:])
	sum := sha256.Sum256([]byte(token))
	return token, sum[:]
}

// agentTokenMatches compares a presented token with a kept digest in
// constant time.
func agentTokenMatches(presented string, digest []byte) bool {
	sum := sha256.Sum256([]byte(presented))
	return len(digest) == len(sum) && subtle.ConstantTimeCompare(sum[:], digest) == 1
}

// principalMatches compares principals in constant time: with
// authentication off they are the only thing that binds a framework id.
func principalMatches(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
