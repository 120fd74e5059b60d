package errdefs

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, http.StatusOK},
		{fmt.Errorf("decode call: %w", ErrInvalid), http.StatusBadRequest},
		{fmt.Errorf("a: %w", fmt.Errorf("b: %w", ErrNotFound)), http.StatusNotFound},
		{fmt.Errorf("sandbox collected: %w", ErrGone), http.StatusNotFound},
		{ErrForbidden, http.StatusForbidden},
		{ErrUnauthorized, http.StatusUnauthorized},
		{ErrConflict, http.StatusConflict},
		{ErrUnavailable, http.StatusServiceUnavailable},
		{errors.New("boom"), http.StatusInternalServerError},
		{Statusf(http.StatusRequestEntityTooLarge, "body larger than %d bytes", 10), http.StatusRequestEntityTooLarge},
		// A pinned status wins over the class it wraps, however deep.
		{fmt.Errorf("call: %w", WithStatus(http.StatusUnsupportedMediaType, ErrInvalid)), http.StatusUnsupportedMediaType},
		{WithStatus(http.StatusForbidden, fmt.Errorf("stream: %w", ErrInvalid)), http.StatusForbidden},
	}
	for _, tt := range tests {
		if got := HTTPStatus(tt.err); got != tt.want {
			t.Errorf("HTTPStatus(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

func TestHTTPErrorHidesInternalDetail(t *testing.T) {
	rec := httptest.NewRecorder()
	HTTPError(rec, fmt.Errorf("checkpoint /var/lib/mesolite/agent/meta/x: %w", errors.New("disk full")))
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "/var/lib") {
		t.Fatalf("500 body %q", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	HTTPError(rec, fmt.Errorf("task id %q is not valid: %w", "a/b", ErrInvalid))
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "a/b") {
		t.Fatalf("400 body %q", rec.Body.String())
	}
}

func TestStatusKeepsClassAndText(t *testing.T) {
	err := Statusf(http.StatusNotAcceptable, "accept %q: %w", "text/xml", ErrInvalid)
	if !errors.Is(err, ErrInvalid) || err.Error() != `accept "text/xml": invalid argument` {
		t.Fatalf("Statusf lost its class or text: %v", err)
	}
	if WithStatus(http.StatusTeapot, nil) != nil {
		t.Fatal("WithStatus(nil) is not nil")
	}
	rec := httptest.NewRecorder()
	HTTPError(rec, Statusf(http.StatusInternalServerError, "open /etc/secret: denied"))
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "/etc") {
		t.Fatalf("a pinned 500 leaks its detail: %q", rec.Body.String())
	}
}

func TestMethodNotAllowed(t *testing.T) {
	rec := httptest.NewRecorder()
	MethodNotAllowed(rec, httptest.NewRequest(http.MethodDelete, "/x", nil), http.MethodGet, http.MethodHead)
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" ||
		!strings.Contains(rec.Body.String(), "Expecting a 'GET' or 'HEAD' request, received 'DELETE'") {
		t.Fatalf("405: %d %q %q", rec.Code, rec.Header().Get("Allow"), rec.Body.String())
	}
}

func TestClassfHidesTheClass(t *testing.T) {
	cause := errors.New("connection refused")
	err := Classf(ErrUnavailable, "ZooKeeper did not answer: %w", cause)
	if err.Error() != "ZooKeeper did not answer: connection refused" || !errors.Is(err, ErrUnavailable) || !errors.Is(err, cause) {
		t.Fatalf("%v", err)
	}
	if HTTPStatus(err) != http.StatusServiceUnavailable {
		t.Fatalf("status %d", HTTPStatus(err))
	}
}

// Message drops the class names %w left at the end, as many as there are,
// and keeps a message that is only a class.
func TestMessageDropsClassSuffixes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("sub is a directory: %w", ErrConflict), "sub is a directory"},
		{fmt.Errorf("push: %w", fmt.Errorf("needs a file path: %w: %w", ErrInvalid, ErrInvalid)), "push: needs a file path"},
		{fmt.Errorf("a: %w: %w", errors.New("not found: cause"), ErrNotFound), "a: not found: cause"},
		{ErrNotFound, "not found"},
		{errors.New("plain: invalid argument"), "plain: invalid argument"},
	} {
		if got := Message(tc.err); got != tc.want {
			t.Errorf("Message(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}
