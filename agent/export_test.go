package agent

import "testing"

// SetHTTPCapsForTest lowers the caps of the agent's HTTP server (see
// limits.go) for agents started during t, so that an external test can
// flood them; the caps are restored when t ends.
func SetHTTPCapsForTest(t testing.TB, conns, connsPerClient, streams, streamsPerClient int) {
	oldConn, oldTotal, oldPer := connLimitsFor, streamsTotal, streamsPerIP
	connLimitsFor = func() (int, int) { return conns, connsPerClient }
	streamsTotal, streamsPerIP = streams, streamsPerClient
	t.Cleanup(func() { connLimitsFor, streamsTotal, streamsPerIP = oldConn, oldTotal, oldPer })
}
