package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/mesolite/mesolite/errdefs"
)

// readLogs returns the contents of p, p.1, p.2, ... (live file first) and
// fails if a file beyond the last one exists.
func readLogs(t *testing.T, p string) []string {
	t.Helper()
	var out []string
	for i := 0; ; i++ {
		name := p
		if i > 0 {
			name = rotatedName(p, i)
		}
		b, err := os.ReadFile(name)
		if errors.Is(err, fs.ErrNotExist) {
			return out
		}
		must(t, err)
		out = append(out, string(b))
	}
}

func TestRotatingWriter(t *testing.T) {
	tests := []struct {
		name     string
		maxSize  int64
		maxFiles int
		writes   []string
		want     []string // live file first, then .1, .2, ...
	}{
		{"no rotation below the limit", 10, 3, []string{"abc", "def"}, []string{"abcdef"}},
		{"exactly the limit stays", 6, 3, []string{"abc", "def"}, []string{"abcdef"}},
		{"rotate when a write does not fit", 6, 3, []string{"abcd", "efg"}, []string{"efg", "abcd"}},
		{"older files shift", 4, 3, []string{"aaa", "bbb", "ccc"}, []string{"ccc", "bbb", "aaa"}},
		{"beyond max files deleted", 4, 3, []string{"aaa", "bbb", "ccc", "ddd", "eee"}, []string{"eee", "ddd", "ccc"}},
		{"one file means no history", 4, 1, []string{"aaa", "bbb", "ccc"}, []string{"ccc"}},
		{"a write larger than max is split", 4, 10, []string{"0123456789"}, []string{"89", "4567", "0123"}},
		{"no limit", 0, 3, []string{"aaaa", "bbbb", "cccc"}, []string{"aaaabbbbcccc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "stdout")
			w, err := NewRotatingWriter(p, tt.maxSize, tt.maxFiles)
			must(t, err)
			for _, s := range tt.writes {
				n, err := w.Write([]byte(s))
				if err != nil || n != len(s) {
					t.Fatalf("Write(%q) = %d, %v", s, n, err)
				}
			}
			must(t, w.Close())
			if got := readLogs(t, p); !slices.Equal(got, tt.want) {
				t.Fatalf("files %q, want %q", got, tt.want)
			}
			if _, err := w.Write([]byte("x")); !errors.Is(err, fs.ErrClosed) {
				t.Fatalf("write after close: %v", err)
			}
		})
	}
}

func TestRotatingWriterReopens(t *testing.T) {
	p := filepath.Join(t.TempDir(), "stdout")
	writeFile(t, p, "12345")
	w, err := NewRotatingWriter(p, 8, 2)
	must(t, err)
	// The existing 5 bytes count: 4 more do not fit.
	_, err = w.Write([]byte("abcd"))
	must(t, err)
	must(t, w.Close())
	if got := readLogs(t, p); !slices.Equal(got, []string{"abcd", "12345"}) {
		t.Fatalf("files %q", got)
	}
}

func TestRotatingWriterConcurrent(t *testing.T) {
	p := filepath.Join(t.TempDir(), "stdout")
	w, err := NewRotatingWriter(p, 1000, 1000)
	must(t, err)
	const writers, lines = 16, 200
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range lines {
				if _, err := fmt.Fprintf(w, "w%02d-%04d\n", g, i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	must(t, w.Close())
	files := readLogs(t, p)
	seen := map[string]bool{}
	for _, content := range files {
		if len(content) > 1000 {
			t.Fatalf("file of %d bytes, limit 1000", len(content))
		}
		// Writes are never split, so every file holds whole lines.
		if content != "" && !strings.HasSuffix(content, "\n") {
			t.Fatalf("a line was split across files: %q", content[len(content)-10:])
		}
		for l := range strings.SplitSeq(strings.TrimSuffix(content, "\n"), "\n") {
			if l == "" {
				continue
			}
			if len(l) != 8 || seen[l] {
				t.Fatalf("bad or duplicate line %q", l)
			}
			seen[l] = true
		}
	}
	if len(seen) != writers*lines {
		t.Fatalf("%d lines, want %d", len(seen), writers*lines)
	}
}

func TestParseBytes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"10MB", 10 << 20, true},
		{"10mb", 10 << 20, true},
		{"0B", 0, true},
		{"512B", 512, true},
		{"64KB", 64 << 10, true},
		{"2GB", 2 << 30, true},
		{"1TB", 1 << 40, true},
		{" 5MB ", 5 << 20, true},
		{"1.5MB", 0, false},
		{"10", 0, false},
		{"MB", 0, false},
		{"10 MB", 0, false},
		{"10PB", 0, false},
		{"-1MB", 0, false},
		{"99999999TB", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseBytes(tt.in)
		if tt.ok != (err == nil) || got != tt.want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ParseBytes(%q) error %v is not ErrInvalid", tt.in, err)
		}
	}
	for n, want := range map[int64]string{0: "0B", 100: "100B", 1536: "1536B", 10 << 20: "10MB", 1536 << 10: "1536KB", 3 << 30: "3GB", 1 << 40: "1TB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
		if back, err := ParseBytes(FormatBytes(n)); err != nil || back != n {
			t.Errorf("round trip %d: %d %v", n, back, err)
		}
	}
}
