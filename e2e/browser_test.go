package e2e

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/internal/testutil/browsertest"
)

// TestBrowserClickToLiveStdout is the user's path through the web UI in a
// real browser: open the master's page, click to the frameworks, the
// framework, the task and its stdout, and see a line the task printed after
// the page opened appear without a reload. It saves the screenshots the
// README shows under docs/.
func TestBrowserClickToLiveStdout(t *testing.T) {
	// Check for Chromium before starting a cluster for nothing.
	testutil.Require(t, browsertest.Path() != "", "test needs Chromium (Debian package chromium)")

	c := startCluster(t)
	start(t, "run", "run", "--master="+c.masterAddr, "--name=ticker", "--id=ticker-1",
		"--command=i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done")
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
		return taskState(t, c, "ticker-1") == "TASK_RUNNING"
	}, "ticker-1 running")

	// 1280x800 gives the 1280x657 viewport of the README's screenshots.
	b := browsertest.New(t, browsertest.WindowSize(1280, 800))
	defer b.CheckErrors()

	b.Open("http://" + c.masterAddr + "/")
	b.Wait(`document.querySelector('#tasks-by-state tr[data-state="TASK_RUNNING"] .count')?.textContent === '1'`, "one running task on the overview")
	b.Wait(`document.querySelectorAll('#overview-agents .agent-row').length === 1`, "the agent on the overview")
	b.Screenshot(filepath.Join("..", "docs", "screenshot-master.png"))

	b.Click("#nav-frameworks")
	b.Wait(`location.hash === '#/frameworks'`, "frameworks page")
	b.Click(`#active-frameworks a[data-testid="framework-link"]`)
	b.Wait(`location.hash.startsWith('#/frameworks/') && !!document.getElementById('framework-info')`, "framework page")
	b.Click(`#framework-active-tasks tr[data-task-id="ticker-1"] a[data-testid="task-link"]`)
	b.Wait(`location.hash.endsWith('/tasks/ticker-1') && document.querySelectorAll('#task-statuses .status-row').length > 0`, "task page")
	if st := b.Text("#task-statuses"); !strings.Contains(st, "TASK_RUNNING") {
		t.Errorf("task statuses lack TASK_RUNNING: %q", st)
	}
	b.Click("#stdout-link")
	b.Wait(fmt.Sprintf(`location.host === %q && document.querySelector('#log-viewer')?.dataset.state === 'live'`, c.agentAddr),
		"the live log viewer on the agent")

	// The highest line shown now was printed before; one three lines on can
	// only have been printed after the viewer opened.
	lineRE := regexp.MustCompile(`(?m)^line (\d+)$`)
	shown := -1
	for _, m := range lineRE.FindAllStringSubmatch(b.Text("#log-viewer"), -1) {
		shown, _ = strconv.Atoi(m[1])
	}
	later := shown + 3
	b.Wait(fmt.Sprintf(`document.getElementById('log-viewer').textContent.includes('line %d\n')`, later),
		"line %d, printed after the page opened (page showed up to line %d)", later, shown)
	prev := -1
	for _, m := range lineRE.FindAllStringSubmatch(b.Text("#log-viewer"), -1) {
		n, _ := strconv.Atoi(m[1])
		if prev >= 0 && n != prev+1 {
			t.Errorf("line %d follows line %d: output lost or repeated", n, prev)
		}
		prev = n
	}
	b.Screenshot(filepath.Join("..", "docs", "screenshot-log-viewer.png"))
}
