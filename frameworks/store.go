package frameworks

import (
	"context"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/mesolite/mesolite/errdefs"
)

// Limits every Store implementation enforces, so that what one accepts the
// others do too (ZooKeeper caps a znode at 1 MiB by default; bucket and key
// become znode names).
const (
	MaxValueBytes = 512 << 10
	MaxKeyBytes   = 512
	MaxBucketLen  = 64
	// MaxOpsPerApply bounds one atomic change (one ZooKeeper multi).
	MaxOpsPerApply = 1000
)

// Store keeps a framework's state across restarts: values under keys,
// grouped in buckets. It is safe for concurrent use. Errors wrap the
// errdefs classes: ErrNotFound for a missing key, ErrInvalid for a bucket,
// key or value over the limits, ErrUnavailable when the backing store
// cannot be reached or is held by another process.
type Store interface {
	// Get returns the value of key in bucket; a missing one is an
	// errdefs.ErrNotFound.
	Get(ctx context.Context, bucket, key string) ([]byte, error)
	// List returns every entry of bucket, ordered by key; an empty or
	// unknown bucket has none.
	List(ctx context.Context, bucket string) ([]Entry, error)
	// Apply makes every change of ops durable, all of them or none.
	// Deleting a missing key is no error.
	Apply(ctx context.Context, ops ...Op) error
	// Close releases the store; it may not be used after.
	Close() error
}

// Entry is one key and its value.
type Entry struct {
	Key   string
	Value []byte
}

// Op is one change: Put sets Key in Bucket to Value, Delete removes it.
type Op struct {
	Bucket, Key string
	Value       []byte
	Delete      bool
}

// Put is an Op setting key in bucket to value.
func Put(bucket, key string, value []byte) Op { return Op{Bucket: bucket, Key: key, Value: value} }

// Delete is an Op removing key from bucket.
func Delete(bucket, key string) Op { return Op{Bucket: bucket, Key: key, Delete: true} }

// validBucket: a short name of lowercase letters, digits, '-' and '_'.
func validBucket(b string) error {
	if b == "" || len(b) > MaxBucketLen {
		return fmt.Errorf("store bucket %q: empty or longer than %d: %w", b, MaxBucketLen, errdefs.ErrInvalid)
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("store bucket %q: %q is not a lowercase letter, digit, '-' or '_': %w", b, c, errdefs.ErrInvalid)
		}
	}
	return nil
}

// validKey: printable UTF-8 without NUL, within MaxKeyBytes. Keys are
// names, not paths; an implementation that maps them to paths (znodes)
// escapes them.
func validKey(k string) error {
	if k == "" || len(k) > MaxKeyBytes {
		return fmt.Errorf("store key %.40q: empty or longer than %d bytes: %w", k, MaxKeyBytes, errdefs.ErrInvalid)
	}
	if !utf8.ValidString(k) || strings.ContainsFunc(k, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("store key %.40q: not printable UTF-8: %w", k, errdefs.ErrInvalid)
	}
	return nil
}

// CheckOps validates ops against the Store limits; implementations call it
// first in Apply.
func CheckOps(ops []Op) error {
	if len(ops) > MaxOpsPerApply {
		return fmt.Errorf("%d changes in one Apply, at most %d: %w", len(ops), MaxOpsPerApply, errdefs.ErrInvalid)
	}
	for _, op := range ops {
		if err := validBucket(op.Bucket); err != nil {
			return err
		}
		if err := validKey(op.Key); err != nil {
			return err
		}
		if !op.Delete && len(op.Value) > MaxValueBytes {
			return fmt.Errorf("store value of %s/%.40s: %d bytes, at most %d: %w", op.Bucket, op.Key, len(op.Value), MaxValueBytes, errdefs.ErrInvalid)
		}
	}
	return nil
}
