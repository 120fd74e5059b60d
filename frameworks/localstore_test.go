package frameworks_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/frameworks/storetest"
)

func TestLocalStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T, dir string) frameworks.Store {
		s, err := frameworks.OpenLocalStore(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}

// TestLocalStoreHeldByOne: a second process (here, a second open) on the
// same work_dir is refused rather than let two frameworks write one state.
func TestLocalStoreHeldByOne(t *testing.T) {
	dir := t.TempDir()
	s, err := frameworks.OpenLocalStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := frameworks.OpenLocalStore(dir); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("second open: %v, want ErrUnavailable", err)
	}
}

// TestLocalStoreGroupCommit: callers applying at once are committed in
// groups; each gets its own answer and every change is kept, in order
// per caller.
func TestLocalStoreGroupCommit(t *testing.T) {
	s, err := frameworks.OpenLocalStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			for i := range 20 {
				key := fmt.Sprintf("k%02d", g)
				if err := s.Apply(ctx, frameworks.Put("b", key, []byte(strconv.Itoa(i))), frameworks.Put("b", fmt.Sprintf("%s-%02d", key, i), nil)); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	entries, err := s.List(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 32*21 {
		t.Fatalf("%d entries, want %d", len(entries), 32*21)
	}
	for g := range 32 {
		if v, err := s.Get(ctx, "b", fmt.Sprintf("k%02d", g)); err != nil || string(v) != "19" {
			t.Errorf("k%02d = %q, %v; want the last write, 19", g, v, err)
		}
	}
}
