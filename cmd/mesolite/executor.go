package main

import (
	"context"
	"fmt"
	"io"
	"runtime"

	"github.com/mesolite/mesolite/executor/command"
	"github.com/mesolite/mesolite/executor/defaultexec"
	dockerexec "github.com/mesolite/mesolite/executor/docker"
)

// executorMain runs a built-in executor: `mesolite executor command|docker`.
func executorMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	// An executor waits on its agent and its task; one P is all it uses.
	// More only cost CPU where it is scarcest, in a burst of launches: idle
	// Ps spinning for work and parallel GC in every one of a hundred
	// executors starting at once (throughput +5-8% on two cores). The
	// task it starts gets the environment, not this setting.
	runtime.GOMAXPROCS(1)
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: mesolite executor command|docker|default (started by the agent, not by hand)")
		return 2
	}
	switch args[0] {
	case "command":
		return command.Main(ctx, args[1:])
	case "docker":
		return dockerexec.Main(ctx, args[1:])
	case "default":
		// The default executor: task groups (LAUNCH_GROUP).
		return defaultexec.Main(ctx, args[1:])
	default:
		fmt.Fprintf(stderr, "mesolite executor: unknown executor %q\n", args[0])
		return 2
	}
}
