package agent_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/api/v1/mesos"
	mesoscz "github.com/mesolite/mesolite/containerizer/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
	"google.golang.org/protobuf/proto"
)

// TestKillDuringFetchEndsIt kills a task while its URI is still being
// downloaded from an origin that never ends: the download stops, the task
// ends KILLED, and no container is started for it.
func TestKillDuringFetchEndsIt(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 1024)
		for {
			if _, err := w.Write(buf); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}))
	defer origin.Close()
	fetching := make(chan struct{})
	fetchDone := make(chan error, 1)
	cz, err := mesoscz.New(mesoscz.Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c := newCluster(t, nil)
	a := c.startAgentOn(t, t.TempDir(), 0, func(c *agent.Config) {
		c.Fetch = func(ctx context.Context, fr agent.FetchRequest) error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fr.URIs[0].GetValue(), nil)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				close(fetching)
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			fetchDone <- err
			return err
		}
	}, cz)
	fw := c.subscribe(t, testFramework("test"))
	task := commandTask("slow-fetch", "echo should-not-run")
	task.Command.Uris = []*mesos.CommandInfo_URI{{Value: proto.String(origin.URL + "/endless")}}
	fw.launch(a, task)
	select {
	case <-fetching:
	case <-time.After(10 * time.Second):
		t.Fatal("the fetch never started")
	}
	fw.kill(a, "slow-fetch")
	fw.waitState("slow-fetch", mesos.TaskState_TASK_KILLED, 10*time.Second)
	select {
	case err := <-fetchDone:
		if err == nil {
			t.Fatal("the endless download ended without error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the download went on after the kill")
	}
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() bool {
		ids, _ := cz.Containers(context.Background())
		return len(ids) == 0
	}, "a container was left for the killed task")
}
