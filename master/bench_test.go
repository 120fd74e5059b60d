package master

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/httpauth"
	"google.golang.org/protobuf/proto"
)

// BenchmarkMasterAllocationCycle is one allocation cycle of the whole
// master with 10,000 agents and 100 frameworks: the allocator's cycle plus
// making the 10,000 offers and encoding them onto the frameworks' streams
// (half JSON, half protobuf). Offers are withdrawn between iterations, off
// the clock.
func BenchmarkMasterAllocationCycle(b *testing.B) {
	const agents, frameworks = 10_000, 100
	cfg := DefaultConfig()
	cfg.IP, cfg.Hostname = "127.0.0.1", "127.0.0.1"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	m.becomeLeader()
	for i := range agents {
		reg, err := validateRegister(agentRegister(fmt.Sprintf("node%05d", i), 5051))
		if err != nil {
			b.Fatal(err)
		}
		reg.id = fmt.Sprintf("agent-%05d", i)
		if err := m.admitAgent(reg, newStream(reg.id, codec.Protobuf), nil); err != nil {
			b.Fatal(err)
		}
	}
	var streams []*stream
	for i := range frameworks {
		info := frameworkInfo(fmt.Sprint("fw", i))
		info.Id = &mesos.FrameworkID{Value: proto.String(fmt.Sprintf("fw-%03d", i))}
		c := codec.JSON
		if i%2 == 1 {
			c = codec.Protobuf
		}
		s := newStream(fmt.Sprint("s", i), c)
		streams = append(streams, s)
		if err := m.installFramework(info, "", nil, s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		m.mu.Lock()
		for _, o := range m.offers {
			m.removeOffer(o, false, 0)
		}
		m.mu.Unlock()
		for _, s := range streams {
			s.take()
		}
		b.StartTimer()
		m.allocate()
		if n := len(m.offers); n != agents {
			b.Fatalf("%d offers, want %d", n, agents)
		}
	}
}

// BenchmarkSchedulerCallAuth is what --authenticate_frameworks adds to a
// scheduler call: the same REVIVE through the master's whole handler, with
// authentication off and with HTTP Basic checked against 100 credentials
// (each compared, in constant time), plus the check alone.
func BenchmarkSchedulerCallAuth(b *testing.B) {
	creds := make([]httpauth.Credential, 100)
	for i := range creds {
		creds[i] = httpauth.Credential{Principal: fmt.Sprint("principal-", i), Secret: fmt.Sprint("secret-", i)}
	}
	creds[42] = httpauth.Credential{Principal: "victim", Secret: "victim-secret"}
	body, err := codec.Protobuf.Marshal(&scheduler.Call{Type: scheduler.Call_REVIVE.Enum(), FrameworkId: &mesos.FrameworkID{Value: proto.String("m-0000")}})
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		auth bool
	}{{"off", false}, {"basic", true}} {
		b.Run("call/"+tc.name, func(b *testing.B) {
			m := fuzzMaster(b, func(cfg *Config) { cfg.AuthenticateFrameworks, cfg.Credentials = tc.auth, creds })
			h := m.Handler()
			b.ReportAllocs()
			for b.Loop() {
				req := httptest.NewRequest(http.MethodPost, "/api/v1/scheduler", bytes.NewReader(body))
				req.Header.Set("Content-Type", codec.MediaTypeProtobuf)
				req.Header.Set("Mesos-Stream-Id", "fw-stream")
				req.SetBasicAuth("victim", "victim-secret")
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusAccepted {
					b.Fatalf("REVIVE: %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
	b.Run("check", func(b *testing.B) {
		a, err := httpauth.New(httpauth.Options{Enabled: true, Realm: SchedulerRealm, Credentials: creds})
		if err != nil {
			b.Fatal(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/api/v1/scheduler", nil)
		req.SetBasicAuth("victim", "victim-secret")
		b.ReportAllocs()
		for b.Loop() {
			if p, err := a.Authenticate(req); err != nil || p != "victim" {
				b.Fatal(p, err)
			}
		}
	})
}
