// Command mesolite-executor is the agent's lean helper: the container init
// (`launch`) and the built-in command and default executors (`executor
// command|default`), with the package graph they need and nothing of the
// master, the Docker client, metrics or the web UI. Each command task
// starts one, so its start is CPU every task pays: a start of this binary
// costs a fraction of a start of `mesolite` (docs/benchmarks.md).
//
// `make build` puts it beside bin/mesolite; the agent uses it when it lies
// next to the agent's own binary and reports the same version, and runs
// itself in these roles otherwise. Its subcommands and arguments are
// mesolite's own (`mesolite-executor executor command` does what
// `mesolite executor command` does). Nobody runs it by hand.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/mesolite/mesolite/executor/builtin"
	"github.com/mesolite/mesolite/executor/command"
	"github.com/mesolite/mesolite/executor/defaultexec"
	"github.com/mesolite/mesolite/internal/version"
)

// executors are the built-in executors this binary runs. Docker's is not
// one: it links the Docker client, and it is started by the docker
// containerizer, not through an init, so `mesolite` runs it.
var executors = map[string]builtin.Main{
	"command": command.Main,
	"default": defaultexec.Main,
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: mesolite-executor launch|executor|version (started by the mesolite agent, not by hand)")
		return 2
	}
	switch args[0] {
	case "launch":
		// Before anything else: the init's contract (isolation.InitMain).
		return builtin.Launch(args[1:], executors)
	case "executor":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return builtin.Executor(ctx, args[1:], stderr, executors)
	case "version":
		// What `mesolite version` prints: the agent compares the two
		// before it uses this binary.
		fmt.Fprintf(stdout, "mesolite %s (Mesos API %s)\n", version.String(), version.MesosVersion)
		return 0
	}
	fmt.Fprintf(stderr, "mesolite-executor: unknown command %q\n", args[0])
	return 2
}
