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
