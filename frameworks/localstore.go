package frameworks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/mesolite/mesolite/errdefs"
	bolt "go.etcd.io/bbolt"
)

// LocalStoreFile is the local store's file under the framework's work_dir.
const LocalStoreFile = "state.db"

// localLockTimeout bounds the wait for another process's lock on the file.
const localLockTimeout = 3 * time.Second

// LocalStore is a Store in one bbolt file: every Apply is one transaction,
// committed with fsync, and concurrent Applys are committed together
// (group commit). Only
// one process may have the file open; a second Open fails rather than
// letting two frameworks with one id write over each other.
type LocalStore struct {
	db *bolt.DB

	// mu guards the group commit (Apply): the callers waiting for the
	// next commit, and whether one is in progress.
	mu         sync.Mutex
	pending    []*applyReq
	committing bool
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

// Apply implements Store, with group commit: a caller alone commits at
// once (one transaction, one fsync); callers that come while a commit is
// in progress wait and are committed together by one of them in the next
// transaction. A failing group is retried one caller at a time, so one
// caller's bad op does not fail the others. (bbolt's own Batch holds even
// a lone caller for its MaxBatchDelay, 10 ms, which capped a framework
// writing under its lock at about 80 changes a second.)
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
	req := &applyReq{ops: ops, done: make(chan struct{})}
	s.mu.Lock()
	s.pending = append(s.pending, req)
	if s.committing {
		s.mu.Unlock()
		<-req.done
		if !req.lead {
			return req.err
		}
		s.mu.Lock()
	}
	// This caller commits what is pending (itself among it), then hands
	// the next group to one of its callers.
	s.committing = true
	group := s.pending
	s.pending = nil
	s.mu.Unlock()
	s.commit(group, req)
	s.mu.Lock()
	if len(s.pending) > 0 {
		next := s.pending[0]
		next.lead = true
		close(next.done)
	} else {
		s.committing = false
	}
	s.mu.Unlock()
	return req.err
}

// applyReq is one caller of Apply waiting for its commit: done is closed
// when it is committed (err set), or when it is to commit the next group
// itself (lead set).
type applyReq struct {
	ops  []Op
	err  error
	lead bool
	done chan struct{}
}

// commit makes the group's changes durable in one transaction, or, if
// that fails, each caller's in its own; it sets each caller's err and
// wakes each but self, the caller committing.
func (s *LocalStore) commit(group []*applyReq, self *applyReq) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, req := range group {
			if err := applyOps(tx, req.ops); err != nil {
				return err
			}
		}
		return nil
	})
	for _, req := range group {
		req.err = err
		if err != nil && len(group) > 1 {
			req.err = s.db.Update(func(tx *bolt.Tx) error { return applyOps(tx, req.ops) })
		}
		if req.err != nil {
			req.err = fmt.Errorf("store apply: %w", req.err)
		}
		if req != self {
			close(req.done)
		}
	}
}

// applyOps makes ops in tx.
func applyOps(tx *bolt.Tx, ops []Op) error {
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
}
