package errdefs

import (
	"errors"
	"fmt"
	"net/http"
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
