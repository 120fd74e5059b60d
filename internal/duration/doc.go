// Package duration parses and formats durations the way Mesos does
// (`5secs`, `15mins`, `2hrs`, `1weeks`), because executors, frameworks and
// operators pass such strings to us and read ours back; a Go `5s` in
// MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD breaks existing executors.
package duration
