package cliflags

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

func TestParseEnvAndPrecedence(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantDir string
		wantDbg bool
		wantTO  time.Duration
	}{
		{"defaults", nil, nil, "/var/lib/mesolite", true, time.Minute},
		{"env fills", nil, map[string]string{"MESOS_WORK_DIR": "/env", "MESOS_REGISTRATION_TIMEOUT": "5secs"}, "/env", true, 5 * time.Second},
		{"command line wins", []string{"--work_dir=/cli"}, map[string]string{"MESOS_WORK_DIR": "/env"}, "/cli", true, time.Minute},
		{"no- prefix", []string{"--no-debug"}, nil, "/var/lib/mesolite", false, time.Minute},
		{"env bool", nil, map[string]string{"MESOS_DEBUG": "false"}, "/var/lib/mesolite", false, time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := New("agent", "mesolite agent")
			fs.SetLookupEnv(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			dir := fs.String("work_dir", "/var/lib/mesolite", "where state lives")
			dbg := fs.Bool("debug", true, "debug")
			to := fs.Duration("registration_timeout", time.Minute, "timeout")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if *dir != tt.wantDir || *dbg != tt.wantDbg || *to != tt.wantTO {
				t.Fatalf("got %q %v %v, want %q %v %v", *dir, *dbg, *to, tt.wantDir, tt.wantDbg, tt.wantTO)
			}
		})
	}
}

func TestBadEnvValueIsAnError(t *testing.T) {
	fs := New("agent", "x")
	fs.SetLookupEnv(func(k string) (string, bool) { return "notaduration", k == "MESOS_TIMEOUT" })
	fs.Duration("timeout", time.Second, "t")
	err := fs.Parse(nil)
	if err == nil || !strings.Contains(err.Error(), "MESOS_TIMEOUT") {
		t.Fatalf("want error naming MESOS_TIMEOUT, got %v", err)
	}
}

func TestUsageNamesEveryFlagAndVariable(t *testing.T) {
	fs := New("agent", "mesolite agent [flags]")
	fs.String("work_dir", "/x", "where state lives")
	var b bytes.Buffer
	fs.PrintUsage(&b)
	for _, want := range []string{"--work_dir", "$MESOS_WORK_DIR", "where state lives", "default /x"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, b.String())
		}
	}
}

// TestErrorsSpeakDoubleDash: errors name flags as they are written here
// (--name) and suggest the flag meant by a typo.
func TestErrorsSpeakDoubleDash(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--comand=ls"}, "unknown flag --comand (did you mean --command?)"},
		{[]string{"-comand=ls"}, "unknown flag --comand (did you mean --command?)"},
		{[]string{"--zzzzzz"}, "unknown flag --zzzzzz"},
		{[]string{"--timeout=soon"}, `invalid value "soon" for flag --timeout`},
		{[]string{"--command"}, "flag needs an argument: --command"},
		{[]string{"--verbose=maybe"}, `invalid boolean value "maybe" for flag --verbose`},
	} {
		fs := New("test", "usage")
		fs.SetOutput(io.Discard)
		fs.SetLookupEnv(func(string) (string, bool) { return "", false })
		fs.String("command", "", "")
		fs.Duration("timeout", 0, "")
		fs.Bool("verbose", false, "")
		err := fs.Parse(tt.args)
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%q: %v, want %q", tt.args, err, tt.want)
		}
	}
}

// TestHelpGoesToHelpOutput: --help prints the usage to HelpOutput (stdout
// by default), not with the errors; nil prints nothing.
func TestHelpGoesToHelpOutput(t *testing.T) {
	var out strings.Builder
	fs := New("svc", "mesolite svc [flags]\n\nDoes things.")
	fs.HelpOutput = &out
	fs.String("work_dir", "", "where")
	if err := fs.Parse([]string{"--help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(--help) = %v", err)
	}
	if !strings.Contains(out.String(), "mesolite svc [flags]") || !strings.Contains(out.String(), "--work_dir") {
		t.Fatalf("usage %q", out.String())
	}
	quiet := New("svc", "x")
	quiet.HelpOutput = nil
	if err := quiet.Parse([]string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("Parse(-h) = %v", err)
	}
}

func TestUnknownEnv(t *testing.T) {
	fs := New("agent", "x")
	fs.String("work_dir", "", "")
	got := fs.UnknownEnv([]string{"MESOS_WORK_DIR=/w", "MESOS_LOG_DIR=/l", "PATH=/bin", "MESOS_SANDBOX=/s", "MESOS_=x", "MESOS_QUORUM=2"}, "MESOS_SANDBOX")
	if strings.Join(got, ",") != "MESOS_LOG_DIR,MESOS_QUORUM" {
		t.Fatalf("UnknownEnv = %v", got)
	}
}

// Mesos's flags without a counterpart are accepted in every form, from
// the command line and the environment, and reported; they are not
// suggested for typos and --help lists them apart.
func TestInertFlags(t *testing.T) {
	fs := New("agent", "mesolite agent")
	fs.HelpOutput = nil
	fs.String("work_dir", "", "")
	fs.Inert("cgroups_root", "docker_kill_orphans", "work_dir", "strict")
	fs.SetLookupEnv(func(k string) (string, bool) {
		if k == "MESOS_STRICT" {
			return "false", true
		}
		return "", false
	})
	if err := fs.Parse([]string{"--cgroups_root=mesos", "--no-docker_kill_orphans", "--work_dir=/x"}); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(fs.InertSet(), " "); got != "--cgroups_root --docker_kill_orphans --strict" {
		t.Fatalf("InertSet = %q", got)
	}
	if fs.Lookup("work_dir").Value.String() != "/x" {
		t.Fatal("a real flag became inert")
	}
	if err := New("x", "").Parse([]string{"--cgroups_rot=1"}); err == nil {
		t.Fatal("unknown flag accepted")
	}
	fs2 := New("agent", "mesolite agent")
	fs2.String("work_dir", "", "")
	fs2.Inert("work_dirs")
	if err := fs2.Parse([]string{"--work_dirz=1"}); err == nil || strings.Contains(err.Error(), "work_dirs") {
		t.Fatalf("typo suggestion: %v", err)
	}
	var help strings.Builder
	fs.PrintUsage(&help)
	if !strings.Contains(help.String(), "without effect here") || strings.Contains(help.String(), "--cgroups_root=") {
		t.Fatalf("help:\n%s", help.String())
	}
}
