package launch

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/mesolite/mesolite/containerizer"
	mesoscz "github.com/mesolite/mesolite/containerizer/mesos"
	"github.com/mesolite/mesolite/isolation"
)

// extraIsolations are the isolated variants measured beside posix (root only).
var extraIsolations = map[string]containerizerFactory{
	"cgroups-cpu-mem-pidns": isolated("cgroups/cpu,cgroups/mem,namespaces/pid"),
}

func isolated(flag string) containerizerFactory {
	return func(b *testing.B, log *slog.Logger, init string) containerizer.Containerizer {
		if os.Geteuid() != 0 {
			b.Skip("isolated launches need root")
		}
		set, err := isolation.ParseIsolation(flag)
		if err != nil {
			b.Fatal(err)
		}
		cz, err := mesoscz.New(mesoscz.Options{
			Logger: log, Isolation: set,
			Isolator:   isolation.Options{CgroupsRoot: "mesolite-bench", Launcher: isolation.LauncherLinux},
			Launcher:   isolation.LauncherOptions{InitPath: init, InitArgs: []string{"launch"}, Prestart: 2},
			RuntimeDir: filepath.Join(b.TempDir(), "containers"),
		})
		if err != nil {
			b.Fatal(err)
		}
		return cz
	}
}
