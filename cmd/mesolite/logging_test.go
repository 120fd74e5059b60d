package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Unknown levels and formats are refused by every long-running command,
// not read as INFO.
func TestLoggingFlagsValidated(t *testing.T) {
	for _, tc := range []struct {
		cmd  func(context.Context, []string, io.Writer, io.Writer) int
		name string
		args []string
		want string
	}{
		{masterMain, "master VERBOSE", []string{"--logging_level=VERBOSE"}, "--logging_level=VERBOSE: not a level"},
		{agentMain, "agent format", []string{"--log_format=xml"}, "--log_format=xml: not a format"},
		{appsMain, "apps level", []string{"--master=127.0.0.1:1", "--logging_level=LOUD"}, "not a level"},
		{jobsMain, "jobs level", []string{"--master=127.0.0.1:1", "--logging_level=LOUD"}, "not a level"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithCancel(context.Background())
			cancel() // nothing may start
			if code := tc.cmd(ctx, tc.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr.String(), tc.want)
			}
		})
	}
}

// --log_dir appends the log to <dir>/mesolite-<role>.log besides stderr,
// and refuses a symlink planted where the file goes.
func TestLogDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "logs")
	var stderr bytes.Buffer
	w, closeLog, err := logWriter(&stderr, dir, "master")
	if err != nil {
		t.Fatal(err)
	}
	log, err := newLogger(w, "INFO", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hello", "k", "v")
	closeLog()
	data, err := os.ReadFile(filepath.Join(dir, "mesolite-master.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"msg":"hello"`) || !strings.Contains(stderr.String(), `"msg":"hello"`) {
		t.Fatalf("file %q, stderr %q: want the line in both", data, stderr.String())
	}

	target := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "mesolite-agent.log")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := logWriter(&stderr, dir, "agent"); err == nil {
		t.Fatal("a planted symlink was followed")
	}
	if data, _ := os.ReadFile(target); string(data) != "keep" {
		t.Fatalf("the symlink's target changed: %q", data)
	}
}
