package webui

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/mesolite/mesolite/internal/testutil/browsertest"
)

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
	b := browsertest.New(t)
	shots := os.Getenv("WEBUI_SCREENSHOTS")
	agentHost := hostPort(fc.agent)
	stdoutPath := fc.run.VirtualPath() + "/stdout"
	defer b.CheckErrors()

	t.Run("overview", func(t *testing.T) {
		b := b.With(t)
		b.Open(fc.master.URL + "/")
		b.Wait(`document.querySelector('#tasks-by-state tr[data-state="TASK_RUNNING"] .count')?.textContent === '2'`, "2 running tasks on the overview")
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
			if got := b.Text(expr); got != want {
				t.Errorf("%s = %q, want %q", expr, got, want)
			}
		}
		hidden := browsertest.Eval[bool](b, `document.getElementById('banner').hidden`)
		if !hidden {
			t.Errorf("leader banner shown on the leading master: %q", b.Text("#banner"))
		}
		if shots != "" {
			b.Screenshot(filepath.Join(shots, "master-overview.png"))
		}
	})

	t.Run("click to stdout", func(t *testing.T) {
		b := b.With(t)
		b.Click("#nav-frameworks")
		b.Wait(`location.hash === '#/frameworks'`, "frameworks page")
		b.Click(`#active-frameworks tr[data-framework-id="fw-1"] a[data-testid="framework-link"]`)
		b.Wait(`location.hash === '#/frameworks/fw-1'`, "framework page")
		b.Click(`#framework-active-tasks tr[data-task-id="ticker"] a[data-testid="task-link"]`)
		b.Wait(`location.hash === '#/frameworks/fw-1/tasks/ticker' && document.querySelectorAll('#task-statuses .status-row').length === 2`, "task page with two statuses")
		href := browsertest.Eval[string](b, `document.getElementById('stdout-link').href`)
		if want := "http://" + agentHost + "/#/file?path=" + stdoutPath; href != want {
			t.Fatalf("stdout link = %q, want %q", href, want)
		}
		if got := b.Text("#task-info"); !strings.Contains(got, "c-ticker") || !strings.Contains(got, "127.0.0.1") || !strings.Contains(got, "while true; do echo line") {
			t.Errorf("task details lack container id, IP or command: %q", got)
		}
		b.Click("#stdout-link")
		b.Wait(fmt.Sprintf(`location.host === %q && document.querySelector('#log-viewer')?.dataset.state === 'live'`, agentHost), "live log viewer on the agent")
		after := fc.linesWritten() + 2
		b.Wait(fmt.Sprintf(`document.getElementById('log-viewer').textContent.includes('line %d\n')`, after), "line %d, written after the viewer opened", after)
		text := b.Text("#log-viewer")
		if !strings.Contains(text, "history 04999 ") || strings.Contains(text, "history 00000 ") {
			t.Errorf("viewer did not open at the end of the file")
		}
		first, _ := checkSequence(t, text, regexp.MustCompile(`(?m)^history (\d+) x+$`))
		checkSequence(t, text, regexp.MustCompile(`(?m)^line (\d+)$`))
		if shots != "" {
			b.Screenshot(filepath.Join(shots, "log-viewer.png"))
		}

		// Page back: the lines before join up with those shown.
		b.Click("#log-earlier")
		b.Wait(fmt.Sprintf(`document.getElementById('log-viewer').textContent.includes('history %05d ')`, first-100), "an earlier page")
		text = b.Text("#log-viewer")
		first2, last := checkSequence(t, text, regexp.MustCompile(`(?m)^history (\d+) x+$`))
		if first2 >= first || last != 4999 {
			t.Errorf("after paging back history runs %d..%d, was %d..4999", first2, last, first)
		}
		checkSequence(t, text, regexp.MustCompile(`(?m)^line (\d+)$`))
		href2 := browsertest.Eval[string](b, `document.getElementById('log-download').href`)
		if !strings.Contains(href2, "/files/download?path=") {
			t.Errorf("download link = %q", href2)
		}
	})

	taskPage := fc.master.URL + "/#/frameworks/fw-1/tasks/ticker"
	t.Run("stderr is text, not markup", func(t *testing.T) {
		b := b.With(t)
		b.Open(taskPage)
		b.Click("#stderr-link")
		b.Wait(`(document.getElementById('log-viewer')?.textContent || '').includes('not bold')`, "stderr shown")
		if got := b.Text("#log-viewer"); got != "warning: <b>not bold</b> & \"quoted\"\n" {
			t.Errorf("stderr = %q", got)
		}
		bold := browsertest.Eval[int](b, `document.querySelectorAll('#log-viewer b').length`)
		if bold != 0 {
			t.Errorf("file content was parsed as HTML")
		}
	})

	t.Run("sandbox browser", func(t *testing.T) {
		b := b.With(t)
		b.Open(taskPage)
		b.Click("#sandbox-link")
		b.Wait(`document.querySelectorAll('#listing .file-row').length === 3`, "listing of stdout, stderr, sub")
		names := browsertest.Eval[[]string](b, `[...document.querySelectorAll('#listing .file-row')].map(r => r.dataset.name)`)
		if strings.Join(names, ",") != "sub,stderr,stdout" {
			t.Errorf("listing = %v, want directories first", names)
		}
		b.Click(`#listing a.file-link[data-name="sub"]`)
		b.Wait(`!!document.querySelector('#listing a[data-name="note.txt"]')`, "sub/ listed")
		if got := b.Text("#breadcrumbs"); !strings.Contains(got, "sandbox of ticker") || !strings.Contains(got, "sub") {
			t.Errorf("breadcrumbs = %q", got)
		}
		b.Click(`#listing a[data-name="note.txt"]`)
		b.Wait(`document.getElementById('log-viewer')?.textContent === 'a note\n'`, "note.txt shown")
		b.Click(`#breadcrumbs li:nth-child(2) a.crumb`) // "sandbox of ticker"
		b.Wait(`!!document.querySelector('#listing a[data-name="stdout"]')`, "back at the sandbox root")
		b.Click("#nav-executors")
		b.Wait(`document.querySelectorAll('#executors .executor-row').length === 2`, "the agent's executors")
	})

	t.Run("rotation", func(t *testing.T) {
		b := b.With(t)
		b.Open(fc.agent.URL + "/#/file?path=" + fc.rotRun.VirtualPath() + "/stdout")
		b.Wait(`document.querySelector('#log-viewer')?.dataset.state === 'live'`, "live viewer")
		b.Wait(`document.querySelectorAll('#log-viewer .marker').length >= 2`, "two rotations seen")
		marker := b.Text("#log-viewer .marker")
		if !strings.Contains(marker, "rotated") || !strings.Contains(marker, "stdout.1") {
			t.Errorf("marker = %q", marker)
		}
		// Across rotations nothing is lost or repeated.
		checkSequence(t, b.Text("#log-viewer"), regexp.MustCompile(`(?m)^rot (\d+) r+$`))
		b.Open(fc.agent.URL + "/#/sandbox?path=" + fc.rotRun.VirtualPath())
		b.Wait(`!!document.querySelector('#listing a[data-name="stdout.1"]') && !!document.querySelector('#listing a[data-name="stdout.2"]')`, "rotated files listed")
	})

	t.Run("garbage collected", func(t *testing.T) {
		b := b.With(t)
		b.Open(fc.master.URL + "/#/frameworks/fw-1/tasks/broken")
		b.Wait(`document.querySelectorAll('#task-statuses .status-row').length === 2`, "failed task page")
		st := b.Text("#task-statuses")
		if !strings.Contains(st, "REASON_COMMAND_EXECUTOR_FAILED") || !strings.Contains(st, "Command exited with status 3") || !strings.Contains(st, "executor") {
			t.Errorf("statuses lack reason, message or source: %q", st)
		}
		b.Click("#sandbox-link")
		b.Wait(`!!document.getElementById('sandbox-gone')`, "garbage collected notice in the browser")
		b.Open(fc.master.URL + "/#/frameworks/fw-1/tasks/broken")
		b.Click("#stdout-link")
		b.Wait(`!!document.getElementById('sandbox-gone') && document.getElementById('log-viewer').dataset.state === 'gone'`, "garbage collected notice in the viewer")
	})

	t.Run("polling fallback", func(t *testing.T) {
		b := b.With(t)
		fc.set(func(fc *fakeCluster) { fc.noStream = true })
		defer fc.set(func(fc *fakeCluster) { fc.noStream = false })
		b.Open(fc.agent.URL + "/#/file?path=" + stdoutPath)
		b.Wait(`document.querySelector('#log-viewer')?.dataset.state === 'polling'`, "viewer falls back to polling")
		after := fc.linesWritten() + 2
		b.Wait(fmt.Sprintf(`document.getElementById('log-viewer').textContent.includes('line %d\n')`, after), "line %d while polling", after)
		checkSequence(t, b.Text("#log-viewer"), regexp.MustCompile(`(?m)^line (\d+)$`))
	})

	t.Run("back from the log and the sandbox to the task", func(t *testing.T) {
		b := b.With(t)
		want := fc.master.URL + "/#/frameworks/" + fakeFwID + "/tasks/" + fakeTask
		for _, page := range []string{"/#/file?path=" + stdoutPath, "/#/sandbox?path=" + fc.run.VirtualPath()} {
			b.Open(fc.agent.URL + page)
			b.Wait(`!!document.getElementById('task-back-link')`, "a link back to the task on %s", page)
			if got := browsertest.Eval[string](b, `document.getElementById('task-back-link').href`); got != want {
				t.Errorf("%s links back to %q, want %q", page, got, want)
			}
		}
	})

	t.Run("lists, filter and a narrow screen", func(t *testing.T) {
		b := b.With(t)
		b.Open(fc.master.URL + "/")
		// The landing page lists the tasks with their sandbox links.
		b.Wait(`document.querySelectorAll('#overview-active-tasks tr.task-row').length === 2`, "2 active tasks on the overview")
		if got := browsertest.Eval[int](b, `document.querySelectorAll('#overview-active-tasks tr.task-row .stdout-link').length`); got != 2 {
			t.Errorf("%d stdout links among the overview's active tasks, want 2", got)
		}
		if got := b.Text(`#overview-recent-tasks tr.task-row`); !strings.Contains(got, "broken") {
			t.Errorf("recent tasks row = %q", got)
		}
		// A state's count leads to its tasks.
		b.Click(`#tasks-by-state tr[data-state="TASK_FAILED"] a.count`)
		b.Wait(`location.hash === '#/tasks?state=TASK_FAILED' && document.querySelectorAll('#all-tasks tr.task-row').length === 1`, "the failed tasks")
		// The filter narrows every list, by any column or by one.
		b.Open(fc.master.URL + "/#/frameworks")
		b.Wait(`document.querySelectorAll('#active-tasks tr.task-row').length === 2`, "active tasks")
		b.Do(chromedp.SendKeys(chromedp.CSS("#filter"), fakeTask))
		b.Wait(`document.querySelectorAll('#active-tasks tr.task-row').length === 1`, "the filter leaves one task")
		setFilter := func(v string) {
			browsertest.Eval[bool](b, fmt.Sprintf(`(() => { const f = document.getElementById('filter'); f.value = %q; f.dispatchEvent(new Event('input')); return true; })()`, v))
		}
		setFilter("state:task_failed")
		b.Wait(`document.querySelectorAll('#active-tasks tr.task-row').length === 0 && document.querySelectorAll('#recent-completed-tasks tr.task-row').length === 1`, "state:task_failed")
		setFilter("")
		// Completed frameworks of one name are folded.
		b.Wait(`document.querySelectorAll('#completed-frameworks tr.framework-row').length === 2`, "old-framework folded with its older twin")
		if got := b.Text(`#completed-frameworks tr[data-framework-id="fw-old"]`); !strings.Contains(got, "×2") {
			t.Errorf("folded row = %q", got)
		}
		// At 600 px nothing runs off the right edge.
		nb := browsertest.New(t, browsertest.WindowSize(600, 900))
		for _, page := range []string{"/", "/#/frameworks", "/#/frameworks/" + fakeFwID + "/tasks/" + fakeTask} {
			nb.Open(fc.master.URL + page)
			nb.Wait(`!!document.querySelector('main section')`, "%s rendered", page)
			if w := browsertest.Eval[int](nb, `document.documentElement.scrollWidth`); w > 600 {
				t.Errorf("%s is %d px wide at a 600 px viewport", page, w)
			}
		}
	})

	t.Run("not the leader", func(t *testing.T) {
		b := b.With(t)
		fc.set(func(fc *fakeCluster) { fc.leader = "master@10.1.2.3:5050" })
		defer fc.set(func(fc *fakeCluster) { fc.leader = "" })
		b.Open(fc.master.URL + "/#/agents")
		b.Wait(`!document.getElementById('banner').hidden && !!document.getElementById('leader-link')`, "leader banner")
		href := browsertest.Eval[string](b, `document.getElementById('leader-link').href`)
		if href != "http://10.1.2.3:5050/#/agents" {
			t.Errorf("leader link = %q", href)
		}
		if got := b.Text(`#agents tr[data-agent-id="agent-1"]`); !strings.Contains(got, "rack:r1") || !strings.Contains(got, agentHost) {
			t.Errorf("agent row = %q", got)
		}
	})
}

// TestBrowserJavascriptURLIsNoLink: a framework's webui_url of
// "javascript:..." was rendered as a link that ran in the master's origin
// when clicked. The page shows it as text, and no href anywhere may hold a
// non-http(s) URL; the CSP would stop an inline script anyway.
func TestBrowserJavascriptURLIsNoLink(t *testing.T) {
	fc := newFakeCluster(t)
	b := browsertest.New(t)
	defer b.CheckErrors()
	b.Open(fc.master.URL + "/#/frameworks/" + fakeEvilFwID)
	b.Wait(`!!document.getElementById('framework-webui')`, "the framework's web UI row")
	if tag := browsertest.Eval[string](b, `document.getElementById('framework-webui').tagName`); tag != "SPAN" {
		t.Errorf("webui_url rendered as %s", tag)
	}
	if got := b.Text("#framework-webui"); got != fakeEvilURL {
		t.Errorf("webui_url text = %q", got)
	}
	b.Click("#framework-webui")
	for expr, want := range map[string]bool{
		`[...document.querySelectorAll('[href],[src]')].some(e => /^\s*(javascript|data|vbscript):/i.test(e.getAttribute('href') || e.getAttribute('src') || ''))`: false,
		`document.body.dataset.pwned === 'yes'`:                            false,
		`ML.safeURL('javascript:alert(1)') || ML.safeURL(' JAVASCRIPT:x')`: false,
		`ML.h('a', {href: 'javascript:alert(1)'}).hasAttribute('href')`:    false,
		`ML.safeURL('https://example.com/ui') && ML.safeURL('#/agents')`:   true,
	} {
		if got := browsertest.Eval[bool](b, expr); got != want {
			t.Errorf("%s = %v, want %v", expr, got, want)
		}
	}
}
