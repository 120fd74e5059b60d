package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

// TestBrowserClickToLiveStdout is the user's path through the web UI in a
// real browser: open the master's page, click to the frameworks, the
// framework, the task and its stdout, and see a line the task printed after
// the page opened appear without a reload. It saves the screenshots the
// README shows under docs/.
func TestBrowserClickToLiveStdout(t *testing.T) {
	chrome := chromiumPath()
	testutil.Require(t, chrome != "", "test needs Chromium (Debian package chromium)")

	c := startCluster(t)
	start(t, "run", "run", "--master="+c.masterAddr, "--name=ticker", "--id=ticker-1",
		"--command=i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done")
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
		return taskState(t, c, "ticker-1") == "TASK_RUNNING"
	}, "ticker-1 running")

	b := newBrowser(t, chrome)
	defer b.checkErrors()

	b.open("http://" + c.masterAddr + "/")
	b.wait(`document.querySelector('#tasks-by-state tr[data-state="TASK_RUNNING"] .count')?.textContent === '1'`, "one running task on the overview")
	b.wait(`document.querySelectorAll('#overview-agents .agent-row').length === 1`, "the agent on the overview")
	b.screenshot(filepath.Join("..", "docs", "screenshot-master.png"))

	b.click("#nav-frameworks")
	b.wait(`location.hash === '#/frameworks'`, "frameworks page")
	b.click(`#active-frameworks a[data-testid="framework-link"]`)
	b.wait(`location.hash.startsWith('#/frameworks/') && !!document.getElementById('framework-info')`, "framework page")
	b.click(`#framework-active-tasks tr[data-task-id="ticker-1"] a[data-testid="task-link"]`)
	b.wait(`location.hash.endsWith('/tasks/ticker-1') && document.querySelectorAll('#task-statuses .status-row').length > 0`, "task page")
	if st := b.text("#task-statuses"); !strings.Contains(st, "TASK_RUNNING") {
		t.Errorf("task statuses lack TASK_RUNNING: %q", st)
	}
	b.click("#stdout-link")
	b.wait(fmt.Sprintf(`location.host === %q && document.querySelector('#log-viewer')?.dataset.state === 'live'`, c.agentAddr),
		"the live log viewer on the agent")

	// The highest line shown now was printed before; one three lines on can
	// only have been printed after the viewer opened.
	lineRE := regexp.MustCompile(`(?m)^line (\d+)$`)
	shown := -1
	for _, m := range lineRE.FindAllStringSubmatch(b.text("#log-viewer"), -1) {
		shown, _ = strconv.Atoi(m[1])
	}
	later := shown + 3
	b.wait(fmt.Sprintf(`document.getElementById('log-viewer').textContent.includes('line %d\n')`, later),
		"line %d, printed after the page opened (page showed up to line %d)", later, shown)
	prev := -1
	for _, m := range lineRE.FindAllStringSubmatch(b.text("#log-viewer"), -1) {
		n, _ := strconv.Atoi(m[1])
		if prev >= 0 && n != prev+1 {
			t.Errorf("line %d follows line %d: output lost or repeated", n, prev)
		}
		prev = n
	}
	b.screenshot(filepath.Join("..", "docs", "screenshot-log-viewer.png"))
}

func chromiumPath() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// browser drives a headless Chromium; JavaScript exceptions, console errors
// and CSP violations seen on the pages fail the test.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T, chrome string) *browser {
	t.Helper()
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chrome),
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
		chromedp.WindowSize(1280, 800),
	)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx}
	// Listen starts the browser; that first action must not carry a timeout,
	// which would stop the browser when it expires.
	err := chromedp.Listen(ctx, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg = "exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				msg = "console.error"
				for _, a := range ev.Args {
					msg += " " + string(a.Value) + a.Description
				}
			}
		case *log.EventEntryAdded:
			if e := ev.Entry; e != nil && e.Level == log.EntryLevelError && e.Source != log.EntrySourceNetwork {
				msg = fmt.Sprintf("log %s: %s (%s)", e.Source, e.Text, e.URL)
			}
		}
		if msg != "" {
			b.mu.Lock()
			b.errors = append(b.errors, msg)
			b.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	b.do(chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, log.Enable, cdp.Empty{})
		return err
	}))
	return b
}

func (b *browser) checkErrors() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		b.t.Errorf("page error: %s", e)
	}
}

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

func (b *browser) open(url string) {
	b.t.Helper()
	b.do(chromedp.Navigate(url))
}

// click presses and releases the mouse on the element, as a user does.
func (b *browser) click(sel string) {
	b.t.Helper()
	b.wait(fmt.Sprintf("!!document.querySelector(%q)", sel), "%s on the page", sel)
	b.do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// wait polls a JavaScript boolean expression.
func (b *browser) wait(expr, format string, args ...any) {
	b.t.Helper()
	testutil.Eventually(b.t, 30*time.Second, 100*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		return err == nil && ok
	}, format, args...)
}

// text is what the element shows, lines as rendered.
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf("(document.querySelector(%q) || {}).innerText || ''", sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

func (b *browser) screenshot(path string) {
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
