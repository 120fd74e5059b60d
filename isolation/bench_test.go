package isolation

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"
)

// BenchmarkLaunch measures one container's life with /bin/true as the
// executor: create the cgroup (where there is one), launch, wait, delete
// the cgroup. posix is a plain fork+exec+wait; the linux variants add the
// init's re-exec in fresh pid and mount namespaces (fresh /proc) and the
// cgroup in every controller; -prestart ones take an init started ahead
// (LauncherOptions.Prestart), and wait for its replacement outside the
// timed part, so they show the launch path alone. launch-ms is the time
// spent in Launch.
func BenchmarkLaunch(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	ctx := context.Background()
	pidns := NamespacePID | NamespaceMount
	cases := []struct {
		name     string
		posix    bool
		ns       Namespaces
		cgroups  bool
		prestart int
		user     bool // run as nobody (--switch_user)
		staging  bool // prestarted inits wait in staging cgroups (v1)
	}{
		{"posix", true, 0, false, 0, false, false},
		{"posix-user", true, 0, false, 0, true, false},
		{"posix-cgroups", true, 0, true, 0, false, false},
		{"posix-cgroups-prestart", true, 0, true, 1, false, false},
		{"posix-cgroups-prestart-user", true, 0, true, 1, true, false},
		{"linux-pidns", false, pidns, false, 0, false, false},
		{"linux-pidns-prestart", false, pidns, false, 1, false, false},
		{"linux-pidns-prestart-user", false, pidns, false, 1, true, false},
		{"linux-cgroups-pidns", false, pidns, true, 0, false, false},
		{"linux-cgroups-pidns-prestart", false, pidns, true, 1, false, false},
		{"posix-cgroups-prestart-staging", true, 0, true, 1, false, true},
		{"linux-cgroups-pidns-prestart-staging", false, pidns, true, 1, false, true},
	}
	nobody, err := LookupUser("nobody")
	if err != nil {
		b.Skip("needs the user nobody")
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			opts := testLauncherOptions(b)
			opts.Prestart = c.prestart
			var m *Manager
			if c.cgroups {
				if !haveCgroups() {
					b.Skip("needs cgroups")
				}
				m = newTestManager(b, allCgroups, DefaultCgroupsHierarchy)
			}
			if c.staging {
				if m.Version() != 1 {
					b.Skip("staging cgroups are cgroup v1's")
				}
				opts.Staging = m.Staging
			}
			var l Launcher
			if c.posix {
				l = NewPosixLauncher(opts)
			} else {
				l = NewLinuxLauncher(opts)
			}
			defer l.Close()
			var pool *initPool
			switch l := l.(type) {
			case *LinuxLauncher:
				pool = l.pool
			case *PosixLauncher:
				pool = l.pool
			}
			var inLaunch time.Duration
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if c.prestart > 0 {
					b.StopTimer()
					pool.fill(c.ns)
					waitPrestarted(b, pool, c.ns)
					b.StartTimer()
				}
				spec := Spec{Argv: []string{"/bin/true"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/", Namespaces: c.ns}
				if c.user {
					spec.User = nobody
				}
				var cg *Cgroup
				if m != nil {
					var err error
					cg, err = m.Create(ctx, fmt.Sprintf("bench-%d", i), Limits{CPUs: 1, MemoryBytes: 64 << 20, Pids: 100})
					if err != nil {
						b.Fatal(err)
					}
					spec.Cgroup = cg
				}
				t0 := time.Now()
				p, err := l.Launch(ctx, spec)
				inLaunch += time.Since(t0)
				if err != nil {
					b.Fatal(err)
				}
				if st, err := p.Wait(ctx); err != nil || st.Code != 0 {
					b.Fatalf("%s %v", st, err)
				}
				if cg != nil {
					if err := cg.Delete(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(inLaunch.Microseconds())/1000/float64(b.N), "launch-ms")
		})
	}
}

// BenchmarkCgroupCreateDelete is the cgroup part of a launch alone.
func BenchmarkCgroupCreateDelete(b *testing.B) {
	if os.Geteuid() != 0 || !haveCgroups() {
		b.Skip("needs root and cgroups")
	}
	ctx := context.Background()
	m := newTestManager(b, allCgroups, DefaultCgroupsHierarchy)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		cg, err := m.Create(ctx, fmt.Sprintf("bench-%d", i), Limits{CPUs: 1, MemoryBytes: 64 << 20, Pids: 100})
		if err != nil {
			b.Fatal(err)
		}
		if err := cg.Delete(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

func haveCgroups() bool {
	return CheckHost(allCgroups, Options{Launcher: LauncherLinux}) == nil
}
