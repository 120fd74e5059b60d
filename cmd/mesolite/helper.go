package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/mesolite/mesolite/internal/version"
)

// helperName is the lean helper's file name (cmd/mesolite-executor), looked
// for beside this binary.
const helperName = "mesolite-executor"

// executorBinary is what the agent starts as its containers' init and its
// built-in command and default executors: mesolite-executor beside self
// (this binary, os.Executable's path) when it is there, as trusted as self
// and of this same version; else self, as before the helper existed. A
// command task pays a start of that binary (its prestarted init), and a
// start of the helper costs a fraction of a start of this one.
func executorBinary(ctx context.Context, self string, log *slog.Logger) string {
	path := filepath.Join(filepath.Dir(self), helperName)
	err := checkHelper(ctx, self, path)
	switch {
	case err == nil:
		log.Info("container inits and built-in executors run from "+helperName, "path", path)
		return path
	case errors.Is(err, os.ErrNotExist):
		log.Info("no "+helperName+" beside this binary: container inits and built-in executors run from this binary (more CPU per task)", "path", path)
	default:
		log.Warn("not using "+helperName+": container inits and built-in executors run from this binary (more CPU per task)", "path", path, "error", err)
	}
	return self
}

// checkHelper says why path may not stand in for self: it is not a regular
// executable file; someone self's owner does not trust (neither root nor
// self's owner) owns it, or it is writable by someone self is not; or it
// is another build (its `version` differs from ours: an upgrade that left
// an old helper behind).
func checkHelper(ctx context.Context, self, path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	sfi, err := os.Stat(self)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return errors.New("not an executable file")
	}
	st, sst := fi.Sys().(*syscall.Stat_t), sfi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 && st.Uid != sst.Uid {
		return fmt.Errorf("owned by uid %d, neither root nor the owner of %s", st.Uid, self)
	}
	if w := fi.Mode().Perm() &^ sfi.Mode().Perm() & 0o022; w != 0 {
		return fmt.Errorf("writable by group or others (mode %v) where %s is not", fi.Mode().Perm(), self)
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "version").Output()
	if err != nil {
		return fmt.Errorf("%s version: %w", path, err)
	}
	want := fmt.Sprintf("mesolite %s (Mesos API %s)\n", version.String(), version.MesosVersion)
	if !bytes.Equal(out, []byte(want)) {
		return fmt.Errorf("another build: %q, this binary is %q", bytes.TrimSpace(out), want[:len(want)-1])
	}
	return nil
}
