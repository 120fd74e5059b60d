package testutil

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// zshDriver types a command line and a TAB into an interactive zsh on a
// pseudo-terminal (zsh/zpty), with compinit and the completion script
// loaded and compadd wrapped to write every match it adds to a file: what
// zsh would offer, without reading a screen.
const zshDriver = `zmodload zsh/zpty
out=$1 script=$2 line=$3 dump=$4
zpty z env PATH="$PATH" zsh -f -i
zpty -w z "autoload -U compinit; compinit -u -d $dump"
zpty -w z "source $script"
zpty -w z 'compadd() { if (( ${@[(I)-[OAD]]} )); then builtin compadd "$@"; return; fi; local -a __m; builtin compadd -O __m "$@"; print -rl -- $__m >> '$out'; builtin compadd "$@"; }'
zpty -w -n z "$line"$'\t'
for i in {1..80}; do [[ -s $out ]] && break; sleep 0.1; done
sleep 0.3
zpty -d z
`

// ZshComplete returns what zsh completes at the end of line with the
// completion script loaded; binDir goes first in PATH (where the command
// the script completes is). It fails the test when zsh cannot run.
func ZshComplete(t testing.TB, zsh, binDir, script, line string) []string {
	t.Helper()
	dir := t.TempDir()
	out := filepath.Join(dir, "matches")
	cmd := exec.Command(zsh, "-f", "-c", zshDriver, "zsh", out, script, line, filepath.Join(dir, "zcompdump"))
	cmd.Env = append(os.Environ(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("zsh: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}
