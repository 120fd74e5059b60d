// Command artifacts compares the artifact server with nginx serving the
// same large file over loopback, downloaded by the same Go client at the
// same concurrency:
//
//	go run ./bench/artifacts                       # 1 GiB, concurrency 1 and 32
//	go run ./bench/artifacts -size 256MiB -duration 5s -rounds 5
//
// artifactsrv runs in a child process (this program re-executed) and nginx
// (Debian's, started with a temporary config: sendfile on, access log off,
// bound to 127.0.0.1) in its own, so neither shares the client's runtime.
// Servers alternate round by round to spread machine noise over both; the
// report gives the median MB/s per server and concurrency and the ratio.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mesolite/mesolite/artifactsrv"
)

func main() {
	serveDir := flag.String("serve-artifactsrv", "", "internal: serve this directory with artifactsrv")
	port := flag.Int("port", 0, "internal: port for -serve-artifactsrv")
	sizeFlag := flag.String("size", "1GiB", "size of the served file")
	duration := flag.Duration("duration", 8*time.Second, "measuring time per round")
	rounds := flag.Int("rounds", 3, "rounds per server and concurrency")
	concFlag := flag.String("concurrency", "1,32", "comma-separated client concurrencies")
	nginxBin := flag.String("nginx", "/usr/sbin/nginx", "nginx binary")
	flag.Parse()

	if *serveDir != "" {
		os.Exit(serveArtifacts(*serveDir, *port))
	}
	size, err := parseSize(*sizeFlag)
	if err != nil {
		fail(err)
	}
	var concs []int
	for _, c := range strings.Split(*concFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			fail(fmt.Errorf("bad concurrency %q", c))
		}
		concs = append(concs, n)
	}
	if err := run(size, *duration, *rounds, concs, *nginxBin); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "bench/artifacts:", err)
	os.Exit(1)
}

func serveArtifacts(dir string, port int) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := artifactsrv.New(artifactsrv.Options{Dir: dir, IP: "127.0.0.1", Port: port})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := srv.Serve(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func parseSize(s string) (int64, error) {
	mult := int64(1)
	for suffix, m := range map[string]int64{"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

type server struct {
	name string
	url  string
	cmd  *exec.Cmd
}

func run(size int64, d time.Duration, rounds int, concs []int, nginxBin string) error {
	work, err := os.MkdirTemp("", "bench-artifacts-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	dir := filepath.Join(work, "www")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	loadBefore, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("writing a %d MiB file...\n", size>>20)
	if err := writeFile(filepath.Join(dir, "artifact.bin"), size); err != nil {
		return err
	}

	ours, err := startArtifactsrv(dir)
	if err != nil {
		return err
	}
	defer stopServer(ours)
	theirs, err := startNginx(nginxBin, work, dir)
	if err != nil {
		return err
	}
	defer stopServer(theirs)
	servers := []*server{ours, theirs}

	// One warm download each: the page cache holds the file, and
	// artifactsrv has computed its sha256 (once per file version).
	for _, s := range servers {
		if _, err := measure(s.url, 1, 0); err != nil {
			return fmt.Errorf("%s warm-up: %w", s.name, err)
		}
	}

	results := map[string]map[int][]float64{}
	for _, s := range servers {
		results[s.name] = map[int][]float64{}
	}
	for _, c := range concs {
		for r := range rounds {
			for i := range servers {
				// Alternate who goes first.
				s := servers[(i+r)%len(servers)]
				mbps, err := measure(s.url, c, d)
				if err != nil {
					return fmt.Errorf("%s concurrency %d: %w", s.name, c, err)
				}
				results[s.name][c] = append(results[s.name][c], mbps)
				fmt.Printf("  round %d  %-12s c=%-3d %8.0f MB/s\n", r+1, s.name, c, mbps)
			}
		}
	}

	host, _ := os.Hostname()
	loadAfter, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("\nmachine: %s, %d CPUs, %s\nloadavg before: %sloadavg after:  %s", host, runtime.NumCPU(), osRelease(), loadBefore, loadAfter)
	fmt.Printf("file %d MiB, %s per round, %d rounds, median MB/s (1 MB = 10^6 bytes)\n\n", size>>20, d, rounds)
	fmt.Println("| concurrency | artifactsrv MB/s | nginx MB/s | ratio |")
	fmt.Println("| --- | --- | --- | --- |")
	for _, c := range concs {
		a, n := median(results[ours.name][c]), median(results[theirs.name][c])
		fmt.Printf("| %d | %.0f | %.0f | %.2fx |\n", c, a, n, a/n)
	}
	return nil
}

func osRelease() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return runtime.GOOS
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return runtime.GOOS
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func writeFile(p string, size int64) error {
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	block := make([]byte, 1<<20)
	_, _ = rand.Read(block)
	for written := int64(0); written < size; {
		n := min(int64(len(block)), size-written)
		if _, err := f.Write(block[:n]); err != nil {
			f.Close()
			return err
		}
		written += n
	}
	return f.Close()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startArtifactsrv(dir string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-serve-artifactsrv", dir, "-port", strconv.Itoa(port))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{name: "artifactsrv", url: fmt.Sprintf("http://127.0.0.1:%d/artifact.bin", port), cmd: cmd}
	return s, waitReady(s)
}

func startNginx(bin, work, dir string) (*server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	prefix := filepath.Join(work, "nginx")
	if err := os.MkdirAll(filepath.Join(prefix, "tmp"), 0o755); err != nil {
		return nil, err
	}
	user := ""
	if os.Geteuid() == 0 {
		// Workers would drop to nobody, who cannot read a 0700 temp dir.
		user = "user root;"
	}
	conf := fmt.Sprintf(`%s
worker_processes auto;
daemon off;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    default_type application/octet-stream;
    client_body_temp_path %[2]s/tmp/body;
    proxy_temp_path %[2]s/tmp/proxy;
    fastcgi_temp_path %[2]s/tmp/fastcgi;
    uwsgi_temp_path %[2]s/tmp/uwsgi;
    scgi_temp_path %[2]s/tmp/scgi;
    server {
        listen 127.0.0.1:%[3]d;
        root %[4]s;
    }
}
`, user, prefix, port, dir)
	confPath := filepath.Join(prefix, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-p", prefix, "-c", confPath)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start nginx: %w", err)
	}
	s := &server{name: "nginx", url: fmt.Sprintf("http://127.0.0.1:%d/artifact.bin", port), cmd: cmd}
	return s, waitReady(s)
}

func waitReady(s *server) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Head(s.url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopServer(s)
	return fmt.Errorf("%s did not answer on %s", s.name, s.url)
}

func stopServer(s *server) {
	if s == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
	}
}

// measure downloads url with c workers for d (or exactly one full download
// per worker when d is 0) and returns MB/s, counting every byte received.
func measure(url string, c int, d time.Duration) (float64, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: c, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	ctx := context.Background()
	var cancel context.CancelFunc = func() {}
	if d > 0 {
		ctx, cancel = context.WithTimeout(ctx, d)
	}
	defer cancel()

	var total atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, c)
	start := time.Now()
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 1<<20)
			for {
				n, err := download(ctx, client, url, buf)
				total.Add(n)
				if err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				if d == 0 {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(total.Load()) / elapsed.Seconds() / 1e6, nil
}

func download(ctx context.Context, client *http.Client, url string, buf []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("status %s", resp.Status)
	}
	// A plain Read loop into a 1 MiB buffer: the same client work for both
	// servers, without io.Discard's small pooled buffer.
	var n int64
	for {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			if n != resp.ContentLength {
				return n, fmt.Errorf("short body: %d of %d", n, resp.ContentLength)
			}
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
