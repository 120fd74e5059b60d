package artifactsrv

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mesolite/mesolite/errdefs"
)

// Options configure a Server. The lead's `mesolite artifacts serve` maps
// --dir, --ip, --port and --upload_token onto them.
type Options struct {
	// Dir is the directory served. Required.
	Dir string
	// IP and Port are where Serve listens (default 127.0.0.1:8000).
	IP   string
	Port int
	// UploadToken enables PUT and DELETE for clients that present it as
	// `Authorization: Bearer <token>`. Empty: read-only, PUT/DELETE get 405.
	UploadToken string
	// MaxUploadBytes bounds one upload; 0 means unlimited.
	MaxUploadBytes int64
	// TLS, when set, makes the server speak https only (--ssl_cert_file,
	// --ssl_key_file). Files then go through TLS instead of sendfile.
	TLS *tls.Config
	// Logger receives the access log; nil discards.
	Logger *slog.Logger
}

// Default listen address, as documented for `mesolite artifacts serve`.
const (
	DefaultIP   = "127.0.0.1"
	DefaultPort = 8000
)

// uploadTempPrefix names the temporary files of uploads where O_TMPFILE is
// not available; they are never listed or served.
const uploadTempPrefix = ".artifactsrv-upload-"

// Server serves one directory. It is an http.Handler.
type Server struct {
	opts      Options
	root      *os.Root
	log       *slog.Logger
	tokenHash [32]byte
	digests   *digestCache

	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	sent      prometheus.Counter
	received  prometheus.Counter
	durations *prometheus.HistogramVec
	metrics   http.Handler
}

// New opens opts.Dir and returns a Server for it.
func New(opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("artifact server needs a directory: %w", errdefs.ErrInvalid)
	}
	if opts.IP == "" {
		opts.IP = DefaultIP
	}
	if opts.Port == 0 {
		opts.Port = DefaultPort
	}
	root, err := os.OpenRoot(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("open artifact directory: %v: %w", err, errdefs.ErrNotFound)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts:    opts,
		root:    root,
		log:     log.With("component", "artifactsrv"),
		digests: newDigestCache(1 << 16),
		reg:     prometheus.NewRegistry(),
	}
	if opts.UploadToken != "" {
		s.tokenHash = sha256.Sum256([]byte(opts.UploadToken))
	}
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "artifactsrv_http_requests_total",
		Help: "HTTP requests answered, by method and status code.",
	}, []string{"method", "code"})
	s.sent = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "artifactsrv_http_response_bytes_total",
		Help: "Bytes of response bodies sent.",
	})
	s.received = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "artifactsrv_upload_bytes_total",
		Help: "Bytes of uploads stored.",
	})
	s.durations = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "artifactsrv_http_request_duration_seconds",
		Help:    "Time to answer a request, by method.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
	}, []string{"method"})
	s.reg.MustRegister(s.requests, s.sent, s.received, s.durations)
	s.metrics = promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})
	return s, nil
}

// Registry is the server's own Prometheus registry (never the global one).
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// Close releases the directory.
func (s *Server) Close() error { return s.root.Close() }

// Serve listens on Options.IP:Port and serves until ctx ends, then shuts
// down gracefully.
func (s *Server) Serve(ctx context.Context) error {
	addr := net.JoinHostPort(s.opts.IP, strconv.Itoa(s.opts.Port))
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %v: %w", addr, err, errdefs.ErrUnavailable)
	}
	return s.ServeListener(ctx, l)
}

// ServeListener serves on l until ctx ends.
func (s *Server) ServeListener(ctx context.Context, l net.Listener) error {
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	go s.sweepUploadTemps(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if s.opts.TLS != nil {
		l = tls.NewListener(l, s.opts.TLS)
	}
	s.log.Info("serving artifacts", "dir", s.opts.Dir, "addr", l.Addr().String(), "uploads", s.opts.UploadToken != "", "tls", s.opts.TLS != nil)
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return err
}

// ServeHTTP routes a request and records it in the access log and metrics.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &recorder{ResponseWriter: w, status: http.StatusOK}
	defer func() {
		d := time.Since(start)
		code := strconv.Itoa(rec.status)
		s.requests.WithLabelValues(r.Method, code).Inc()
		s.sent.Add(float64(rec.bytes))
		s.durations.WithLabelValues(r.Method).Observe(d.Seconds())
		s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.status,
			"bytes", rec.bytes, "duration", d, "remote", r.RemoteAddr)
	}()
	s.route(rec, r)
}

func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch {
	case p == "/metrics" && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.metrics.ServeHTTP(w, r)
		return
	case strings.HasPrefix(p, "/sha256/") && (r.Method == http.MethodGet || r.Method == http.MethodHead):
		s.serveDigest(w, r, strings.TrimPrefix(p, "/sha256"))
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		s.serveGet(w, r)
	case http.MethodPut:
		s.serveUpload(w, r)
	case http.MethodDelete:
		s.serveDelete(w, r)
	default:
		errdefs.MethodNotAllowed(w, r, strings.Split(s.allowed(), ", ")...)
	}
}

func (s *Server) allowed() string {
	if s.opts.UploadToken != "" {
		return "GET, HEAD, PUT, DELETE"
	}
	return "GET, HEAD"
}

// relPath turns a URL path into a path relative to the root, "." for the
// root. A `..` element is refused outright (net/http has already decoded
// %2e%2e and %2f); the root refuses symlinks that leave it.
func relPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("bad path %q: %w", p, errdefs.ErrInvalid)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("path %q leaves the artifact directory: %w", p, errdefs.ErrInvalid)
		}
	}
	rel := strings.Trim(path.Clean(p), "/")
	if rel == "" {
		return ".", nil
	}
	if strings.HasPrefix(path.Base(rel), uploadTempPrefix) {
		return "", fmt.Errorf("%s: %w", p, errdefs.ErrNotFound)
	}
	return rel, nil
}

// openErr classifies an error from the root: absent is 404; a path the
// root refuses to follow (a symlink out) is 403 and never served.
func openErr(p string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return fmt.Errorf("%s: %w", p, errdefs.ErrNotFound)
	default:
		return fmt.Errorf("%s: %w", p, errdefs.ErrForbidden)
	}
}

var contentTypes = map[string]string{
	".tgz":  "application/gzip",
	".gz":   "application/gzip",
	".tar":  "application/x-tar",
	".bz2":  "application/x-bzip2",
	".tbz2": "application/x-bzip2",
	".xz":   "application/x-xz",
	".txz":  "application/x-xz",
	".zip":  "application/zip",
	".jar":  "application/java-archive",
	".json": "application/json",
}

func contentType(name string) string {
	ext := strings.ToLower(filepath.Ext(name))
	if t, ok := contentTypes[ext]; ok {
		return t
	}
	return mime.TypeByExtension(ext)
}

// errNotServable is a name that is neither a regular file nor a
// directory: a FIFO, socket or device is never opened for a client.
var errNotServable = errors.New("not a regular file")

// openServed opens rel if it is a regular file or a directory. The type is
// checked before the open, so a device is never opened, and again on the
// open file, with O_NONBLOCK, so a FIFO swapped in between cannot block
// the open waiting for a writer.
func (s *Server) openServed(rel string) (*os.File, fs.FileInfo, error) {
	fi, err := s.root.Stat(rel)
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		return nil, nil, errNotServable
	}
	f, err := s.root.OpenFile(rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	if fi, err = f.Stat(); err != nil || (!fi.Mode().IsRegular() && !fi.IsDir()) {
		f.Close()
		return nil, nil, errNotServable
	}
	// Fd puts the descriptor back in blocking mode for plain reads.
	_ = f.Fd()
	return f, fi, nil
}

// httpError answers err with the status its class gives. A 5xx body says
// no more than the status: those errors carry host paths and errnos from
// deep in the filesystem, which belong in the log, not with clients.
func (s *Server) httpError(w http.ResponseWriter, err error) {
	status := errdefs.HTTPStatus(err)
	if status >= http.StatusInternalServerError {
		s.log.Error("request failed", "status", status, "error", err.Error())
		http.Error(w, http.StatusText(status), status)
		return
	}
	errdefs.HTTPError(w, err)
}

func (s *Server) serveGet(w http.ResponseWriter, r *http.Request) {
	rel, err := relPath(r.URL.Path)
	if err != nil {
		s.httpError(w, err)
		return
	}
	f, fi, err := s.openServed(rel)
	if errors.Is(err, errNotServable) {
		s.httpError(w, fmt.Errorf("%s is not a regular file: %w", r.URL.Path, errdefs.ErrForbidden))
		return
	}
	if err != nil {
		s.httpError(w, openErr(r.URL.Path, err))
		return
	}
	defer f.Close()
	if fi.IsDir() {
		s.serveIndex(w, r, rel, f)
		return
	}
	sum, err := s.digests.get(rel, f, fi)
	if err != nil {
		s.httpError(w, err)
		return
	}
	h := w.Header()
	// The content digest is a strong validator: equal bytes, equal ETag,
	// on any server that serves the same artifact.
	h.Set("ETag", `"`+sum+`"`)
	h.Set("X-Checksum-Sha256", sum)
	if ct := contentType(fi.Name()); ct != "" {
		h.Set("Content-Type", ct)
	}
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

func (s *Server) serveDigest(w http.ResponseWriter, r *http.Request, p string) {
	rel, err := relPath(p)
	if err != nil {
		s.httpError(w, err)
		return
	}
	f, fi, err := s.openServed(rel)
	if errors.Is(err, errNotServable) {
		s.httpError(w, fmt.Errorf("%s is not a file: %w", p, errdefs.ErrInvalid))
		return
	}
	if err != nil {
		s.httpError(w, openErr(p, err))
		return
	}
	defer f.Close()
	if !fi.Mode().IsRegular() {
		s.httpError(w, fmt.Errorf("%s is not a file: %w", p, errdefs.ErrInvalid))
		return
	}
	sum, err := s.digests.get(rel, f, fi)
	if err != nil {
		s.httpError(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Checksum-Sha256", sum)
	if r.Method == http.MethodGet {
		_, _ = io.WriteString(w, sum+"\n")
	}
}

// recorder captures status and body bytes while keeping the writer's
// io.ReaderFrom, through which net/http hands an *os.File to sendfile.
type recorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	r.wroteHeader = true
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	}
	r.bytes += n
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
