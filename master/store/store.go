package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	bolt "go.etcd.io/bbolt"
)

// FileName is the registry's file under the master's work_dir.
const FileName = "registry.db"

var (
	bucketMeta       = []byte("meta")
	bucketAgents     = []byte("agents")
	bucketFrameworks = []byte("frameworks")
	// bucketTasks holds one bucket per framework id of its completed
	// tasks, keyed by task id.
	bucketTasks = []byte("tasks")
	// bucketSettings holds the operator's cluster settings by key.
	bucketSettings = []byte("settings")
	keySchema      = []byte("schema")
)

// schemaVersion is bumped when records change incompatibly; Open refuses a
// newer file rather than misreading it.
const schemaVersion = "1"

// Agent is an admitted agent.
type Agent struct {
	ID   string
	Info *mesos.AgentInfo
	// Address is the agent's HTTP endpoint, ip:port.
	Address      string
	Version      string
	RegisteredAt time.Time
	// Principal is the principal the agent authenticated as when it was
	// admitted ("" without --authenticate_agents), and TokenHash the
	// SHA-256 of the registration token it was given: together they say
	// who may register with this id again.
	Principal string
	TokenHash []byte
	// UnreachableAt is when the agent was removed for not coming back in
	// time (zero for an admitted agent). The record stays, with its token,
	// so that the agent is recognised when it returns and its tasks are
	// handled as Mesos handles tasks of an unreachable agent.
	UnreachableAt time.Time
	// Reserved are the dynamic reservations the operator made on the
	// agent (RESERVE_RESOURCES): applied to its resources each time it
	// registers, since the agent itself knows only its static ones.
	Reserved []*mesos.Resource
}

// Framework is a framework the master gave an id to.
type Framework struct {
	ID           string
	Info         *mesos.FrameworkInfo
	RegisteredAt time.Time
	// Principal owns the framework id: only a SUBSCRIBE under it may take
	// the framework over, after a master restart too.
	Principal string
	// Completed frameworks were torn down; their id may not subscribe again.
	Completed   bool
	CompletedAt time.Time
}

// Store is the registry. Its methods are safe for concurrent use; writes
// from concurrent callers are committed together (bbolt's Batch), so many
// agents registering at once cost one fsync, not one each.
type Store struct {
	db *bolt.DB
}

// lockTimeout bounds the wait for another process's lock on the file.
var lockTimeout = 3 * time.Second

// Open opens or creates the registry in dir. It fails within a few seconds,
// wrapping errdefs.ErrUnavailable, when another master holds the file.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("registry directory: %w", err)
	}
	path := filepath.Join(dir, FileName)
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: lockTimeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("registry %s is locked by another process (is another master using this work_dir?): %w", path, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("open registry %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketAgents, bucketFrameworks, bucketTasks, bucketSettings} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		switch v := meta.Get(keySchema); {
		case v == nil:
			return meta.Put(keySchema, []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("registry schema %q, this master reads %q: %w", v, schemaVersion, errdefs.ErrInvalid)
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialise registry %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the file.
func (s *Store) Close() error { return s.db.Close() }

// PutAgent adds or replaces an agent.
func (s *Store) PutAgent(a Agent) error {
	v, err := EncodeAgent(a)
	if err != nil {
		return err
	}
	return s.put(bucketAgents, a.ID, v)
}

// RemoveAgent forgets an agent.
func (s *Store) RemoveAgent(id string) error { return s.delete(bucketAgents, id) }

// Agents returns every stored agent, ordered by id.
func (s *Store) Agents() ([]Agent, error) {
	var out []Agent
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = readAgents(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read agents: %w", err)
	}
	return out, nil
}

func readAgents(tx *bolt.Tx) ([]Agent, error) {
	var out []Agent
	err := tx.Bucket(bucketAgents).ForEach(func(k, v []byte) error {
		a, err := DecodeAgent(string(k), v)
		if err != nil {
			return err
		}
		out = append(out, a)
		return nil
	})
	return out, err
}

// PutFramework adds or replaces a framework.
func (s *Store) PutFramework(f Framework) error {
	v, err := EncodeFramework(f)
	if err != nil {
		return err
	}
	return s.put(bucketFrameworks, f.ID, v)
}

// Frameworks returns every stored framework, ordered by id.
func (s *Store) Frameworks() ([]Framework, error) {
	var out []Framework
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		out, err = readFrameworks(tx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read frameworks: %w", err)
	}
	return out, nil
}

func readFrameworks(tx *bolt.Tx) ([]Framework, error) {
	var out []Framework
	err := tx.Bucket(bucketFrameworks).ForEach(func(k, v []byte) error {
		f, err := DecodeFramework(string(k), v)
		if err != nil {
			return err
		}
		out = append(out, f)
		return nil
	})
	return out, err
}

// PruneCompletedFrameworks keeps the newest keep completed frameworks and
// deletes the older ones, so the registry does not grow without bound.
func (s *Store) PruneCompletedFrameworks(keep int) error {
	return s.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketFrameworks)
		type done struct {
			id string
			at time.Time
		}
		var completed []done
		err := b.ForEach(func(k, v []byte) error {
			if f, err := DecodeFramework(string(k), v); err == nil && f.Completed {
				completed = append(completed, done{string(k), f.CompletedAt})
			}
			return nil
		})
		if err != nil || len(completed) <= keep {
			return err
		}
		slices.SortFunc(completed, func(a, b done) int { return b.at.Compare(a.at) })
		for _, d := range completed[max(keep, 0):] {
			if err := b.Delete([]byte(d.id)); err != nil {
				return err
			}
			if err := deleteTasks(tx, d.id); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *Store) put(bucket []byte, key string, v []byte) error {
	if key == "" {
		return fmt.Errorf("empty key: %w", errdefs.ErrInvalid)
	}
	err := s.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(key), v) })
	if err != nil {
		return fmt.Errorf("write %s/%s: %w", bucket, key, err)
	}
	return nil
}

func (s *Store) delete(bucket []byte, key string) error {
	err := s.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete([]byte(key)) })
	if err != nil {
		return fmt.Errorf("delete %s/%s: %w", bucket, key, err)
	}
	return nil
}

// Kind names the registry in /master/state's flags.
func (s *Store) Kind() string { return "local" }

// Load reads the whole registry.
func (s *Store) Load(context.Context) (*Snapshot, error) {
	snap := &Snapshot{Tasks: make(map[string][]CompletedTask), Settings: map[string][]byte{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		if err := tx.Bucket(bucketSettings).ForEach(func(k, v []byte) error {
			snap.Settings[string(k)] = slices.Clone(v)
			return nil
		}); err != nil {
			return err
		}
		if snap.Agents, err = readAgents(tx); err != nil {
			return err
		}
		if snap.Frameworks, err = readFrameworks(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketTasks).ForEachBucket(func(fw []byte) error {
			return tx.Bucket(bucketTasks).Bucket(fw).ForEach(func(_, v []byte) error {
				t, err := DecodeTask(v)
				if err != nil {
					return fmt.Errorf("framework %s: %w", fw, err)
				}
				snap.Tasks[string(fw)] = append(snap.Tasks[string(fw)], t)
				return nil
			})
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read registry: %w", err)
	}
	for _, ts := range snap.Tasks {
		SortTasks(ts)
	}
	return snap, nil
}

// Apply applies ops in order, all or none, in one transaction (committed
// together with those of concurrent callers).
func (s *Store) Apply(_ context.Context, ops []Op) error {
	err := s.db.Batch(func(tx *bolt.Tx) error {
		for _, op := range ops {
			if err := applyOp(tx, op); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write registry: %w", err)
	}
	return nil
}

func applyOp(tx *bolt.Tx, op Op) error {
	switch op := op.(type) {
	case PutAgent:
		v, err := EncodeAgent(op.Agent)
		if err != nil {
			return err
		}
		return putKey(tx.Bucket(bucketAgents), op.Agent.ID, v)
	case RemoveAgent:
		return tx.Bucket(bucketAgents).Delete([]byte(op.ID))
	case PutFramework:
		v, err := EncodeFramework(op.Framework)
		if err != nil {
			return err
		}
		return putKey(tx.Bucket(bucketFrameworks), op.Framework.ID, v)
	case RemoveFramework:
		if err := tx.Bucket(bucketFrameworks).Delete([]byte(op.ID)); err != nil {
			return err
		}
		return deleteTasks(tx, op.ID)
	case PutTask:
		v, err := EncodeTask(op.Task)
		if err != nil {
			return err
		}
		if op.FrameworkID == "" {
			return fmt.Errorf("completed task without a framework id: %w", errdefs.ErrInvalid)
		}
		b, err := tx.Bucket(bucketTasks).CreateBucketIfNotExists([]byte(op.FrameworkID))
		if err != nil {
			return err
		}
		return putKey(b, op.Task.Task.GetTaskId().GetValue(), v)
	case RemoveTask:
		if b := tx.Bucket(bucketTasks).Bucket([]byte(op.FrameworkID)); b != nil {
			return b.Delete([]byte(op.TaskID))
		}
		return nil
	case RemoveTasks:
		return deleteTasks(tx, op.FrameworkID)
	case PutSetting:
		if !ValidSettingKey(op.Key) {
			return fmt.Errorf("setting key %q: %w", op.Key, errdefs.ErrInvalid)
		}
		if len(op.Value) == 0 {
			return tx.Bucket(bucketSettings).Delete([]byte(op.Key))
		}
		return putKey(tx.Bucket(bucketSettings), op.Key, op.Value)
	default:
		return fmt.Errorf("unknown registry operation %T: %w", op, errdefs.ErrInvalid)
	}
}

func putKey(b *bolt.Bucket, key string, v []byte) error {
	if key == "" {
		return fmt.Errorf("empty key: %w", errdefs.ErrInvalid)
	}
	return b.Put([]byte(key), v)
}

func deleteTasks(tx *bolt.Tx, fwID string) error {
	b := tx.Bucket(bucketTasks)
	if b.Bucket([]byte(fwID)) == nil {
		return nil
	}
	return b.DeleteBucket([]byte(fwID))
}
