package fetcher

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	getter "github.com/hashicorp/go-getter"

	"github.com/mesolite/mesolite/errdefs"
)

// download is what a source produced in a staging directory.
type download struct {
	// path is the downloaded file (or directory, for git).
	path string
	dir  bool
	size int64
	// etag and lastModified are the origin's validators (http only).
	etag         string
	lastModified string
	// notModified is true when a conditional request answered 304.
	notModified bool
	// srcSize and srcMtime describe a local source, for cache revalidation.
	srcSize  int64
	srcMtime int64
}

// conditional carries the validators of a cached copy.
type conditional struct {
	etag         string
	lastModified string
}

// progress counts bytes received so the stall watchdog can see them.
type progress struct{ n atomic.Int64 }

type probeKey struct{}

// httpProbe records what the server answered to the requests go-getter
// makes on our behalf: go-getter reports only "bad response code", and we
// need the status for the error class, the validators for the cache and a
// byte counter for the stall watchdog.
type httpProbe struct {
	mu           sync.Mutex
	status       int
	statusText   string
	etag         string
	lastModified string
	progress     *progress
}

type probeTransport struct{ base http.RoundTripper }

func (t *probeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	p, _ := req.Context().Value(probeKey{}).(*httpProbe)
	if err != nil || p == nil {
		return resp, err
	}
	p.mu.Lock()
	p.status = resp.StatusCode
	p.statusText = resp.Status
	p.etag = resp.Header.Get("ETag")
	p.lastModified = resp.Header.Get("Last-Modified")
	p.mu.Unlock()
	resp.Body = &countingBody{ReadCloser: resp.Body, p: p.progress}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	p *progress
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.p.n.Add(int64(n))
	return n, err
}

func newHTTPClient() *http.Client {
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   30 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          16,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   15 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Artifacts are often already compressed, and a transparently
		// gunzipped body would defeat Content-Length and checksums.
		DisableCompression: true,
	}
	return &http.Client{
		Transport: &probeTransport{base: tr},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return fmt.Errorf("stopped after 10 redirects")
			}
			if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
				return fmt.Errorf("redirect to unsupported scheme %q", req.URL.Scheme)
			}
			return nil
		},
	}
}

// errStalled is the cause set on the download context by the watchdog.
type stallError struct{ d time.Duration }

func (e *stallError) Error() string {
	return fmt.Sprintf("no data received for %s (--fetcher_stall_timeout)", e.d)
}
func (e *stallError) Unwrap() error { return errdefs.ErrUnavailable }

// watchStall cancels ctx when neither the byte counter nor the size of dir
// grows for the stall timeout. The directory is polled only when the
// counter is idle, so http downloads never walk it.
func watchStall(ctx context.Context, cancel context.CancelCauseFunc, d time.Duration, p *progress, dir string) (stop func()) {
	if d <= 0 {
		return func() {}
	}
	tick := min(max(d/4, 10*time.Millisecond), time.Second)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		lastN, lastSize := p.n.Load(), int64(-1)
		lastChange := time.Now()
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case now := <-t.C:
				if n := p.n.Load(); n != lastN {
					lastN, lastChange = n, now
					continue
				}
				if size := dirSize(dir); size != lastSize {
					if lastSize >= 0 {
						lastChange = now
					}
					lastSize = size
					continue
				}
				if now.Sub(lastChange) >= d {
					cancel(&stallError{d: d})
					return
				}
			}
		}
	}()
	return func() { close(done) }
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if e.Type().IsRegular() {
			if fi, err := e.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// download fetches src into stageDir/data. cond, when not nil, makes an
// http request conditional; a 304 comes back as notModified.
func (f *Fetcher) download(ctx context.Context, src *source, stageDir string, cond *conditional) (*download, error) {
	if f.cfg.URITimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.cfg.URITimeout)
		defer cancel()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	prog := &progress{}
	stop := watchStall(ctx, cancel, f.cfg.stallTimeout(), prog, stageDir)
	defer stop()

	dst := filepath.Join(stageDir, "data")
	var d *download
	var err error
	switch src.kind {
	case srcLocalRel:
		d, err = f.copyFromFrameworksHome(ctx, src, dst)
	case srcLocalAbs:
		d, err = f.copyLocal(ctx, src, dst)
	case srcHTTP:
		d, err = f.getHTTP(ctx, src, dst, cond, prog)
	case srcGetter:
		d, err = f.getWithGoGetter(ctx, src, dst)
	case srcHadoop:
		d, err = f.getWithHadoop(ctx, src, dst)
	default:
		err = fmt.Errorf("unknown source kind %d", src.kind)
	}
	if cause := context.Cause(ctx); cause != nil && err != nil {
		var se *stallError
		switch {
		case errors.As(cause, &se):
			return nil, se
		case errors.Is(cause, context.DeadlineExceeded):
			return nil, fmt.Errorf("download timed out: %w", errdefs.ErrUnavailable)
		}
	}
	if err != nil {
		return nil, err
	}
	if d.notModified {
		return d, nil
	}
	d.path = dst
	fi, err := os.Stat(dst)
	if err != nil {
		return nil, fmt.Errorf("downloaded file: %w", err)
	}
	d.dir = fi.IsDir()
	if !d.dir {
		d.size = fi.Size()
	}
	if max := f.cfg.MaxDownloadBytes; max > 0 && d.size > max {
		return nil, fmt.Errorf("download is %d bytes, over the limit of %d: %w", d.size, max, errdefs.ErrInvalid)
	}
	return d, nil
}

// copyFromFrameworksHome opens a relative path through an os.Root on
// --frameworks_home, so `..` and symlinks that leave it are refused by the
// kernel-checked resolution, not by string prefix checks.
func (f *Fetcher) copyFromFrameworksHome(ctx context.Context, src *source, dst string) (*download, error) {
	root, err := os.OpenRoot(f.cfg.FrameworksHome)
	if err != nil {
		return nil, fmt.Errorf("open --frameworks_home: %v: %w", err, errdefs.ErrUnavailable)
	}
	defer root.Close()
	in, err := root.Open(src.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%q not found under --frameworks_home %s: %w", src.path, f.cfg.FrameworksHome, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("%q resolves outside --frameworks_home %s (%v): %w", src.path, f.cfg.FrameworksHome, err, errdefs.ErrForbidden)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%q under --frameworks_home is not a regular file: %w", src.path, errdefs.ErrInvalid)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(out, ctxReader{ctx: ctx, r: in}); err != nil {
		out.Close()
		return nil, fmt.Errorf("copy %q: %w", src.path, err)
	}
	if err := out.Close(); err != nil {
		return nil, err
	}
	return &download{srcSize: fi.Size(), srcMtime: fi.ModTime().UnixNano()}, nil
}

// copyLocal copies an absolute path with go-getter's file getter in copy
// mode (its default symlinks the source into the sandbox) and with
// DisableSymlinks, which refuses a source that is itself a symlink.
func (f *Fetcher) copyLocal(ctx context.Context, src *source, dst string) (*download, error) {
	fi, err := os.Stat(src.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", src.path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("%v: %w", err, errdefs.ErrForbidden)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: %w", src.path, errdefs.ErrInvalid)
	}
	g := &getter.FileGetter{Copy: true}
	g.SetClient(f.getterClient(ctx))
	if err := g.GetFile(dst, &url.URL{Scheme: "file", Path: src.path}); err != nil {
		if errors.Is(err, getter.ErrSymlinkCopy) {
			return nil, fmt.Errorf("%s is a symlink; symlinks are not followed: %w", src.path, errdefs.ErrForbidden)
		}
		return nil, fmt.Errorf("copy %s: %w", src.path, err)
	}
	return &download{srcSize: fi.Size(), srcMtime: fi.ModTime().UnixNano()}, nil
}

func (f *Fetcher) getterClient(ctx context.Context) *getter.Client {
	return &getter.Client{
		Ctx:             ctx,
		Umask:           0o022,
		DisableSymlinks: true,
		// A non-nil empty map: go-getter never decompresses; our extractor does.
		Decompressors: map[string]getter.Decompressor{},
	}
}

// getHTTP downloads with go-getter's HttpGetter, called directly so that
// go-getter's URL magic (archive=, filename=, re-encoded queries,
// X-Terraform-Get) never applies, and with a HEAD-less GET so a partial
// file can never be "resumed" into a wrong one.
func (f *Fetcher) getHTTP(ctx context.Context, src *source, dst string, cond *conditional, prog *progress) (*download, error) {
	probe := &httpProbe{progress: prog}
	ctx = context.WithValue(ctx, probeKey{}, probe)
	h := http.Header{"User-Agent": []string{"mesolite-fetcher"}}
	if cond != nil {
		if cond.etag != "" {
			h.Set("If-None-Match", cond.etag)
		}
		if cond.lastModified != "" {
			h.Set("If-Modified-Since", cond.lastModified)
		}
	}
	g := &getter.HttpGetter{
		Client:                f.client,
		Header:                h,
		DoNotCheckHeadFirst:   true,
		XTerraformGetDisabled: true,
		MaxBytes:              f.cfg.MaxDownloadBytes,
	}
	g.SetClient(f.getterClient(ctx))
	err := g.GetFile(dst, src.url)

	probe.mu.Lock()
	status, statusText := probe.status, probe.statusText
	d := &download{etag: probe.etag, lastModified: probe.lastModified}
	probe.mu.Unlock()

	if cond != nil && status == http.StatusNotModified {
		d.notModified = true
		return d, nil
	}
	if err == nil {
		return d, nil
	}
	if status != 0 && status != http.StatusOK && status != http.StatusPartialContent {
		return nil, fmt.Errorf("server answered %s: %w", statusText, httpClass(status))
	}
	return nil, fmt.Errorf("download %s: %v: %w", src.redacted, err, errdefs.ErrUnavailable)
}

func httpClass(status int) error {
	switch {
	case status == http.StatusNotFound || status == http.StatusGone:
		return errdefs.ErrNotFound
	case status == http.StatusUnauthorized:
		return errdefs.ErrUnauthorized
	case status == http.StatusForbidden:
		return errdefs.ErrForbidden
	case status == http.StatusTooManyRequests || status >= 500:
		return errdefs.ErrUnavailable
	default:
		return errdefs.ErrInvalid
	}
}

// getWithGoGetter serves s3, gcs and git through a go-getter client that
// knows only those protocols and never decompresses.
func (f *Fetcher) getWithGoGetter(ctx context.Context, src *source, dst string) (*download, error) {
	c := f.getterClient(ctx)
	c.Src = src.raw
	c.Dst = dst
	c.Mode = getter.ClientModeFile
	if src.dir {
		c.Mode = getter.ClientModeDir
	}
	c.Getters = map[string]getter.Getter{
		"s3":  new(getter.S3Getter),
		"gcs": new(getter.GCSGetter),
		"git": new(getter.GitGetter),
	}
	c.Detectors = []getter.Detector{new(getter.GitDetector), new(getter.S3Detector), new(getter.GCSDetector)}
	if err := c.Get(); err != nil {
		return nil, fmt.Errorf("download %s: %v: %w", src.redacted, err, errdefs.ErrUnavailable)
	}
	return &download{}, nil
}

// hadoopBinary finds the Hadoop client the way Mesos does: --hadoop_home,
// else $HADOOP_HOME, else `hadoop` on PATH; and checks it with
// `hadoop version` once per process.
func (f *Fetcher) hadoopBinary(ctx context.Context) (string, error) {
	f.hadoopOnce.Do(func() {
		home := f.cfg.HadoopHome
		if home == "" {
			home = os.Getenv("HADOOP_HOME")
		}
		bin := "hadoop"
		if home != "" {
			bin = filepath.Join(home, "bin", "hadoop")
			if _, err := os.Stat(bin); err != nil {
				f.hadoopErr = fmt.Errorf("no Hadoop client at %s (from --hadoop_home or HADOOP_HOME): %w", bin, errdefs.ErrUnavailable)
				return
			}
		} else if p, err := exec.LookPath("hadoop"); err == nil {
			bin = p
		} else {
			f.hadoopErr = fmt.Errorf("no Hadoop client installed: set --hadoop_home or HADOOP_HOME, or put `hadoop` on PATH: %w", errdefs.ErrUnavailable)
			return
		}
		vctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		out, err := hadoopCommand(vctx, bin, "version").CombinedOutput()
		if err != nil {
			f.hadoopErr = fmt.Errorf("Hadoop client %s is not usable: `hadoop version` failed: %v: %s: %w", bin, err, tail(out, 512), errdefs.ErrUnavailable)
			return
		}
		f.hadoopBin = bin
	})
	return f.hadoopBin, f.hadoopErr
}

func hadoopCommand(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	// The `hadoop` script starts a JVM; kill the whole group on cancel.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func (f *Fetcher) getWithHadoop(ctx context.Context, src *source, dst string) (*download, error) {
	bin, err := f.hadoopBinary(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot fetch %s: %w", src.redacted, err)
	}
	out, err := hadoopCommand(ctx, bin, "fs", "-copyToLocal", src.raw, dst).CombinedOutput()
	if err != nil {
		class := errdefs.ErrUnavailable
		if strings.Contains(string(out), "No such file") {
			class = errdefs.ErrNotFound
		}
		return nil, fmt.Errorf("hadoop fs -copyToLocal %s failed: %v: %s: %w", src.redacted, err, tail(out, 1024), class)
	}
	return &download{}, nil
}

func tail(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}

// ctxReader stops a long copy when the context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
