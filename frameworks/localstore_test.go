package frameworks_test

import (
	"errors"
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
