package apps_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/scheduler"
	"google.golang.org/protobuf/proto"
)

// scaleInstances is the benchmark size: 500 instances on one agent.
const scaleInstances = 500

// scaleAgent is the one agent the instances share, with room for all of
// them (and for the service ports' range, which the instances here do not
// use).
var scaleAgent = clustertest.AgentOptions{Resources: "cpus:16;mem:16384;disk:10000;ports:[31000-31999]"}

// BenchmarkScaleTo500 compares, in one run and each on a fresh master and
// agent, the time to 500 running instances of an app scaled from 0 with
// PUT /v2/apps/{id} to the time to 500 TASK_RUNNING of the same tasks
// launched with one ACCEPT through the scheduler library (the issue's
// target: at most 1.2x). Both run `sleep 3600` with 0.01 cpus and 8 MB;
// both count from the request (the PUT; the ACCEPT, with the offer already
// in hand) to the 500th TASK_RUNNING the framework has received: the
// scheduler client's events, the apps service's status_update_event
// stream (sent once the update is stored). Each side runs twice, in the
// order accept, apps, apps, accept, and the ratio is of the means.
//
//	go test -run '^$' -bench ScaleTo500 -benchtime 1x -timeout 30m ./apps/
func BenchmarkScaleTo500(b *testing.B) {
	var accept, apps []time.Duration
	measure := func(name string, f func(b *testing.B) time.Duration, into *[]time.Duration) {
		b.Run(name, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				d := f(b)
				total += d
				*into = append(*into, d)
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/500-running")
			b.ReportMetric(float64(scaleInstances*b.N)/total.Seconds(), "instances/s")
		})
	}
	measure("accept", scaleAccept, &accept)
	measure("apps", scaleApps, &apps)
	measure("apps", scaleApps, &apps)
	measure("accept", scaleAccept, &accept)
	ma, mp := mean(accept), mean(apps)
	// Printed, not logged: a benchmark's log shows only under -v, which
	// also turns on the cluster's debug logs.
	fmt.Printf("%d instances: one ACCEPT %.2f s %v, apps %.2f s %v: ratio %.2f\n", scaleInstances, ma.Seconds(), accept, mp.Seconds(), apps, mp.Seconds()/ma.Seconds())
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(max(1, len(ds)))
}

// scaleAccept launches the tasks with one ACCEPT of the first offer.
func scaleAccept(b *testing.B) time.Duration {
	b.StopTimer()
	c := clustertest.New(b)
	c.AddAgent(b, scaleAgent)
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	cl, err := scheduler.Subscribe(ctx, scheduler.Config{
		Master:    c.Addr,
		Framework: &mesos.FrameworkInfo{Name: proto.String("bench")},
		Logger:    clustertest.Logger().With("process", "bench"),
	})
	if err != nil {
		b.Fatal(err)
	}
	offers := make(chan *mesos.Offer, 16)
	running := make(chan struct{})
	var mu sync.Mutex
	seen := map[string]bool{}
	go func() {
		for ev := range cl.Events() {
			switch ev.GetType() {
			case schedv1.Event_OFFERS:
				for _, o := range ev.GetOffers().GetOffers() {
					select {
					case offers <- o:
					default:
					}
				}
			case schedv1.Event_UPDATE:
				st := ev.GetUpdate().GetStatus()
				switch st.GetState() {
				case mesos.TaskState_TASK_RUNNING:
					mu.Lock()
					seen[st.GetTaskId().GetValue()] = true
					if len(seen) == scaleInstances {
						close(running)
					}
					mu.Unlock()
				case mesos.TaskState_TASK_FAILED, mesos.TaskState_TASK_ERROR, mesos.TaskState_TASK_LOST, mesos.TaskState_TASK_DROPPED:
					b.Errorf("task %s: %v %s", st.GetTaskId().GetValue(), st.GetState(), st.GetMessage())
				}
			}
		}
	}()
	var offer *mesos.Offer
	select {
	case offer = <-offers:
	case <-time.After(30 * time.Second):
		b.Fatal("no offer")
	}
	tasks := make([]*mesos.TaskInfo, scaleInstances)
	for i := range tasks {
		id := "bench." + strconv.Itoa(i)
		tasks[i] = &mesos.TaskInfo{
			Name: proto.String(id), TaskId: &mesos.TaskID{Value: proto.String(id)}, AgentId: offer.GetAgentId(),
			Command: &mesos.CommandInfo{Value: proto.String("sleep 3600")},
			Resources: []*mesos.Resource{
				{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(0.01)}},
				{Name: proto.String("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(8)}},
			},
		}
	}
	b.StartTimer()
	start := time.Now()
	if err := cl.Accept(ctx, []*mesos.OfferID{offer.GetId()}, []*mesos.Offer_Operation{scheduler.LaunchOperation(tasks...)}, nil); err != nil {
		b.Fatal(err)
	}
	select {
	case <-running:
	case <-time.After(5 * time.Minute):
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		b.Fatalf("%d of %d running after 5 minutes", n, scaleInstances)
	}
	d := time.Since(start)
	b.StopTimer()
	return d
}

// scaleApps scales an app of no instance to 500.
func scaleApps(b *testing.B) time.Duration {
	b.StopTimer()
	c := clustertest.New(b)
	c.AddAgent(b, scaleAgent)
	s := startApps(b, c.Addr, b.TempDir())
	s.mustCall(b, http.StatusCreated, "POST", "/v2/apps", `{"id":"/bench","cmd":"sleep 3600","cpus":0.01,"mem":8,"instances":0,"portDefinitions":[]}`, nil)
	waitNoDeployment(b, s)
	events := s.events(b, "status_update_event")
	b.StartTimer()
	start := time.Now()
	s.mustCall(b, http.StatusOK, "PUT", "/v2/apps/bench", fmt.Sprintf(`{"instances":%d}`, scaleInstances), nil)
	seen := map[string]bool{}
	timeout := time.After(5 * time.Minute)
	for len(seen) < scaleInstances {
		select {
		case ev := <-events:
			id, _ := ev["taskId"].(string)
			switch st, _ := ev["taskStatus"].(string); st {
			case "TASK_RUNNING":
				seen[id] = true
			case "TASK_FAILED", "TASK_ERROR", "TASK_LOST", "TASK_DROPPED":
				b.Errorf("task %s: %s %v", id, st, ev["message"])
			}
		case <-timeout:
			b.Fatalf("%d of %d running after 5 minutes", len(seen), scaleInstances)
		}
	}
	d := time.Since(start)
	b.StopTimer()
	// The API agrees.
	if a := s.app(b, "/bench"); a.TasksRunning != scaleInstances {
		b.Errorf("tasksRunning %d, want %d", a.TasksRunning, scaleInstances)
	}
	return d
}

// waitNoDeployment waits until no deployment is in progress.
func waitNoDeployment(b *testing.B, s *service) {
	b.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var deps []any
		s.mustCall(b, http.StatusOK, "GET", "/v2/deployments", "", &deps)
		if len(deps) == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("deployments still in progress: %v", deps)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
