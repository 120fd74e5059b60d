package cli

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
)

func TestExitCodeOf(t *testing.T) {
	for _, tc := range []struct {
		status, want int
	}{
		{0, 0},
		{7 << 8, 7},
		{255 << 8, 255},
		{9, 128 + 9},   // killed by SIGKILL
		{15, 128 + 15}, // by SIGTERM
		{-1, exitFail}, // unknown
	} {
		if got := exitCodeOf(tc.status); got != tc.want {
			t.Errorf("exitCodeOf(%#x) = %d, want %d", tc.status, got, tc.want)
		}
	}
}

func TestSplitShortFlags(t *testing.T) {
	for _, tc := range []struct{ in, want []string }{
		{[]string{"task", "-it"}, []string{"task", "-i", "-t"}},
		{[]string{"-ti", "task"}, []string{"-i", "-t", "task"}},
		{[]string{"task", "-i"}, []string{"task", "-i"}},
	} {
		if got := splitShortFlags(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitShortFlags(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Usage errors are caught before anything is asked of the master.
func TestExecUsage(t *testing.T) {
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{"no command", []string{"--master=127.0.0.1:1", "task"}, "want TASK -- COMMAND"},
		{"empty command", []string{"--master=127.0.0.1:1", "task", "--"}, "want TASK -- COMMAND"},
		{"two tasks", []string{"--master=127.0.0.1:1", "a", "b", "--", "true"}, "want TASK -- COMMAND"},
		{"tty without a terminal", []string{"--master=127.0.0.1:1", "task", "-t", "--", "sh"}, "needs a terminal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := execWith(context.Background(), tc.args, devnull, &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), tc.says) {
				t.Errorf("exit %d, stderr %q; want %d saying %q", code, stderr.String(), exitUsage, tc.says)
			}
		})
	}
}
