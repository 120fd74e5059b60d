// Package isolation gives the mesos containerizer what Mesos's isolators and
// launchers give mesos-agent: one cgroup per container (v1 hybrid or v2
// unified), limits from a plain Limits struct, usage statistics, an OOM
// watcher, a Kill that reaches daemonized processes, and launchers that start
// an executor either as a plain child (posix) or under a small init inside
// fresh namespaces (linux).
//
// The package knows nothing of masters, agents or the Mesos API: it takes and
// returns plain Go structs, so the containerizer maps them to protobufs.
//
// The life of one container, as the containerizer drives it:
//
//	CheckHost(set, opts)              once, at agent start: fail loudly, never downgrade
//	m := NewManager(opts, set)        once
//	cg := m.Create(ctx, id, limits)   mkdir in every controller, write limits
//	oom := cg.WatchOOM(ctx)           before the executor can allocate
//	l := NewLauncher(kind, lopts)     once; lopts.Prestart keeps inits started ahead
//	p := l.Launch(ctx, spec)          spec.Cgroup = cg; the init waits until it is inside
//	... cg.Update / cg.Stats / Usage(stats)
//	p.Wait(ctx)                       executor exit status
//	cg.Kill(ctx); cg.Delete(ctx)      everything dead, then the cgroup gone
//
// After an agent restart: m.List() names the cgroups that exist, m.Load(id)
// reopens one, Attach(handle) reattaches to a still running init.
//
// The linux launcher re-executes the agent binary as the container's init;
// the binary must call InitMain from its hidden "launch" subcommand (see
// InitMain). Everything here is Linux-only.
package isolation
