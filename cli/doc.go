// Package cli holds mesolite's client commands: run, tasks, logs, kill,
// exec, the operator's agents, frameworks, teardown and maintenance, and
// example-framework. Each is a function
//
//	func(ctx context.Context, args []string, stdout, stderr io.Writer) int
//
// that parses its own flags (Mesos names with underscores, each also from
// MESOS_<NAME>, `--help` explaining every one), talks to the master over its
// public HTTP API (the v1 scheduler API through package scheduler,
// /master/state) and to agents over the files API, and returns the process
// exit status: 0 for success, 1 for a failure, 2 for bad usage (run also
// passes on its task's own exit status: see its --help). ctx ending
// (Ctrl-C) makes a command clean up and return: run kills its task and tears
// its framework down.
//
// The commands use nothing but what a Mesos cluster offers to any client,
// so they work against Apache Mesos too.
package cli
