// Package fake is a scriptable containerizer.Containerizer for tests of
// the agent, as Nomad's drivers/mock is for its client: no process runs;
// each launch follows a Script (block, fail, exit with a code after a
// while, be OOM-killed, fail Destroy a few times) and every call is
// recorded. It passes the containerizertest conformance suite, so what the
// agent sees of it is what a real containerizer would show.
//
// A Fake stands for one agent process; Restart returns a second one on the
// same simulated host, whose Recover finds the first one's containers, as
// after an agent restart.
package fake
