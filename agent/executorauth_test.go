package agent

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/mesolite/mesolite/isolation"
)

// BenchmarkExecutorAuth is what authentication adds to each executor
// call: a token's signature check, and for an executor that sends none,
// the proof from /proc that the connection is its container's (paid once
// per connection).
func BenchmarkExecutorAuth(b *testing.B) {
	tok, err := loadExecutorTokens(filepath.Join(b.TempDir(), "key"))
	if err != nil {
		b.Fatal(err)
	}
	signed := tok.sign(tokenClaims{FrameworkID: "fw", ExecutorID: "ex", ContainerID: "c"})
	b.Run("token", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := tok.verify(signed); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("peer-proof", func(b *testing.B) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		defer l.Close()
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		s, err := l.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		peer, _ := isolation.AddrPortOf(s.RemoteAddr())
		local, _ := isolation.AddrPortOf(s.LocalAddr())
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := isolation.SocketOwnerIn(os.Getpid(), peer, local); err != nil {
				b.Fatal(err)
			}
		}
	})
}
