package detector

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/detector/zktest"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

func TestParseZK(t *testing.T) {
	tests := []struct {
		in   string
		want ZKURL
		bad  bool
	}{
		{in: "zk://127.0.0.1:2181/mesos", want: ZKURL{Servers: []string{"127.0.0.1:2181"}, Path: "/mesos"}},
		{in: "zk://a,b:2182,c/mesos/prod/", want: ZKURL{Servers: []string{"a:2181", "b:2182", "c:2181"}, Path: "/mesos/prod"}},
		{in: "zk://user:secret@zk1:2181/mesos", want: ZKURL{Servers: []string{"zk1:2181"}, Path: "/mesos", Auth: "user:secret"}},
		{in: "zk://[::1]:2181/m", want: ZKURL{Servers: []string{"[::1]:2181"}, Path: "/m"}},
		{in: "zk://h:2181/", bad: true},
		{in: "zk://h:2181", bad: true},
		{in: "zk:///mesos", bad: true},
		{in: "zk://h:99999/mesos", bad: true},
		{in: "zk://nocolon@h/mesos", bad: true},
		{in: "http://h/mesos", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseZK(tt.in)
			if tt.bad {
				if !errors.Is(err, errdefs.ErrInvalid) {
					t.Fatalf("ParseZK(%q) = %+v, %v; want ErrInvalid", tt.in, got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseZK(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestStandaloneAndFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "master")
	if err := os.WriteFile(file, []byte("  10.1.2.3:5050\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	httpsFile := filepath.Join(dir, "https-master")
	if err := os.WriteFile(httpsFile, []byte("https://node2:5050\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		flag string
		want MasterInfo
	}{
		{"127.0.0.1:5050", MasterInfo{IP: "127.0.0.1", Hostname: "127.0.0.1", Port: 5050, PID: "master@127.0.0.1:5050"}},
		{"master@node1:5051", MasterInfo{Hostname: "node1", Port: 5051, PID: "master@node1:5051"}},
		{"http://node1:5050/", MasterInfo{Hostname: "node1", Port: 5050, PID: "master@node1:5050"}},
		{"https://10.0.0.7:5050", MasterInfo{IP: "10.0.0.7", Hostname: "10.0.0.7", Port: 5050, PID: "master@10.0.0.7:5050", Scheme: "https"}},
		{"file://" + httpsFile, MasterInfo{Hostname: "node2", Port: 5050, PID: "master@node2:5050", Scheme: "https"}},
		{"file://" + file, MasterInfo{IP: "10.1.2.3", Hostname: "10.1.2.3", Port: 5050, PID: "master@10.1.2.3:5050"}},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			d, err := New(tt.flag)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			got, err := d.Leader(context.Background())
			if err != nil || got != tt.want {
				t.Fatalf("Leader = %+v, %v; want %+v", got, err, tt.want)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ch := d.Watch(ctx)
			if w := <-ch; w != tt.want {
				t.Fatalf("Watch sent %+v", w)
			}
			cancel()
			if _, ok := <-ch; ok {
				t.Fatal("Watch channel not closed after cancel")
			}
		})
	}
	for _, bad := range []string{"", "nohost", "h:0", "file://" + filepath.Join(dir, "missing")} {
		if _, err := New(bad); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("New(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestMasterInfoJSON(t *testing.T) {
	// What a Mesos 1.x master writes into its json.info_ znode.
	mesosJSON := `{"address":{"hostname":"m1.example","ip":"10.0.0.5","port":5050},"hostname":"m1.example",
		"id":"0d2ffcc0-1b8c-4a62-9a4e-9a4b0f3e1c11","ip":83886090,"pid":"master@10.0.0.5:5050","port":5050,
		"version":"1.11.0","capabilities":[{"type":"AGENT_UPDATE"}]}`
	var m MasterInfo
	if err := m.UnmarshalJSON([]byte(mesosJSON)); err != nil {
		t.Fatal(err)
	}
	want := MasterInfo{ID: "0d2ffcc0-1b8c-4a62-9a4e-9a4b0f3e1c11", IP: "10.0.0.5", Port: 5050, Hostname: "m1.example", PID: "master@10.0.0.5:5050", Version: "1.11.0"}
	if m != want {
		t.Fatalf("got %+v", m)
	}
	if IPToUint32("127.0.0.1") != 16777343 || Uint32ToIP(83886090) != "10.0.0.5" {
		t.Fatal("MasterInfo.ip encoding differs from Mesos's")
	}
	data, err := m.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var back MasterInfo
	if err := back.UnmarshalJSON(data); err != nil || back != m {
		t.Fatalf("round trip: %+v, %v", back, err)
	}
	if m.Addr() != "10.0.0.5:5050" || m.HostPort() != "m1.example:5050" {
		t.Fatalf("Addr %s HostPort %s", m.Addr(), m.HostPort())
	}
}

func waitFor(t *testing.T, ch <-chan MasterInfo, want func(MasterInfo) bool, what string) MasterInfo {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatalf("watch closed waiting for %s", what)
			}
			if want(m) {
				return m
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// zkConn is a raw client for poking at the server, connected when returned.
func zkConn(t *testing.T, addr string) *zk.Conn {
	t.Helper()
	conn, events, err := zk.Connect([]string{addr}, 4*time.Second, zk.WithLogInfo(false), zk.WithLogger(slogAdapter{buildOptions(nil).log}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(conn.Close)
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.State == zk.StateHasSession {
				return conn
			}
		case <-timeout:
			t.Fatalf("no ZooKeeper session with %s", addr)
		}
	}
}

func TestZooKeeperElection(t *testing.T) {
	srv := zktest.Start(t)
	url := srv.URL("/mesolite/test")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	det, err := New(url, WithSessionTimeout(4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer det.Close()
	watch := det.Watch(ctx)
	waitFor(t, watch, MasterInfo.IsZero, "no leader before anyone contends")

	m1 := MasterInfo{ID: "m1", IP: "127.0.0.1", Port: 15050, Hostname: "one", PID: "master@127.0.0.1:15050"}
	m2 := MasterInfo{ID: "m2", IP: "127.0.0.1", Port: 15051, Hostname: "two", PID: "master@127.0.0.1:15051"}
	c1, err := Contend(ctx, url, m1, WithSessionTimeout(4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	select {
	case <-c1.Elected():
	case <-ctx.Done():
		t.Fatal("the only contender was not elected")
	}
	c2, err := Contend(ctx, url, m2, WithSessionTimeout(4*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	got, err := det.Leader(ctx)
	if err != nil || got != m1 {
		t.Fatalf("Leader = %+v, %v; want m1", got, err)
	}
	select {
	case <-c2.Elected():
		t.Fatal("second contender elected while the first leads")
	case <-time.After(300 * time.Millisecond):
	}

	// The znode is where Mesos tools look for it, in Mesos's format.
	conn := zkConn(t, srv.Addr)
	data, _, err := conn.Get(c1.Node())
	if err != nil {
		t.Fatal(err)
	}
	var fromZK MasterInfo
	if err := fromZK.UnmarshalJSON(data); err != nil || fromZK != m1 {
		t.Fatalf("znode %s holds %s", c1.Node(), data)
	}

	// The leader withdraws: the second takes over and the detector follows.
	if err := c1.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c2.Elected():
	case <-ctx.Done():
		t.Fatal("second contender not elected after the leader withdrew")
	}
	waitFor(t, watch, func(m MasterInfo) bool { return m == m2 }, "m2 to lead")

	// Losing the znode (an operator deleting it, a session expiring) ends the candidacy.
	if err := conn.Delete(c2.Node(), -1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c2.Lost():
		if c2.Err() == nil {
			t.Fatal("Lost without an error")
		}
	case <-ctx.Done():
		t.Fatal("candidacy not lost after its znode was deleted")
	}
	waitFor(t, watch, MasterInfo.IsZero, "no leader after the last one left")
}

func TestZooKeeperOlderFormats(t *testing.T) {
	srv := zktest.Start(t)
	conn := zkConn(t, srv.Addr)
	acl := zk.WorldACL(zk.PermAll)
	for _, p := range []string{"/old", "/old/pb", "/old/pid"} {
		if _, err := conn.Create(p, nil, 0, acl); err != nil {
			t.Fatal(err)
		}
	}
	pb, _ := proto.Marshal(&mesos.MasterInfo{Id: proto.String("pb"), Ip: proto.Uint32(IPToUint32("10.0.0.9")), Port: proto.Uint32(5050), Hostname: proto.String("pbhost")})
	if _, err := conn.Create("/old/pb/info_", pb, zk.FlagEphemeral|zk.FlagSequence, acl); err != nil {
		t.Fatal(err)
	}
	// Not a contender: ignored.
	if _, err := conn.Create("/old/pid/log_replicas", nil, 0, acl); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Create("/old/pid/", []byte("master@10.0.0.8:5055"), zk.FlagEphemeral|zk.FlagSequence, acl); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path string
		want MasterInfo
	}{
		{"/old/pb", MasterInfo{ID: "pb", IP: "10.0.0.9", Port: 5050, Hostname: "pbhost"}},
		{"/old/pid", MasterInfo{IP: "10.0.0.8", Hostname: "10.0.0.8", Port: 5055, PID: "master@10.0.0.8:5055"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			d, err := New(srv.URL(tt.path))
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			got, err := d.Leader(ctx)
			if err != nil || got != tt.want {
				t.Fatalf("Leader = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
