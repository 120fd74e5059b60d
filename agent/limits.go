package agent

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/mesolite/mesolite/errdefs"

	"golang.org/x/sys/unix"
)

// Bounds of the agent's HTTP server. Every peer on the network can open
// connections and long-lived streams; none may take the file descriptors
// the agent needs for tasks, checkpoints and its own /health.
const (
	readHeaderTimeout = 10 * time.Second
	// idleTimeout closes keep-alive connections nobody uses; executors
	// and the UI reconnect at once when they need to.
	idleTimeout    = 2 * time.Minute
	maxHeaderBytes = 64 << 10
	// Streams that follow a file stay open as long as the client wants.
	maxStreamsTotal = 1024
	maxStreamsPerIP = 64
)

// Caps as variables so that a test can run a flood against small ones.
var (
	connLimitsFor              = connLimits
	streamsTotal, streamsPerIP = maxStreamsTotal, maxStreamsPerIP
)

// connLimits returns the caps on open connections: half the process's
// descriptor limit in all (the other half is for tasks, logs and
// checkpoints), and a quarter of that per client address, so that one
// client cannot take everything from the others.
func connLimits() (total, perIP int) {
	var rl unix.Rlimit
	total = 4096
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil && rl.Cur > 0 {
		total = int(min(rl.Cur/2, 65536))
	}
	total = max(total, 256)
	return total, max(total/4, 128)
}

func (a *Agent) newServer() *http.Server {
	return &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ConnContext:       withConnProof,
		// Failed handshakes (a plain client at a TLS agent, a peer that
		// distrusts the certificate) are the client's to report.
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
}

// limitListener refuses connections past its caps: it accepts them (to
// take them off the kernel's queue), answers 503 and closes them, so the
// agent's descriptors stay bounded however many a client opens.
type limitListener struct {
	net.Listener
	total, perIP int

	mu    sync.Mutex
	open  int
	byIP  map[string]int
	onCap func(ip string)
}

func newLimitListener(l net.Listener, total, perIP int, onCap func(ip string)) *limitListener {
	return &limitListener{Listener: l, total: total, perIP: perIP, byIP: map[string]int{}, onCap: onCap}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := hostOf(c.RemoteAddr().String())
		l.mu.Lock()
		ok := l.open < l.total && l.byIP[ip] < l.perIP
		if ok {
			l.open++
			l.byIP[ip]++
		}
		l.mu.Unlock()
		if !ok {
			if l.onCap != nil {
				l.onCap(ip)
			}
			go refuse(c)
			continue
		}
		return &limitedConn{Conn: c, l: l, ip: ip}, nil
	}
}

func refuse(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	_, _ = c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\nRetry-After: 1\r\nContent-Length: 33\r\n\r\ntoo many connections; retry later"))
	_ = c.Close()
}

type limitedConn struct {
	net.Conn
	l    *limitListener
	ip   string
	once sync.Once
}

func (c *limitedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.open--
		if c.l.byIP[c.ip]--; c.l.byIP[c.ip] <= 0 {
			delete(c.l.byIP, c.ip)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// streamLimiter bounds concurrent long-lived responses (followed files) in
// all and per client address; past a cap the request gets 429.
type streamLimiter struct {
	total, perIP int

	mu   sync.Mutex
	open int
	byIP map[string]int
}

func newStreamLimiter(total, perIP int) *streamLimiter {
	return &streamLimiter{total: total, perIP: perIP, byIP: map[string]int{}}
}

func (s *streamLimiter) wrap(h http.Handler, isStream func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isStream(r) {
			h.ServeHTTP(w, r)
			return
		}
		ip := hostOf(r.RemoteAddr)
		s.mu.Lock()
		ok := s.open < s.total && s.byIP[ip] < s.perIP
		if ok {
			s.open++
			s.byIP[ip]++
		}
		s.mu.Unlock()
		if !ok {
			w.Header().Set("Retry-After", "5")
			errdefs.HTTPError(w, errdefs.Statusf(http.StatusTooManyRequests, "too many open streams (at most %d per client, %d in all)", s.perIP, s.total))
			return
		}
		defer func() {
			s.mu.Lock()
			s.open--
			if s.byIP[ip]--; s.byIP[ip] <= 0 {
				delete(s.byIP, ip)
			}
			s.mu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
}

func hostOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}
