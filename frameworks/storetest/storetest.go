package storetest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
)

// Opener opens the store under test. Opening twice with the same dir must
// give the same state (after the first was closed); dir is the test's own.
type Opener func(t *testing.T, dir string) frameworks.Store

// Run runs the suite.
func Run(t *testing.T, open Opener) {
	t.Run("GetPutDelete", func(t *testing.T) { testGetPutDelete(t, open) })
	t.Run("ListOrdered", func(t *testing.T) { testList(t, open) })
	t.Run("ApplyIsAtomic", func(t *testing.T) { testAtomic(t, open) })
	t.Run("Limits", func(t *testing.T) { testLimits(t, open) })
	t.Run("SurvivesReopen", func(t *testing.T) { testReopen(t, open) })
}

func testGetPutDelete(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	if _, err := s.Get(ctx, "apps", "/web"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get of a missing key: %v, want ErrNotFound", err)
	}
	if err := s.Apply(ctx, frameworks.Put("apps", "/web", []byte(`{"id":"/web"}`)), frameworks.Put("apps", "/empty", []byte{})); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Get(ctx, "apps", "/web"); err != nil || string(v) != `{"id":"/web"}` {
		t.Fatalf("Get = %q, %v", v, err)
	}
	if v, err := s.Get(ctx, "apps", "/empty"); err != nil || len(v) != 0 {
		t.Fatalf("an empty value: Get = %q, %v", v, err)
	}
	if err := s.Apply(ctx, frameworks.Delete("apps", "/web"), frameworks.Delete("apps", "/never"), frameworks.Delete("nobucket", "x")); err != nil {
		t.Fatalf("deleting, missing keys included: %v", err)
	}
	if _, err := s.Get(ctx, "apps", "/web"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("Get after Delete: %v", err)
	}
}

func testList(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	if es, err := s.List(ctx, "instances"); err != nil || len(es) != 0 {
		t.Fatalf("List of an unknown bucket: %v, %v", es, err)
	}
	keys := []string{"web.2", "/prod/db", "web.1", "a b", "ünï"}
	var ops []frameworks.Op
	for _, k := range keys {
		ops = append(ops, frameworks.Put("instances", k, []byte("v-"+k)))
	}
	ops = append(ops, frameworks.Put("other", "x", []byte("y")))
	if err := s.Apply(ctx, ops...); err != nil {
		t.Fatal(err)
	}
	es, err := s.List(ctx, "instances")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range es {
		if string(e.Value) != "v-"+e.Key {
			t.Errorf("%s holds %q", e.Key, e.Value)
		}
		got = append(got, e.Key)
	}
	if want := "/prod/db,a b,web.1,web.2,ünï"; strings.Join(got, ",") != want {
		t.Fatalf("keys %v, want %s", got, want)
	}
}

func testAtomic(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	err := s.Apply(ctx, frameworks.Put("apps", "ok", []byte("1")), frameworks.Put("apps", "", []byte("2")))
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("an Apply with an empty key: %v, want ErrInvalid", err)
	}
	if _, err := s.Get(ctx, "apps", "ok"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a refused Apply left its first op behind: %v", err)
	}
}

func testLimits(t *testing.T, open Opener) {
	ctx := context.Background()
	s := open(t, t.TempDir())
	defer s.Close()
	for name, op := range map[string]frameworks.Op{
		"bucket with a slash":  frameworks.Put("a/b", "k", nil),
		"bucket in uppercase":  frameworks.Put("Apps", "k", nil),
		"key with a NUL":       frameworks.Put("apps", "a\x00b", nil),
		"key with a newline":   frameworks.Put("apps", "a\nb", nil),
		"key too long":         frameworks.Put("apps", strings.Repeat("k", frameworks.MaxKeyBytes+1), nil),
		"value over the limit": frameworks.Put("apps", "k", bytes.Repeat([]byte("v"), frameworks.MaxValueBytes+1)),
	} {
		if err := s.Apply(ctx, op); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
	if err := s.Apply(ctx, frameworks.Put("apps", "k", bytes.Repeat([]byte("v"), frameworks.MaxValueBytes))); err != nil {
		t.Errorf("a value at the limit: %v", err)
	}
}

func testReopen(t *testing.T, open Opener) {
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.Apply(ctx, frameworks.Put("framework", "id", []byte("fw-1"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	if v, err := s.Get(ctx, "framework", "id"); err != nil || string(v) != "fw-1" {
		t.Fatalf("after reopening: %q, %v", v, err)
	}
}
