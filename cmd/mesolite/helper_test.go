package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/mesolite/mesolite/internal/version"
)

// TestExecutorBinary: the agent takes mesolite-executor from beside its own
// binary only when it is an executable file as trusted as that binary and
// reports the same version; otherwise it runs itself, as without a helper.
func TestExecutorBinary(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ours := fmt.Sprintf("mesolite %s (Mesos API %s)", version.String(), version.MesosVersion)
	script := func(out string) string { return "#!/bin/sh\n[ \"$1\" = version ] && echo '" + out + "'\n" }
	tests := []struct {
		name   string
		helper string // the file's content; "" for none
		mode   os.FileMode
		use    bool
	}{
		{name: "absent"},
		{name: "same version", helper: script(ours), mode: 0o755, use: true},
		{name: "another build", helper: script("mesolite 0.0.1 (Mesos API 1.11.0)"), mode: 0o755},
		{name: "not executable", helper: script(ours), mode: 0o644},
		{name: "writable by others", helper: script(ours), mode: 0o757},
		{name: "fails", helper: "#!/bin/sh\nexit 3\n", mode: 0o755},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			self := filepath.Join(dir, "mesolite")
			if err := os.WriteFile(self, []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			helper := filepath.Join(dir, helperName)
			if tt.helper != "" {
				if err := os.WriteFile(helper, []byte(tt.helper), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(helper, tt.mode); err != nil { // past the umask
					t.Fatal(err)
				}
			}
			want := self
			if tt.use {
				want = helper
			}
			if got := executorBinary(context.Background(), self, log); got != want {
				t.Errorf("executorBinary = %s, want %s", got, want)
			}
		})
	}
}
