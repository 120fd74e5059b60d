package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
)

const completionUsage = `Usage: mesolite completion bash|zsh

Prints a shell completion script for mesolite's commands and their flags.

  bash:  source <(mesolite completion bash)
         (or save it as /etc/bash_completion.d/mesolite)
  zsh:   source <(mesolite completion zsh)
         (or save it as _mesolite in a directory of $fpath)
`

// subcommandWords are the words some commands take before their flags.
var subcommandWords = map[string][]string{
	"artifacts":   {"serve", "push"},
	"maintenance": {"status", "schedule", "down", "up", "drain"},
	"completion":  {"bash", "zsh"},
}

// taskCommands take a task (id, name or id prefix) as their argument: the
// scripts complete it from the tasks the master lists, asking it with the
// --master of the command line (or $MESOS_MASTER) for at most 2 seconds.
var taskCommands = []string{"logs", "kill", "exec"}

// completionFlag is a flag as the scripts complete it.
type completionFlag struct {
	name       string
	value      bool // takes a value: completed as --name=
	repeatable bool // may be given more than once
	summary    string
}

// option is the flag as typed: -i for a one-letter flag, --name else.
func (f completionFlag) option() string {
	if len(f.name) == 1 {
		return "-" + f.name
	}
	return "--" + f.name
}

// flagLine is a flag's line in a command's --help: `  --name=type  [$ENV]`
// or `  --name  [$ENV]`, then its usage on the next line.
var flagLine = regexp.MustCompile(`^  --([a-z0-9_]+)(=\S+)?\s`)

// commandFlags reads a command's flags from its --help, which every
// command prints from the flag set it parses with: the scripts cannot
// drift from the flags.
func commandFlags(c subcommand, args ...string) []completionFlag {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // --help returns at once; nothing may start
	out := captureStdout(func(w io.Writer) { c.run(ctx, append(args, "--help"), w, w) })
	var flags []completionFlag
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		m := flagLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		f := completionFlag{name: m[1], value: m[2] != ""}
		for j := i + 1; j < len(lines) && strings.HasPrefix(lines[j], "\t"); j++ {
			if j == i+1 {
				f.summary = strings.TrimSpace(lines[j])
			}
			f.repeatable = f.repeatable || strings.Contains(lines[j], "repeatable")
		}
		flags = append(flags, f)
	}
	return flags
}

// captureStdout runs f with a writer and returns what it wrote there and
// to os.Stdout and os.Stderr: the server commands' flag sets print --help
// to the process's stdout (cliflags.FlagSet.HelpOutput, taken when the
// command makes its flag set), which must not reach the script.
func captureStdout(f func(w io.Writer)) string {
	var buf bytes.Buffer
	r, w, err := os.Pipe()
	if err != nil {
		f(&buf)
		return buf.String()
	}
	copied := make(chan struct{})
	var piped bytes.Buffer
	go func() {
		_, _ = io.Copy(&piped, r)
		close(copied)
	}()
	stdout, stderr := os.Stdout, os.Stderr
	os.Stdout, os.Stderr = w, w
	f(&buf)
	os.Stdout, os.Stderr = stdout, stderr
	w.Close()
	<-copied
	r.Close()
	return buf.String() + piped.String()
}

type completionCommand struct {
	name, summary string
	words         []string
	flags         []completionFlag
}

// completionCommands are the visible commands with their words and flags;
// a command with words (artifacts serve) gets the flags of each.
func completionCommands() []completionCommand {
	cmds := commands()
	var out []completionCommand
	for name, c := range cmds {
		if c.hidden {
			continue
		}
		cc := completionCommand{name: name, summary: c.summary, words: subcommandWords[name]}
		switch name {
		case "completion", "version":
		case "artifacts":
			seen := map[string]bool{}
			for _, w := range cc.words {
				for _, f := range commandFlags(c, w) {
					if !seen[f.name] {
						seen[f.name] = true
						cc.flags = append(cc.flags, f)
					}
				}
			}
		default:
			cc.flags = commandFlags(c)
		}
		sort.Slice(cc.flags, func(i, j int) bool { return cc.flags[i].name < cc.flags[j].name })
		out = append(out, cc)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func completionMain(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 1 && (args[0] == "--help" || args[0] == "-h") {
		fmt.Fprint(stdout, completionUsage)
		return 0
	}
	if len(args) != 1 {
		fmt.Fprintf(stderr, "mesolite completion: want one shell, bash or zsh\n\n%s", completionUsage)
		return 2
	}
	switch args[0] {
	case "bash":
		writeBash(stdout, completionCommands())
	case "zsh":
		writeZsh(stdout, completionCommands())
	default:
		fmt.Fprintf(stderr, "mesolite completion: no completion for shell %q: want bash or zsh\n", args[0])
		return 2
	}
	return 0
}

// writeBash writes a bash script: the command names at the first word,
// then the command's flags (--name= for one that takes a value, with no
// space after it) and its subcommand words; anything else completes file
// names.
func writeBash(w io.Writer, cmds []completionCommand) {
	var names []string
	for _, c := range cmds {
		names = append(names, c.name)
	}
	fmt.Fprintf(w, `# bash completion for mesolite. Load it with:
#   source <(mesolite completion bash)
_mesolite() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    if [[ $COMP_CWORD -eq 1 ]]; then
        COMPREPLY=($(compgen -W %q -- "$cur"))
        return
    fi
    local flags="" words=""
    case "${COMP_WORDS[1]}" in
`, strings.Join(names, " "))
	for _, c := range cmds {
		var flags []string
		for _, f := range c.flags {
			if f.value {
				flags = append(flags, f.option()+"=")
			} else {
				flags = append(flags, f.option())
			}
		}
		fmt.Fprintf(w, "    %s) flags=%q; words=%q ;;\n", c.name, strings.Join(flags, " "), strings.Join(c.words, " "))
	}
	fmt.Fprintf(w, `    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
        if [[ ${#COMPREPLY[@]} -eq 1 && ${COMPREPLY[0]} == *= ]]; then
            compopt -o nospace 2>/dev/null
        fi
    elif [[ -n $words && $COMP_CWORD -eq 2 ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    elif [[ " %s " == *" ${COMP_WORDS[1]} "* ]]; then
        # The task's id or name, from the master's list of tasks.
        local master filter=""
        master=$(grep -o -- '--master=[^ ]*' <<<"$COMP_LINE" | tail -n 1)
        [[ ${COMP_WORDS[1]} == logs ]] || filter=--state=active
        COMPREPLY=($(compgen -W "$(timeout 2 "${COMP_WORDS[0]}" tasks $master $filter 2>/dev/null | awk 'NR > 1 { print $1; print $2 }')" -- "$cur"))
    fi
}
complete -o default -o bashdefault -F _mesolite mesolite
`, strings.Join(taskCommands, " "))
}

// writeZsh writes a zsh script on _arguments: the commands with their
// summaries, then each command's flags with the first line of their usage.
func writeZsh(w io.Writer, cmds []completionCommand) {
	fmt.Fprint(w, `#compdef mesolite
# zsh completion for mesolite. Load it with:
#   source <(mesolite completion zsh)
# or save it as _mesolite in a directory of $fpath.

# The tasks the master lists (running ones but for logs), by id and name.
_mesolite_tasks() {
    local master filter=--state=active
    master=${(M)${words[(r)--master=*]}:#--master=*}
    [[ $service_cmd == logs ]] && filter=
    local -a tasks
    tasks=(${(f)"$(timeout 2 $mesolite_bin tasks $master $filter 2>/dev/null | awk 'NR > 1 { print $1; print $2 }')"})
    compadd -a tasks
}

_mesolite() {
    local mesolite_bin=$words[1] service_cmd=$words[2]
    local curcontext="$curcontext" state line
    local -a commands
    commands=(
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "        %s\n", zshQuote(c.name+":"+c.summary))
	}
	fmt.Fprint(w, `    )
    _arguments -C '1:command:->command' '*::argument:->argument'
    case $state in
    command)
        _describe -t commands 'mesolite command' commands
        ;;
    argument)
        case $words[1] in
`)
	for _, c := range cmds {
		fmt.Fprintf(w, "        %s)\n            _arguments -S \\\n", c.name)
		for _, f := range c.flags {
			spec := f.option()
			if f.repeatable {
				spec = "*" + spec
			}
			if f.value {
				spec += "=[" + zshDescription(f.summary) + "]:" + f.name + ":_files"
			} else {
				spec += "[" + zshDescription(f.summary) + "]"
			}
			fmt.Fprintf(w, "                %s \\\n", zshQuote(spec))
		}
		if len(c.words) > 0 {
			fmt.Fprintf(w, "                %s \\\n", zshQuote("1:subcommand:("+strings.Join(c.words, " ")+")"))
		}
		if slices.Contains(taskCommands, c.name) {
			fmt.Fprintf(w, "                %s \\\n", zshQuote("1:task:_mesolite_tasks"))
		}
		fmt.Fprintf(w, "                '*:file:_files'\n            ;;\n")
	}
	fmt.Fprint(w, `        esac
        ;;
    esac
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _mesolite "$@"
else
    compdef _mesolite mesolite
fi
`)
}

// zshQuote single-quotes s for zsh.
func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// zshDescription makes a flag's usage safe inside _arguments' brackets.
func zshDescription(s string) string {
	s = strings.NewReplacer("[", "(", "]", ")", "\\", "/").Replace(s)
	if r := []rune(s); len(r) > 70 {
		s = string(r[:67]) + "..."
	}
	return s
}
