// Package sandbox owns everything about executor sandboxes on an agent's
// disk: where they live (Layout, Mesos's directory scheme), how a path that
// a user sends us is confined to one sandbox (Resolver, through os.Root), the
// Mesos files API over HTTP plus a live stream (FilesHandler), the client
// side of that stream (Follow), size-bounded task logs (RotatingWriter) and
// the removal of old sandboxes by age and disk pressure (GC).
//
// The package knows nothing of masters or agents: ids are plain strings and
// the agent wires the pieces together:
//
//	layout := sandbox.Layout{WorkDir: workDir}
//	dir, _ := layout.CreateRun(sandbox.RunID{AgentID: a, FrameworkID: f, ExecutorID: e, ContainerID: c})
//	gc, _ := sandbox.NewGC(sandbox.GCOptions{Root: workDir})
//	files := sandbox.NewFilesHandler(sandbox.FilesOptions{Layout: layout, AgentID: a, Collected: gc.Collected})
//	mux.Handle("/files/", files)
//	go gc.Run(ctx)
//
// Safety rule: no byte outside the one executor run directory named by a
// request ever leaves the agent. Escapes ("..", symlinks pointing out, a
// forged runs/latest link) answer 403; missing files 404; a sandbox the GC
// removed answers 404 with a message that says so.
package sandbox
