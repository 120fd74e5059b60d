package fetcher

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
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

	getter "github.com/hashicorp/go-getter/v2"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/tlsconfig"
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

// progress counts bytes received so the stall watchdog (and the progress
// reports) can see them; total is the announced size, -1 when unknown.
type progress struct{ n, total atomic.Int64 }

// progressInterval spaces the progress reports of a download: the task's
// TASK_STARTING messages and its sandbox's stderr get at most one a second.
const progressInterval = time.Second

// report calls f.onBytes every progressInterval until the returned stop.
func (f *Fetcher) report(p *progress) (stop func()) {
	if f.onBytes == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f.onBytes(p.n.Load(), p.total.Load())
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

// countingBody feeds the stall watchdog's byte counter as a response body
// is read.
type countingBody struct {
	io.ReadCloser
	p *progress
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.p.n.Add(int64(n))
	return n, err
}

// newHTTPClient is the client of http(s) downloads. caFile, when set (the
// agent's --ssl_ca_file), is trusted besides the system's roots, so that the
// cluster's own TLS artifact servers verify as public origins do.
func newHTTPClient(caFile string) *http.Client {
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
	var rt http.RoundTripper = tr
	if caFile != "" {
		cfg, err := tlsconfig.Files{CA: caFile}.ClientWithSystemRoots()
		if err != nil {
			// Every download fails saying why, rather than trusting less
			// than the agent was told to.
			rt = failedTransport{err: err}
		} else {
			tr.TLSClientConfig = cfg
		}
	}
	return &http.Client{
		// TLS failures come back saying what is wrong (an untrusted
		// certificate, a plain URL to a TLS server).
		Transport: tlsconfig.ExplainErrors(rt),
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

// failedTransport answers every request with the error that kept the
// client from being set up.
type failedTransport struct{ err error }

func (t failedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		req.Body.Close()
	}
	return nil, t.err
}

// stallError is the cause set on the download context by the watchdog.
type stallError struct {
	d       time.Duration
	minRate int64
}

func (e *stallError) Error() string {
	return fmt.Sprintf("less than %d bytes/s received over %s (--fetcher_stall_timeout)", e.minRate, e.d)
}
func (e *stallError) Unwrap() error { return errdefs.ErrUnavailable }

// watchdog watches one download: it cancels the download's context when
// fewer than minRate*window bytes arrived over the last window (a dead
// server, or one that trickles to hold the fetch open), or when a source
// that writes its own files (the Hadoop client, git) has written more
// than limit bytes.
type watchdog struct {
	window  time.Duration // <= 0: no stall rule
	minRate int64
	p       *progress
	// dir is walked for the bytes written when walk is true, for sources
	// that do not feed p; http downloads never walk it.
	dir   string
	walk  bool
	limit int64 // < 0: no size rule
	// overLimit is the cause given when a walked dir passes limit.
	overLimit error
}

type sample struct {
	t time.Time
	n int64
}

func (w watchdog) start(ctx context.Context, cancel context.CancelCauseFunc) (stop func()) {
	sizeRule := w.walk && w.limit >= 0
	if w.window <= 0 && !sizeRule {
		return func() {}
	}
	tick := time.Second
	if w.window > 0 {
		tick = min(max(w.window/8, 10*time.Millisecond), time.Second)
	}
	need := int64(1)
	if w.window > 0 {
		need = max(1, int64(float64(w.minRate)*w.window.Seconds()))
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(tick)
		defer t.Stop()
		// samples[0] is the newest sample at least one window old, once the
		// download has run that long; the bytes since then must reach need.
		samples := []sample{{t: time.Now(), n: 0}}
		for {
			select {
			case <-ctx.Done():
				return
			case <-done:
				return
			case now := <-t.C:
				n := w.p.n.Load()
				if w.walk {
					n = max(n, dirSize(w.dir))
					if sizeRule && n > w.limit {
						cancel(w.overLimit)
						return
					}
				}
				if w.window <= 0 {
					continue
				}
				samples = append(samples, sample{t: now, n: n})
				for len(samples) > 1 && now.Sub(samples[1].t) >= w.window {
					samples = samples[1:]
				}
				if now.Sub(samples[0].t) >= w.window && n-samples[0].n < need {
					cancel(&stallError{d: w.window, minRate: w.minRate})
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

// sizeLimit is the most one download may be: what the request's budget
// has left, or MaxDownloadBytes when smaller; tooBig makes the error.
type sizeLimit struct {
	n      int64
	tooBig func(what string) error
}

func (f *Fetcher) sizeLimit(bud *budget) sizeLimit {
	l := sizeLimit{n: bud.remaining(), tooBig: bud.exceeded}
	if m := f.cfg.MaxDownloadBytes; m > 0 && m < l.n {
		l = sizeLimit{n: m, tooBig: func(what string) error {
			return fmt.Errorf("%s: over the limit of %d bytes for one download: %w", what, m, errdefs.ErrInvalid)
		}}
	}
	return l
}

// download fetches src into stageDir/data, writing at most what bud has
// left. cond, when not nil, makes an http request conditional; a 304 comes
// back as notModified.
func (f *Fetcher) download(ctx context.Context, src *source, stageDir string, cond *conditional, bud *budget) (*download, error) {
	if f.cfg.URITimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.cfg.URITimeout)
		defer cancel()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	prog := &progress{}
	prog.total.Store(-1)
	defer f.report(prog)()
	lim := f.sizeLimit(bud)
	walks := src.kind == srcGit || src.kind == srcHadoop
	wd := watchdog{window: f.cfg.stallTimeout(), minRate: f.cfg.stallMinRate(), p: prog,
		dir: stageDir, walk: walks, limit: -1}
	if walks && lim.n < math.MaxInt64 {
		wd.limit, wd.overLimit = lim.n, lim.tooBig("download of "+src.redacted)
	}
	stop := wd.start(ctx, cancel)
	defer stop()

	dst := filepath.Join(stageDir, "data")
	var d *download
	var err error
	switch src.kind {
	case srcLocalRel:
		d, err = f.copyFromFrameworksHome(ctx, src, dst, lim)
	case srcLocalAbs:
		d, err = f.copyLocal(ctx, src, dst, lim)
	case srcHTTP:
		d, err = f.getHTTP(ctx, src, dst, cond, prog, lim)
	case srcGit:
		d, err = f.getGit(ctx, src, dst)
	case srcHadoop:
		d, err = f.getWithHadoop(ctx, src, dst, lim)
	default:
		err = fmt.Errorf("unknown source kind %d", src.kind)
	}
	if cause := context.Cause(ctx); cause != nil && err != nil {
		var se *stallError
		var le *limitError
		switch {
		case errors.As(cause, &se):
			return nil, se
		case errors.As(cause, &le):
			return nil, cause
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
		return nil, fmt.Errorf("downloaded file: %w", scrubPath(err))
	}
	d.dir = fi.IsDir()
	if d.dir {
		d.size = dirSize(dst)
	} else {
		d.size = fi.Size()
	}
	if d.size > lim.n {
		return nil, lim.tooBig(fmt.Sprintf("download of %s is %d bytes", src.redacted, d.size))
	}
	return d, nil
}

// copyFromFrameworksHome opens a relative path through an os.Root on
// --frameworks_home, so `..` and symlinks that leave it are refused by the
// kernel-checked resolution, not by string prefix checks.
// The messages name the flag, not the host directory it points to: they
// reach the task's status.
func (f *Fetcher) copyFromFrameworksHome(ctx context.Context, src *source, dst string, lim sizeLimit) (*download, error) {
	root, err := os.OpenRoot(f.cfg.FrameworksHome)
	if err != nil {
		f.log.Error("cannot open --frameworks_home", "dir", f.cfg.FrameworksHome, "error", err.Error())
		return nil, fmt.Errorf("cannot open --frameworks_home: %w", errdefs.ErrUnavailable)
	}
	defer root.Close()
	// O_NONBLOCK: a FIFO planted under the directory must not hang the open.
	in, err := root.OpenFile(src.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%q not found under --frameworks_home: %w", src.path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("%q resolves outside --frameworks_home: %w", src.path, errdefs.ErrForbidden)
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%q under --frameworks_home is not a regular file: %w", src.path, errdefs.ErrInvalid)
	}
	if err := copyOpenFile(ctx, in, fi, dst, lim, src.redacted); err != nil {
		return nil, err
	}
	return &download{srcSize: fi.Size(), srcMtime: fi.ModTime().UnixNano()}, nil
}

// copyLocal copies an absolute path into the stage. A source that is itself
// a symlink is refused, as go-getter v1's DisableSymlinks did: the check is
// O_NOFOLLOW on the open, so the name cannot be swapped for a link between
// a check and the open. The Lstat first keeps a FIFO from blocking the open.
func (f *Fetcher) copyLocal(ctx context.Context, src *source, dst string, lim sizeLimit) (*download, error) {
	fi, err := os.Lstat(src.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", src.path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("%v: %w", err, errdefs.ErrForbidden)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("%s is a symlink; symlinks are not followed: %w", src.path, errdefs.ErrForbidden)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: %w", src.path, errdefs.ErrInvalid)
	}
	in, err := os.OpenFile(src.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symlink; symlinks are not followed: %w", src.path, errdefs.ErrForbidden)
		}
		return nil, fmt.Errorf("%v: %w", err, errdefs.ErrForbidden)
	}
	defer in.Close()
	if fi, err = in.Stat(); err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: %w", src.path, errdefs.ErrInvalid)
	}
	if err := copyOpenFile(ctx, in, fi, dst, lim, src.redacted); err != nil {
		return nil, err
	}
	return &download{srcSize: fi.Size(), srcMtime: fi.ModTime().UnixNano()}, nil
}

// copyOpenFile copies in to a new file dst with in's permission bits less
// group and other write (the umask go-getter was given), never set-id bits,
// and no more than lim bytes (a file can grow while it is copied).
func copyOpenFile(ctx context.Context, in *os.File, fi fs.FileInfo, dst string, lim sizeLimit, shown string) error {
	if fi.Size() > lim.n {
		return lim.tooBig(fmt.Sprintf("%s is %d bytes", shown, fi.Size()))
	}
	perm := fi.Mode().Perm() &^ 0o022
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, perm)
	if err != nil {
		return fmt.Errorf("copy %s: %v: %w", shown, scrubPath(err), errdefs.ErrUnavailable)
	}
	n, err := io.Copy(out, io.LimitReader(ctxReader{ctx: ctx, r: in}, lim.n+1))
	if err == nil && n > lim.n {
		err = lim.tooBig(fmt.Sprintf("%s grew while it was copied", shown))
	} else if err != nil {
		err = fmt.Errorf("copy %s: %v: %w", shown, scrubPath(err), errdefs.ErrUnavailable)
	}
	if err != nil {
		out.Close()
		return err
	}
	// The process umask may be stricter than ours; the mode is the source's.
	if err := out.Chmod(perm); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// getHTTP is a plain GET with our client, not go-getter: go-getter v2 runs
// its getters only through Client.Get, which re-encodes the query (a signed
// URL's signature covers it), strips archive= and reports a failed request
// only as "bad response code". Here the status gives the error class, the
// validators go to the cache, and every byte read feeds the stall watchdog.
// There is no HEAD first, so a partial file can never be "resumed" into a
// wrong one, and no X-Terraform-Get.
func (f *Fetcher) getHTTP(ctx context.Context, src *source, dst string, cond *conditional, prog *progress, lim sizeLimit) (*download, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src.raw, nil)
	if err != nil {
		return nil, fmt.Errorf("request for %s: %v: %w", src.redacted, err, errdefs.ErrInvalid)
	}
	req.Header.Set("User-Agent", "mesolite-fetcher")
	if cond != nil {
		if cond.etag != "" {
			req.Header.Set("If-None-Match", cond.etag)
		}
		if cond.lastModified != "" {
			req.Header.Set("If-Modified-Since", cond.lastModified)
		}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		// url.Error repeats the URL with its query; the redacted one is
		// already in the message.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("download %s: %v: %w", src.redacted, err, errdefs.ErrUnavailable)
	}
	defer resp.Body.Close()
	d := &download{etag: resp.Header.Get("ETag"), lastModified: resp.Header.Get("Last-Modified")}
	if cond != nil && resp.StatusCode == http.StatusNotModified {
		d.notModified = true
		return d, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("server answered %s: %w", resp.Status, httpClass(resp.StatusCode))
	}
	limit := lim.n
	if resp.ContentLength > limit {
		return nil, lim.tooBig(fmt.Sprintf("%s is %d bytes", src.redacted, resp.ContentLength))
	}
	if resp.ContentLength >= 0 {
		prog.total.Store(resp.ContentLength)
	}
	// One byte more than allowed tells a body at the limit from one over it
	// when the server sent no Content-Length (or one that lies).
	body := io.LimitReader(&countingBody{ReadCloser: resp.Body, p: prog}, min(limit, math.MaxInt64-1)+1)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644)
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(out, body)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && n > limit {
		return nil, lim.tooBig(fmt.Sprintf("download of %s passed %d bytes", src.redacted, limit))
	}
	if err == nil && resp.ContentLength >= 0 && n < resp.ContentLength {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, fmt.Errorf("download %s: %v: %w", src.redacted, scrubPath(err), errdefs.ErrUnavailable)
	}
	return d, nil
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

// getGit clones through a go-getter v2 client that knows only git and has
// no decompressors. parseSource let only URLs with a git transport scheme
// through, so no detector (github.com/..., git@host:...) is needed. Symlinks
// in the checkout are checked by checkTreeSymlinks once it is done.
func (f *Fetcher) getGit(ctx context.Context, src *source, dst string) (*download, error) {
	c := &getter.Client{
		Getters: []getter.Getter{new(getter.GitGetter)},
		// A non-nil empty map: go-getter never decompresses; our extractor does.
		Decompressors:   map[string]getter.Decompressor{},
		DisableSymlinks: true,
	}
	req := &getter.Request{
		Src:             src.raw,
		Dst:             dst,
		GetMode:         getter.ModeDir,
		Umask:           0o022,
		DisableSymlinks: true,
	}
	if _, err := c.Get(ctx, req); err != nil {
		// The error carries git's output, which may repeat the URL.
		return nil, fmt.Errorf("download %s: %s: %w", src.redacted, scrubSecrets(err.Error(), src.url), errdefs.ErrUnavailable)
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
				f.log.Error("no Hadoop client", "path", bin)
				f.hadoopErr = fmt.Errorf("no Hadoop client at bin/hadoop under --hadoop_home or HADOOP_HOME: %w", errdefs.ErrUnavailable)
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
		out, err := f.runSpawned(f.hadoopCommand(vctx, bin, "version"))
		if err != nil {
			f.log.Error("Hadoop client not usable", "path", bin, "error", err.Error())
			f.hadoopErr = fmt.Errorf("Hadoop client is not usable: `hadoop version` failed: %v: %s: %w", err, tail(out, 512), errdefs.ErrUnavailable)
			return
		}
		f.hadoopBin = bin
	})
	return f.hadoopBin, f.hadoopErr
}

// hadoopCommand runs the Hadoop client in a process group of its own, so a
// stall or a size limit here kills the script and the JVM it starts
// without killing this process. That group is outside the one the agent
// kills when the fetch is cancelled, so its id is reported (onSpawn) for
// the agent to kill too, and the script dies with this process in any case
// (Pdeathsig).
func (f *Fetcher) hadoopCommand(ctx context.Context, bin string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runSpawned runs cmd for its combined output, reporting its process
// group before it can write a byte.
func (f *Fetcher) runSpawned(cmd *exec.Cmd) ([]byte, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	if f.onSpawn != nil {
		f.onSpawn(cmd.Process.Pid)
	}
	err := cmd.Wait()
	return out.Bytes(), err
}

func (f *Fetcher) getWithHadoop(ctx context.Context, src *source, dst string, lim sizeLimit) (*download, error) {
	bin, err := f.hadoopBinary(ctx)
	if err != nil {
		return nil, fmt.Errorf("cannot fetch %s: %w", src.redacted, err)
	}
	out, err := f.runSpawned(f.hadoopCommand(ctx, bin, "fs", "-copyToLocal", src.raw, dst))
	if err != nil && dirSize(filepath.Dir(dst)) >= lim.n {
		// Stopped by RLIMIT_FSIZE at the budget (SIGXFSZ or EFBIG), not
		// by a failure of its own.
		return nil, lim.tooBig("download of " + src.redacted)
	}
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
