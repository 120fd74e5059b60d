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
	"sync/atomic"
	"syscall"
	"time"

	getter "github.com/hashicorp/go-getter/v2"

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
		Transport: tr,
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
	case srcGit:
		d, err = f.getGit(ctx, src, dst)
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
	if err := copyOpenFile(ctx, in, fi, dst); err != nil {
		return nil, fmt.Errorf("copy %q: %w", src.path, err)
	}
	return &download{srcSize: fi.Size(), srcMtime: fi.ModTime().UnixNano()}, nil
}

// copyLocal copies an absolute path into the stage. A source that is itself
// a symlink is refused, as go-getter v1's DisableSymlinks did: the check is
// O_NOFOLLOW on the open, so the name cannot be swapped for a link between
// a check and the open. The Lstat first keeps a FIFO from blocking the open.
func (f *Fetcher) copyLocal(ctx context.Context, src *source, dst string) (*download, error) {
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
	in, err := os.OpenFile(src.path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
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
	if err := copyOpenFile(ctx, in, fi, dst); err != nil {
		return nil, fmt.Errorf("copy %s: %w", src.path, err)
	}
	return &download{srcSize: fi.Size(), srcMtime: fi.ModTime().UnixNano()}, nil
}

// copyOpenFile copies in to a new file dst with in's permission bits less
// group and other write (the umask go-getter was given), never set-id bits.
func copyOpenFile(ctx context.Context, in *os.File, fi fs.FileInfo, dst string) error {
	perm := fi.Mode().Perm() &^ 0o022
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, ctxReader{ctx: ctx, r: in}); err != nil {
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
func (f *Fetcher) getHTTP(ctx context.Context, src *source, dst string, cond *conditional, prog *progress) (*download, error) {
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
	limit := f.cfg.MaxDownloadBytes
	if limit > 0 && resp.ContentLength > limit {
		return nil, fmt.Errorf("download is %d bytes, over the limit of %d: %w", resp.ContentLength, limit, errdefs.ErrInvalid)
	}
	var body io.Reader = &countingBody{ReadCloser: resp.Body, p: prog}
	if limit > 0 {
		// One byte more than allowed tells a body at the limit from one
		// over it when the server sent no Content-Length.
		body = io.LimitReader(body, limit+1)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	n, err := io.Copy(out, body)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil && resp.ContentLength >= 0 && n < resp.ContentLength {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, fmt.Errorf("download %s: %v: %w", src.redacted, err, errdefs.ErrUnavailable)
	}
	if limit > 0 && n > limit {
		return nil, fmt.Errorf("download is over the limit of %d bytes: %w", limit, errdefs.ErrInvalid)
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
