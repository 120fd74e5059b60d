package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"
)

// FileName is the registry's file under the master's work_dir.
const FileName = "registry.db"

var (
	bucketMeta       = []byte("meta")
	bucketAgents     = []byte("agents")
	bucketFrameworks = []byte("frameworks")
	keySchema        = []byte("schema")
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
		for _, b := range [][]byte{bucketMeta, bucketAgents, bucketFrameworks} {
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

// The records as stored: JSON with the Mesos messages as protobuf bytes, so
// new proto fields survive a round trip.
type agentRecord struct {
	Info         []byte    `json:"info"`
	Address      string    `json:"address"`
	Version      string    `json:"version,omitempty"`
	RegisteredAt time.Time `json:"registered_at"`
	Principal    string    `json:"principal,omitempty"`
	TokenHash    []byte    `json:"token_sha256,omitempty"`
}

type frameworkRecord struct {
	Info         []byte    `json:"info"`
	RegisteredAt time.Time `json:"registered_at"`
	Principal    string    `json:"principal,omitempty"`
	Completed    bool      `json:"completed,omitempty"`
	CompletedAt  time.Time `json:"completed_at,omitzero"`
}

// PutAgent adds or replaces an agent.
func (s *Store) PutAgent(a Agent) error {
	info, err := proto.Marshal(a.Info)
	if err != nil {
		return fmt.Errorf("encode agent %s: %w", a.ID, err)
	}
	v, err := json.Marshal(agentRecord{Info: info, Address: a.Address, Version: a.Version, RegisteredAt: a.RegisteredAt, Principal: a.Principal, TokenHash: a.TokenHash})
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
		return tx.Bucket(bucketAgents).ForEach(func(k, v []byte) error {
			var rec agentRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("agent %s: %w", k, err)
			}
			info := &mesos.AgentInfo{}
			if err := proto.Unmarshal(rec.Info, info); err != nil {
				return fmt.Errorf("agent %s: %w", k, err)
			}
			out = append(out, Agent{ID: string(k), Info: info, Address: rec.Address, Version: rec.Version, RegisteredAt: rec.RegisteredAt, Principal: rec.Principal, TokenHash: rec.TokenHash})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read agents: %w", err)
	}
	return out, nil
}

// PutFramework adds or replaces a framework.
func (s *Store) PutFramework(f Framework) error {
	info, err := proto.Marshal(f.Info)
	if err != nil {
		return fmt.Errorf("encode framework %s: %w", f.ID, err)
	}
	v, err := json.Marshal(frameworkRecord{Info: info, RegisteredAt: f.RegisteredAt, Principal: f.Principal, Completed: f.Completed, CompletedAt: f.CompletedAt})
	if err != nil {
		return err
	}
	return s.put(bucketFrameworks, f.ID, v)
}

// Frameworks returns every stored framework, ordered by id.
func (s *Store) Frameworks() ([]Framework, error) {
	var out []Framework
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketFrameworks).ForEach(func(k, v []byte) error {
			var rec frameworkRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("framework %s: %w", k, err)
			}
			info := &mesos.FrameworkInfo{}
			if err := proto.Unmarshal(rec.Info, info); err != nil {
				return fmt.Errorf("framework %s: %w", k, err)
			}
			out = append(out, Framework{ID: string(k), Info: info, RegisteredAt: rec.RegisteredAt, Principal: rec.Principal, Completed: rec.Completed, CompletedAt: rec.CompletedAt})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read frameworks: %w", err)
	}
	return out, nil
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
			var rec frameworkRecord
			if json.Unmarshal(v, &rec) == nil && rec.Completed {
				completed = append(completed, done{string(k), rec.CompletedAt})
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
