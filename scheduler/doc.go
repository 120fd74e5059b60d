// Package scheduler is a small client library for the Mesos v1 scheduler
// HTTP API (POST /api/v1/scheduler), used by `mesolite run`, the example
// framework and anyone writing a framework in Go against mesolite or Apache
// Mesos.
//
// A Client holds one subscription:
//
//	c, err := scheduler.Subscribe(ctx, scheduler.Config{
//		Master:    "127.0.0.1:5050",
//		Framework: &mesos.FrameworkInfo{Name: mesos.Ptr("my-framework")},
//	})
//	if err != nil {
//		return err // "cannot reach master at 127.0.0.1:5050: ..." and the like
//	}
//	defer c.Close()
//	for ev := range c.Events() {
//		switch ev.GetType() {
//		case schedv1.Event_OFFERS:
//			c.Launch(ctx, ev.GetOffers().GetOffers()[0], task)
//		case schedv1.Event_UPDATE:
//			// acknowledged for you once you have received it
//		}
//	}
//	return c.Err()
//
// What the client does for its user:
//
//   - Finds the leading master: it follows a 307 answer's
//     `Location: //host:port` and sends every later call to that master.
//   - Subscribes with the FrameworkInfo (JSON by default, protobuf with
//     Config.Codec), keeps the Mesos-Stream-Id of the subscription and puts
//     it, and the framework id, on every call.
//   - Reads the RecordIO event stream and hands each event, HEARTBEAT
//     included, to Events() in order. The channel is unbuffered: an event has
//     been received by the caller when the next one is read.
//   - Acknowledges every status update that carries a uuid once the caller
//     has received it (Config.ManualAcknowledge turns this off). Updates
//     without a uuid, such as reconciliation answers, must not be
//     acknowledged and are not.
//   - Treats a stream that stays silent for Config.MissedHeartbeats heartbeat
//     intervals as dead, like a closed one, and re-subscribes with the
//     framework id it was given, with jittered exponential backoff, to
//     whichever master leads by then (with zk://, the client follows the
//     election and tries a newly elected leader at once). A new SUBSCRIBED
//     event tells the caller that it happened; that is the moment to
//     reconcile. A re-subscription never ends a task: a new leader stays
//     silent about tasks on agents that have not re-registered with it yet.
//
// The client stops, closing Events(), when the context given to Subscribe is
// done, when Close or Teardown is called, when the master sends an ERROR
// event (the framework was removed, say), when a re-subscription is refused
// (4xx), or when Config.ReconnectTimeout passes without a master. Err then
// says why.
//
// Errors wrap the errdefs classes: a master that cannot be reached gives an
// *UnreachableError (errdefs.ErrUnavailable), a call made while
// re-subscribing errdefs.ErrUnavailable, a 400 errdefs.ErrInvalid, a 403
// errdefs.ErrForbidden.
//
// The package schedulertest has a fake master for tests of frameworks.
package scheduler
