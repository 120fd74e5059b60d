// Package schedulertest runs a fake Mesos master for tests of frameworks:
// an httptest server that speaks just enough of POST /api/v1/scheduler
// (SUBSCRIBE with a RecordIO event stream and a Mesos-Stream-Id, every other
// call answered 202 or 403) for a test to script the master's side: send
// events, watch calls, cut the stream.
//
//	m := schedulertest.NewMaster(t)
//	m.OnCall = func(call *schedv1.Call) { ... m.Send(updateEvent) }
//	c, _ := scheduler.Subscribe(ctx, scheduler.Config{Master: m.Addr(), ...})
//	m.Send(offersEvent)
//	accept := m.WaitCall(t, schedv1.Call_ACCEPT)
//
// Extra endpoints (/master/state, ...) go on Mux.
package schedulertest
