// Package browsertest drives a headless Chromium for the web UI tests: the
// real browser (Debian's chromium), not a DOM emulation, so that layout,
// EventSource, CSP and clicks behave as they do for users.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/mesolite/mesolite/internal/testutil"
)

// Browser is one headless Chromium tab. It collects JavaScript exceptions,
// console errors and CSP violations, which CheckErrors turns into test
// failures: a page that throws is broken even when it looks right.
type Browser struct {
	t    *testing.T
	ctx  context.Context
	errs *pageErrors
}

type pageErrors struct {
	mu   sync.Mutex
	list []string
}

// Path finds a Chromium binary; "" when there is none.
func Path() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Option adjusts the browser New starts.
type Option func(*config)

type config struct {
	width, height int
	insecureTLS   bool
}

// IgnoreCertificateErrors makes the browser accept any TLS certificate:
// for pages served with a test CA the browser does not know, where what is
// tested is the page, not the certificate.
func IgnoreCertificateErrors() Option {
	return func(c *config) { c.insecureTLS = true }
}

// WindowSize sets the browser window's size (1280x860 unless set); the
// viewport, and so a screenshot, is smaller by the window's own chrome.
func WindowSize(width, height int) Option {
	return func(c *config) { c.width, c.height = width, height }
}

// New starts Chromium for t (skipping, or failing under CI, without one)
// and stops it when t ends.
func New(t *testing.T, options ...Option) *Browser {
	t.Helper()
	cfg := config{width: 1280, height: 860}
	for _, o := range options {
		o(&cfg)
	}
	path := Path()
	testutil.Require(t, path != "", "test needs Chromium (Debian package chromium)")
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(cfg.width, cfg.height),
	}
	if cfg.insecureTLS {
		opts = append(opts, chromedp.Flag("ignore-certificate-errors", true))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	b := &Browser{t: t, ctx: ctx, errs: &pageErrors{}}
	// The first action starts the browser, so it runs without a timeout
	// (one would stop the browser when it expires); later ones get one each.
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg := ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
			b.record("exception: " + msg)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				b.record("console.error: " + strings.Join(parts, " "))
			}
		case *log.EventEntryAdded:
			// Failed requests the tests provoke on purpose (404s, a
			// refused stream) are "network" entries; CSP violations and
			// other page errors are not.
			if e := ev.Entry; e != nil && e.Level == log.EntryLevelError && e.Source != log.EntrySourceNetwork {
				b.record(fmt.Sprintf("log %s: %s (%s)", e.Source, e.Text, e.URL))
			}
		}
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b.Do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, log.Enable, cdp.Empty{})
		return err
	}))
	return b
}

// With returns the same tab for use in the subtest t.
func (b *Browser) With(t *testing.T) *Browser {
	return &Browser{t: t, ctx: b.ctx, errs: b.errs}
}

func (b *Browser) record(msg string) {
	b.errs.mu.Lock()
	defer b.errs.mu.Unlock()
	b.errs.list = append(b.errs.list, msg)
}

// CheckErrors fails the test for the page errors seen since the last call.
func (b *Browser) CheckErrors() {
	b.t.Helper()
	b.errs.mu.Lock()
	defer b.errs.mu.Unlock()
	for _, e := range b.errs.list {
		b.t.Errorf("page error: %s", e)
	}
	b.errs.list = nil
}

// Do runs actions with a timeout, failing the test on error.
func (b *Browser) Do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// Open loads url as a new document (by way of about:blank, so that a URL
// differing only in its fragment loads afresh too).
func (b *Browser) Open(url string) {
	b.t.Helper()
	b.Do(chromedp.Navigate("about:blank"), chromedp.Navigate(url))
}

// Click clicks the element like a user: a mouse press and release at its
// centre, after scrolling it into view.
func (b *Browser) Click(sel string) {
	b.t.Helper()
	b.Wait(fmt.Sprintf("!!document.querySelector(%q)", sel), "%s on the page", sel)
	b.Do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// Wait polls a JavaScript boolean expression until it is true.
func (b *Browser) Wait(expr string, format string, args ...any) {
	b.t.Helper()
	testutil.Eventually(b.t, 30*time.Second, 100*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		return err == nil && ok
	}, format, args...)
}

// Eval evaluates a JavaScript expression into a T.
func Eval[T any](b *Browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// Text is what the element shows, lines as rendered (innerText).
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	return Eval[string](b, fmt.Sprintf("(document.querySelector(%q) || {}).innerText || ''", sel))
}

// Screenshot saves the viewport as a PNG at path.
func (b *Browser) Screenshot(path string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatalf("save screenshot: %v", err)
	}
	b.t.Logf("saved %s", path)
}
