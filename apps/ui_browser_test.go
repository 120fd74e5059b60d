package apps_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/internal/testutil/browsertest"
)

// TestBrowserNewApp drives the apps service's page in Chromium against a
// real cluster: an app created through the New App form runs, healthy,
// on the app page, its tasks linked to their sandboxes on the agent; the
// list shows it; Scale and Destroy work from the buttons.
func TestBrowserNewApp(t *testing.T) {
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{Hostname: "127.0.0.1"})
	s := startApps(t, c.Addr, t.TempDir())
	b := browsertest.New(t)
	defer b.CheckErrors()

	b.Open(s.url + "/")
	b.Wait(`!!document.querySelector('#apps-table tr.empty')`, "the empty app list")
	b.Click("#new-app")
	b.Wait(`!!document.querySelector('#new-app-form')`, "the New App form")
	b.Do(
		chromedp.SendKeys(chromedp.CSS("#app-id"), "/ui/web"),
		chromedp.SendKeys(chromedp.CSS("#app-cmd"), "echo ok > index.html && exec busybox httpd -f -p 127.0.0.1:$PORT0 -h ."),
		chromedp.SetValue(chromedp.CSS("#app-cpus"), "0.05"),
		chromedp.SetValue(chromedp.CSS("#app-mem"), "16"),
		chromedp.SetValue(chromedp.CSS("#app-instances"), "2"),
		chromedp.SendKeys(chromedp.CSS("#app-env"), "GREETING=hello"),
		chromedp.SetValue(chromedp.CSS("#app-hc-protocol"), "MESOS_HTTP"),
		chromedp.SendKeys(chromedp.CSS("#app-hc-path"), "/"),
	)
	// The JSON mode shows the same definition.
	b.Click("#json-mode")
	if js := browsertest.Eval[string](b, `document.querySelector('#app-json').value`); !strings.Contains(js, `"id": "/ui/web"`) ||
		!strings.Contains(js, `"GREETING": "hello"`) || !strings.Contains(js, `"protocol": "MESOS_HTTP"`) {
		t.Fatalf("JSON mode:\n%s", js)
	}
	b.Click("#json-mode")
	b.Click("#create-app")

	b.Wait(`location.hash === '#/apps/ui/web'`, "the app page")
	b.Wait(`document.querySelectorAll('#tasks-table tr[data-state="TASK_RUNNING"]').length === 2 &&
		[...document.querySelectorAll('#tasks-table tr[data-state="TASK_RUNNING"]')].every((r) => r.innerText.includes('healthy'))`,
		"2 healthy running tasks on the app page")
	href := browsertest.Eval[string](b, `document.querySelector('#tasks-table a.sandbox-link').href`)
	if !strings.HasPrefix(href, "http://") || !strings.Contains(href, "#/sandbox?path=/frameworks/"+s.svc.FrameworkID()+"/executors/ui_web.") {
		t.Fatalf("sandbox link %s", href)
	}
	shot := func(name string) {
		// APPS_SCREENSHOTS=DIR keeps pictures of the pages.
		if dir := os.Getenv("APPS_SCREENSHOTS"); dir != "" {
			b.Screenshot(filepath.Join(dir, name))
		}
	}
	shot("apps-app.png")
	if a := s.app(t, "/ui/web"); a.Instances != 2 || a.TasksHealthy != 2 {
		t.Fatalf("the app as the API sees it: %+v", a)
	}

	b.Click("#nav-apps")
	b.Wait(`document.querySelector('#apps-table tr[data-app="/ui/web"]')?.dataset.status === 'Running'`, "the app running in the list")
	shot("apps-list.png")
	if got := b.Text(`#apps-table tr[data-app="/ui/web"] .instances`); got != "2 / 2" {
		t.Fatalf("instances in the list: %q", got)
	}

	b.Click(`#apps-table tr[data-app="/ui/web"] a.app-link`)
	b.Wait(`!!document.querySelector('#scale-to')`, "the scale control")
	b.Do(chromedp.SetValue(chromedp.CSS("#scale-to"), "1"))
	b.Click("#scale")
	b.Wait(`document.querySelectorAll('#tasks-table tr[data-state="TASK_RUNNING"]').length === 1 && document.querySelector('#app-status')?.innerText === 'Running'`,
		"scaled to 1")

	b.Click("#destroy")
	b.Click("#destroy")
	b.Wait(`location.hash === '#/' && !!document.querySelector('#apps-table tr.empty')`, "the app gone from the list")
}
