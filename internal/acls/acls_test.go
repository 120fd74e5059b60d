package acls

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/mesolite/mesolite/errdefs"
)

func TestAllowed(t *testing.T) {
	a, err := Parse(`{
	  "permissive": false,
	  "teardown_frameworks": [
	    {"principals": {"values": ["ops"]}, "framework_principals": {"type": "ANY"}},
	    {"principals": {"values": ["dev"]}, "framework_principals": {"values": ["dev-fw"]}}
	  ],
	  "reserve_resources": [
	    {"principals": {"values": ["intern"]}, "roles": {"type": "NONE"}},
	    {"principals": {"type": "ANY"}, "roles": {"values": ["web"]}}
	  ],
	  "view_frameworks": [{"principals": {"type": "ANY"}, "users": {"type": "ANY"}}]
	}`)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		action, principal, object string
		want                      bool
	}{
		{"teardown_frameworks", "ops", "anything", true},
		{"teardown_frameworks", "dev", "dev-fw", true},
		{"teardown_frameworks", "dev", "prod-fw", false}, // no rule matches: not permissive
		{"teardown_frameworks", "", "dev-fw", false},     // unauthenticated matches only ANY
		{"reserve_resources", "intern", "web", false},    // NONE denies
		{"reserve_resources", "ops", "web", true},
		{"reserve_resources", "", "web", true},
		{"reserve_resources", "ops", "db", false},
		{"view_frameworks", "", "root", true},
		{"update_quotas", "ops", "web", false}, // no rules: permissive false
	} {
		if got := a.Allowed(tt.action, tt.principal, tt.object); got != tt.want {
			t.Errorf("%s by %q on %q = %v, want %v", tt.action, tt.principal, tt.object, got, tt.want)
		}
	}
	if err := a.Check("update_quotas", "ops", "web"); !errors.Is(err, errdefs.ErrForbidden) {
		t.Errorf("Check: %v", err)
	}
	var none *ACLs
	if !none.Allowed("teardown_frameworks", "", "x") {
		t.Error("no --acls denies")
	}
}

func TestParseErrors(t *testing.T) {
	for _, bad := range []string{`[]`, `{"teardown_framework": []}`, `{"view_tasks": [{"users": {"type": "SOME"}}]}`, `{"permissive": "yes"}`,
		`{"view_tasks": [{"users": {}}]}`} {
		if _, err := Parse(bad); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: %v", bad, err)
		}
	}
	path := filepath.Join(t.TempDir(), "acls.json")
	if err := os.WriteFile(path, []byte(`{"permissive": false}`), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := Parse("file://" + path)
	if err != nil || a.Allowed("view_tasks", "x", "y") {
		t.Fatalf("file:// acls: %v", err)
	}
}
