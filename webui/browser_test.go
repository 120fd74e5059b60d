package webui

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

// browser is a headless Chromium driven over the DevTools protocol. It
// collects JavaScript exceptions, console errors and CSP violations, which
// fail the test: a page that throws is broken even when it looks right.
type browser struct {
	t    *testing.T
	ctx  context.Context
	errs *pageErrors
}

type pageErrors struct {
	mu   sync.Mutex
	list []string
}

// with returns the browser for use in the subtest t.
func (b *browser) with(t *testing.T) *browser {
	return &browser{t: t, ctx: b.ctx, errs: b.errs}
}

func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromium()
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
		chromedp.WindowSize(1280, 860),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, errs: &pageErrors{}}
	// The first action starts the browser, so it runs without a timeout
	// (one would stop the browser when it expires); later ones get one each.
	err := chromedp.Listen(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			msg := ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
			b.fail("exception: " + msg)
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				b.fail("console.error: " + strings.Join(parts, " "))
			}
		case *log.EventEntryAdded:
			// Failed requests the tests provoke on purpose (404s, a
			// refused stream) are "network" entries; CSP violations and
			// other page errors are not.
			if e := ev.Entry; e != nil && e.Level == log.EntryLevelError && e.Source != log.EntrySourceNetwork {
				b.fail(fmt.Sprintf("log %s: %s (%s)", e.Source, e.Text, e.URL))
			}
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

func (b *browser) fail(msg string) {
	b.errs.mu.Lock()
	defer b.errs.mu.Unlock()
	b.errs.list = append(b.errs.list, msg)
}

// checkErrors fails the test for page errors seen so far.
func (b *browser) checkErrors() {
	b.t.Helper()
	b.errs.mu.Lock()
	defer b.errs.mu.Unlock()
	for _, e := range b.errs.list {
		b.t.Errorf("page error: %s", e)
	}
	b.errs.list = nil
}

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// open loads url as a new document (by way of about:blank, so that a URL
// differing only in its fragment loads afresh too).
func (b *browser) open(url string) {
	b.t.Helper()
	b.do(chromedp.Navigate("about:blank"), chromedp.Navigate(url))
}

// click clicks the element like a user: a mouse press and release at its
// centre, after scrolling it into view.
func (b *browser) click(sel string) {
	b.t.Helper()
	b.wait(fmt.Sprintf("!!document.querySelector(%q)", sel), "%s on the page", sel)
	b.do(chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// wait polls a JavaScript boolean expression.
func (b *browser) wait(expr string, format string, args ...any) {
	b.t.Helper()
	testutil.Eventually(b.t, 20*time.Second, 100*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
		defer cancel()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		return err == nil && ok
	}, format, args...)
}

func evalT[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// text is what the element shows, lines as rendered (innerText).
func (b *browser) text(sel string) string {
	b.t.Helper()
	return evalT[string](b, fmt.Sprintf("(document.querySelector(%q) || {}).innerText || ''", sel))
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
		b.t.Fatal(err)
	}
}

// checkSequence checks that the lines of text matching re form one run of
// consecutive numbers: nothing lost, nothing shown twice.
func checkSequence(t *testing.T, text string, re *regexp.Regexp) (first, last int) {
	t.Helper()
	prev := -1
	for _, m := range re.FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[1])
		if prev >= 0 && n != prev+1 {
			t.Fatalf("%s: %d follows %d in:\n%s", re, n, prev, text)
		}
		if prev < 0 {
			first = n
		}
		prev = n
	}
	if prev < 0 {
		t.Fatalf("no line matches %s", re)
	}
	return first, prev
}

// TestBrowserFakeCluster drives the pages in Chromium against a fake master
// and an agent serving real sandboxes: click from the overview to a task's
// stdout and see it follow the file live; page back; browse; rotation,
// garbage collection, the polling fallback and the non-leader banner.
// WEBUI_SCREENSHOTS=DIR saves screenshots there.
func TestBrowserFakeCluster(t *testing.T) {
	// The cluster first, so that the browser, cleaned up first, lets go
	// of its streams before the servers close.
	fc := newFakeCluster(t)
	b := newBrowser(t)
	shots := os.Getenv("WEBUI_SCREENSHOTS")
	agentHost := hostPort(fc.agent)
	stdoutPath := fc.run.VirtualPath() + "/stdout"
	defer b.checkErrors()

	t.Run("overview", func(t *testing.T) {
		b := b.with(t)
		b.open(fc.master.URL + "/")
		b.wait(`document.querySelector('#tasks-by-state tr[data-state="TASK_RUNNING"] .count')?.textContent === '2'`, "2 running tasks on the overview")
		for expr, want := range map[string]string{
			`#tasks-by-state tr[data-state="TASK_FAILED"] .count`:       "1",
			`#cluster-resources tr[data-row="total"] td:nth-child(2)`:   "2",
			`#cluster-resources tr[data-row="total"] td:nth-child(4)`:   "1.0 GB",
			`#cluster-resources tr[data-row="used"] td:nth-child(2)`:    "0.2",
			`#cluster-resources tr[data-row="offered"] td:nth-child(4)`: "960.0 MB",
			`#cluster-resources tr[data-row="idle"] td:nth-child(2)`:    "0",
			`#agents-active`:                     "1",
			`#nav-overview[aria-current="page"]`: "Overview",
		} {
			if got := b.text(expr); got != want {
				t.Errorf("%s = %q, want %q", expr, got, want)
			}
		}
		hidden := evalT[bool](b, `document.getElementById('banner').hidden`)
		if !hidden {
			t.Errorf("leader banner shown on the leading master: %q", b.text("#banner"))
		}
		if shots != "" {
			b.screenshot(filepath.Join(shots, "master-overview.png"))
		}
	})

	t.Run("click to stdout", func(t *testing.T) {
		b := b.with(t)
		b.click("#nav-frameworks")
		b.wait(`location.hash === '#/frameworks'`, "frameworks page")
		b.click(`#active-frameworks tr[data-framework-id="fw-1"] a[data-testid="framework-link"]`)
		b.wait(`location.hash === '#/frameworks/fw-1'`, "framework page")
		b.click(`#framework-active-tasks tr[data-task-id="ticker"] a[data-testid="task-link"]`)
		b.wait(`location.hash === '#/frameworks/fw-1/tasks/ticker' && document.querySelectorAll('#task-statuses .status-row').length === 2`, "task page with two statuses")
		href := evalT[string](b, `document.getElementById('stdout-link').href`)
		if want := "http://" + agentHost + "/#/file?path=" + stdoutPath; href != want {
			t.Fatalf("stdout link = %q, want %q", href, want)
		}
		if got := b.text("#task-info"); !strings.Contains(got, "c-ticker") || !strings.Contains(got, "127.0.0.1") {
			t.Errorf("task details lack container id or IP: %q", got)
		}
		b.click("#stdout-link")
		b.wait(fmt.Sprintf(`location.host === %q && document.querySelector('#log-viewer')?.dataset.state === 'live'`, agentHost), "live log viewer on the agent")
		after := fc.linesWritten() + 2
		b.wait(fmt.Sprintf(`document.getElementById('log-viewer').textContent.includes('line %d\n')`, after), "line %d, written after the viewer opened", after)
		text := b.text("#log-viewer")
		if !strings.Contains(text, "history 04999 ") || strings.Contains(text, "history 00000 ") {
			t.Errorf("viewer did not open at the end of the file")
		}
		first, _ := checkSequence(t, text, regexp.MustCompile(`(?m)^history (\d+) x+$`))
		checkSequence(t, text, regexp.MustCompile(`(?m)^line (\d+)$`))
		if shots != "" {
			b.screenshot(filepath.Join(shots, "log-viewer.png"))
		}

		// Page back: the lines before join up with those shown.
		b.click("#log-earlier")
		b.wait(fmt.Sprintf(`document.getElementById('log-viewer').textContent.includes('history %05d ')`, first-100), "an earlier page")
		text = b.text("#log-viewer")
		first2, last := checkSequence(t, text, regexp.MustCompile(`(?m)^history (\d+) x+$`))
		if first2 >= first || last != 4999 {
			t.Errorf("after paging back history runs %d..%d, was %d..4999", first2, last, first)
		}
		checkSequence(t, text, regexp.MustCompile(`(?m)^line (\d+)$`))
		href2 := evalT[string](b, `document.getElementById('log-download').href`)
		if !strings.Contains(href2, "/files/download?path=") {
			t.Errorf("download link = %q", href2)
		}
	})

	taskPage := fc.master.URL + "/#/frameworks/fw-1/tasks/ticker"
	t.Run("stderr is text, not markup", func(t *testing.T) {
		b := b.with(t)
		b.open(taskPage)
		b.click("#stderr-link")
		b.wait(`(document.getElementById('log-viewer')?.textContent || '').includes('not bold')`, "stderr shown")
		if got := b.text("#log-viewer"); got != "warning: <b>not bold</b> & \"quoted\"\n" {
			t.Errorf("stderr = %q", got)
		}
		bold := evalT[int](b, `document.querySelectorAll('#log-viewer b').length`)
		if bold != 0 {
			t.Errorf("file content was parsed as HTML")
		}
	})

	t.Run("sandbox browser", func(t *testing.T) {
		b := b.with(t)
		b.open(taskPage)
		b.click("#sandbox-link")
		b.wait(`document.querySelectorAll('#listing .file-row').length === 3`, "listing of stdout, stderr, sub")
		names := evalT[[]string](b, `[...document.querySelectorAll('#listing .file-row')].map(r => r.dataset.name)`)
		if strings.Join(names, ",") != "sub,stderr,stdout" {
			t.Errorf("listing = %v, want directories first", names)
		}
		b.click(`#listing a.file-link[data-name="sub"]`)
		b.wait(`!!document.querySelector('#listing a[data-name="note.txt"]')`, "sub/ listed")
		if got := b.text("#breadcrumbs"); !strings.Contains(got, "sandbox of ticker") || !strings.Contains(got, "sub") {
			t.Errorf("breadcrumbs = %q", got)
		}
		b.click(`#listing a[data-name="note.txt"]`)
		b.wait(`document.getElementById('log-viewer')?.textContent === 'a note\n'`, "note.txt shown")
		b.click(`#breadcrumbs li:nth-child(2) a.crumb`) // "sandbox of ticker"
		b.wait(`!!document.querySelector('#listing a[data-name="stdout"]')`, "back at the sandbox root")
		b.click("#nav-executors")
		b.wait(`document.querySelectorAll('#executors .executor-row').length === 2`, "the agent's executors")
	})

	t.Run("rotation", func(t *testing.T) {
		b := b.with(t)
		b.open(fc.agent.URL + "/#/file?path=" + fc.rotRun.VirtualPath() + "/stdout")
		b.wait(`document.querySelector('#log-viewer')?.dataset.state === 'live'`, "live viewer")
		b.wait(`document.querySelectorAll('#log-viewer .marker').length >= 2`, "two rotations seen")
		marker := b.text("#log-viewer .marker")
		if !strings.Contains(marker, "rotated") || !strings.Contains(marker, "stdout.1") {
			t.Errorf("marker = %q", marker)
		}
		// Across rotations nothing is lost or repeated.
		checkSequence(t, b.text("#log-viewer"), regexp.MustCompile(`(?m)^rot (\d+) r+$`))
		b.open(fc.agent.URL + "/#/sandbox?path=" + fc.rotRun.VirtualPath())
		b.wait(`!!document.querySelector('#listing a[data-name="stdout.1"]') && !!document.querySelector('#listing a[data-name="stdout.2"]')`, "rotated files listed")
	})

	t.Run("garbage collected", func(t *testing.T) {
		b := b.with(t)
		b.open(fc.master.URL + "/#/frameworks/fw-1/tasks/broken")
		b.wait(`document.querySelectorAll('#task-statuses .status-row').length === 2`, "failed task page")
		st := b.text("#task-statuses")
		if !strings.Contains(st, "REASON_COMMAND_EXECUTOR_FAILED") || !strings.Contains(st, "Command exited with status 3") || !strings.Contains(st, "executor") {
			t.Errorf("statuses lack reason, message or source: %q", st)
		}
		b.click("#sandbox-link")
		b.wait(`!!document.getElementById('sandbox-gone')`, "garbage collected notice in the browser")
		b.open(fc.master.URL + "/#/frameworks/fw-1/tasks/broken")
		b.click("#stdout-link")
		b.wait(`!!document.getElementById('sandbox-gone') && document.getElementById('log-viewer').dataset.state === 'gone'`, "garbage collected notice in the viewer")
	})

	t.Run("polling fallback", func(t *testing.T) {
		b := b.with(t)
		fc.set(func(fc *fakeCluster) { fc.noStream = true })
		defer fc.set(func(fc *fakeCluster) { fc.noStream = false })
		b.open(fc.agent.URL + "/#/file?path=" + stdoutPath)
		b.wait(`document.querySelector('#log-viewer')?.dataset.state === 'polling'`, "viewer falls back to polling")
		after := fc.linesWritten() + 2
		b.wait(fmt.Sprintf(`document.getElementById('log-viewer').textContent.includes('line %d\n')`, after), "line %d while polling", after)
		checkSequence(t, b.text("#log-viewer"), regexp.MustCompile(`(?m)^line (\d+)$`))
	})

	t.Run("not the leader", func(t *testing.T) {
		b := b.with(t)
		fc.set(func(fc *fakeCluster) { fc.leader = "master@10.1.2.3:5050" })
		defer fc.set(func(fc *fakeCluster) { fc.leader = "" })
		b.open(fc.master.URL + "/#/agents")
		b.wait(`!document.getElementById('banner').hidden && !!document.getElementById('leader-link')`, "leader banner")
		href := evalT[string](b, `document.getElementById('leader-link').href`)
		if href != "http://10.1.2.3:5050/#/agents" {
			t.Errorf("leader link = %q", href)
		}
		if got := b.text(`#agents tr[data-agent-id="agent-1"]`); !strings.Contains(got, "rack:r1") || !strings.Contains(got, agentHost) {
			t.Errorf("agent row = %q", got)
		}
	})
}
