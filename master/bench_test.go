package master

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
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

// stateBenchMaster is a master with 1,000 agents, 100 frameworks and
// 50,000 running tasks, the tasks adopted from the agents' REGISTER as
// after a failover (the real path, without launching each).
func stateBenchMaster(b *testing.B) *Master {
	b.Helper()
	const agents, frameworks, tasksPerAgent = 1_000, 100, 50
	cfg := DefaultConfig()
	cfg.IP, cfg.Hostname = "127.0.0.1", "127.0.0.1"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	m.becomeLeader()
	fwIDs := make([]string, frameworks)
	for i := range frameworks {
		fwIDs[i] = fmt.Sprintf("fw-%03d", i)
		info := frameworkInfo(fmt.Sprint("fw", i))
		info.Id = &mesos.FrameworkID{Value: proto.String(fwIDs[i])}
		if err := m.installFramework(info, "", nil, newStream(fmt.Sprint("s", i), codec.JSON)); err != nil {
			b.Fatal(err)
		}
	}
	for i := range agents {
		id := fmt.Sprintf("agent-%04d", i)
		call := agentRegister(fmt.Sprintf("node%04d", i), 5051,
			scalarRes("cpus", 64), scalarRes("mem", 262144), scalarRes("disk", 1e6))
		call.AgentId = &mesos.AgentID{Value: proto.String(id)}
		for j := range tasksPerAgent {
			t := runningTask(fmt.Sprintf("task-%04d-%02d", i, j), fwIDs[(i*tasksPerAgent+j)%frameworks], id)
			t.Resources = []*mesos.Resource{scalarRes("cpus", 1), scalarRes("mem", 1024)}
			t.Labels = &mesos.Labels{Labels: []*mesos.Label{{Key: proto.String("app"), Value: proto.String("web")}}}
			t.Statuses = []*mesos.TaskStatus{{TaskId: t.TaskId, State: mesos.TaskState_TASK_RUNNING.Enum(), Timestamp: proto.Float64(1.7e9),
				ContainerStatus: &mesos.ContainerStatus{ContainerId: &mesos.ContainerID{Value: proto.String("c-" + t.GetTaskId().GetValue())}}}}
			call.Register.Tasks = append(call.Register.Tasks, t)
		}
		reg, err := validateRegister(call)
		if err != nil {
			b.Fatal(err)
		}
		reg.id = id
		if err := m.admitAgent(reg, newStream(id, codec.Protobuf), nil); err != nil {
			b.Fatal(err)
		}
	}
	n := 0
	for _, fw := range m.frameworks {
		n += len(fw.tasks)
	}
	if n != agents*tasksPerAgent {
		b.Fatalf("%d tasks adopted, want %d", n, agents*tasksPerAgent)
	}
	return m
}

// BenchmarkGetState is GET_STATE and /master/state at 1,000 agents, 100
// frameworks and 50,000 tasks: building the answer under the lock, then
// encoding it outside (JSON and protobuf), with the bytes sent. "cold" is
// an answer after every task changed (no task encoding cached), "warm" one
// after none did; a real cluster is in between, nearer warm: between two
// polls few of 50,000 tasks change.
func BenchmarkGetState(b *testing.B) {
	m := stateBenchMaster(b)
	build := func() (*masterpb.Response, taskEncodings) {
		m.mu.Lock()
		defer m.mu.Unlock()
		encs := taskEncodings{}
		return &masterpb.Response{Type: masterpb.Response_GET_STATE.Enum(), GetState: m.stateProtoLocked(false, encs)}, encs
	}
	forget := func() {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, fw := range m.frameworks {
			for _, t := range fw.tasks {
				t.enc = nil
			}
		}
	}
	// The master's live heap with these books, before any answer cached
	// an encoding and after all did: what the master's RSS grows by.
	heap := func(name string) {
		b.Run(name, func(b *testing.B) {
			var ms runtime.MemStats
			for b.Loop() {
				runtime.GC()
			}
			runtime.ReadMemStats(&ms)
			b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MB")
		})
	}
	heap("master-heap")
	b.Run("operator-build", func(b *testing.B) {
		for b.Loop() {
			build()
		}
	})
	for _, c := range []codec.Codec{codec.JSON, codec.Protobuf} {
		for _, cold := range []bool{true, false} {
			name := "operator-" + c.MediaType() + "-warm"
			if cold {
				name = "operator-" + c.MediaType() + "-cold"
			}
			b.Run(name, func(b *testing.B) {
				var size int
				resp, encs := build()
				if _, err := encs.encodeResponse(c, resp); err != nil {
					b.Fatal(err)
				}
				for b.Loop() {
					if cold {
						b.StopTimer()
						forget()
						b.StartTimer()
					}
					resp, encs := build()
					data, err := encs.encodeResponse(c, resp)
					if err != nil {
						b.Fatal(err)
					}
					// Written as the handler does, to a sink.
					n, _ := data.WriteTo(io.Discard)
					size = int(n)
				}
				b.ReportMetric(float64(size), "bytes")
			})
		}
	}
	b.Run("master-state-build-warm", func(b *testing.B) {
		// The part of /master/state done under the lock.
		rec := httptest.NewRecorder()
		m.handleState(rec, httptest.NewRequest(http.MethodGet, "/master/state", nil))
		for b.Loop() {
			m.mu.Lock()
			m.stateLocked()
			m.mu.Unlock()
		}
	})
	for _, cold := range []bool{true, false} {
		name := "master-state-json-warm"
		if cold {
			name = "master-state-json-cold"
		}
		b.Run(name, func(b *testing.B) {
			var size int
			for b.Loop() {
				if cold {
					b.StopTimer()
					forget()
					b.StartTimer()
				}
				rec := httptest.NewRecorder()
				m.handleState(rec, httptest.NewRequest(http.MethodGet, "/master/state", nil))
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes")
		})
	}
	heap("master-heap-cached")
}

// BenchmarkOperatorFanOut is the operator event streams while 1,000 tasks
// launch: TASK_ADDED and TASK_UPDATED (RUNNING) for each, made under the
// master's lock as the launch and update paths make them, to 0, 1 and 100
// subscribers reading over loopback HTTP (half JSON, half protobuf). One
// op is a burst of 1,000 launches until every subscriber has read every
// event; "lock-ns/launch" is the time the master's lock was held per launch
// for the events, which is what subscribers could cost every other call.
func BenchmarkOperatorFanOut(b *testing.B) {
	for _, subscribers := range []int{0, 1, 100} {
		b.Run(fmt.Sprintf("subscribers-%d", subscribers), func(b *testing.B) {
			const launches = 1000
			cfg := DefaultConfig()
			cfg.IP, cfg.Hostname = "127.0.0.1", "127.0.0.1"
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			cfg.HeartbeatInterval = time.Hour
			m, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			m.becomeLeader()
			info := frameworkInfo("fanout")
			info.Id = &mesos.FrameworkID{Value: proto.String("fw-fanout")}
			if err := m.installFramework(info, "", nil, newStream("fw", codec.JSON)); err != nil {
				b.Fatal(err)
			}
			reg, err := validateRegister(agentRegister("node", 5051, scalarRes("cpus", 64), scalarRes("mem", 262144)))
			if err != nil {
				b.Fatal(err)
			}
			reg.id = "agent-fanout"
			if err := m.admitAgent(reg, newStream("agent", codec.Protobuf), nil); err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewServer(m.Handler())
			defer srv.Close()

			// Each subscriber counts the records it reads and says when it
			// has read want of them.
			var want atomic.Int64
			read := make(chan struct{}, subscribers)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			for i := range subscribers {
				c := []codec.Codec{codec.JSON, codec.Protobuf}[i%2]
				body, _ := c.Marshal(&masterpb.Call{Type: masterpb.Call_SUBSCRIBE.Enum()})
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/api/v1", bytes.NewReader(body))
				req.Header.Set("Content-Type", c.MediaType())
				req.Header.Set("Accept", c.MediaType())
				resp, err := srv.Client().Do(req)
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatalf("SUBSCRIBE: %v %v", err, resp)
				}
				rr := recordio.NewReader(resp.Body, 0)
				if _, err := rr.ReadRecord(); err != nil { // SUBSCRIBED
					b.Fatal(err)
				}
				go func() {
					defer resp.Body.Close()
					var n int64
					for {
						if _, err := rr.ReadRecord(); err != nil {
							return
						}
						if n++; n == want.Load() {
							read <- struct{}{}
						}
					}
				}()
			}
			var held time.Duration
			seq := 0
			b.ResetTimer()
			for b.Loop() {
				// The framework and the agent were in SUBSCRIBED.
				want.Add(2 * launches)
				for range launches {
					seq++
					id := fmt.Sprintf("task-%07d", seq)
					rec := runningTask(id, "fw-fanout", "agent-fanout")
					rec.State = mesos.TaskState_TASK_STAGING.Enum()
					st := &mesos.TaskStatus{TaskId: rec.TaskId, State: mesos.TaskState_TASK_RUNNING.Enum(), Timestamp: proto.Float64(1.7e9),
						ContainerStatus: &mesos.ContainerStatus{ContainerId: &mesos.ContainerID{Value: proto.String("c-" + id)}}}
					start := time.Now()
					m.mu.Lock()
					fw := m.frameworks["fw-fanout"]
					t := &task{t: rec, fw: fw, agentID: "agent-fanout"}
					m.opTaskAddedLocked(t)
					m.opTaskUpdatedLocked(t, st, mesos.TaskState_TASK_RUNNING)
					m.mu.Unlock()
					held += time.Since(start)
				}
				for range subscribers {
					select {
					case <-read:
					case <-time.After(time.Minute):
						b.Fatalf("a subscriber did not read %d events in a minute", want.Load())
					}
				}
			}
			b.ReportMetric(float64(held.Nanoseconds())/float64(seq), "lock-ns/launch")
		})
	}
}
