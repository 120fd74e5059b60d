package httpauth

import (
	"bytes"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/errdefs"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// whoami answers the authenticated principal.
var whoami = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	p, _ := Principal(r.Context())
	w.Write([]byte(p))
})

func TestDisabledPassesEverything(t *testing.T) {
	a, err := New(Options{})
	if err != nil || a != nil {
		t.Fatalf("New(disabled) = %v, %v", a, err)
	}
	rec := httptest.NewRecorder()
	a.Wrap(whoami).ServeHTTP(rec, httptest.NewRequest("GET", "/files/read", nil))
	if rec.Code != 200 {
		t.Fatalf("status %d", rec.Code)
	}
}

func TestBasicAndBearer(t *testing.T) {
	creds := writeFile(t, "credentials", `{"credentials":[{"principal":"ops","secret":"s3cret"},{"principal":"ci","secret":"other"}]}`)
	tokens := writeFile(t, "tokens", "# agent tokens\n\ntok-one\n tok-two \n")
	var logs bytes.Buffer
	a, err := New(Options{
		Enabled: true, CredentialsFile: creds, TokenFile: tokens,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Skip:   func(r *http.Request) bool { return r.URL.Path == "/health" },
	})
	if err != nil {
		t.Fatal(err)
	}
	h := a.Wrap(whoami)

	tests := []struct {
		name      string
		path      string
		setup     func(r *http.Request)
		status    int
		principal string
	}{
		{"basic ok", "/files/read", func(r *http.Request) { r.SetBasicAuth("ops", "s3cret") }, 200, "ops"},
		{"second principal", "/files/read", func(r *http.Request) { r.SetBasicAuth("ci", "other") }, 200, "ci"},
		{"bearer ok", "/files/read", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok-two") }, 200, "token-2"},
		{"bearer scheme any case", "/files/read", func(r *http.Request) { r.Header.Set("Authorization", "bearer tok-one") }, 200, "token-1"},
		{"skipped path", "/health", func(r *http.Request) {}, 200, ""},
		{"missing", "/files/read", func(r *http.Request) {}, 401, ""},
		{"wrong secret", "/files/read", func(r *http.Request) { r.SetBasicAuth("ops", "guess") }, 401, ""},
		{"secret of another principal", "/files/read", func(r *http.Request) { r.SetBasicAuth("ops", "other") }, 401, ""},
		{"unknown principal", "/files/read", func(r *http.Request) { r.SetBasicAuth("eve", "s3cret") }, 401, ""},
		{"secret prefix", "/files/read", func(r *http.Request) { r.SetBasicAuth("ops", "s3cre") }, 401, ""},
		{"wrong token", "/files/read", func(r *http.Request) { r.Header.Set("Authorization", "Bearer tok-three") }, 401, ""},
		{"malformed basic", "/files/read", func(r *http.Request) { r.Header.Set("Authorization", "Basic !!!") }, 401, ""},
		{"other scheme", "/files/read", func(r *http.Request) { r.Header.Set("Authorization", "Digest x") }, 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", tt.path, nil)
			req.RemoteAddr = "192.0.2.7:4242"
			tt.setup(req)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d", rec.Code, tt.status)
			}
			if tt.status == 200 && rec.Body.String() != tt.principal {
				t.Fatalf("principal %q, want %q", rec.Body.String(), tt.principal)
			}
			if tt.status == 401 {
				ch := rec.Header().Values("WWW-Authenticate")
				want := []string{`Basic realm="mesos-agent-readonly"`, `Bearer realm="mesos-agent-readonly"`}
				if !slices.Equal(ch, want) {
					t.Fatalf("challenges %q, want %q", ch, want)
				}
			}
		})
	}
	out := logs.String()
	for _, want := range []string{"http authentication failed", "principal=eve", "remote_addr=192.0.2.7:4242", "path=/files/read"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	for _, secret := range []string{"s3cret", "guess", "tok-three", "other"} {
		if strings.Contains(out, secret) {
			t.Errorf("log shows a secret %q:\n%s", secret, out)
		}
	}
}

func TestAuthenticateErrorClass(t *testing.T) {
	a, err := New(Options{Enabled: true, Credentials: []Credential{{"p", "s"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Authenticate(httptest.NewRequest("GET", "/", nil))
	if !errors.Is(err, errdefs.ErrUnauthorized) || errdefs.HTTPStatus(err) != 401 {
		t.Fatalf("err %v", err)
	}
	// Only the schemes configured are offered.
	rec := httptest.NewRecorder()
	a.Wrap(whoami).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if ch := rec.Header().Values("WWW-Authenticate"); len(ch) != 1 || !strings.HasPrefix(ch[0], "Basic ") {
		t.Fatalf("challenges %q", ch)
	}
}

func TestLoadCredentials(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []Credential
		ok      bool
	}{
		{"json", `{"credentials":[{"principal":"a","secret":"b"}]}`, []Credential{{"a", "b"}}, true},
		{"json with extra keys", "\n {\"credentials\":[{\"principal\":\"a\",\"secret\":\"b\",\"x\":1}],\"y\":2}\n", []Credential{{"a", "b"}}, true},
		{"text lines", "a b\n\nc d\n", []Credential{{"a", "b"}, {"c", "d"}}, true},
		{"bad json", `{"credentials":`, nil, false},
		{"bad line", "a b c\n", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadCredentials(writeFile(t, "c", tt.content))
			if (err == nil) != tt.ok {
				t.Fatalf("err %v", err)
			}
			if tt.ok && !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := LoadCredentials(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestNewRefusesUselessConfig(t *testing.T) {
	for _, opts := range []Options{
		{Enabled: true},
		{Enabled: true, CredentialsFile: writeFile(t, "empty", `{"credentials":[]}`)},
		{Enabled: true, Credentials: []Credential{{"", "s"}}},
		{Enabled: true, Credentials: []Credential{{"p", ""}}},
		{Enabled: true, CredentialsFile: filepath.Join(t.TempDir(), "missing")},
	} {
		if a, err := New(opts); err == nil {
			t.Errorf("New(%+v) = %v, want an error", opts, a)
		}
	}
}

func TestWarnsAboutOpenPermissions(t *testing.T) {
	p := writeFile(t, "creds", `{"credentials":[{"principal":"a","secret":"b"}]}`)
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	if _, err := New(Options{Enabled: true, CredentialsFile: p, Logger: slog.New(slog.NewTextHandler(&logs, nil))}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "too open") {
		t.Fatalf("no warning: %s", logs.String())
	}
}

func TestLoadCredential(t *testing.T) {
	tests := []struct {
		name, content string
		want          *Credential
	}{
		{"json", `{"principal":"agent","secret":"s"}`, &Credential{Principal: "agent", Secret: "s"}},
		{"line", "agent s\n", &Credential{Principal: "agent", Secret: "s"}},
		{"empty secret", `{"principal":"agent"}`, nil},
		{"three words", "a b c", nil},
		{"empty", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "credential")
			if err := os.WriteFile(p, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := LoadCredential(p)
			if tt.want == nil {
				if !errors.Is(err, errdefs.ErrInvalid) {
					t.Fatalf("LoadCredential = %v, %v; want ErrInvalid", got, err)
				}
				return
			}
			if err != nil || *got != *tt.want {
				t.Fatalf("LoadCredential = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// A realm that would break out of WWW-Authenticate's quoted string (or
// carry a line break into the headers) is refused.
func TestRealmRefused(t *testing.T) {
	for _, realm := range []string{`a"b`, "a\r\nSet-Cookie: x=1", `a\b`, "café"} {
		if _, err := New(Options{Enabled: true, Realm: realm, Credentials: []Credential{{Principal: "p", Secret: "s"}}}); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("realm %q: %v, want refused", realm, err)
		}
	}
	if _, err := New(Options{Enabled: true, Realm: "marathon", Credentials: []Credential{{Principal: "p", Secret: "s"}}}); err != nil {
		t.Errorf("realm marathon: %v", err)
	}
}
