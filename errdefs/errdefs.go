// Package errdefs holds the few error classes mesolite uses everywhere and maps
// them to HTTP status codes in one place. Packages wrap these sentinels with
// context (fmt.Errorf("...: %w", errdefs.ErrNotFound)) and callers test them
// with errors.Is, so the class survives any number of wrapping layers.
package errdefs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

// The classes. Each one answers a question a caller actually asks: may I
// retry, is it my fault, does the thing exist.
var (
	// ErrNotFound: the named thing does not exist (or no longer exists).
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the request is malformed; retrying it unchanged cannot help.
	ErrInvalid = errors.New("invalid argument")
	// ErrConflict: the request clashes with current state (duplicate id, wrong state).
	ErrConflict = errors.New("conflict")
	// ErrForbidden: the caller may not do this (path outside a sandbox, not subscribed).
	ErrForbidden = errors.New("forbidden")
	// ErrUnauthorized: the caller did not prove who it is.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrUnavailable: a dependency is down or not ready; retrying later may help.
	ErrUnavailable = errors.New("unavailable")
	// ErrGone: the thing existed but was removed on purpose (a collected sandbox).
	ErrGone = errors.New("gone")
)

// classError is a message of a class that does not print the class: a
// person reads "ZooKeeper did not answer", not "...: unavailable".
type classError struct {
	class error
	err   error
}

func (e *classError) Error() string { return e.err.Error() }

// Unwrap gives both the class and the causes the message wrapped.
func (e *classError) Unwrap() []error { return []error{e.class, e.err} }

// Classf is fmt.Errorf(format, args...) of the given class (ErrNotFound,
// ErrUnavailable...), which errors.Is finds but the message does not
// repeat.
func Classf(class error, format string, args ...any) error {
	return &classError{class: class, err: fmt.Errorf(format, args...)}
}

// statusError pins the HTTP status of an error whose meaning the classes
// above do not carry (405, 406, 413, 415, 429, a protocol's own choice of
// 400 or 403).
type statusError struct {
	code int
	err  error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// WithStatus answers err with the HTTP status code; errors.Is and As still
// see through it to err's class.
func WithStatus(code int, err error) error {
	if err == nil {
		return nil
	}
	return &statusError{code: code, err: err}
}

// Statusf is WithStatus of fmt.Errorf(format, args...): the reason, as the
// peer reads it, with the status to answer it with.
func Statusf(code int, format string, args ...any) error {
	return &statusError{code: code, err: fmt.Errorf(format, args...)}
}

// HTTPStatus maps an error to the status code an HTTP handler should answer:
// the status it was given (WithStatus, Statusf), else its class's.
// Unclassified errors are internal errors.
func HTTPStatus(err error) int {
	var se *statusError
	switch {
	case err == nil:
		return http.StatusOK
	case errors.As(err, &se):
		return se.code
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrGone):
		// Mesos answers 404 for collected sandboxes too; the message tells them apart.
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// HTTPError writes err as a plain-text reason with the status HTTPStatus
// gives. An unclassified error (500) is the server's own failure, and its
// text may name host paths or internals: the body says only that it
// happened, with an id to find the detail, which goes to the log.
func HTTPError(w http.ResponseWriter, err error) {
	code := HTTPStatus(err)
	if code != http.StatusInternalServerError {
		http.Error(w, Message(err), code)
		return
	}
	var id [6]byte
	_, _ = rand.Read(id[:])
	ref := hex.EncodeToString(id[:])
	slog.Default().Error("internal error answered 500", "error", err, "ref", ref)
	http.Error(w, "internal server error (ref "+ref+"; the detail is in the server's log)", code)
}

// Message is err's text for a person: without the class names that
// wrapping with %w leaves at its end ("sub is a directory: conflict" says
// "sub is a directory"); the status code already says the class.
func Message(err error) string {
	msg := err.Error()
	for {
		trimmed := msg
		for _, c := range []error{ErrNotFound, ErrInvalid, ErrConflict, ErrForbidden, ErrUnauthorized, ErrUnavailable, ErrGone} {
			if errors.Is(err, c) {
				trimmed = strings.TrimSuffix(trimmed, ": "+c.Error())
			}
		}
		if trimmed == msg || trimmed == "" {
			return msg
		}
		msg = trimmed
	}
}

// MethodNotAllowed answers 405 with Mesos's wording and the Allow header.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request, allowed ...string) {
	w.Header().Set("Allow", strings.Join(allowed, ", "))
	want := strings.Join(allowed, "' or '")
	HTTPError(w, Statusf(http.StatusMethodNotAllowed, "Expecting a '%s' request, received '%s'", want, r.Method))
}
