package jobs_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/internal/testutil/browsertest"
	"github.com/mesolite/mesolite/master"
	"github.com/mesolite/mesolite/webui"
)

// TestBrowserNewJobLikeTheSeed walks the seed's Chronos steps in a real
// browser: "+ New Job", NAME test1, COMMAND hostname, an owner, SCHEDULE
// R / now / PT5M; the job runs on the agent; its page links the run to its
// task in the master's UI, and from there to the task's stdout on the
// agent, which shows the hostname.
func TestBrowserNewJobLikeTheSeed(t *testing.T) {
	// The cluster first, so that the browser, cleaned up first, lets go
	// of its streams before the servers close.
	// The master and agent with their web pages, as the commands serve them.
	c := clustertest.New(t, func(cfg *master.Config) { cfg.UI = webui.Master(webui.Options{}) })
	c.AddAgent(t, clustertest.AgentOptions{UI: true})
	s := startJobs(t, c.Addr, t.TempDir())
	b := browsertest.New(t)
	defer b.CheckErrors()

	b.Open(s.url + "/")
	b.Wait(`!!document.querySelector('#jobs-table')`, "the job list")
	b.Click("#nav-new")
	b.Wait(`!!document.querySelector('#new-job-form')`, "the New Job form")
	for sel, text := range map[string]string{"#job-name": "test1", "#job-command": "hostname", "#job-owners": "ops@example.com"} {
		b.Do(chromedp.SendKeys(chromedp.CSS(sel), text))
	}
	if got := browsertest.Eval[string](b, `document.getElementById('schedule-period').value`); got != "PT5M" {
		t.Fatalf("the period field starts as %q, want PT5M", got)
	}
	b.Click("#create-job")
	b.Wait(`location.hash === '#/job/test1'`, "the job's page after Create")
	if j := s.job(t, "test1"); j.Command != "hostname" || j.Owner != "ops@example.com" || !strings.HasPrefix(j.Schedule, "R/") || !strings.HasSuffix(j.Schedule, "/PT5M") {
		t.Fatalf("job made by the form: %+v", j)
	}
	b.Wait(`!!document.querySelector('#runs-table a.task-link')`, "a run of test1 on its page, linked to its task")
	href := browsertest.Eval[string](b, `document.querySelector('#runs-table a.task-link').href`)
	if !strings.HasPrefix(href, "http://"+c.Addr+"/#/frameworks/") {
		t.Fatalf("the run links to %q, want the master's task page", href)
	}

	// Through the master's UI to the task's stdout.
	b.Open(href)
	deadline := time.Now().Add(30 * time.Second)
	for !browsertest.Eval[bool](b, `!!document.getElementById('stdout-link')`) {
		if time.Now().After(deadline) {
			t.Fatalf("no stdout link on the master's task page %s:\n%s", href, browsertest.Eval[string](b, `document.body.innerText`))
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Open(browsertest.Eval[string](b, `document.getElementById('stdout-link').href`))
	b.Wait(`(document.querySelector('#log-viewer') || {}).innerText?.trim().length > 0`, "the task's stdout on the agent")

	// The list shows it, search narrows it, the graph draws it.
	b.Open(s.url + "/")
	b.Wait(`document.querySelector('#jobs-table tr[data-job="test1"] [data-status]')?.dataset.status === 'success'`, "test1 listed as a success")
	b.Do(chromedp.SendKeys(chromedp.CSS("#job-search"), "nomatch"))
	b.Wait(`!document.querySelector('#jobs-table tr[data-job="test1"]')`, "the search hides test1")
	b.Open(s.url + "/#/graph")
	b.Wait(`!!document.querySelector('#graph-svg a[data-job="test1"].success')`, "test1 in the graph, green")
}
