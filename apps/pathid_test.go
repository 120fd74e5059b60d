package apps

import (
	"errors"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/errdefs"
)

func TestParsePathID(t *testing.T) {
	tests := []struct {
		in   string
		base PathID
		want PathID
		bad  bool
	}{
		{in: "/prod/db/mysql", want: "/prod/db/mysql"},
		{in: "web", base: Root, want: "/web"},
		{in: "web", base: "/prod", want: "/prod/web"},
		{in: "../web", base: "/prod/db", want: "/prod/web"},
		{in: "./web", base: "/prod", want: "/prod/web"},
		{in: "/prod/web/", want: "/prod/web"},
		{in: "/my-app.v2", want: "/my-app.v2"},
		{in: "/a1/2b", want: "/a1/2b"},
		{in: "/", want: Root},
		{in: "", bad: true},
		{in: "/Web", bad: true},
		{in: "/web_1", bad: true},
		{in: "/-web", bad: true},
		{in: "/web-", bad: true},
		{in: "/we..b", bad: true},
		{in: "/prod//web", bad: true},
		{in: "/..", bad: true},
		{in: "/a b", bad: true},
		{in: "/" + strings.Repeat("a", 64), bad: true},
		{in: strings.Repeat("/abcdefghij", 21), bad: true},
	}
	for _, tt := range tests {
		got, err := ParsePathID(tt.in, tt.base)
		if tt.bad {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("%q: %q, %v; want ErrInvalid", tt.in, got, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q in %q: %q, %v; want %q", tt.in, tt.base, got, err, tt.want)
		}
	}
}

func TestPathIDForms(t *testing.T) {
	p := PathID("/prod/db/mysql")
	if p.Safe() != "prod_db_mysql" || p.Hostname() != "mysql.db.prod" || p.Parent() != "/prod/db" {
		t.Fatalf("%s: safe %s hostname %s parent %s", p, p.Safe(), p.Hostname(), p.Parent())
	}
	if !PathID("/prod").Contains(p) || PathID("/pro").Contains(p) || !Root.Contains(p) {
		t.Fatal("Contains")
	}
	id := NewTaskID(p)
	if !strings.HasPrefix(id, "prod_db_mysql.") {
		t.Fatalf("task id %s", id)
	}
	if app, err := AppOfTaskID(id); err != nil || app != p {
		t.Fatalf("AppOfTaskID(%s) = %s, %v", id, app, err)
	}
	dotted := NewTaskID("/my.app")
	if app, err := AppOfTaskID(dotted); err != nil || app != "/my.app" {
		t.Fatalf("AppOfTaskID(%s) = %s, %v", dotted, app, err)
	}
	for _, bad := range []string{"", "web", "web.notauuid", "../x.0b8b2d5c-6f4e-4a8c-9d8e-0a1b2c3d4e5f", "a/b.0b8b2d5c-6f4e-4a8c-9d8e-0a1b2c3d4e5f"} {
		if _, err := AppOfTaskID(bad); err == nil {
			t.Errorf("AppOfTaskID(%q) accepted", bad)
		}
	}
}
