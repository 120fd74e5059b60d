package validate

import (
	"errors"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/errdefs"
)

func TestID(t *testing.T) {
	tests := []struct {
		id string
		ok bool
	}{
		{"task-1", true},
		{"a.b_c:d@e", true},
		{"ünïcode", true},
		{strings.Repeat("x", MaxIDLen), true},
		{"", false},
		{".", false},
		{"..", false},
		{"../../../../tmp/x", false},
		{"a/b", false},
		{`a\b`, false},
		{"a\x00b", false},
		{"a\nb", false},
		{"a\x7fb", false},
		{"a\u0085b", false},
		{"\xff\xfe", false},
		{strings.Repeat("x", MaxIDLen+1), false},
	}
	for _, tt := range tests {
		err := ID("task id", tt.id)
		if (err == nil) != tt.ok {
			t.Errorf("ID(%q) = %v, want ok=%v", tt.id, err, tt.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("ID(%q) error %v does not wrap ErrInvalid", tt.id, err)
		}
	}
}

func TestText(t *testing.T) {
	if err := Text("name", strings.Repeat("n", MaxNameLen), MaxNameLen); err != nil {
		t.Fatal(err)
	}
	err := Text("name", strings.Repeat("n", MaxNameLen+1), MaxNameLen)
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("over the cap: %v", err)
	}
}

// FuzzID checks that an accepted id is always one safe path component.
func FuzzID(f *testing.F) {
	for _, s := range []string{"a", "..", "a/b", "x\x00", ".hidden", "latest"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		if ID("id", id) != nil {
			return
		}
		if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\\\x00") || len(id) > MaxIDLen {
			t.Fatalf("accepted unsafe id %q", id)
		}
	})
}
