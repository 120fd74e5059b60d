package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/internal/testutil"
)

// completionScript writes `mesolite completion SHELL` to a file.
func completionScript(t *testing.T, shell string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run([]string{"completion", shell}, &out, &errOut); code != 0 {
		t.Fatalf("completion %s: exit %d: %s", shell, code, errOut.String())
	}
	if errOut.Len() > 0 {
		t.Fatalf("completion %s wrote to stderr: %s", shell, errOut.String())
	}
	p := filepath.Join(t.TempDir(), "mesolite."+shell)
	if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCompletionBash loads the script into bash and completes command
// lines with it, as bash's programmable completion calls it on TAB.
func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	testutil.Require(t, err == nil, "bash is not installed")
	script := completionScript(t, "bash")
	tests := []struct {
		line []string // the words, the last one being completed
		want []string // all of these among the completions
		not  []string
	}{
		{[]string{"mesolite", "lo"}, []string{"local", "logs"}, []string{"launch", "run"}},
		{[]string{"mesolite", "ki"}, []string{"kill"}, nil},
		{[]string{"mesolite", "co"}, []string{"completion"}, nil},
		{[]string{"mesolite", "logs", "--ta"}, []string{"--tail="}, []string{"--follow"}},
		{[]string{"mesolite", "logs", "hi", "--f"}, []string{"--follow", "--framework="}, nil},
		{[]string{"mesolite", "run", "--port_m"}, []string{"--port_mapping="}, nil},
		{[]string{"mesolite", "run", "--output"}, []string{"--output_lines="}, nil},
		{[]string{"mesolite", "tasks", "--"}, []string{"--json", "--state=", "--framework=", "--agent=", "--master="}, nil},
		{[]string{"mesolite", "kill", "--"}, []string{"--framework=", "--wait=", "--scale"}, nil},
		{[]string{"mesolite", "master", "--work"}, []string{"--work_dir="}, nil},
		{[]string{"mesolite", "agent", "--reso"}, []string{"--resources="}, nil},
		{[]string{"mesolite", "exec", "-"}, []string{"-i", "-t", "--master="}, nil},
		{[]string{"mesolite", "artifacts", "p"}, []string{"push"}, nil},
		{[]string{"mesolite", "artifacts", "serve", "--d"}, []string{"--dir="}, nil},
		{[]string{"mesolite", "maintenance", "d"}, []string{"down", "drain"}, nil},
		{[]string{"mesolite", "completion", ""}, []string{"bash", "zsh"}, nil},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.line, " "), func(t *testing.T) {
			var words []string
			for _, w := range tt.line {
				words = append(words, "'"+w+"'")
			}
			prog := "source " + script + "\n" +
				"COMP_WORDS=(" + strings.Join(words, " ") + ")\n" +
				"COMP_CWORD=" + strconv.Itoa(len(tt.line)-1) + "\n" +
				"_mesolite\n" +
				`printf '%s\n' "${COMPREPLY[@]}"` + "\n"
			out, err := exec.Command(bash, "--norc", "-c", prog).CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, out)
			}
			got := strings.Fields(string(out))
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("completions %v lack %q", got, w)
				}
			}
			for _, w := range tt.not {
				if slices.Contains(got, w) {
					t.Errorf("completions %v have %q", got, w)
				}
			}
		})
	}
}

// TestCompletionZsh: an interactive zsh with the script loaded through
// compinit completes commands, flags and subcommand words on TAB.
func TestCompletionZsh(t *testing.T) {
	zsh, err := exec.LookPath("zsh")
	testutil.Require(t, err == nil, "zsh is not installed (apt-get install zsh)")
	script := completionScript(t, "zsh")
	if out, err := exec.Command(zsh, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	tests := []struct {
		line string
		want []string
		not  []string
	}{
		{"mesolite lo", []string{"local", "logs"}, []string{"run"}},
		{"mesolite ki", []string{"kill"}, nil},
		{"mesolite logs --ta", []string{"--tail"}, []string{"--follow"}},
		{"mesolite run --port", []string{"--port_mapping"}, nil},
		{"mesolite tasks --st", []string{"--state"}, nil},
		{"mesolite artifacts p", []string{"push"}, nil},
		{"mesolite completion z", []string{"zsh"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			t.Parallel() // each waits on zsh's compinit
			got := testutil.ZshComplete(t, zsh, t.TempDir(), script, tt.line)
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("completions %v lack %q", got, w)
				}
			}
			for _, w := range tt.not {
				if slices.Contains(got, w) {
					t.Errorf("completions %v have %q", got, w)
				}
			}
		})
	}
}

func TestCompletionUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"completion"}, 2, "want one shell"},
		{[]string{"completion", "fish"}, 2, `no completion for shell "fish"`},
		{[]string{"completion", "--help"}, 0, "source <(mesolite completion bash)"},
	} {
		var out, errOut bytes.Buffer
		code := run(tt.args, &out, &errOut)
		if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.out) {
			t.Errorf("%v: exit %d, %q %q", tt.args, code, out.String(), errOut.String())
		}
	}
}
