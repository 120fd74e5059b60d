package fetcher

import (
	"fmt"
	"math"

	"github.com/mesolite/mesolite/errdefs"
)

// budget is what one request may still write into its sandbox: downloads
// that stay there and the bytes archives extract to. It is the task's disk
// (Request.MaxBytes) or --fetcher_max_size, whichever is smaller, so a
// hostile origin or archive fills at most what the task could have filled
// itself.
type budget struct {
	limit int64 // <= 0: unlimited
	used  int64
	// by names what set limit, and raise how to lift it, for errors that
	// reach the task's status.
	by, raise string
}

func newBudget(cfg Config, req Request) *budget {
	flagCap := cfg.MaxSize
	if flagCap == 0 {
		flagCap = DefaultMaxSize
	}
	b := &budget{}
	if flagCap > 0 {
		b.limit, b.by, b.raise = flagCap, "--fetcher_max_size", "raise the agent's --fetcher_max_size"
	}
	if req.MaxBytes > 0 && (b.limit <= 0 || req.MaxBytes < b.limit) {
		b.limit, b.by, b.raise = req.MaxBytes, "the task's disk resource", "give the task more disk"
	}
	return b
}

// remaining is what may still be written; MaxInt64 when unlimited.
func (b *budget) remaining() int64 {
	if b == nil || b.limit <= 0 {
		return math.MaxInt64
	}
	return max(b.limit-b.used, 0)
}

func (b *budget) charge(n int64) {
	if b != nil {
		b.used += n
	}
}

// exceeded is the error for what would pass the limit.
func (b *budget) exceeded(what string) error {
	return &limitError{what: what, limit: b.limit, by: b.by, raise: b.raise}
}

// limitError says which limit refused a fetch and how to raise it; it is
// ErrInvalid, since trying again cannot help.
type limitError struct {
	what  string
	limit int64
	by    string
	raise string
}

func (e *limitError) Error() string {
	return fmt.Sprintf("%s: the fetch may write at most %d bytes into the sandbox, the limit set by %s (%s)", e.what, e.limit, e.by, e.raise)
}

func (e *limitError) Unwrap() error { return errdefs.ErrInvalid }
