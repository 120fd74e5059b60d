package scheduler_test

import (
	"context"
	"fmt"
	"log"
	"os/signal"
	"syscall"

	"github.com/mesolite/mesolite/api/v1/mesos"
	schedv1 "github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/scheduler"
)

// A framework that runs one command task and leaves when it ends.
func ExampleSubscribe() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	c, err := scheduler.Subscribe(ctx, scheduler.Config{
		Master:    "127.0.0.1:5050",
		Framework: &mesos.FrameworkInfo{Name: mesos.Ptr("hello")},
	})
	if err != nil {
		log.Fatal(err) // cannot reach master at 127.0.0.1:5050: ...
	}
	defer c.Close()

	task := &mesos.TaskInfo{
		Name:    mesos.Ptr("hello"),
		TaskId:  &mesos.TaskID{Value: mesos.Ptr("hello-1")},
		Command: &mesos.CommandInfo{Value: mesos.Ptr("echo hello")},
		Resources: []*mesos.Resource{
			{Name: mesos.Ptr("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: mesos.Ptr(0.1)}},
			{Name: mesos.Ptr("mem"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: mesos.Ptr(32.0)}},
		},
	}
	launched := false
	for ev := range c.Events() {
		switch ev.GetType() {
		case schedv1.Event_OFFERS:
			for _, o := range ev.GetOffers().GetOffers() {
				if launched {
					c.Decline(ctx, nil, o.GetId())
					continue
				}
				if err := c.Launch(ctx, o, task); err != nil {
					log.Fatal(err)
				}
				launched = true
			}
		case schedv1.Event_UPDATE:
			st := ev.GetUpdate().GetStatus()
			fmt.Println(st.GetState(), st.GetMessage())
			if st.GetState() == mesos.TaskState_TASK_FINISHED || st.GetState() == mesos.TaskState_TASK_FAILED {
				c.Teardown(ctx)
			}
		}
	}
	if err := c.Err(); err != nil {
		log.Fatal(err)
	}
}
