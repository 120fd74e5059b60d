package frameworks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mesolite/mesolite/errdefs"
	bolt "go.etcd.io/bbolt"
)

// LocalStoreFile is the local store's file under the framework's work_dir.
const LocalStoreFile = "state.db"

// localLockTimeout bounds the wait for another process's lock on the file.
const localLockTimeout = 3 * time.Second

// LocalStore is a Store in one bbolt file: every Apply is one transaction,
// committed with fsync, and concurrent Applys are committed together. Only
// one process may have the file open; a second Open fails rather than
// letting two frameworks with one id write over each other.
type LocalStore struct {
	db *bolt.DB
}

var _ Store = (*LocalStore)(nil)

// OpenLocalStore opens or creates the store in dir (LocalStoreFile). It
// fails within a few seconds, wrapping errdefs.ErrUnavailable, when
// another process holds it.
func OpenLocalStore(dir string) (*LocalStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store directory: %w", err)
	}
	path := filepath.Join(dir, LocalStoreFile)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: localLockTimeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("store %s is locked by another process (is another instance using this work_dir?): %w", path, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &LocalStore{db: db}, nil
}

// Close closes the file.
func (s *LocalStore) Close() error { return s.db.Close() }

// Get implements Store.
func (s *LocalStore) Get(_ context.Context, bucket, key string) ([]byte, error) {
	if err := CheckOps([]Op{Delete(bucket, key)}); err != nil {
		return nil, err
	}
	var out []byte
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		if v := b.Get([]byte(key)); v != nil {
			out = append([]byte{}, v...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store get %s/%s: %w", bucket, key, err)
	}
	if out == nil {
		return nil, fmt.Errorf("%s/%s: %w", bucket, key, errdefs.ErrNotFound)
	}
	return out, nil
}

// List implements Store.
func (s *LocalStore) List(_ context.Context, bucket string) ([]Entry, error) {
	if err := validBucket(bucket); err != nil {
		return nil, err
	}
	var out []Entry
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucket))
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			out = append(out, Entry{Key: string(k), Value: append([]byte{}, v...)})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store list %s: %w", bucket, err)
	}
	return out, nil
}

// Apply implements Store. bbolt's Batch commits concurrent callers in one
// transaction (one fsync); a failing batch is retried one caller at a time,
// so one caller's bad op does not fail the others.
func (s *LocalStore) Apply(ctx context.Context, ops ...Op) error {
	if err := CheckOps(ops); err != nil {
		return err
	}
	if len(ops) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Batch(func(tx *bolt.Tx) error {
		for _, op := range ops {
			if op.Delete {
				if b := tx.Bucket([]byte(op.Bucket)); b != nil {
					if err := b.Delete([]byte(op.Key)); err != nil {
						return err
					}
				}
				continue
			}
			b, err := tx.CreateBucketIfNotExists([]byte(op.Bucket))
			if err != nil {
				return err
			}
			if err := b.Put([]byte(op.Key), op.Value); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store apply: %w", err)
	}
	return nil
}
