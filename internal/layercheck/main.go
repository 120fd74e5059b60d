// Command layercheck fails when a package imports a layer above it, so the
// architecture in DESIGN.md is checked rather than hoped for:
//
//	api/v1 imports nothing of ours outside api/v1 but the leaf errdefs;
//	isolation, fetcher, sandbox, artifactsrv, errdefs and internal/ know
//	nothing of master, agent, containerizer, executor, scheduler or cli;
//	executors know nothing of master, agent, scheduler or cli (they speak
//	to the agent over the executor API only);
//	containerizer knows nothing of master; master and agent never import
//	each other.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
)

const mod = "github.com/mesolite/mesolite/"

type rule struct {
	from   string   // package path prefix (relative to the module)
	except []string // packages under from the rule does not bind (test harnesses)
	banned []string // path prefixes it may not import
	only   string   // when set, our imports must start with this
}

var rules = []rule{
	{from: "api/v1", only: "api/v1"},
	{from: "errdefs", only: "errdefs"},
	{from: "isolation", banned: upper},
	{from: "fetcher", banned: upper},
	{from: "sandbox", banned: upper},
	{from: "artifactsrv", banned: upper},
	{from: "httpauth", banned: upper},
	{from: "resources", banned: upper},
	{from: "internal", banned: upper},
	{from: "executor", banned: []string{"master", "agent", "cli", "scheduler", "cmd"}},
	{from: "internal/tlsconfig", banned: upper},
	{from: "containerizer", banned: []string{"master", "agent", "cli", "scheduler"}},
	{from: "master", banned: []string{"agent", "containerizer", "executor", "isolation"}},
	{from: "agent", banned: []string{"master", "cli", "scheduler"}},
	// The framework base speaks to a cluster only through the scheduler
	// API; its test harness runs a real master and agents.
	{from: "frameworks", except: []string{"frameworks/clustertest"}, banned: []string{"master", "agent", "containerizer", "executor", "isolation", "cli", "cmd", "apps", "jobs"}},
	{from: "apps", banned: []string{"master", "agent", "containerizer", "executor", "isolation", "cli", "cmd"}},
	{from: "jobs", banned: []string{"master", "agent", "containerizer", "executor", "isolation", "cli", "cmd", "apps"}},
}

var upper = []string{"master", "agent", "containerizer", "executor", "scheduler", "cli", "cmd"}

func under(path, prefix string) bool { return path == prefix || strings.HasPrefix(path, prefix+"/") }

func main() {
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}} {{join .TestImports \" \"}}", "./...").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "layercheck: go list:", err)
		os.Exit(2)
	}
	var bad []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], mod) {
			continue
		}
		pkg := strings.TrimPrefix(f[0], mod)
		for _, imp := range f[1:] {
			if !strings.HasPrefix(imp, mod) {
				continue
			}
			dep := strings.TrimPrefix(imp, mod)
			// errdefs is a leaf every layer may use for its error classes.
			if dep == "internal/testutil" || dep == "errdefs" {
				continue
			}
			for _, r := range rules {
				if !under(pkg, r.from) || slices.ContainsFunc(r.except, func(e string) bool { return under(pkg, e) }) {
					continue
				}
				if r.only != "" && !under(dep, r.only) {
					bad = append(bad, fmt.Sprintf("%s imports %s (only %s/... allowed)", pkg, dep, r.only))
				}
				for _, b := range r.banned {
					if under(dep, b) {
						bad = append(bad, fmt.Sprintf("%s imports %s (a higher layer)", pkg, dep))
					}
				}
			}
		}
	}
	if len(bad) > 0 {
		fmt.Fprintln(os.Stderr, "layering violations:")
		for _, b := range bad {
			fmt.Fprintln(os.Stderr, "  "+b)
		}
		os.Exit(1)
	}
}
