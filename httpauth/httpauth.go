package httpauth

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/mesolite/mesolite/errdefs"
)

// Realms Mesos uses for its agent's endpoints; clients show them in password
// prompts, and some match on them.
const (
	AgentReadonlyRealm  = "mesos-agent-readonly"
	AgentReadwriteRealm = "mesos-agent-readwrite"
)

// Credential is one entry of Mesos's credentials file.
type Credential struct {
	Principal string `json:"principal"`
	Secret    string `json:"secret"`
}

// Options configures New.
type Options struct {
	// Enabled is --authenticate_http_readonly (or _readwrite). When false,
	// New returns a nil Authenticator, which lets everything through.
	Enabled bool
	// Realm names the protected space in the challenge; default
	// AgentReadonlyRealm.
	Realm string
	// CredentialsFile is --http_credentials: Mesos's JSON
	// {"credentials":[{"principal":"p","secret":"s"}]} or lines of
	// "principal secret".
	CredentialsFile string
	// TokenFile holds bearer tokens, one per line ('#' starts a comment).
	TokenFile string
	// Credentials and Tokens are added to what the files hold.
	Credentials []Credential
	Tokens      []string
	// Skip exempts requests (a /health probe, say); nil exempts none.
	Skip func(*http.Request) bool
	// Logger gets one warning per failed attempt; nil discards.
	Logger *slog.Logger
}

// Authenticator checks requests. A nil *Authenticator is the disabled one.
type Authenticator struct {
	realm     string
	basic     []entry
	tokens    []entry
	skip      func(*http.Request) bool
	log       *slog.Logger
	challenge []string
}

// entry keeps hashes, not secrets: comparing fixed-size digests takes the
// same time whatever the lengths involved.
type entry struct {
	principal string
	user      [32]byte
	secret    [32]byte
}

// ValidRealm checks a realm: it goes into WWW-Authenticate as a quoted
// string, as it is, so it is printable ASCII without quotes or
// backslashes. The error wraps errdefs.ErrInvalid.
func ValidRealm(realm string) error {
	if strings.ContainsFunc(realm, func(r rune) bool { return r < 0x20 || r > 0x7e || r == '"' || r == '\\' }) {
		return fmt.Errorf("realm %.40q: printable ASCII without quotes or backslashes: %w", realm, errdefs.ErrInvalid)
	}
	return nil
}

// New loads the files and returns the authenticator, or nil when not
// enabled. Enabled without a single credential or token is an error, as in
// Mesos: such an agent would refuse everyone.
func New(opts Options) (*Authenticator, error) {
	if !opts.Enabled {
		return nil, nil
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{realm: opts.Realm, skip: opts.Skip, log: log.With("component", "httpauth")}
	if a.realm == "" {
		a.realm = AgentReadonlyRealm
	}
	if err := ValidRealm(a.realm); err != nil {
		return nil, err
	}
	creds := append([]Credential(nil), opts.Credentials...)
	if opts.CredentialsFile != "" {
		fromFile, err := LoadCredentials(opts.CredentialsFile)
		if err != nil {
			return nil, err
		}
		warnIfOpen(a.log, opts.CredentialsFile)
		creds = append(creds, fromFile...)
	}
	tokens := append([]string(nil), opts.Tokens...)
	if opts.TokenFile != "" {
		fromFile, err := LoadTokens(opts.TokenFile)
		if err != nil {
			return nil, err
		}
		warnIfOpen(a.log, opts.TokenFile)
		tokens = append(tokens, fromFile...)
	}
	for _, c := range creds {
		if c.Principal == "" || c.Secret == "" {
			return nil, fmt.Errorf("http credentials: empty principal or secret: %w", errdefs.ErrInvalid)
		}
		a.basic = append(a.basic, entry{principal: c.Principal, user: sha256.Sum256([]byte(c.Principal)), secret: sha256.Sum256([]byte(c.Secret))})
	}
	for i, t := range tokens {
		if t == "" {
			return nil, fmt.Errorf("http tokens: empty token: %w", errdefs.ErrInvalid)
		}
		// Tokens have no principal of their own; name them by position
		// so logs can tell them apart without showing them.
		a.tokens = append(a.tokens, entry{principal: "token-" + strconv.Itoa(i+1), secret: sha256.Sum256([]byte(t))})
	}
	if len(a.basic) == 0 && len(a.tokens) == 0 {
		return nil, fmt.Errorf("http authentication is enabled but no credentials or tokens are configured: %w", errdefs.ErrInvalid)
	}
	if len(a.basic) > 0 {
		a.challenge = append(a.challenge, `Basic realm="`+a.realm+`"`)
	}
	if len(a.tokens) > 0 {
		a.challenge = append(a.challenge, `Bearer realm="`+a.realm+`"`)
	}
	return a, nil
}

type principalKey struct{}

// Principal returns the authenticated principal of a request that went
// through Wrap.
func Principal(ctx context.Context) (string, bool) {
	p, ok := ctx.Value(principalKey{}).(string)
	return p, ok
}

// Wrap protects next. On a nil Authenticator it returns next itself.
func (a *Authenticator) Wrap(next http.Handler) http.Handler {
	if a == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.skip != nil && a.skip(r) {
			next.ServeHTTP(w, r)
			return
		}
		principal, err := a.Authenticate(r)
		if err != nil {
			a.log.Warn("http authentication failed", "principal", principal,
				"remote_addr", r.RemoteAddr, "path", r.URL.Path, "reason", err.Error())
			for _, c := range a.challenge {
				w.Header().Add("WWW-Authenticate", c)
			}
			errdefs.HTTPError(w, errdefs.Statusf(http.StatusUnauthorized, "401 Unauthorized."))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, principal)))
	})
}

// Authenticate checks r's Authorization header and returns the principal.
// A failure wraps errdefs.ErrUnauthorized; the principal returned with it
// is the one that was tried (for the log), if any.
func (a *Authenticator) Authenticate(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", fmt.Errorf("no credentials: %w", errdefs.ErrUnauthorized)
	}
	scheme, rest, _ := strings.Cut(h, " ")
	switch {
	case strings.EqualFold(scheme, "Basic") && len(a.basic) > 0:
		user, pass, ok := r.BasicAuth()
		if !ok {
			return "", fmt.Errorf("malformed basic credentials: %w", errdefs.ErrUnauthorized)
		}
		if p, ok := match(a.basic, user, pass, true); ok {
			return p, nil
		}
		return user, fmt.Errorf("wrong principal or secret: %w", errdefs.ErrUnauthorized)
	case strings.EqualFold(scheme, "Bearer") && len(a.tokens) > 0:
		if p, ok := match(a.tokens, "", strings.TrimSpace(rest), false); ok {
			return p, nil
		}
		return "", fmt.Errorf("wrong bearer token: %w", errdefs.ErrUnauthorized)
	}
	return "", fmt.Errorf("unsupported authorization scheme %q: %w", scheme, errdefs.ErrUnauthorized)
}

// match compares against every entry, without stopping at the first hit.
func match(entries []entry, user, secret string, withUser bool) (string, bool) {
	u := sha256.Sum256([]byte(user))
	s := sha256.Sum256([]byte(secret))
	found := -1
	for i := range entries {
		ok := subtle.ConstantTimeCompare(entries[i].secret[:], s[:])
		if withUser {
			ok &= subtle.ConstantTimeCompare(entries[i].user[:], u[:])
		}
		if ok == 1 && found < 0 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return entries[found].principal, true
}

// LoadCredentials reads a Mesos credentials file: JSON
// {"credentials":[{"principal":"p","secret":"s"}]}, or, as Mesos still
// accepts, one "principal secret" pair per line.
func LoadCredentials(path string) ([]Credential, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("http credentials: %w", err)
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		var doc struct {
			Credentials []Credential `json:"credentials"`
		}
		if err := json.Unmarshal(t, &doc); err != nil {
			return nil, fmt.Errorf("http credentials %s: %w: %w", path, errdefs.ErrInvalid, err)
		}
		return doc.Credentials, nil
	}
	var out []Credential
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("http credentials %s:%d: want \"principal secret\": %w", path, n, errdefs.ErrInvalid)
		}
		out = append(out, Credential{Principal: f[0], Secret: f[1]})
	}
	return out, sc.Err()
}

// LoadTokens reads bearer tokens, one per line; blank lines and lines
// starting with '#' are skipped.
func LoadTokens(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("http tokens: %w", err)
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	return out, nil
}

// warnIfOpen says so when a secrets file is readable by others, as Mesos
// does; it does not refuse, to keep working setups working.
func warnIfOpen(log *slog.Logger, path string) {
	fi, err := os.Stat(path)
	if err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("permissions on secrets file are too open", "path", path, "mode", fi.Mode().Perm().String())
	}
}

// LoadCredential reads the one credential a client authenticates with, as
// Mesos's agent --credential and framework --secret_file take it: JSON
// {"principal":"p","secret":"s"}, or one line "principal secret". Both
// must be non-empty.
func LoadCredential(path string) (*Credential, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	var c Credential
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		if err := json.Unmarshal(t, &c); err != nil {
			return nil, fmt.Errorf("credential %s: %w: %w", path, errdefs.ErrInvalid, err)
		}
	} else {
		f := strings.Fields(string(t))
		if len(f) != 2 {
			return nil, fmt.Errorf("credential %s: want JSON {\"principal\",\"secret\"} or one line \"principal secret\": %w", path, errdefs.ErrInvalid)
		}
		c = Credential{Principal: f[0], Secret: f[1]}
	}
	if c.Principal == "" || c.Secret == "" {
		return nil, fmt.Errorf("credential %s: empty principal or secret: %w", path, errdefs.ErrInvalid)
	}
	return &c, nil
}

// ReadSecretFile reads a secret kept alone in a file (--secret_file),
// without its trailing newline.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("secret file: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("secret file %s is empty: %w", path, errdefs.ErrInvalid)
	}
	return s, nil
}
