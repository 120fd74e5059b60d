package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// Op is one change to a registry. A master queues ops in the order it
// changes its books and a registry applies them in that order, so a later
// change never loses to an earlier one (an agent removed after its
// resources changed stays removed).
type Op interface{ isOp() }

// PutAgent adds or replaces an agent (admitted, or unreachable when
// Agent.UnreachableAt is set).
type PutAgent struct{ Agent Agent }

// RemoveAgent forgets an agent.
type RemoveAgent struct{ ID string }

// PutFramework adds or replaces a framework.
type PutFramework struct{ Framework Framework }

// RemoveFramework forgets a framework and its completed tasks.
type RemoveFramework struct{ ID string }

// PutTask records a completed task of a framework.
type PutTask struct {
	FrameworkID string
	Task        CompletedTask
}

// RemoveTask forgets a completed task (evicted past
// --max_completed_tasks_per_framework, or back from an unreachable agent).
type RemoveTask struct{ FrameworkID, TaskID string }

// RemoveTasks forgets every completed task of a framework (a completed
// framework that left --max_completed_frameworks).
type RemoveTasks struct{ FrameworkID string }

// PutSetting records one of the cluster's settings the operator API
// changes (role weights, quota, the maintenance schedule) under its key;
// an empty Value removes it.
type PutSetting struct {
	Key   string
	Value []byte
}

func (PutSetting) isOp()      {}
func (PutAgent) isOp()        {}
func (RemoveAgent) isOp()     {}
func (PutFramework) isOp()    {}
func (RemoveFramework) isOp() {}
func (PutTask) isOp()         {}
func (RemoveTask) isOp()      {}
func (RemoveTasks) isOp()     {}

// CompletedTask is a task the master moved to its completed tasks, as the
// state endpoints show it.
type CompletedTask struct {
	Task        *mesos.Task
	CompletedAt time.Time
}

// Snapshot is everything a registry holds.
type Snapshot struct {
	// Agents, ordered by id.
	Agents []Agent
	// Frameworks, ordered by id.
	Frameworks []Framework
	// Tasks are the completed tasks by framework id, oldest first.
	Tasks map[string][]CompletedTask
	// Settings by key (PutSetting).
	Settings map[string][]byte
}

// ValidSettingKey says whether key may name a setting: a short lowercase
// word, so it is a safe file, bucket key and znode name.
func ValidSettingKey(key string) bool {
	if key == "" || len(key) > 64 {
		return false
	}
	for _, c := range key {
		if !(c >= 'a' && c <= 'z' || c == '_' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// The records as stored: JSON with the Mesos messages as protobuf bytes, so
// new proto fields survive a round trip. The ZooKeeper registry stores the
// same records.
type agentRecord struct {
	ID            string    `json:"id,omitempty"`
	Info          []byte    `json:"info"`
	Address       string    `json:"address"`
	Version       string    `json:"version,omitempty"`
	RegisteredAt  time.Time `json:"registered_at"`
	Principal     string    `json:"principal,omitempty"`
	TokenHash     []byte    `json:"token_sha256,omitempty"`
	UnreachableAt time.Time `json:"unreachable_at,omitzero"`
	Reserved      [][]byte  `json:"reserved,omitempty"`
}

type frameworkRecord struct {
	ID           string    `json:"id,omitempty"`
	Info         []byte    `json:"info"`
	RegisteredAt time.Time `json:"registered_at"`
	Principal    string    `json:"principal,omitempty"`
	Completed    bool      `json:"completed,omitempty"`
	CompletedAt  time.Time `json:"completed_at,omitzero"`
}

type taskRecord struct {
	Task        []byte    `json:"task"`
	CompletedAt time.Time `json:"completed_at"`
}

// EncodeAgent is an agent's stored form.
func EncodeAgent(a Agent) ([]byte, error) {
	info, err := proto.Marshal(a.Info)
	if err != nil {
		return nil, fmt.Errorf("encode agent %s: %w", a.ID, err)
	}
	rec := agentRecord{ID: a.ID, Info: info, Address: a.Address, Version: a.Version, RegisteredAt: a.RegisteredAt,
		Principal: a.Principal, TokenHash: a.TokenHash, UnreachableAt: a.UnreachableAt}
	for _, r := range a.Reserved {
		b, err := proto.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("encode agent %s: %w", a.ID, err)
		}
		rec.Reserved = append(rec.Reserved, b)
	}
	return json.Marshal(rec)
}

// DecodeAgent reads an agent's stored form; id names it when the record
// does not (records written before they carried their id).
func DecodeAgent(id string, v []byte) (Agent, error) {
	var rec agentRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return Agent{}, fmt.Errorf("agent %s: %w", id, err)
	}
	info := &mesos.AgentInfo{}
	if err := proto.Unmarshal(rec.Info, info); err != nil {
		return Agent{}, fmt.Errorf("agent %s: %w", id, err)
	}
	if rec.ID != "" {
		id = rec.ID
	}
	a := Agent{ID: id, Info: info, Address: rec.Address, Version: rec.Version, RegisteredAt: rec.RegisteredAt,
		Principal: rec.Principal, TokenHash: rec.TokenHash, UnreachableAt: rec.UnreachableAt}
	for _, b := range rec.Reserved {
		r := &mesos.Resource{}
		if err := proto.Unmarshal(b, r); err != nil {
			return Agent{}, fmt.Errorf("agent %s: reservation: %w", id, err)
		}
		a.Reserved = append(a.Reserved, r)
	}
	return a, nil
}

// EncodeFramework is a framework's stored form.
func EncodeFramework(f Framework) ([]byte, error) {
	info, err := proto.Marshal(f.Info)
	if err != nil {
		return nil, fmt.Errorf("encode framework %s: %w", f.ID, err)
	}
	return json.Marshal(frameworkRecord{ID: f.ID, Info: info, RegisteredAt: f.RegisteredAt, Principal: f.Principal, Completed: f.Completed, CompletedAt: f.CompletedAt})
}

// DecodeFramework reads a framework's stored form.
func DecodeFramework(id string, v []byte) (Framework, error) {
	var rec frameworkRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return Framework{}, fmt.Errorf("framework %s: %w", id, err)
	}
	info := &mesos.FrameworkInfo{}
	if err := proto.Unmarshal(rec.Info, info); err != nil {
		return Framework{}, fmt.Errorf("framework %s: %w", id, err)
	}
	if rec.ID != "" {
		id = rec.ID
	}
	return Framework{ID: id, Info: info, RegisteredAt: rec.RegisteredAt, Principal: rec.Principal, Completed: rec.Completed, CompletedAt: rec.CompletedAt}, nil
}

// EncodeTask is a completed task's stored form.
func EncodeTask(t CompletedTask) ([]byte, error) {
	b, err := proto.Marshal(t.Task)
	if err != nil {
		return nil, fmt.Errorf("encode task %s: %w", t.Task.GetTaskId().GetValue(), err)
	}
	return json.Marshal(taskRecord{Task: b, CompletedAt: t.CompletedAt})
}

// DecodeTask reads a completed task's stored form.
func DecodeTask(v []byte) (CompletedTask, error) {
	var rec taskRecord
	if err := json.Unmarshal(v, &rec); err != nil {
		return CompletedTask{}, fmt.Errorf("completed task: %w", err)
	}
	t := &mesos.Task{}
	if err := proto.Unmarshal(rec.Task, t); err != nil {
		return CompletedTask{}, fmt.Errorf("completed task: %w", err)
	}
	return CompletedTask{Task: t, CompletedAt: rec.CompletedAt}, nil
}

// SortTasks orders completed tasks oldest first (ties by task id, so the
// order is the same on every read).
func SortTasks(ts []CompletedTask) {
	slices.SortStableFunc(ts, func(a, b CompletedTask) int {
		if c := a.CompletedAt.Compare(b.CompletedAt); c != 0 {
			return c
		}
		return compareStrings(a.Task.GetTaskId().GetValue(), b.Task.GetTaskId().GetValue())
	})
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
