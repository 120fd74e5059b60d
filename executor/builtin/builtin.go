package builtin

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"

	"github.com/mesolite/mesolite/executor/driver"
	"github.com/mesolite/mesolite/isolation"
)

// Main is one built-in executor's main; args follow its name.
type Main func(ctx context.Context, args []string) int

// Executor runs the executor args[0] names among mains:
// `<binary> executor command|default|docker`.
func Executor(ctx context.Context, args []string, stderr io.Writer, mains map[string]Main) int {
	// An executor waits on its agent and its task; one P is all it uses.
	// More only cost CPU where it is scarcest, in a burst of launches: idle
	// Ps spinning for work and parallel GC in every one of a hundred
	// executors starting at once (throughput +5-8% on two cores). The
	// task it starts gets the environment, not this setting.
	runtime.GOMAXPROCS(1)
	names := make([]string, 0, len(mains))
	for n := range mains {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 0 {
		fmt.Fprintf(stderr, "usage: %s executor %s (started by the agent, not by hand)\n", binaryName(), strings.Join(names, "|"))
		return 2
	}
	main, ok := mains[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "%s executor: unknown executor %q (this binary has %s)\n", binaryName(), args[0], strings.Join(names, ", "))
		return 2
	}
	return main(ctx, args[1:])
}

// Launch is the container init, args after `launch`. A prestarted init
// whose executor is `<this binary> executor <one of mains>` and needs no
// pid namespace runs it in place rather than exec'ing this binary a second
// time (isolation.InitOptions.InProcess; the init checks that the
// executor's binary is this very file). It warms up the executor driver's
// codecs while it waits (driver.Warm).
func Launch(args []string, mains map[string]Main) int {
	return isolation.RunInit(args, isolation.InitOptions{InProcess: func(argv []string) func() int {
		if len(argv) < 3 || argv[1] != "executor" || mains[argv[2]] == nil {
			return nil
		}
		// A fresh context: the init's own may have seen a signal while it
		// waited, which must not end the executor it becomes.
		return func() int {
			return Executor(context.Background(), slices.Clone(argv[2:]), os.Stderr, mains)
		}
	}, Warm: driver.Warm})
}

func binaryName() string {
	if len(os.Args) > 0 {
		return os.Args[0]
	}
	return "mesolite"
}
