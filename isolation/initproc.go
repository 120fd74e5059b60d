package isolation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mesolite/mesolite/internal/idle"
)

// initProc is a started init waiting for its spec. It may have been started
// for this launch (cold) or ahead of time by an initPool (warm).
type initProc struct {
	cmd   *exec.Cmd
	sock  *os.File // our end of the spec socket (fd 3 in the init)
	statR *os.File // the init's status pipe (fd 4 in the init)
	dec   *json.Decoder
	// inCgroup: clone3 already put it into the launch's cgroup.
	inCgroup bool
	// idle: moved to SCHED_IDLE (internal/idle) while it waits, to be
	// undone before it runs anything for a container.
	idle bool
	// ahead: started before its launch (it warms up while it waits), into
	// namespaces ns.
	ahead bool
	ns    Namespaces
	// staging is the cgroup a prestarted init waits in, with what it
	// started ahead (LauncherOptions.Staging); nil without.
	staging *Cgroup
	// pool is the pool that started it ahead, which tracks the work it
	// leaves behind (background); nil for a cold init.
	pool *initPool
}

// startInit starts an init in namespaces ns. A cold init gets the launch's
// directory, outputs and cgroup at clone time; a warm one (ahead) gets them
// with the spec, and warms up while it waits.
func startInit(opts LauncherOptions, ns Namespaces, ahead bool, dir string, stdout, stderr, cgfd *os.File) (*initProc, error) {
	return startInitIO(opts, ns, ahead, dir, nil, stdout, stderr, cgfd)
}

// startInitIO is startInit with the init's stdin too (nil: /dev/null).
func startInitIO(opts LauncherOptions, ns Namespaces, ahead bool, dir string, stdin, stdout, stderr, cgfd *os.File) (*initProc, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("launch: socketpair: %w", err)
	}
	sock := os.NewFile(uintptr(fds[0]), "spec")
	childSock := os.NewFile(uintptr(fds[1]), "spec-child")
	statR, statW, err := os.Pipe()
	if err != nil {
		sock.Close()
		childSock.Close()
		return nil, err
	}
	args := append([]string{opts.InitPath}, opts.InitArgs...)
	args = append(args, "--spec-fd=3", "--status-fd=4")
	if ahead {
		args = append(args, "--warm")
	}
	cmd := &exec.Cmd{
		Path:       opts.InitPath,
		Args:       args,
		Env:        opts.InitEnv,
		Dir:        dir,
		Stdout:     stdout,
		Stderr:     stderr,
		ExtraFiles: []*os.File{childSock, statW},
		SysProcAttr: &syscall.SysProcAttr{
			Setsid:     true,
			Cloneflags: cloneFlags(ns),
		},
	}
	if stdin != nil {
		// An *os.File is handed over as it is, with no copying goroutine.
		cmd.Stdin = stdin
	}
	if cgfd != nil {
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(cgfd.Fd())
	}
	err = cmd.Start()
	childSock.Close()
	statW.Close()
	if err != nil {
		sock.Close()
		statR.Close()
		return nil, fmt.Errorf("launch: start init %s: %w", opts.InitPath, err)
	}
	return &initProc{cmd: cmd, sock: sock, statR: statR, dec: json.NewDecoder(statR), inCgroup: cgfd != nil, ahead: ahead, ns: ns}, nil
}

// waitReady reads the init's ready message.
func (ip *initProc) waitReady() error {
	var msg initMessage
	if err := ip.dec.Decode(&msg); err != nil {
		return fmt.Errorf("init %d did not come up: %w", ip.cmd.Process.Pid, err)
	}
	if !msg.Ready {
		return fmt.Errorf("init %d: unexpected message %+v", ip.cmd.Process.Pid, msg)
	}
	return nil
}

// kill ends an init that will not be used and reaps it, and removes its
// staging cgroup.
func (ip *initProc) kill() {
	_ = ip.cmd.Process.Kill()
	_ = ip.cmd.Wait()
	ip.sock.Close()
	ip.statR.Close()
	if ip.staging != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = ip.staging.Kill(ctx)
		_ = ip.staging.Delete(ctx)
		cancel()
		ip.staging = nil
	}
}

// stage puts a prestarted init and what it started ahead into a staging
// cgroup of their own (LauncherOptions.Staging), off any launch's path.
func (ip *initProc) stage(ctx context.Context, staging func(context.Context) (*Cgroup, error)) error {
	cg, err := staging(ctx)
	if err != nil {
		return err
	}
	ip.staging = cg
	pids := []int{ip.cmd.Process.Pid}
	if ip.ns.Has(NamespacePID) {
		kids, err := childPids(ip.cmd.Process.Pid)
		if err != nil {
			return err
		}
		pids = append(pids, kids...)
	}
	for _, pid := range pids {
		if err := cg.AddProcess(pid); err != nil {
			return err
		}
	}
	return nil
}

// handoff puts the init into spec's cgroup, sends it the spec with the
// outputs, and waits until the executor runs. retry reports a failure of
// the init itself before it saw the spec (a warm init that died meanwhile),
// after which a fresh init may succeed.
func (ip *initProc) handoff(ctx context.Context, spec Spec, stdout, stderr *os.File) (p Process, retry bool, err error) {
	pids := []int{ip.cmd.Process.Pid}
	if ip.ahead && ip.ns.Has(NamespacePID) {
		// An init that stays pid 1 started its executor's process ahead too
		// (prestartExecutor); it joins the container with its init.
		kids, err := childPids(ip.cmd.Process.Pid)
		if err != nil {
			ip.kill()
			return nil, true, fmt.Errorf("launch: %w", err)
		}
		pids = append(pids, kids...)
	}
	adopted := false
	if spec.Cgroup != nil && ip.staging != nil {
		// Its staging cgroup becomes the container's: no process moves.
		staging := ip.staging
		ip.staging = nil
		if err := spec.Cgroup.Adopt(staging); err == nil {
			adopted = true
		} else {
			if ip.pool != nil {
				ip.pool.opts.Logger.Warn("a prestarted init's staging cgroup could not become the container's; its processes are moved instead", "error", err)
			}
			// Moved below; then the staging cgroup, emptied, goes, off
			// the launch's path (Delete waits for it to be empty); the
			// pool's close waits for that.
			defer func() {
				del := func() {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					_ = staging.Delete(ctx)
				}
				if ip.pool == nil {
					del()
					return
				}
				ip.pool.background(del)
			}()
		}
	}
	if spec.Cgroup != nil && !ip.inCgroup && !adopted {
		for i, pid := range pids {
			if err := spec.Cgroup.AddProcess(pid); err != nil {
				if i > 0 && errors.Is(err, unix.ESRCH) {
					continue // the init starts a fresh one
				}
				ip.kill()
				return nil, i == 0 && errors.Is(err, unix.ESRCH), fmt.Errorf("launch: %w", err)
			}
		}
	}
	if ip.idle {
		for _, pid := range pids {
			if err := idle.Leave(pid); err != nil {
				ip.kill()
				return nil, true, fmt.Errorf("launch: %w", err)
			}
		}
		// Once more when the executor runs, off the launch path: a thread
		// created while the first pass went through the list inherited
		// SCHED_IDLE.
		defer func() {
			if err == nil {
				go func() {
					for _, pid := range pids {
						_ = idle.Leave(pid)
					}
				}()
			}
		}()
	}
	// Known before the init has its spec: from here on a restarted agent
	// can find this container even if the launch is cut off.
	pid := ip.cmd.Process.Pid
	if err := writePidFile(spec.PidPath, Handle{Pid: pid, StartTime: startTime(pid)}); err != nil {
		ip.kill()
		return nil, false, fmt.Errorf("launch: %w", err)
	}
	supervised, retry, err := ip.deliver(ctx, spec, stdout, stderr)
	if err != nil {
		return nil, retry, err
	}
	if supervised {
		return newChild(ip.cmd, true, spec.StatusPath, ip.statR, ip.dec), false, nil
	}
	return newChild(ip.cmd, false, spec.StatusPath, nil, nil), false, nil
}

// deliver sends the init its spec with the outputs and waits until the
// executor runs: supervised when the init reported it started the executor
// as its child (it stays pid 1 and reports the exit on the status pipe,
// which stays open), not supervised when the init became the executor (by
// exec or in place), having closed the pipe. On an error the init is
// killed and reaped; retry as in handoff.
func (ip *initProc) deliver(ctx context.Context, spec Spec, stdout, stderr *os.File) (supervised, retry bool, err error) {
	cfg := initConfig{
		Argv: spec.Argv, Env: nonNil(spec.Env), Dir: spec.Dir, Namespaces: spec.Namespaces,
		Hostname: spec.Hostname, StatusPath: spec.StatusPath, User: spec.User,
	}
	return ip.deliverConfig(ctx, cfg, spec.Argv[0], stdout, stderr)
}

// deliverConfig is deliver of a spec already in the init's form; argv0
// names the executor in errors.
func (ip *initProc) deliverConfig(ctx context.Context, cfg initConfig, argv0 string, stdout, stderr *os.File) (supervised, retry bool, err error) {
	abort := func(retry bool, err error) (bool, bool, error) {
		ip.kill()
		return false, retry, err
	}
	// The init blocks reading this until now: it is in its cgroup before it
	// can start anything.
	if err := ip.sendSpec(cfg, stdout, stderr); err != nil {
		return abort(true, fmt.Errorf("launch: send spec to init: %w", err))
	}

	// A context end during the handshake kills the init, which ends the
	// reads below with EOF.
	stop := context.AfterFunc(ctx, func() { _ = ip.cmd.Process.Kill() })
	defer stop()
	sawExec := false
	var initErr string
	for {
		var msg initMessage
		if err := ip.dec.Decode(&msg); err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				return abort(false, fmt.Errorf("launch: read init status: %w", err))
			}
			break
		}
		switch {
		case msg.Error != "":
			initErr = msg.Error
		case msg.Exec:
			sawExec = true
		case msg.Started != 0:
			if ctx.Err() != nil {
				return abort(false, fmt.Errorf("launch: %w", ctx.Err()))
			}
			return true, false, nil
		}
	}
	// EOF: the pipe closes on a successful exec (close-on-exec), or when the
	// init exits having failed.
	if initErr == "" && sawExec && ctx.Err() == nil {
		ip.statR.Close()
		return false, false, nil
	}
	werr := ip.cmd.Wait()
	ip.statR.Close()
	switch {
	case ctx.Err() != nil:
		return false, false, fmt.Errorf("launch: %w", ctx.Err())
	case initErr != "":
		return false, false, fmt.Errorf("launch %q: %s", argv0, initErr)
	default:
		return false, false, fmt.Errorf("launch %q: init exited before starting it (%v); see the container's stderr", argv0, werr)
	}
}

// sendSpec writes cfg as one JSON line, with the executor's stdout and
// stderr passed along as SCM_RIGHTS on its first byte, then closes the
// socket.
func (ip *initProc) sendSpec(cfg initConfig, stdout, stderr *os.File) error {
	defer ip.sock.Close()
	payload, err := json.Marshal(cfg)
	if err != nil {
		return err
	}
	payload = append(payload, '\n')
	var devnull *os.File
	outFD := func(f *os.File) (int, error) {
		if f != nil {
			return int(f.Fd()), nil
		}
		if devnull == nil {
			if devnull, err = os.OpenFile(os.DevNull, os.O_WRONLY|unix.O_CLOEXEC, 0); err != nil {
				return -1, err
			}
		}
		return int(devnull.Fd()), nil
	}
	defer func() {
		if devnull != nil {
			devnull.Close()
		}
	}()
	o, err := outFD(stdout)
	if err != nil {
		return err
	}
	e, err := outFD(stderr)
	if err != nil {
		return err
	}
	n, err := unix.SendmsgN(int(ip.sock.Fd()), payload, unix.UnixRights(o, e), nil, 0)
	if err != nil {
		return err
	}
	if n < len(payload) {
		// The init closes its end as soon as it has the whole spec, so only
		// write what the first message did not carry.
		_, err = ip.sock.Write(payload[n:])
	}
	return err
}

// receiveSpec is the init's side of sendSpec: it reads the spec from fd and
// makes the passed outputs its stdout and stderr.
func receiveSpec(fd int) (initConfig, error) {
	var cfg initConfig
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(2*4))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return cfg, err
	}
	if n == 0 {
		return cfg, io.EOF
	}
	var rights []int
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for i := range msgs {
			if fds, err := unix.ParseUnixRights(&msgs[i]); err == nil {
				rights = append(rights, fds...)
			}
		}
	}
	if len(rights) == 2 {
		for i, target := range []int{1, 2} {
			if err := unix.Dup3(rights[i], target, 0); err != nil {
				return cfg, fmt.Errorf("install output fd: %w", err)
			}
			unix.Close(rights[i])
		}
	}
	rest := os.NewFile(uintptr(fd), "spec")
	defer rest.Close()
	err = json.NewDecoder(io.MultiReader(bytes.NewReader(buf[:n]), rest)).Decode(&cfg)
	return cfg, err
}

// initPool keeps opts.Prestart inits per namespace set started and waiting.
type initPool struct {
	opts    LauncherOptions
	mu      sync.Mutex
	idle    map[Namespaces][]*initProc
	filling map[Namespaces]int
	// starting are the inits being started (not yet ready or kept), for
	// close to kill rather than wait for them to come up.
	starting map[*initProc]struct{}
	closed   bool
	// bg counts the goroutines filling the pool and those deleting an
	// init's staging cgroup after a launch: close waits for them, so no
	// init or cgroup of the pool outlives it.
	bg sync.WaitGroup
}

func newInitPool(opts LauncherOptions) *initPool {
	return &initPool{opts: opts, idle: map[Namespaces][]*initProc{}, filling: map[Namespaces]int{}, starting: map[*initProc]struct{}{}}
}

// take returns a waiting init for ns, or nil. The caller refills the pool
// once its launch is through: starting an init is a burst of CPU that should
// not compete with the launch it was kept for.
func (p *initPool) take(ns Namespaces) *initProc {
	if p.opts.Prestart <= 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var ip *initProc
	if list := p.idle[ns]; len(list) > 0 {
		ip, p.idle[ns] = list[0], list[1:]
	}
	return ip
}

// refillDelay is how long after a launch the pool starts replacing the
// init it took. The replacement's start (a runtime start, its page faults in
// the same binary the new executor is faulting in) would otherwise overlap
// the first milliseconds of that executor, the ones on the launch path.
const refillDelay = 50 * time.Millisecond

// refill is fill, refillDelay from now.
func (p *initPool) refill(ns Namespaces) {
	if p.opts.Prestart <= 0 {
		return
	}
	time.AfterFunc(refillDelay, func() { p.fill(ns) })
}

// fill starts inits in the background until ns has opts.Prestart of them.
func (p *initPool) fill(ns Namespaces) {
	if p.opts.Prestart <= 0 {
		return
	}
	p.mu.Lock()
	need := p.opts.Prestart - len(p.idle[ns]) - p.filling[ns]
	if p.closed || need <= 0 {
		p.mu.Unlock()
		return
	}
	p.filling[ns] += need
	// Counted under mu, so that close, once it set closed, waits for all.
	p.bg.Add(need)
	p.mu.Unlock()
	for range need {
		go func() {
			defer p.bg.Done()
			ip, err := startInit(p.opts, ns, true, "/", nil, nil, nil)
			started := ip // ip becomes nil once it is not kept
			if err == nil {
				ip.pool = p
				p.mu.Lock()
				if p.closed {
					_ = ip.cmd.Process.Kill() // waitReady fails at once
				} else {
					p.starting[ip] = struct{}{}
				}
				p.mu.Unlock()
				// At once, while its runtime starts; and again once it is
				// ready, for threads created meanwhile by one not yet moved.
				ip.idle = idle.Park(ip.cmd.Process.Pid)
				// One that never comes up is killed, so that close, which
				// waits for this goroutine, does not wait forever.
				stuck := time.AfterFunc(prestartReadyTimeout, func() { _ = ip.cmd.Process.Kill() })
				err = ip.waitReady()
				stuck.Stop()
				if err != nil {
					ip.kill()
					ip = nil
				} else if p.opts.Staging != nil {
					// Ready, it has started what it starts ahead: all of
					// it goes into the staging cgroup.
					if err := ip.stage(context.Background(), p.opts.Staging); err != nil {
						p.mu.Lock()
						closing := p.closed // close killed it: nothing to say
						p.mu.Unlock()
						if !closing {
							p.opts.Logger.Warn("no staging cgroup for a prestarted init; it is not kept", "error", err)
						}
						ip.kill()
						ip = nil
					}
				}
				if ip != nil && ip.idle {
					_ = idle.Enter(ip.cmd.Process.Pid)
					// The process it started ahead (prestartExecutor) was
					// forked by one of its threads, maybe one that escaped
					// the first pass.
					if ns.Has(NamespacePID) {
						kids, _ := childPids(ip.cmd.Process.Pid)
						for _, k := range kids {
							_ = idle.Enter(k)
						}
					}
				}
			}
			p.mu.Lock()
			p.filling[ns]--
			delete(p.starting, started)
			keep := ip != nil && !p.closed
			if keep {
				p.idle[ns] = append(p.idle[ns], ip)
			}
			p.mu.Unlock()
			if ip != nil && !keep {
				ip.kill()
			}
		}()
	}
}

// prestartReadyTimeout bounds how long a prestarted init may take to come up.
const prestartReadyTimeout = 30 * time.Second

// background runs f in a goroutine that close waits for; once the pool is
// closed, at once.
func (p *initPool) background(f func()) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		f()
		return
	}
	p.bg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.bg.Done()
		f()
	}()
}

// close kills the waiting inits and waits for those still starting (which
// see closed and kill themselves) and for the staging cgroups being
// deleted: once it returns, nothing of the pool is left.
func (p *initPool) close() error {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = map[Namespaces][]*initProc{}
	// Those coming up are killed: their goroutines see it (waitReady
	// fails) and reap them. os.Process signals through a pidfd, so one
	// reaped meanwhile is not mistaken for another process.
	for ip := range p.starting {
		_ = ip.cmd.Process.Kill()
	}
	p.mu.Unlock()
	for _, list := range idle {
		for _, ip := range list {
			ip.kill()
		}
	}
	p.bg.Wait()
	return nil
}
