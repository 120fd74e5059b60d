// Package executor holds mesolite's built-in executors, each a hidden
// subcommand of the one binary speaking the v1 executor API to the agent:
// command (executor/command) runs a task's shell command or argv, docker
// (executor/docker) runs a task as a Docker container. executor/driver is
// the client library they share.
package executor
