package master

import (
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
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
		if err := m.admitAgent(reg, newStream(reg.id, codec.Protobuf)); err != nil {
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
