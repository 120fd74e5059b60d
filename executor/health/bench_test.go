package health

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/proto"
)

// benchTasks is how many tasks' checks one cycle runs: the 500
// tasks with a check each, every interval.
const benchTasks = 500

// benchServerEnv makes the test binary the tasks' side: an HTTP and a TCP
// server in a process of their own, so their CPU is not the checks'.
const benchServerEnv = "HEALTH_BENCH_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(benchServerEnv) == "1" {
		serveBench()
		return
	}
	os.Exit(m.Run())
}

// serveBench answers HTTP 200 and accepts TCP until stdin closes; it
// prints its two ports.
func serveBench() {
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(1)
	}
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(1)
	}
	go func() {
		_ = http.Serve(hl, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }))
	}()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	fmt.Printf("%d %d\n", hl.Addr().(*net.TCPAddr).Port, tl.Addr().(*net.TCPAddr).Port)
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
}

// cpuTime is this process's and its reaped children's user+system time.
func cpuTime() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	tv := func(t syscall.Timeval) time.Duration { return time.Duration(t.Nano()) }
	return tv(self.Utime) + tv(self.Stime) + tv(kids.Utime) + tv(kids.Stime)
}

// BenchmarkCheckCycle500 is the cost of one check cycle of 500 tasks: each
// op runs the 500 tasks' probes at once, as their 500 executors do every
// interval_seconds, and waits for them all. cpu-ms/cycle is the CPU the
// checking side spent (probes, and for COMMAND the checks' own processes);
// the tasks' servers run in another process and are not counted. At a
// 1 s interval, cpu-ms/cycle / 10 is the percentage of one core.
func BenchmarkCheckCycle500(b *testing.B) {
	srv := exec.Command(os.Args[0], "-test.run=^$")
	srv.Env = append(os.Environ(), benchServerEnv+"=1")
	in, err := srv.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := srv.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { in.Close(); _ = srv.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		b.Fatal(err)
	}
	ports := strings.Fields(line)
	httpPort, _ := strconv.Atoi(ports[0])
	tcpPort, _ := strconv.Atoi(ports[1])
	dir := b.TempDir()
	target := Target{Host: "127.0.0.1", Command: ExecCommand(dir, []string{"PATH=/usr/bin:/bin"})}
	cases := []struct {
		name string
		p    probe
	}{
		{"COMMAND", commandProbe(target.Command, &mesos.CommandInfo{Value: proto.String("true")})},
		{"HTTP", httpProbe("http", target.Host, uint32(httpPort), "/health")},
		{"TCP", tcpProbe(target.Host, uint32(tcpPort))},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				var wg sync.WaitGroup
				var mu sync.Mutex
				var failed error
				for range benchTasks {
					wg.Go(func() {
						if err := attempt(ctx, c.p, 20*time.Second); err != nil {
							mu.Lock()
							failed = err
							mu.Unlock()
						}
					})
				}
				wg.Wait()
				if failed != nil {
					b.Fatal(failed)
				}
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/cycle")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*benchTasks), "cpu-us/check")
		})
	}
}
