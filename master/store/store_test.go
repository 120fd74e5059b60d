package store

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

func TestAgentsAndFrameworksSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0).UTC()
	info := &mesos.AgentInfo{Hostname: proto.String("node1"), Port: proto.Int32(5051)}
	if err := s.PutAgent(Agent{ID: "m-S0", Info: info, Address: "10.0.0.1:5051", Version: "dev", RegisteredAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAgent(Agent{ID: "m-S1", Info: info, Address: "10.0.0.2:5051", RegisteredAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveAgent("m-S1"); err != nil {
		t.Fatal(err)
	}
	fw := &mesos.FrameworkInfo{User: proto.String("u"), Name: proto.String("n"), FailoverTimeout: proto.Float64(60)}
	if err := s.PutFramework(Framework{ID: "m-0000", Info: fw, RegisteredAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutFramework(Framework{ID: "m-0001", Info: fw, RegisteredAt: now, Completed: true, CompletedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	agents, err := s.Agents()
	if err != nil {
		t.Fatal(err)
	}
	if len(agents) != 1 || agents[0].ID != "m-S0" || agents[0].Address != "10.0.0.1:5051" ||
		!proto.Equal(agents[0].Info, info) || !agents[0].RegisteredAt.Equal(now) || agents[0].Version != "dev" {
		t.Fatalf("agents = %+v", agents)
	}
	fws, err := s.Frameworks()
	if err != nil {
		t.Fatal(err)
	}
	if len(fws) != 2 || fws[0].ID != "m-0000" || fws[0].Completed || !fws[1].Completed || !proto.Equal(fws[0].Info, fw) {
		t.Fatalf("frameworks = %+v", fws)
	}
}

func TestPruneCompletedFrameworks(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fw := &mesos.FrameworkInfo{User: proto.String("u"), Name: proto.String("n")}
	base := time.Unix(1_700_000_000, 0)
	for i := range 5 {
		if err := s.PutFramework(Framework{ID: fmt.Sprint("done-", i), Info: fw, Completed: true, CompletedAt: base.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutFramework(Framework{ID: "live", Info: fw}); err != nil {
		t.Fatal(err)
	}
	if err := s.PruneCompletedFrameworks(2); err != nil {
		t.Fatal(err)
	}
	fws, _ := s.Frameworks()
	var ids []string
	for _, f := range fws {
		ids = append(ids, f.ID)
	}
	if fmt.Sprint(ids) != "[done-3 done-4 live]" {
		t.Fatalf("kept %v", ids)
	}
}

func TestSecondOpenIsRefused(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	defer func(d time.Duration) { lockTimeout = d }(lockTimeout)
	lockTimeout = 100 * time.Millisecond
	if _, err := Open(dir); !errors.Is(err, errdefs.ErrUnavailable) {
		t.Fatalf("second Open: %v, want ErrUnavailable", err)
	}
}

// TestSettingsAndReservationsSurviveReopen: settings (weights, quota, the
// maintenance schedule) and an agent's dynamic reservations are kept; an
// empty setting removes it; a key that could not be a file or znode name
// is refused.
func TestSettingsAndReservationsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	reserved := &mesos.Resource{Name: proto.String("cpus"), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(1)},
		Reservations: []*mesos.Resource_ReservationInfo{{Type: mesos.Resource_ReservationInfo_DYNAMIC.Enum(), Role: proto.String("web"), Principal: proto.String("ops")}}}
	ops := []Op{
		PutSetting{Key: "weights", Value: []byte(`{"web":2}`)},
		PutSetting{Key: "quota", Value: []byte(`{}`)},
		PutAgent{Agent: Agent{ID: "m-S0", Info: &mesos.AgentInfo{Hostname: proto.String("node1")}, Reserved: []*mesos.Resource{reserved}}},
	}
	if err := s.Apply(t.Context(), ops); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(t.Context(), []Op{PutSetting{Key: "quota"}}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "../x", "Weights", "a/b"} {
		if err := s.Apply(t.Context(), []Op{PutSetting{Key: bad, Value: []byte("x")}}); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("key %q: %v", bad, err)
		}
	}
	s.Close()
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	snap, err := s.Load(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Settings) != 1 || string(snap.Settings["weights"]) != `{"web":2}` {
		t.Fatalf("settings %q", snap.Settings)
	}
	if len(snap.Agents) != 1 || len(snap.Agents[0].Reserved) != 1 || !proto.Equal(snap.Agents[0].Reserved[0], reserved) {
		t.Fatalf("agent reservations %v", snap.Agents)
	}
}
