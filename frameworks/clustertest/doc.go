// Package clustertest runs a real master and real agents in the test's own
// process, for end-to-end tests of frameworks (the driver, apps, jobs):
// offers, launches and status updates go through the same HTTP APIs as in
// a deployment. Agents run tasks with the real posix containerizer and the
// built-in command executor (the test binary re-executes itself as both,
// see Main), or with containerizer/fake where a real process is not the
// point.
package clustertest
