// Package containerizertest is the conformance suite of the
// containerizer.Containerizer contract, as containerd's snapshots/testsuite
// is for snapshotters: every implementation (docker, mesos, composing, the
// fake) runs Run from its own tests, with an Options that says how to
// build a launch spec for the suite's few programs and which optional
// behaviours it has (memory limits, a launch that can be held up).
//
// The suite's executors are tiny on purpose: a program that exits with a
// code, one that runs until it is killed, one that eats memory. How each
// becomes an executor is the implementation's business (a /bin/sh command
// for the mesos containerizer, a busybox container for docker, a script
// for the fake).
package containerizertest
