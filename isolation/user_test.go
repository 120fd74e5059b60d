package isolation

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/testutil"
)

// TestLaunchAsUser runs an executor as nobody through every launcher: with
// and without a pid namespace, with prestarted inits, and from a binary in
// a directory nobody may not search (the test binary's own build
// directory), as a root-only install would be.
func TestLaunchAsUser(t *testing.T) {
	testutil.RequireRoot(t)
	nobody, err := LookupUser("nobody")
	testutil.Require(t, err == nil, "the user nobody is needed")
	for name, l := range launchers(t) {
		t.Run(name, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			spec := modeSpec(t, "ids")
			spec.User = nobody
			out := filepath.Join(t.TempDir(), "out")
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			spec.Stdout = f
			p, err := l.Launch(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			if st, err := p.Wait(ctx); err != nil || st.Code != 0 {
				b, _ := os.ReadFile(out)
				t.Fatalf("exit %+v, %v: %s", st, err, b)
			}
			b, _ := os.ReadFile(out)
			if got := strings.TrimSpace(string(b)); !strings.HasPrefix(got, "65534 65534 ") || strings.Contains(got, "[0") {
				t.Fatalf("executor ran as %q, want uid and gid 65534 without root's groups", got)
			}
		})
	}
}

func TestLookupUser(t *testing.T) {
	if _, err := LookupUser("mesolite-no-such-user"); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "mesolite-no-such-user") {
		t.Fatalf("missing user: %v", err)
	}
	u, err := LookupUser("root")
	if err != nil || u.UID != 0 || u.GID != 0 {
		t.Fatalf("root: %+v %v", u, err)
	}
}
