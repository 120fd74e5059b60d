package isolation

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/internal/testutil"
)

func TestParseIsolation(t *testing.T) {
	tests := []struct {
		in      string
		want    []Isolator
		wantErr string
	}{
		{in: "", want: []Isolator{PosixCPU, PosixMem}},
		{
			in:   "cgroups/cpu,cgroups/mem,cgroups/pids,namespaces/pid,namespaces/ipc,namespaces/uts,filesystem/linux,posix/cpu,posix/mem",
			want: []Isolator{CgroupsCPU, CgroupsMem, CgroupsPids, NamespacesPID, NamespacesIPC, NamespacesUTS, FilesystemLinux, PosixCPU, PosixMem},
		},
		{in: " cgroups/cpu , cgroups/cpu,", want: []Isolator{CgroupsCPU}},
		{in: "cgroups/all", want: []Isolator{CgroupsCPU, CgroupsMem, CgroupsPids}},
		{in: "cgroups/cpu,cgroups/memory", wantErr: `"cgroups/memory"`},
		{in: "network/cni,gpu/nvidia", wantErr: `"network/cni", "gpu/nvidia"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseIsolation(tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrInvalid naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if g := got.Isolators(); !equalIsolators(g, tt.want) {
				t.Fatalf("got %v, want %v", g, tt.want)
			}
			again, err := ParseIsolation(got.String())
			if err != nil || again != got {
				t.Fatalf("round trip of %q: %v, %v", got.String(), again, err)
			}
		})
	}
}

func equalIsolators(a, b []Isolator) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSetNamespaces(t *testing.T) {
	tests := []struct {
		in   string
		want Namespaces
	}{
		{"posix/cpu", 0},
		{"namespaces/pid", NamespacePID | NamespaceMount},
		{"namespaces/ipc,namespaces/uts", NamespaceIPC | NamespaceUTS},
		{"filesystem/linux", NamespaceMount},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			set, err := ParseIsolation(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := set.Namespaces(); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestParseLauncher(t *testing.T) {
	tests := []struct {
		in      string
		want    LauncherKind
		wantErr bool
	}{
		{"linux", LauncherLinux, false},
		{"posix", LauncherPosix, false},
		{"", DefaultLauncher(), false},
		{"docker", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLauncher(tt.in)
			if tt.wantErr {
				if !errors.Is(err, errdefs.ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if os.Geteuid() == 0 && DefaultLauncher() != LauncherLinux {
		t.Fatal("root should default to the linux launcher")
	}
}

func TestLimitsLinuxResources(t *testing.T) {
	tests := []struct {
		name      string
		l         Limits
		shares    uint64
		quota     int64
		mem, pids int64
	}{
		{"one cpu", Limits{CPUs: 1, MemoryBytes: 64 << 20, Pids: 10}, 1024, -1, 64 << 20, 10},
		{"half cpu cfs", Limits{CPUs: 0.5, EnableCFS: true}, 512, 50_000, -1, -1},
		{"tiny cpu", Limits{CPUs: 0.001, EnableCFS: true}, 2, 1_000, -1, -1},
		{"no cpu", Limits{EnableCFS: true}, 1024, -1, -1, -1},
		{"four cpus", Limits{CPUs: 4, EnableCFS: true}, 4096, 400_000, -1, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.l.LinuxResources()
			if *r.CPU.Shares != tt.shares || *r.CPU.Quota != tt.quota || *r.CPU.Period != 100_000 {
				t.Errorf("cpu = shares %d quota %d period %d; want %d %d 100000", *r.CPU.Shares, *r.CPU.Quota, *r.CPU.Period, tt.shares, tt.quota)
			}
			if *r.Memory.Limit != tt.mem || *r.Memory.Swappiness != 0 {
				t.Errorf("memory = %d swappiness %d; want %d, 0", *r.Memory.Limit, *r.Memory.Swappiness, tt.mem)
			}
			if *r.Pids.Limit != tt.pids {
				t.Errorf("pids = %d, want %d", *r.Pids.Limit, tt.pids)
			}
		})
	}
}

func TestFormatBytes(t *testing.T) {
	tests := []struct {
		n    uint64
		want string
	}{
		{0, "0B"},
		{1000, "1000B"},
		{1024, "1KB"},
		{64 << 20, "64MB"},
		{64<<20 + 4096, "65540KB"},
		{3 << 30, "3GB"},
		{1 << 40, "1TB"},
		{2048 << 40, "2048TB"},
	}
	for _, tt := range tests {
		if got := FormatBytes(tt.n); got != tt.want {
			t.Errorf("FormatBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

func TestOOMMessage(t *testing.T) {
	tests := []struct {
		name string
		ev   OOMEvent
		want string
	}{
		{
			"mesos form",
			OOMEvent{LimitBytes: 64 << 20, MaxUsageBytes: 64 << 20, MemoryStat: "cache 0\nrss 67108864\n"},
			"Memory limit exceeded: Requested: 64MB Maximum Used: 64MB\n\nMEMORY STATISTICS: \ncache 0\nrss 67108864\n\n",
		},
		{"no limit no stat", OOMEvent{MaxUsageBytes: 1 << 30}, "Memory limit exceeded: Maximum Used: 1GB\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OOMMessage(tt.ev); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	ts := time.Unix(1700000000, 500_000_000)
	got := Usage(Stats{
		Timestamp: ts, CPUUserSeconds: 1.5, CPUSystemSeconds: 0.25, CPUPeriods: 10, CPUThrottled: 3,
		CPUThrottledSeconds: 0.1, MemoryRSSBytes: 100, MemoryCacheBytes: 200, MemoryUsageBytes: 300,
		MemoryLimitBytes: 400, Processes: 2, Threads: 1 << 40,
	})
	want := ResourceStatistics{
		Timestamp: 1700000000.5, CPUsUserTimeSecs: 1.5, CPUsSystemTimeSecs: 0.25, CPUsNrPeriods: 10,
		CPUsNrThrottled: 3, CPUsThrottledTimeSecs: 0.1, MemRSSBytes: 100, MemCacheBytes: 200,
		MemLimitBytes: 400, MemTotalBytes: 300, Processes: 2, Threads: 1<<32 - 1,
	}
	if got != want {
		t.Fatalf("got %+v\nwant %+v", got, want)
	}
}

func TestProcessTreeStats(t *testing.T) {
	st, err := ProcessTreeStats(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.Processes < 1 || st.Threads < 1 || st.MemoryRSSBytes == 0 {
		t.Fatalf("implausible stats of the test process: %+v", st)
	}
	if _, err := ProcessTreeStats(1 << 30); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing pid: err = %v, want ErrNotFound", err)
	}
}

func TestCheckHost(t *testing.T) {
	full, err := ParseIsolation("cgroups/cpu,cgroups/mem,cgroups/pids,namespaces/pid,namespaces/ipc,namespaces/uts,filesystem/linux")
	if err != nil {
		t.Fatal(err)
	}
	t.Run("posix launcher cannot make namespaces", func(t *testing.T) {
		set, _ := ParseIsolation("namespaces/pid")
		err := CheckHost(set, Options{Launcher: LauncherPosix})
		if !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "--launcher=linux") {
			t.Fatalf("err = %v, want ErrInvalid about the launcher", err)
		}
	})
	t.Run("posix isolation needs nothing", func(t *testing.T) {
		set, _ := ParseIsolation("")
		if err := CheckHost(set, Options{Launcher: LauncherPosix, CgroupsHierarchy: t.TempDir()}); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("bad root", func(t *testing.T) {
		err := CheckHost(full, Options{CgroupsRoot: "../escape", Launcher: LauncherLinux})
		if !errors.Is(err, errdefs.ErrInvalid) {
			t.Fatalf("err = %v, want ErrInvalid", err)
		}
	})
	t.Run("not a cgroup hierarchy", func(t *testing.T) {
		testutil.RequireRoot(t)
		err := CheckHost(full, Options{CgroupsHierarchy: t.TempDir(), Launcher: LauncherLinux})
		if !errors.Is(err, errdefs.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
	})
	t.Run("v1 controllers missing", func(t *testing.T) {
		testutil.RequireRoot(t)
		// An empty tmpfs looks like a v1 hierarchy with nothing mounted.
		dir := t.TempDir()
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatalf("mount tmpfs: %v", err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
		err := CheckHost(full, Options{CgroupsHierarchy: dir, Launcher: LauncherLinux})
		if !errors.Is(err, errdefs.ErrUnavailable) {
			t.Fatalf("err = %v, want ErrUnavailable", err)
		}
		for _, c := range []string{"freezer", "cpu", "cpuacct", "memory", "pids"} {
			if !strings.Contains(err.Error(), "controller "+c+" is not mounted") {
				t.Errorf("error does not name missing controller %s: %v", c, err)
			}
		}
	})
	t.Run("this host", func(t *testing.T) {
		requireCgroups(t)
		if err := CheckHost(full, Options{Launcher: LauncherLinux}); err != nil {
			t.Fatalf("CheckHost on a cgroup host: %v", err)
		}
	})
}
