// Package dockertest holds what Docker tests of mesolite share: the test
// images built locally from testdata/docker (no registry is ever contacted)
// and a fake agent that speaks the executor side of the v1 executor API, so
// the docker executor can be driven without a real agent.
package dockertest
