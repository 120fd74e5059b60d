package artifactsrv

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	neturl "net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/tlsconfig"
)

// Push uploads file to url (`mesolite artifacts push FILE URL`) with a PUT
// carrying the bearer token and the file's sha256 in X-Checksum-Sha256, so
// the server refuses bytes damaged on the way. Progress goes to progress
// (nil: silent): a live bar when it is a terminal, one summary line
// otherwise. Errors carry errdefs classes: ErrUnauthorized (no token),
// ErrForbidden (wrong token or uploads disabled), ErrInvalid (checksum or
// path refused), ErrUnavailable (server or network trouble). tlsCfg
// verifies an https server (nil: the system's roots).
func Push(ctx context.Context, file, url, token string, tlsCfg *tls.Config, progress io.Writer) error {
	url, err := pushURL(file, url)
	if err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("push: %v: %w", err, errdefs.ErrNotFound)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("push: %s is not a regular file: %w", file, errdefs.ErrInvalid)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("push: read %s: %w", file, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}

	var body io.Reader = f
	var bar *progressBar
	if progress != nil {
		bar = newProgressBar(progress, fi.Size(), isTerminal(progress))
		body = &countingReader{r: f, add: bar.add}
		bar.start()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, body)
	if err != nil {
		return fmt.Errorf("push: %v: %w", err, errdefs.ErrInvalid)
	}
	req.ContentLength = fi.Size()
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-Checksum-Sha256", sum)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	resp, err := (&http.Client{Transport: tlsconfig.ExplainErrors(tr)}).Do(req)
	if bar != nil {
		bar.stop()
	}
	if err != nil {
		return fmt.Errorf("push %s: %w: %w", url, err, errdefs.ErrUnavailable)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return errdefs.Classf(pushClass(resp.StatusCode), "push %s: the server answered %s: %s", url, resp.Status, strings.TrimSpace(string(msg)))
	}
	if progress != nil {
		d := time.Since(start)
		fmt.Fprintf(progress, "pushed %s (%s) to %s in %s, %s/s, sha256 %s\n", file, humanBytes(fi.Size()), url,
			d.Round(time.Millisecond), humanBytes(int64(float64(fi.Size())/max(d.Seconds(), 1e-9))), sum)
	}
	return nil
}

// pushURL checks the destination: http(s) only, said so when the scheme is
// missing; a URL ending in "/" names a directory, and the file keeps its
// name in it (as curl -T does).
func pushURL(file, raw string) (string, error) {
	u, err := neturl.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		if !strings.Contains(raw, "://") {
			return "", errdefs.Classf(errdefs.ErrInvalid, "push: %q has no scheme: give the server's URL, http://%s or https://%s", raw, raw, raw)
		}
		return "", errdefs.Classf(errdefs.ErrInvalid, "push: %q is not an http:// or https:// URL of the artifact server", raw)
	}
	if strings.HasSuffix(u.Path, "/") || u.Path == "" {
		u.Path = path.Join(u.Path, filepath.Base(file))
	}
	return u.String(), nil
}

func pushClass(code int) error {
	switch {
	case code == http.StatusUnauthorized:
		return errdefs.ErrUnauthorized
	case code == http.StatusForbidden, code == http.StatusMethodNotAllowed:
		return errdefs.ErrForbidden
	case code == http.StatusNotFound:
		return errdefs.ErrNotFound
	case code == http.StatusConflict:
		return errdefs.ErrConflict
	case code >= 500:
		return errdefs.ErrUnavailable
	default:
		return errdefs.ErrInvalid
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

type countingReader struct {
	r   io.Reader
	add func(int)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.add(n)
	return n, err
}

// progressBar redraws one terminal line ten times a second.
type progressBar struct {
	w     io.Writer
	total int64
	tty   bool

	mu    sync.Mutex
	done  int64
	began time.Time
	quit  chan struct{}
	wg    sync.WaitGroup
}

func newProgressBar(w io.Writer, total int64, tty bool) *progressBar {
	return &progressBar{w: w, total: total, tty: tty, quit: make(chan struct{})}
}

func (b *progressBar) add(n int) {
	b.mu.Lock()
	b.done += int64(n)
	b.mu.Unlock()
}

func (b *progressBar) start() {
	b.began = time.Now()
	if !b.tty {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-b.quit:
				b.draw()
				fmt.Fprintln(b.w)
				return
			case <-t.C:
				b.draw()
			}
		}
	}()
}

func (b *progressBar) stop() {
	close(b.quit)
	b.wg.Wait()
}

func (b *progressBar) draw() {
	b.mu.Lock()
	done := b.done
	b.mu.Unlock()
	const width = 30
	frac := 1.0
	if b.total > 0 {
		frac = min(float64(done)/float64(b.total), 1)
	}
	filled := int(frac * width)
	rate := float64(done) / max(time.Since(b.began).Seconds(), 1e-9)
	fmt.Fprintf(b.w, "\r[%s%s] %5.1f%% %s/%s %s/s ", strings.Repeat("=", filled), strings.Repeat(" ", width-filled),
		frac*100, humanBytes(done), humanBytes(b.total), humanBytes(int64(rate)))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
