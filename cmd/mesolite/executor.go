package main

import (
	"context"
	"io"

	"github.com/mesolite/mesolite/executor/builtin"
	"github.com/mesolite/mesolite/executor/command"
	"github.com/mesolite/mesolite/executor/defaultexec"
	dockerexec "github.com/mesolite/mesolite/executor/docker"
)

// executors are this binary's built-in executors: the lean
// mesolite-executor has all but docker's (which links the Docker client).
var executors = map[string]builtin.Main{
	"command": command.Main,
	"docker":  dockerexec.Main,
	// The default executor: task groups (LAUNCH_GROUP).
	"default": defaultexec.Main,
}

// executorMain runs a built-in executor: `mesolite executor command|docker|default`.
func executorMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return builtin.Executor(ctx, args, stderr, executors)
}

// launchMain is the container init (builtin.Launch). The agent starts
// mesolite-executor's instead when it has one (executorBinary).
func launchMain(_ context.Context, args []string, stdout, stderr io.Writer) int {
	return builtin.Launch(args, executors)
}
