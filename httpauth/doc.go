// Package httpauth authenticates HTTP requests the way a Mesos agent started
// with --authenticate_http_readonly does: HTTP Basic against the principals
// and secrets of --http_credentials (Mesos's JSON format, or its older
// "principal secret" lines), and optionally bearer tokens read from a file.
// It is off unless enabled: a nil *Authenticator passes every request
// through, so the agent can wrap its handlers unconditionally.
//
// A request without valid credentials gets 401 with a WWW-Authenticate
// challenge, and the failure is logged with the principal tried, the remote
// address and the path (never the secret). Secrets are compared in constant
// time, and every configured credential is compared, so timing tells nothing
// about which principals exist.
package httpauth
