package cli

import (
	"io"
	"slices"
	"testing"
)

// TestParsePositionalAfterDoubleDash: "--" ends the flags wherever it is,
// also after flags (where Go's flag package eats it): what follows is
// positional, dashes and all.
func TestParsePositionalAfterDoubleDash(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--json", "--", "sh", "-c", "echo hi"}, []string{"sh", "-c", "echo hi"}},
		{[]string{"task-1", "--json", "--", "ls", "-l"}, []string{"task-1", "ls", "-l"}},
		{[]string{"task-1", "--", "--json"}, []string{"task-1", "--json"}},
		{[]string{"a", "--json", "b"}, []string{"a", "b"}},
	} {
		c := newCommand("test", "", io.Discard, io.Discard)
		asJSON := c.Bool("json", false, "")
		pos, code, stop := c.parse(tt.args)
		if stop || code != 0 || !slices.Equal(pos, tt.want) {
			t.Errorf("%q: positional %q (exit %d, stop %v), want %q", tt.args, pos, code, stop, tt.want)
		}
		if !*asJSON && slices.Contains(tt.args[:slices.Index(append(tt.args, "--"), "--")], "--json") {
			t.Errorf("%q: --json before -- not parsed", tt.args)
		}
	}
}
