package fetcher

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/mesolite/mesolite/errdefs"
)

// extractInto writes archive next to the sandbox and extracts it into it.
func extractInto(t testing.TB, l layout, archive []byte, kind archiveKind, lim extractLimits) (extractStats, error) {
	t.Helper()
	p := filepath.Join(l.base, "archive")
	if err := os.WriteFile(p, archive, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	root, err := os.OpenRoot(l.sandbox)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	return extractArchive(context.Background(), f, kind, "decompressed", root, lim, nil)
}

var testLimits = extractLimits{maxBytes: 1 << 20, maxEntries: 100}

func TestExtractRefusesHostileTar(t *testing.T) {
	tests := []struct {
		name    string
		entries []tarEntry
		class   error
	}{
		{"dotdot", []tarEntry{{name: "../outside/x", body: "x"}}, errdefs.ErrForbidden},
		{"dotdot inside", []tarEntry{{name: "a/../../outside/x", body: "x"}}, errdefs.ErrForbidden},
		{"dotdot harmless still refused", []tarEntry{{name: "a/../b", body: "x"}}, errdefs.ErrForbidden},
		{"absolute", []tarEntry{{name: "/etc/cron.d/x", body: "x"}}, errdefs.ErrForbidden},
		{"absolute symlink", []tarEntry{{name: "l", typ: tar.TypeSymlink, linkname: "/etc"}}, errdefs.ErrForbidden},
		{"relative symlink out", []tarEntry{{name: "d/l", typ: tar.TypeSymlink, linkname: "../../outside"}}, errdefs.ErrForbidden},
		{"symlink then file through it", []tarEntry{
			{name: "l", typ: tar.TypeSymlink, linkname: "../outside"},
			{name: "l/x", body: "x"},
		}, errdefs.ErrForbidden},
		{"symlink chain out", []tarEntry{
			{name: "d/", typ: tar.TypeDir},
			{name: "d/x", typ: tar.TypeSymlink, linkname: ".."},
			{name: "d/y", typ: tar.TypeSymlink, linkname: "x/.."},
		}, errdefs.ErrForbidden},
		{"symlink chain then write", []tarEntry{
			{name: "d/", typ: tar.TypeDir},
			{name: "d/x", typ: tar.TypeSymlink, linkname: ".."},
			{name: "d/y", typ: tar.TypeSymlink, linkname: "x/.."},
			{name: "d/y/outside/x", body: "x"},
		}, errdefs.ErrForbidden},
		{"hard link out", []tarEntry{{name: "h", typ: tar.TypeLink, linkname: "../outside/x"}}, errdefs.ErrForbidden},
		{"hard link absolute", []tarEntry{{name: "h", typ: tar.TypeLink, linkname: "/etc/passwd"}}, errdefs.ErrForbidden},
		{"hard link to symlink", []tarEntry{
			{name: "s", typ: tar.TypeSymlink, linkname: "t"},
			{name: "h", typ: tar.TypeLink, linkname: "s"},
		}, errdefs.ErrForbidden},
		{"char device", []tarEntry{{name: "null", typ: tar.TypeChar}}, errdefs.ErrForbidden},
		{"block device", []tarEntry{{name: "sda", typ: tar.TypeBlock}}, errdefs.ErrForbidden},
		{"fifo", []tarEntry{{name: "pipe", typ: tar.TypeFifo}}, errdefs.ErrForbidden},
		{"bytes bomb", []tarEntry{{name: "a", body: "ok"}, {name: "zeros", size: 2 << 20}}, errdefs.ErrInvalid},
		{"entries bomb", manyEntries(101), errdefs.ErrInvalid},
		{"file over dir", []tarEntry{{name: "d/", typ: tar.TypeDir}, {name: "d/f", body: "x"}, {name: "d", body: "x"}}, errdefs.ErrConflict},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLayout(t)
			_, err := extractInto(t, l, gz(t, makeTar(t, tt.entries)), kindTarGz, testLimits)
			if !errors.Is(err, tt.class) {
				t.Fatalf("got %v, want %v", err, tt.class)
			}
			l.assertNothingOutside(t, "archive")
			if files := l.sandboxFiles(t); len(files) != 0 {
				t.Fatalf("not rolled back: %v", files)
			}
		})
	}
}

func manyEntries(n int) []tarEntry {
	var es []tarEntry
	for i := range n {
		es = append(es, tarEntry{name: "f" + strings.Repeat("x", i%5) + string(rune('a'+i%26)) + "/" + string(rune('a'+i/26)), body: ""})
	}
	return es
}

func TestExtractKeepsSandboxContentsOnFailure(t *testing.T) {
	l := newLayout(t)
	if err := os.WriteFile(filepath.Join(l.sandbox, "stdout"), []byte("task output"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := extractInto(t, l, makeTar(t, []tarEntry{{name: "new", body: "x"}, {name: "../x", body: "x"}}), kindTar, testLimits)
	if err == nil {
		t.Fatal("extraction succeeded")
	}
	if files := l.sandboxFiles(t); len(files) != 1 || files[0] != "stdout" {
		t.Fatalf("sandbox holds %v", files)
	}
}

func TestExtractGoodArchives(t *testing.T) {
	entries := []tarEntry{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "./bin/", typ: tar.TypeDir, mode: 0o755},
		{name: "./bin/app", body: "app", mode: 0o6755},
		{name: "./etc/conf", body: "conf", mode: 0o640},
		{name: "./private/", typ: tar.TypeDir, mode: 0o700},
		{name: "./ro/", typ: tar.TypeDir, mode: 0o555},
		{name: "./ro/file", body: "ro", mode: 0o444},
		{name: "./lib/libx.so.1", body: "lib"},
		{name: "./lib/libx.so", typ: tar.TypeSymlink, linkname: "libx.so.1"},
		{name: "./bin/lib", typ: tar.TypeSymlink, linkname: "../lib"},
		{name: "./bin/lib/through-inside-link", body: "ok"},
		{name: "./bin/app2", typ: tar.TypeLink, linkname: "bin/app"},
	}
	plain := makeTar(t, entries)
	var xzBuf bytes.Buffer
	xw, err := xz.NewWriter(&xzBuf)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = xw.Write(plain)
	_ = xw.Close()

	archives := map[archiveKind][]byte{kindTar: plain, kindTarGz: gz(t, plain), kindTarXz: xzBuf.Bytes()}
	if _, err := exec.LookPath("bzip2"); err == nil {
		cmd := exec.Command("bzip2", "-c")
		cmd.Stdin = bytes.NewReader(plain)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		archives[kindTarBz2] = out
	} else {
		t.Log("bzip2 not installed; .tar.bz2 not covered")
	}
	for kind, archive := range archives {
		t.Run(kind.String(), func(t *testing.T) {
			l := newLayout(t)
			st, err := extractInto(t, l, archive, kind, testLimits)
			if err != nil {
				t.Fatal(err)
			}
			if st.entries != len(entries) {
				t.Errorf("entries %d", st.entries)
			}
			modes := map[string]fs.FileMode{
				"bin/app":       0o755,
				"bin/app2":      0o755,
				"etc/conf":      0o640,
				"private":       fs.ModeDir | 0o700,
				"ro":            fs.ModeDir | 0o555,
				"ro/file":       0o444,
				"lib/libx.so":   fs.ModeSymlink | 0o777,
				"bin/lib":       fs.ModeSymlink | 0o777,
				"lib/libx.so.1": 0o644,
			}
			for p, want := range modes {
				if got := modeOf(t, filepath.Join(l.sandbox, p)); got != want {
					t.Errorf("%s: %v, want %v", p, got, want)
				}
			}
			if got := readFile(t, filepath.Join(l.sandbox, "lib/through-inside-link")); got != "ok" {
				t.Errorf("write through an inside symlink: %q", got)
			}
			fi, _ := os.Stat(filepath.Join(l.sandbox, "etc/conf"))
			if fi.ModTime().Unix() != 1_600_000_000 {
				t.Errorf("mtime not kept: %v", fi.ModTime())
			}
			l.assertNothingOutside(t, "archive")
			_ = os.Chmod(filepath.Join(l.sandbox, "ro"), 0o755)
		})
	}
}

func TestExtractZipAndGz(t *testing.T) {
	l := newLayout(t)
	_, err := extractInto(t, l, makeZip(t, []zipEntry{
		{name: "d/", mode: fs.ModeDir | 0o750},
		{name: "d/run", body: "run", mode: 0o4755},
		{name: "d/link", body: "run", mode: fs.ModeSymlink | 0o777},
	}), kindZip, testLimits)
	if err != nil {
		t.Fatal(err)
	}
	if m := modeOf(t, filepath.Join(l.sandbox, "d/run")); m != 0o755 {
		t.Errorf("zip mode %v", m)
	}
	if got := readFile(t, filepath.Join(l.sandbox, "d/link")); got != "run" {
		t.Errorf("zip symlink reads %q", got)
	}
	for _, bad := range [][]zipEntry{
		{{name: "l", body: "/etc", mode: fs.ModeSymlink | 0o777}},
		{{name: "l", body: "../../outside", mode: fs.ModeSymlink | 0o777}},
		{{name: "/abs", body: "x"}},
	} {
		l := newLayout(t)
		if _, err := extractInto(t, l, makeZip(t, bad), kindZip, testLimits); !errors.Is(err, errdefs.ErrForbidden) {
			t.Errorf("%v: got %v", bad, err)
		}
		l.assertNothingOutside(t, "archive")
	}

	l = newLayout(t)
	if _, err := extractInto(t, l, gz(t, []byte("hello")), kindGz, testLimits); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(l.sandbox, "decompressed")); got != "hello" {
		t.Fatalf("gunzip: %q", got)
	}
	l = newLayout(t)
	if _, err := extractInto(t, l, gz(t, make([]byte, 2<<20)), kindGz, testLimits); !errors.Is(err, errLimit) {
		t.Fatalf("gz bomb: %v", err)
	}
	if files := l.sandboxFiles(t); len(files) != 0 {
		t.Fatalf("gz bomb left %v", files)
	}
}

func TestKindDetection(t *testing.T) {
	names := map[string]archiveKind{
		"a.tar": kindTar, "a.TGZ": kindTarGz, "a.tar.gz": kindTarGz, "a.tar.bz2": kindTarBz2, "a.tbz2": kindTarBz2,
		"a.tar.xz": kindTarXz, "a.txz": kindTarXz, "a.zip": kindZip, "a.gz": kindGz, "a.jar": kindNone, "a": kindNone,
	}
	for name, want := range names {
		if got := kindFromName(name); got != want {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
	if !sniffable("download") || sniffable("app.jar") {
		t.Error("sniffable")
	}
	dir := t.TempDir()
	for kind, b := range map[archiveKind][]byte{
		kindTar:   makeTar(t, []tarEntry{{name: "a", body: "b"}}),
		kindTarGz: gz(t, makeTar(t, []tarEntry{{name: "a", body: "b"}})),
		kindZip:   makeZip(t, []zipEntry{{name: "a", body: "b"}}),
		kindNone:  gz(t, []byte("just gzip")),
	} {
		p := filepath.Join(dir, kind.String())
		_ = os.WriteFile(p, b, 0o644)
		f, _ := os.Open(p)
		if got := sniffKind(f); got != kind {
			t.Errorf("sniff %v: got %v", kind, got)
		}
		f.Close()
	}
}

// FuzzExtract feeds arbitrary bytes to every archive reader and checks the
// one property that matters: nothing is ever created outside the target
// directory, and no symlink left inside resolves outside it.
func FuzzExtract(f *testing.F) {
	seeds := [][]tarEntry{
		{{name: "a", body: "b"}, {name: "d/", typ: tar.TypeDir}},
		{{name: "../x", body: "x"}},
		{{name: "/abs", body: "x"}},
		{{name: "l", typ: tar.TypeSymlink, linkname: "../outside"}, {name: "l/x", body: "x"}},
		{{name: "d/x", typ: tar.TypeSymlink, linkname: ".."}, {name: "d/y", typ: tar.TypeSymlink, linkname: "x/.."}},
		{{name: "h", typ: tar.TypeLink, linkname: "../outside/f"}},
		{{name: "f", body: "x"}, {name: "h", typ: tar.TypeLink, linkname: "f"}},
	}
	for _, s := range seeds {
		tb := makeTar(f, s)
		f.Add(tb, uint8(kindTar))
		f.Add(gz(f, tb), uint8(kindTarGz))
	}
	f.Add(makeZip(f, []zipEntry{{name: "../x", body: "x"}, {name: "l", body: "..", mode: fs.ModeSymlink | 0o777}}), uint8(kindZip))
	f.Add(gz(f, []byte("x")), uint8(kindGz))
	f.Fuzz(func(t *testing.T, data []byte, k uint8) {
		kind := archiveKind(k%uint8(kindGz)) + 1
		l := newLayout(t)
		_, _ = extractInto(t, l, data, kind, extractLimits{maxBytes: 1 << 20, maxEntries: 64})
		l.assertNothingOutside(t, "archive")
		root, err := os.OpenRoot(l.sandbox)
		if err != nil {
			t.Fatal(err)
		}
		defer root.Close()
		_ = filepath.WalkDir(l.sandbox, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			rel, _ := filepath.Rel(l.sandbox, p)
			if _, err := root.Stat(rel); err != nil && !errors.Is(err, fs.ErrNotExist) && !strings.Contains(err.Error(), "not a directory") {
				t.Errorf("symlink %s left in the sandbox resolves outside: %v", rel, err)
			}
			return nil
		})
		_ = filepath.WalkDir(l.sandbox, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o755)
			}
			return nil
		})
	})
}

// TestExtractMergesIntoSandbox: an archive is extracted into a staging
// directory and then merged with what the sandbox holds, as extracting in
// place did: directories merge (also through a symlink to a directory
// inside the sandbox), files and symlinks are replaced, never written
// through, and modes of read-only directories are applied last.
func TestExtractMergesIntoSandbox(t *testing.T) {
	l := newLayout(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(l.sandbox, "bin"), 0o755))
	must(os.WriteFile(filepath.Join(l.sandbox, "bin", "old"), []byte("old"), 0o755))
	must(os.WriteFile(filepath.Join(l.sandbox, "conf"), []byte("previous run"), 0o644))
	must(os.WriteFile(filepath.Join(l.outside, "secret"), []byte("host"), 0o644))
	must(os.Symlink(filepath.Join(l.outside, "secret"), filepath.Join(l.sandbox, "planted")))
	must(os.Symlink("bin", filepath.Join(l.sandbox, "tools")))
	archive := makeTar(t, []tarEntry{
		{name: "bin/new", body: "new", mode: 0o755},
		{name: "conf", body: "from the archive"},
		{name: "planted", body: "replaces the link"},
		{name: "tools/x", body: "through the link"},
		{name: "fresh/", typ: tar.TypeDir, mode: 0o555},
		{name: "fresh/a", body: "a"},
	})
	if _, err := extractInto(t, l, archive, kindTar, testLimits); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"bin/old": "old", "bin/new": "new", "conf": "from the archive",
		"planted": "replaces the link", "bin/x": "through the link", "fresh/a": "a",
	} {
		if got := readFile(t, filepath.Join(l.sandbox, p)); got != want {
			t.Errorf("%s: %q, want %q", p, got, want)
		}
	}
	if got := readFile(t, filepath.Join(l.outside, "secret")); got != "host" {
		t.Errorf("written through the planted symlink: %q", got)
	}
	if m := modeOf(t, filepath.Join(l.sandbox, "fresh")); m != fs.ModeDir|0o555 {
		t.Errorf("fresh: %v", m)
	}
	_ = os.Chmod(filepath.Join(l.sandbox, "fresh"), 0o755)
	for _, f := range l.sandboxFiles(t) {
		if strings.HasPrefix(f, stagingPrefix) {
			t.Errorf("staging directory %s left behind", f)
		}
	}
}

// TestExtractConflictMovesNothing: a conflict with the sandbox found while
// merging (a directory over a file, a file over a directory) refuses the
// archive before anything of it is moved in.
func TestExtractConflictMovesNothing(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, sandbox string)
		archive []tarEntry
	}{
		{
			name:    "directory over a file",
			prepare: func(t *testing.T, sb string) { _ = os.WriteFile(filepath.Join(sb, "lib"), []byte("x"), 0o644) },
			archive: []tarEntry{{name: "a", body: "a"}, {name: "lib/x.so", body: "so"}, {name: "z", body: "z"}},
		},
		{
			name:    "file over a directory",
			prepare: func(t *testing.T, sb string) { _ = os.Mkdir(filepath.Join(sb, "lib"), 0o755) },
			archive: []tarEntry{{name: "a", body: "a"}, {name: "lib", body: "not a dir"}, {name: "z", body: "z"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLayout(t)
			tt.prepare(t, l.sandbox)
			before := l.sandboxFiles(t)
			if _, err := extractInto(t, l, makeTar(t, tt.archive), kindTar, testLimits); !errors.Is(err, errdefs.ErrConflict) {
				t.Fatalf("got %v, want a conflict", err)
			}
			if after := l.sandboxFiles(t); strings.Join(after, ",") != strings.Join(before, ",") {
				t.Fatalf("sandbox went from %v to %v", before, after)
			}
		})
	}
}
