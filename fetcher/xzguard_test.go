package fetcher

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"github.com/mesolite/mesolite/internal/testutil"
	"hash/crc32"
	"io"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/ulikunitz/xz"

	"github.com/mesolite/mesolite/errdefs"
)

func xzWith(t testing.TB, b []byte, cfg xz.WriterConfig) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := cfg.NewWriter(&buf)
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

// xzBlockOffsets finds the block headers of a single-stream xz file from
// its index, the way `xz --list` does: independent of the guard's walk.
func xzBlockOffsets(t testing.TB, f []byte) []int {
	t.Helper()
	footer := f[len(f)-12:]
	backward := (int(binary.LittleEndian.Uint32(footer[4:8])) + 1) * 4
	idx := f[len(f)-12-backward:]
	n, k := binary.Uvarint(idx[1:])
	pos := 1 + k
	var offs []int
	off := 12
	for range n {
		unpadded, k1 := binary.Uvarint(idx[pos:])
		_, k2 := binary.Uvarint(idx[pos+k1:])
		pos += k1 + k2
		offs = append(offs, off)
		off += (int(unpadded) + 3) &^ 3
	}
	return offs
}

// patchXZDict sets the LZMA2 dictionary property of the block header at
// off to code and fixes the header's CRC32.
func patchXZDict(t testing.TB, f []byte, off int, code byte) []byte {
	t.Helper()
	f = bytes.Clone(f)
	size := (int(f[off]) + 1) * 4
	flags := f[off+1]
	pos := off + 2
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if present {
			_, k := binary.Uvarint(f[pos:])
			pos += k
		}
	}
	if f[pos] != 0x21 || f[pos+1] != 1 {
		t.Fatalf("block at %d does not start with an LZMA2 filter: % x", off, f[off:off+size])
	}
	f[pos+2] = code
	binary.LittleEndian.PutUint32(f[off+size-4:], crc32.ChecksumIEEE(f[off:off+size-4]))
	return f
}

func systemXZ(t *testing.T, b []byte, args ...string) []byte {
	t.Helper()
	_, err := exec.LookPath("xz")
	testutil.Require(t, err == nil, "xz is needed to build archives with the system's xz")
	cmd := exec.Command("xz", append([]string{"-c"}, args...)...)
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// xzPayload mixes text LZMA compresses and random bytes it stores in
// uncompressed chunks, so both kinds of LZMA2 chunk are walked.
func xzPayload() []byte {
	noise := make([]byte, 200<<10)
	_, _ = rand.Read(noise)
	text := bytes.Repeat([]byte("mesolite fetches artifacts; "), 20_000)
	return append(append(text, noise...), text...)
}

func TestXZGuardPassesValidFiles(t *testing.T) {
	payload := xzPayload()
	tests := []struct {
		name string
		file func(t *testing.T) []byte
	}{
		{"default writer (CRC64)", func(t *testing.T) []byte { return xzWith(t, payload, xz.WriterConfig{}) }},
		{"CRC32", func(t *testing.T) []byte { return xzWith(t, payload, xz.WriterConfig{CheckSum: xz.CRC32}) }},
		{"SHA-256", func(t *testing.T) []byte { return xzWith(t, payload, xz.WriterConfig{CheckSum: xz.SHA256}) }},
		{"no check", func(t *testing.T) []byte { return xzWith(t, payload, xz.WriterConfig{NoCheckSum: true}) }},
		{"many blocks", func(t *testing.T) []byte { return xzWith(t, payload, xz.WriterConfig{BlockSize: 64 << 10}) }},
		{"empty", func(t *testing.T) []byte { return xzWith(t, nil, xz.WriterConfig{}) }},
		{"two streams with padding", func(t *testing.T) []byte {
			a := xzWith(t, payload[:1000], xz.WriterConfig{})
			b := xzWith(t, payload[1000:], xz.WriterConfig{BlockSize: 100 << 10})
			return append(append(append(a, 0, 0, 0, 0), b...), 0, 0, 0, 0, 0, 0, 0, 0)
		}},
		{"xz -9 (64 MiB dictionary)", func(t *testing.T) []byte { return systemXZ(t, payload, "-9") }},
		{"xz -T2 with blocks", func(t *testing.T) []byte { return systemXZ(t, payload, "-6", "-T2", "--block-size=128KiB") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.file(t)
			want := payload
			if tt.name == "empty" {
				want = nil
			}
			passed, err := io.ReadAll(newXZGuard(bytes.NewReader(f), maxXZDictCap))
			if err != nil || !bytes.Equal(passed, f) {
				t.Fatalf("the guard passed %d of %d bytes: %v", len(passed), len(f), err)
			}
			xr, err := newXZReader(bytes.NewReader(f))
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(xr)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("decoded %d bytes, want %d: %v", len(got), len(want), err)
			}
		})
	}
}

// TestXZGuardRefusesLargeDictionaries: ulikunitz/xz allocates the
// dictionary a block header asks for; a 100-byte file asking for 4 GiB in
// its first or a later block is refused before anything is allocated.
func TestXZGuardRefusesLargeDictionaries(t *testing.T) {
	payload := xzPayload()
	oneBlock := xzWith(t, payload, xz.WriterConfig{})
	blocks := xzWith(t, payload, xz.WriterConfig{BlockSize: 64 << 10})
	offs := xzBlockOffsets(t, blocks)
	if len(offs) < 3 {
		t.Fatalf("%d blocks", len(offs))
	}
	tests := []struct {
		name string
		file []byte
	}{
		{"4 GiB in the first block", patchXZDict(t, oneBlock, 12, 40)},
		{"512 MiB in the first block", patchXZDict(t, oneBlock, 12, 34)},
		{"4 GiB in the third block", patchXZDict(t, blocks, offs[2], 40)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			xr, err := newXZReader(bytes.NewReader(tt.file))
			if err == nil {
				_, err = io.Copy(io.Discard, xr)
			}
			runtime.ReadMemStats(&after)
			if !errors.Is(err, errLimit) || !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "dictionary") {
				t.Fatalf("got %v, want the dictionary refused", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<20 {
				t.Fatalf("allocated %d MiB on the way to the refusal", grew>>20)
			}
		})
	}

	// What the guard is for: without it the library allocates it all.
	t.Run("unguarded library", func(t *testing.T) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		xr, err := xz.NewReader(bytes.NewReader(patchXZDict(t, oneBlock, 12, 34)))
		if err == nil {
			_, err = io.Copy(io.Discard, xr)
		}
		runtime.ReadMemStats(&after)
		if err != nil || after.TotalAlloc-before.TotalAlloc < 512<<20 {
			t.Fatalf("the library allocated %d MiB (%v); has it learnt to cap the dictionary?", (after.TotalAlloc-before.TotalAlloc)>>20, err)
		}
	})
}

// FuzzXZGuard: whatever the input, the guard returns a prefix of it and
// never panics; an input it passes whole is passed unchanged.
func FuzzXZGuard(f *testing.F) {
	f.Add(xzWith(f, []byte("hello"), xz.WriterConfig{}))
	f.Add(xzWith(f, bytes.Repeat([]byte("ab"), 5000), xz.WriterConfig{BlockSize: 1024, CheckSum: xz.SHA256}))
	f.Add([]byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 1, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		out, _ := io.ReadAll(newXZGuard(bytes.NewReader(in), 1<<20))
		if !bytes.HasPrefix(in, out) {
			t.Fatalf("the guard changed the bytes")
		}
	})
}
