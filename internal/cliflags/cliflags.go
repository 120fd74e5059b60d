// Package cliflags parses the command line the way Mesos users expect:
// underscore flag names (`--work_dir`), `--no-<flag>` to turn a boolean off,
// and every flag also readable from the environment as MESOS_<NAME>, with
// the command line winning. Durations use Mesos's format (`5secs`).
package cliflags

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mesolite/mesolite/internal/duration"
)

// FlagSet is a flag.FlagSet that also reads MESOS_<NAME> variables.
type FlagSet struct {
	*flag.FlagSet
	name     string
	synopsis string
	lookup   func(string) (string, bool)
	// EnvPrefix is MESOS_ by default; a variable MESOS_WORK_DIR sets --work_dir.
	EnvPrefix string
	// HelpOutput receives the usage on --help (os.Stdout by default: help
	// asked for is output, not an error); nil prints nothing, for callers
	// that print it themselves.
	HelpOutput io.Writer
	// inert are Mesos's flags accepted without effect (Inert), each with
	// whether it was given.
	inert map[string]*bool
	// NoArgs refuses words left after the flags: a command that takes
	// none would otherwise drop every flag after a stray word (the flag
	// package stops at the first one), such as a switch's value written
	// "--switch true".
	NoArgs bool
}

// New returns a FlagSet for the subcommand name. synopsis is the usage line
// and the paragraph shown above the flags by --help.
func New(name, synopsis string) *FlagSet {
	fs := &FlagSet{
		FlagSet:    flag.NewFlagSet(name, flag.ContinueOnError),
		name:       name,
		synopsis:   synopsis,
		lookup:     os.LookupEnv,
		EnvPrefix:  "MESOS_",
		HelpOutput: os.Stdout,
	}
	// The flag package prints nothing itself: Parse returns its errors
	// in this command line's words (explain) for the caller to print,
	// and prints the usage on --help to HelpOutput.
	fs.FlagSet.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// SetOutput is kept for callers of the flag package's API; the flag
// package prints nothing here (see New).
func (fs *FlagSet) SetOutput(io.Writer) {}

// SetSynopsis replaces the usage line and paragraph --help shows.
func (fs *FlagSet) SetSynopsis(s string) { fs.synopsis = s }

// SetLookupEnv replaces os.LookupEnv (tests).
func (fs *FlagSet) SetLookupEnv(f func(string) (string, bool)) { fs.lookup = f }

// EnvName is the environment variable that can set flag name.
func (fs *FlagSet) EnvName(name string) string {
	return fs.EnvPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// PrintUsage writes the synopsis and every flag with its default and its
// environment variable.
func (fs *FlagSet) PrintUsage(w io.Writer) {
	fmt.Fprintf(w, "%s\n\nFlags (each also read from the environment variable shown):\n", strings.TrimSpace(fs.synopsis))
	var names, inert []string
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := fs.inert[f.Name]; ok {
			inert = append(inert, f.Name)
			return
		}
		names = append(names, f.Name)
	})
	sort.Strings(names)
	sort.Strings(inert)
	defer func() {
		if len(inert) > 0 {
			fmt.Fprintln(w, "\nAccepted so that Mesos configurations start, without effect here (a warning names each one given):")
			line := " "
			for i, n := range inert {
				if i < len(inert)-1 {
					n += ","
				}
				if len(line)+1+len(n) > 100 {
					fmt.Fprintln(w, line)
					line = " "
				}
				line += " " + n
			}
			fmt.Fprintln(w, line)
		}
	}()
	for _, n := range names {
		f := fs.Lookup(n)
		typ, usage := flag.UnquoteUsage(f)
		if typ != "" {
			fmt.Fprintf(w, "  --%s=%s", n, typ)
		} else {
			fmt.Fprintf(w, "  --%s", n)
		}
		fmt.Fprintf(w, "  [$%s]\n", fs.EnvName(n))
		fmt.Fprintf(w, "\t%s", strings.ReplaceAll(usage, "\n", "\n\t"))
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "[]" && f.DefValue != "0ns" {
			fmt.Fprintf(w, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(w)
	}
}

// Parse parses args, then fills every flag not given on the command line
// from its MESOS_<NAME> variable. `--no-<flag>` sets a boolean flag false.
// It returns flag.ErrHelp after printing usage for -h/--help.
func (fs *FlagSet) Parse(args []string) error {
	rewritten := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			rewritten = append(rewritten, args[i:]...)
			break
		}
		if strings.HasPrefix(a, "--no-") && !strings.Contains(a, "=") {
			name := strings.TrimPrefix(a, "--no-")
			if f := fs.Lookup(name); f != nil && isBool(f) {
				rewritten = append(rewritten, "--"+name+"=false")
				continue
			}
		}
		rewritten = append(rewritten, a)
	}
	if err := fs.FlagSet.Parse(rewritten); err != nil {
		if errors.Is(err, flag.ErrHelp) && fs.HelpOutput != nil {
			fs.PrintUsage(fs.HelpOutput)
		}
		return fs.explain(err)
	}
	if fs.NoArgs && fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %s takes only flags (--name=value or --name value; a switch is --name or --name=false), and none after it would be read", fs.Arg(0), fs.name)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		v, ok := fs.lookup(fs.EnvName(f.Name))
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s: %w", fs.EnvName(f.Name), err))
		}
	})
	return errors.Join(errs...)
}

func isBool(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// Duration defines a duration flag in Mesos's format (`5secs`, `15mins`);
// Go's `5s` is accepted too.
func (fs *FlagSet) Duration(name string, value time.Duration, usage string) *time.Duration {
	p := new(time.Duration)
	*p = value
	fs.Var((*durationValue)(p), name, usage)
	return p
}

type durationValue time.Duration

func (d *durationValue) String() string { return duration.Format(time.Duration(*d)) }
func (d *durationValue) Set(s string) error {
	v, err := duration.Parse(s)
	if err != nil {
		return err
	}
	*d = durationValue(v)
	return nil
}

// StringList defines a flag that may be repeated; each use appends.
func (fs *FlagSet) StringList(name, usage string) *[]string {
	p := new([]string)
	fs.Var((*listValue)(p), name, usage)
	return p
}

type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }
func (l *listValue) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// explain rewrites the flag package's errors the way users of this command
// line write flags (--name, not -name), and suggests the flag meant when
// an unknown one is close to a defined one.
func (fs *FlagSet) explain(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		name = strings.TrimLeft(name, "-")
		out := "unknown flag --" + name
		if best := fs.closest(name); best != "" {
			out += " (did you mean --" + best + "?)"
		}
		return errors.New(out)
	}
	if i := strings.Index(msg, " for flag -"); i >= 0 && !strings.HasPrefix(msg[i+len(" for flag -"):], "-") {
		msg = msg[:i] + " for flag --" + msg[i+len(" for flag -"):]
	}
	// A boolean's bad value: "invalid boolean value "x" for -name: ...".
	if rest, ok := strings.CutPrefix(msg, "invalid boolean value "); ok {
		if i := strings.Index(rest, " for -"); i >= 0 && !strings.HasPrefix(rest[i+len(" for -"):], "-") {
			msg = "invalid boolean value " + rest[:i] + " for flag --" + rest[i+len(" for -"):]
		}
	}
	if rest, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		msg = "flag needs an argument: --" + strings.TrimLeft(rest, "-")
	}
	return errors.New(msg)
}

// closest is the defined flag nearest to name by edit distance, when it is
// near enough to be a typo (at most a third of the name's length, and at
// most 3 edits).
func (fs *FlagSet) closest(name string) string {
	best, bestD := "", 1<<30
	fs.VisitAll(func(f *flag.Flag) {
		if _, ok := fs.inert[f.Name]; ok {
			return
		}
		if d := editDistance(name, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	})
	if bestD <= min(3, max(1, len(name)/3)) {
		return best
	}
	return ""
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// UnknownEnv lists the environment variables with this FlagSet's prefix
// that name no flag of it (MESOS_LOG_DIR where there is no --log_dir):
// what the command line would refuse, the environment would otherwise
// ignore without a word. environ is os.Environ() or a test's list; names
// in ignore are not reported (variables a parent process sets for other
// reasons, such as an executor's MESOS_SANDBOX).
func (fs *FlagSet) UnknownEnv(environ []string, ignore ...string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		flagName, ok := strings.CutPrefix(name, fs.EnvPrefix)
		if !ok || flagName == "" || slices.Contains(ignore, name) {
			continue
		}
		if fs.Lookup(strings.ToLower(flagName)) == nil {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// inertValue is a flag of Mesos's that has no counterpart here: accepted
// in any form (--name, --no-name, --name=value) so that a Mesos
// configuration starts, and reported by Inert so that nothing is ignored
// without a word.
type inertValue struct{ set *bool }

func (v inertValue) String() string   { return "" }
func (v inertValue) Set(string) error { *v.set = true; return nil }
func (v inertValue) IsBoolFlag() bool { return true }

// Inert accepts each of names that is not a flag of fs as a Mesos flag
// without effect (see inertValue); --help lists them apart.
func (fs *FlagSet) Inert(names ...string) {
	if fs.inert == nil {
		fs.inert = map[string]*bool{}
	}
	for _, n := range names {
		if fs.Lookup(n) != nil {
			continue
		}
		set := new(bool)
		fs.inert[n] = set
		fs.Var(inertValue{set}, n, "Mesos's flag; no effect here")
	}
}

// InertSet lists the inert flags given, on the command line or in the
// environment, as --name.
func (fs *FlagSet) InertSet() []string {
	var out []string
	for n, set := range fs.inert {
		if *set {
			out = append(out, "--"+n)
		}
	}
	sort.Strings(out)
	return out
}

// maxFileValue caps what a flag's file:///path may hold.
const maxFileValue = 4 << 20

// ReadValue is a flag value as Mesos's flags take it: file:///path reads
// that file (at most 4 MiB), anything else is the value itself.
func ReadValue(s string) (string, error) {
	path, ok := strings.CutPrefix(strings.TrimSpace(s), "file://")
	if !ok {
		return s, nil
	}
	if path == "" {
		return "", fmt.Errorf("%q names no file", s)
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileValue+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxFileValue {
		return "", fmt.Errorf("%s is over %d bytes", path, maxFileValue)
	}
	return strings.TrimSpace(string(b)), nil
}
