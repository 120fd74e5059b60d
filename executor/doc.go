// Package executor holds mesolite's built-in executors, each a hidden
// subcommand of the one binary speaking the v1 executor API to the agent:
// command (executor/command) runs a task's shell command or argv, docker
// (executor/docker) runs a task as a Docker container, default
// (executor/defaultexec) runs task groups (LAUNCH_GROUP), each task a
// nested container of its own. executor/driver is the client library they
// share; executor/health runs their tasks' health checks and checks.
package executor
