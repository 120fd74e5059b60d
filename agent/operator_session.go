package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"github.com/mesolite/mesolite/api/v1/validate"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/executor/defaultexec"
	"google.golang.org/protobuf/proto"
)

// Nested container sessions ("entering a running task", `mesolite exec`,
// `mesos task exec`): LAUNCH_NESTED_CONTAINER_SESSION runs a command
// inside an executor's running container, through the containerizer's
// Enterer: in the container's namespaces and cgroups, as the task's user,
// in its sandbox, with its environment. The session is a nested container
// {value: new id, parent: {value: the executor's container id}}.
//
//	LAUNCH_NESTED_CONTAINER_SESSION  the answer streams ProcessIO records:
//	                                 STDOUT/STDERR data, CONTROL heartbeats;
//	                                 the session dies with this connection
//	ATTACH_CONTAINER_INPUT           a streaming request: CONTAINER_ID, then
//	                                 STDIN data (empty: end of input),
//	                                 CONTROL tty_info (resize), heartbeats
//	ATTACH_CONTAINER_OUTPUT          more readers of the output, from now on
//	WAIT_(NESTED_)CONTAINER          the wait(2) status once it ended
//	KILL_(NESTED_)CONTAINER          a signal (SIGKILL by default)
//	REMOVE_(NESTED_)CONTAINER        forget an ended session
//
// The launch answer ends once the command ended and its output was sent,
// and only after its status is recorded: a client that calls WAIT next
// finds it. Ended sessions are kept for WAIT until removed, for
// finishedSessionTTL, or until maxFinishedSessions newer ones ended.
// Every one of these calls needs the read-write authentication when the
// agent has one (operator.go).

const (
	maxSessions             = 128 // running sessions on this agent
	maxSessionsPerContainer = 16  // running sessions in one container
	maxFinishedSessions     = 256
	finishedSessionTTL      = 15 * time.Minute
	// sessionHeartbeat spaces CONTROL heartbeats on output streams, so
	// proxies and clients see an idle session is alive.
	sessionHeartbeat = 30 * time.Second
	// sessionChunk is the most output one DATA record carries.
	sessionChunk = 32 << 10
	// sessionDrainGrace is how long the output may go on after the
	// command ended (a child of it that outlives it holds the stream).
	sessionDrainGrace = 2 * time.Second
	// sessionStartTimeout bounds starting the command (an exec through a
	// slow dockerd).
	sessionStartTimeout = time.Minute
	// inputIdleTimeout ends an input stream that sent nothing, not even a
	// heartbeat (Mesos's CLI sends one every 30 s), for this long.
	inputIdleTimeout = 5 * time.Minute
	// outputWriteTimeout bounds one write of an output stream: a client
	// that stopped reading is gone.
	outputWriteTimeout = 30 * time.Second
	// maxInputRecord caps one record of an input stream.
	maxInputRecord = 1 << 20
	// attachQueue is how many records an attached output reader may fall
	// behind before it is dropped (the launch stream itself is never
	// dropped: the command waits for it, as it would for a slow terminal).
	attachQueue = 256
)

// sessionTable holds the sessions; its own lock, never held with a.mu.
type sessionTable struct {
	mu   sync.Mutex
	byID map[string]*session
}

// session is one command entered into a container.
// process is the session's process, nil while it starts.
func (s *session) process() containerizer.Entered {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

type session struct {
	id, parent string
	task       string // a task of a group's nested container it runs in, if any
	fwID, exID string
	user       string // the task's user, whom --acls judge access by
	tty        bool
	proc       containerizer.Entered // nil while it starts
	log        *slog.Logger

	pubMu sync.Mutex // serialises publishers: stdout and stderr records keep their order

	mu            sync.Mutex
	inputAttached bool
	subs          map[*outputSub]bool
	outputClosed  bool
	endedAt       time.Time
	status        int // wait(2) status, -1 unknown
	done          chan struct{}
}

// outputSub is one reader of a session's output.
type outputSub struct {
	ch    chan *agentapi.ProcessIO
	gone  chan struct{} // closed when the reader's handler returns
	block bool          // the launch stream: waited for, never dropped
}

func (t *sessionTable) get(id string) *session {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.byID[id]
}

// reserve adds a starting session, within the caps. It also forgets ended
// sessions past their time.
func (t *sessionTable) reserve(s *session) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byID == nil {
		t.byID = map[string]*session{}
	}
	if _, dup := t.byID[s.id]; dup {
		return errdefs.Statusf(http.StatusConflict, "Container '%s' already exists", s.id)
	}
	running, inParent := 0, 0
	var ended []*session
	for _, o := range t.byID {
		if o.ended() {
			ended = append(ended, o)
			continue
		}
		running++
		if o.parent == s.parent {
			inParent++
		}
	}
	if running >= maxSessions {
		return errdefs.Statusf(http.StatusServiceUnavailable, "This agent runs %d sessions already, its most", maxSessions)
	}
	if inParent >= maxSessionsPerContainer {
		return errdefs.Statusf(http.StatusServiceUnavailable, "Container '%s' has %d sessions already, its most", s.parent, maxSessionsPerContainer)
	}
	slices.SortFunc(ended, func(a, b *session) int { return a.endedTime().Compare(b.endedTime()) })
	for i, o := range ended {
		if len(ended)-i > maxFinishedSessions || time.Since(o.endedTime()) > finishedSessionTTL {
			delete(t.byID, o.id)
		}
	}
	t.byID[s.id] = s
	return nil
}

func (t *sessionTable) remove(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.byID, id)
}

// all lists the sessions (of one parent container when parent is set).
func (t *sessionTable) all(parent string) []*session {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*session
	for _, s := range t.byID {
		if parent == "" || s.parent == parent {
			out = append(out, s)
		}
	}
	return out
}

func (s *session) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *session) endedTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.endedAt
}

// subscribe adds an output reader; nil once the output ended.
func (s *session) subscribe(block bool) *outputSub {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.outputClosed {
		return nil
	}
	q := attachQueue
	if block {
		q = 16
	}
	sub := &outputSub{ch: make(chan *agentapi.ProcessIO, q), gone: make(chan struct{}), block: block}
	if s.subs == nil {
		s.subs = map[*outputSub]bool{}
	}
	s.subs[sub] = true
	return sub
}

// publish hands rec to every reader: the launch stream is waited for, an
// attached reader that fell attachQueue records behind is dropped.
func (s *session) publish(rec *agentapi.ProcessIO) {
	s.pubMu.Lock()
	defer s.pubMu.Unlock()
	s.mu.Lock()
	subs := make([]*outputSub, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		if sub.block {
			select {
			case sub.ch <- rec:
			case <-sub.gone:
				s.drop(sub)
			}
			continue
		}
		select {
		case sub.ch <- rec:
		default:
			s.drop(sub)
		}
	}
}

// drop stops feeding a reader; its stream ends.
func (s *session) drop(sub *outputSub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs[sub] {
		delete(s.subs, sub)
		close(sub.ch)
	}
}

// closeOutput ends every reader's stream; no publisher runs any more.
func (s *session) closeOutput() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outputClosed = true
	for sub := range s.subs {
		close(sub.ch)
	}
	s.subs = nil
}

// pump publishes what r yields as DATA records of type typ.
func (s *session) pump(r io.Reader, typ agentapi.ProcessIO_Data_Type) {
	buf := make([]byte, sessionChunk)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			s.publish(&agentapi.ProcessIO{
				Type: agentapi.ProcessIO_DATA.Enum(),
				Data: &agentapi.ProcessIO_Data{Type: typ.Enum(), Data: slices.Clone(buf[:n])},
			})
		}
		if err != nil {
			return
		}
	}
}

// run pumps the output, waits for the command, and records how it ended.
func (s *session) run() {
	var pumps sync.WaitGroup
	pumps.Go(func() { s.pump(s.proc.Stdout(), agentapi.ProcessIO_Data_STDOUT) })
	if e := s.proc.Stderr(); e != nil {
		pumps.Go(func() { s.pump(e, agentapi.ProcessIO_Data_STDERR) })
	}
	status, err := s.proc.Wait(context.Background())
	if err != nil {
		status = -1
	}
	drained := make(chan struct{})
	go func() { pumps.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(sessionDrainGrace):
		// Something the command started holds its output: the
		// session is over all the same.
	}
	s.proc.Close()
	<-drained
	s.closeOutput()
	s.mu.Lock()
	s.status, s.endedAt = status, time.Now()
	s.mu.Unlock()
	close(s.done)
	s.log.Info("session ended", "container_id", s.id, "parent", s.parent, "wait_status", status)
}

// ---- calls ----

// serveSessionCall serves the nested container calls; false for any other.
func (a *Agent) serveSessionCall(w http.ResponseWriter, r *http.Request, call *agentapi.Call) bool {
	var err error
	switch call.GetType() {
	case agentapi.Call_LAUNCH_NESTED_CONTAINER_SESSION:
		a.launchSession(w, r, call.GetLaunchNestedContainerSession())
		return true
	case agentapi.Call_ATTACH_CONTAINER_OUTPUT:
		a.attachOutput(w, r, call.GetAttachContainerOutput().GetContainerId())
		return true
	case agentapi.Call_WAIT_NESTED_CONTAINER:
		err = a.waitSession(w, r, call.GetWaitNestedContainer().GetContainerId(), true)
	case agentapi.Call_WAIT_CONTAINER:
		err = a.waitSession(w, r, call.GetWaitContainer().GetContainerId(), false)
	case agentapi.Call_KILL_NESTED_CONTAINER:
		c := call.GetKillNestedContainer()
		err = a.killSession(r, c.GetContainerId(), c.Signal)
	case agentapi.Call_KILL_CONTAINER:
		c := call.GetKillContainer()
		err = a.killSession(r, c.GetContainerId(), c.Signal)
	case agentapi.Call_REMOVE_NESTED_CONTAINER:
		err = a.removeSession(call.GetRemoveNestedContainer().GetContainerId())
	case agentapi.Call_REMOVE_CONTAINER:
		err = a.removeSession(call.GetRemoveContainer().GetContainerId())
	case agentapi.Call_ATTACH_CONTAINER_INPUT:
		err = errdefs.Statusf(http.StatusBadRequest, "ATTACH_CONTAINER_INPUT is a streaming request: send it as Content-Type %s, with Message-Content-Type", mediaTypeRecordIO)
	default:
		return false
	}
	if err != nil {
		errdefs.HTTPError(w, err)
	}
	return true
}

// nestedID validates a session's container id: a name, with a parent:
// an executor's container (itself without one), or a task of a group's
// nested container (whose parent is its executor's container), then
// returned as task with parent its executor's.
func nestedID(id *mesos.ContainerID) (value, parent, task string, err error) {
	if err := validate.ID("container_id.value", id.GetValue()); err != nil {
		return "", "", "", errdefs.WithStatus(http.StatusBadRequest, err)
	}
	p := id.GetParent()
	if p == nil {
		return "", "", "", errdefs.Statusf(http.StatusBadRequest, "Container '%s' has no parent: this agent runs no standalone containers", id.GetValue())
	}
	if err := validate.ID("container_id.parent.value", p.GetValue()); err != nil {
		return "", "", "", errdefs.WithStatus(http.StatusBadRequest, err)
	}
	if gp := p.GetParent(); gp != nil {
		if err := validate.ID("container_id.parent.parent.value", gp.GetValue()); err != nil {
			return "", "", "", errdefs.WithStatus(http.StatusBadRequest, err)
		}
		if gp.GetParent() != nil {
			return "", "", "", errdefs.Statusf(http.StatusBadRequest, "Container '%s' is nested three times: a session's parent is an executor's container or a task's nested one", id.GetValue())
		}
		return id.GetValue(), gp.GetValue(), p.GetValue(), nil
	}
	return id.GetValue(), p.GetValue(), "", nil
}

// lookupSession finds a session by its id (the parent, when the caller
// names one, must match: Mesos's clients often send the value alone).
func (a *Agent) lookupSession(id *mesos.ContainerID) (*session, error) {
	if err := validate.ID("container_id.value", id.GetValue()); err != nil {
		return nil, errdefs.WithStatus(http.StatusBadRequest, err)
	}
	s := a.sessions.get(id.GetValue())
	if s == nil || (id.GetParent() != nil && id.GetParent().GetValue() != s.parent && id.GetParent().GetValue() != s.task) {
		return nil, fmt.Errorf("Container '%s' not found (only nested container sessions are): %w", id.GetValue(), errdefs.ErrNotFound)
	}
	return s, nil
}

// sessionArgv is the command of a session, as the mesos containerizer
// reads an executor's: shell (the default) runs value with /bin/sh -c,
// else value is the program and arguments its argv.
func sessionArgv(c *mesos.CommandInfo) ([]string, error) {
	if c == nil || c.GetValue() == "" {
		return nil, errdefs.Statusf(http.StatusBadRequest, "Expecting 'launch_nested_container_session.command.value' to be present")
	}
	if len(c.GetArguments()) > validate.MaxArgs {
		return nil, errdefs.Statusf(http.StatusBadRequest, "The command has %d arguments, more than the %d allowed", len(c.GetArguments()), validate.MaxArgs)
	}
	for _, s := range append([]string{c.GetValue()}, c.GetArguments()...) {
		if err := validate.Text("command argument", s, validate.MaxArgLen); err != nil {
			return nil, errdefs.WithStatus(http.StatusBadRequest, err)
		}
		if strings.IndexByte(s, 0) >= 0 {
			return nil, errdefs.Statusf(http.StatusBadRequest, "A command argument holds a NUL byte")
		}
	}
	if c.Shell == nil || c.GetShell() {
		return []string{"/bin/sh", "-c", c.GetValue()}, nil
	}
	args := c.GetArguments()
	if len(args) == 0 {
		args = []string{c.GetValue()}
	}
	return append([]string{c.GetValue()}, args[1:]...), nil
}

// commandEnv is a command's own variables (secrets are not resolved here).
func commandEnv(c *mesos.CommandInfo) ([]string, error) {
	vars := c.GetEnvironment().GetVariables()
	if len(vars) > validate.MaxEnvVars {
		return nil, errdefs.Statusf(http.StatusBadRequest, "The command has %d environment variables, more than the %d allowed", len(vars), validate.MaxEnvVars)
	}
	var env []string
	for _, v := range vars {
		if v.GetType() == mesos.Environment_Variable_SECRET {
			return nil, errdefs.Statusf(http.StatusBadRequest, "Secret environment variables are not supported")
		}
		if v.GetName() == "" || strings.ContainsAny(v.GetName(), "=\x00") || strings.IndexByte(v.GetValue(), 0) >= 0 {
			return nil, errdefs.Statusf(http.StatusBadRequest, "Invalid environment variable %q", v.GetName())
		}
		env = append(env, v.GetName()+"="+v.GetValue())
	}
	return env, nil
}

// sessionTarget is what a session needs of the executor it enters.
type sessionTarget struct {
	es      *executorState
	fw      *mesos.FrameworkInfo
	user    string // the task's user; "" the agent's
	taskEnv []string
	sandbox string // where the session starts: the executor's, or a task of a group's
}

// sessionTargetOf finds the running executor of container cid. A
// container whose tasks all ended, or that is no longer running, is
// refused (409) with what became of it; an unknown one is 404.
func (a *Agent) sessionTargetOf(cid string) (*sessionTarget, error) {
	a.mu.Lock()
	var target *sessionTarget
	var firstTask *mesos.TaskInfo
	var ended string
	find := func(fw *framework, es *executorState, live bool) bool {
		if es.containerID != cid {
			return false
		}
		var task *taskState
		for _, m := range []map[string]*taskState{es.launched, es.queued} {
			for _, ts := range m {
				if !mesos.IsTerminal(ts.state) {
					task = ts
				}
			}
		}
		switch {
		case !live || es.phase >= phaseKilling:
			ended = "its executor has ended"
		case task == nil:
			ended = "its tasks have ended"
			for _, ts := range es.terminal {
				ended = "task '" + ts.info.GetTaskId().GetValue() + "' has ended (" + ts.state.String() + ")"
			}
		case es.handle == nil:
			ended = "it is still starting"
		default:
			target = &sessionTarget{es: es, fw: fw.info}
			firstTask = task.info
		}
		return true
	}
	found := false
	for _, fw := range a.frameworks {
		for _, es := range fw.executors {
			found = found || find(fw, es, es.live())
		}
		for _, es := range fw.completed {
			found = found || find(fw, es, false)
		}
	}
	for _, fw := range a.completed {
		for _, es := range append(mapValues(fw.executors), fw.completed...) {
			found = found || find(fw, es, false)
		}
	}
	a.mu.Unlock()
	switch {
	case target != nil:
	case found:
		return nil, errdefs.Statusf(http.StatusConflict, "Cannot enter container '%s': %s", cid, ended)
	default:
		return nil, fmt.Errorf("Container '%s' not found: no executor of this agent runs in it: %w", cid, errdefs.ErrNotFound)
	}
	es := target.es
	// Looked up outside the lock: it reads the host's user database.
	target.user = a.taskUser(es, firstTask, target.fw)
	env := a.executorEnv(es, es.directory, target.fw)
	// The session is an operator's, not the executor's: it does not get
	// to speak for the executor.
	env = slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, EnvExecutorToken+"=") })
	if es.commandTask {
		a.mu.Lock()
		for _, m := range []map[string]*taskState{es.launched, es.queued} {
			for _, ts := range m {
				for _, v := range ts.info.GetCommand().GetEnvironment().GetVariables() {
					if v.GetType() != mesos.Environment_Variable_SECRET {
						env = append(env, v.GetName()+"="+v.GetValue())
					}
				}
			}
		}
		a.mu.Unlock()
	}
	target.taskEnv = env
	target.sandbox = es.directory
	return target, nil
}

// sessionInTask narrows target to the task of its group whose nested
// container is cid: the session starts in the task's sandbox, with its
// MESOS_SANDBOX and its command's variables, as its user, in its own
// cgroup (where it has one). 404 when no running task has it.
func (a *Agent) sessionInTask(target *sessionTarget, cid string) error {
	es := target.es
	a.mu.Lock()
	var task *mesos.TaskInfo
	if isDefaultExecutor(es) {
		for _, m := range []map[string]*taskState{es.launched, es.queued} {
			for tid, ts := range m {
				if defaultexec.NestedContainerID(es.containerID, tid) == cid && !mesos.IsTerminal(ts.state) {
					task = ts.info
				}
			}
		}
	}
	a.mu.Unlock()
	if task == nil {
		return fmt.Errorf("Container '%s' not found: no running task of container '%s' has it: %w", cid, es.containerID, errdefs.ErrNotFound)
	}
	dir := filepath.Join(es.directory, defaultexec.TasksDir, task.GetTaskId().GetValue())
	env := append(slices.Clip(target.taskEnv), "MESOS_SANDBOX="+dir, "MESOS_DIRECTORY="+dir)
	for _, v := range task.GetCommand().GetEnvironment().GetVariables() {
		if v.GetType() != mesos.Environment_Variable_SECRET {
			env = append(env, v.GetName()+"="+v.GetValue())
		}
	}
	target.taskEnv, target.sandbox = env, dir
	// A task that names its user runs as it when its executor is root (the
	// default executor switches to it then), and so does its session.
	if u := task.GetCommand().GetUser(); u != "" && target.user == "" {
		target.user = u
	}
	return nil
}

func mapValues(m map[string]*executorState) []*executorState {
	out := make([]*executorState, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// streamCodec is how an output stream's records are encoded: Mesos's
// clients ask for Accept: application/recordio with the records' type in
// Message-Accept; a client that asks for JSON or protobuf itself gets
// the records framed in it. recordIO says which.
func streamCodec(r *http.Request) (c codec.Codec, recordIO bool, err error) {
	if acceptsRecordIO(r.Header.Get("Accept")) {
		c, err = codec.ForAccept(r.Header.Get("Message-Accept"), codec.JSON)
		return c, true, err
	}
	c, err = codec.ForAccept(r.Header.Get("Accept"), codec.JSON)
	return c, false, err
}

// launchSession serves LAUNCH_NESTED_CONTAINER_SESSION.
func (a *Agent) launchSession(w http.ResponseWriter, r *http.Request, c *agentapi.Call_LaunchNestedContainerSession) {
	fail := func(err error) { errdefs.HTTPError(w, err) }
	id, parent, taskCID, err := nestedID(c.GetContainerId())
	if err != nil {
		fail(err)
		return
	}
	argv, err := sessionArgv(c.GetCommand())
	if err != nil {
		fail(err)
		return
	}
	env, err := commandEnv(c.GetCommand())
	if err != nil {
		fail(err)
		return
	}
	if ct := c.GetContainer(); ct != nil && ct.GetType() != mesos.ContainerInfo_MESOS {
		fail(errdefs.Statusf(http.StatusBadRequest, "A session's container must be of type MESOS (it joins its parent's)"))
		return
	}
	tty := c.GetContainer().GetTtyInfo() != nil
	ws := c.GetContainer().GetTtyInfo().GetWindowSize()
	out, recordIO, err := streamCodec(r)
	if err != nil {
		fail(err)
		return
	}
	enterer, ok := a.cz.(containerizer.Enterer)
	if !ok {
		fail(errdefs.Statusf(http.StatusNotImplemented, "This agent's containerizer cannot run commands inside containers"))
		return
	}
	target, err := a.sessionTargetOf(parent)
	if err == nil && taskCID != "" {
		err = a.sessionInTask(target, taskCID)
	}
	if err != nil {
		fail(err)
		return
	}
	if err := a.cfg.ACLs.Check("launch_nested_containers_sessions", operatorPrincipal(r), target.userName()); err != nil {
		fail(err)
		return
	}
	if u := c.GetCommand().GetUser(); u != "" && u != target.userName() {
		fail(errdefs.Statusf(http.StatusForbidden, "A session runs as its task's user (%s), not as '%s'", target.userName(), u))
		return
	}
	s := &session{
		id: id, parent: parent, task: taskCID, fwID: target.es.frameworkID, exID: target.es.info.GetExecutorId().GetValue(),
		user: target.userName(), tty: tty, done: make(chan struct{}), status: -1, log: a.log,
	}
	if err := a.sessions.reserve(s); err != nil {
		fail(err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), sessionStartTimeout)
	proc, err := enterer.Enter(ctx, parent, containerizer.EnterSpec{
		Argv: argv, Env: env, TaskEnv: target.taskEnv, User: target.user, SandboxDir: target.sandbox, Nested: taskCID,
		TTY: tty, Rows: uint16(min(ws.GetRows(), 1<<16-1)), Cols: uint16(min(ws.GetColumns(), 1<<16-1)),
	})
	cancel()
	if err != nil {
		a.sessions.remove(id)
		if errors.Is(err, containerizer.ErrNotSupported) {
			err = errdefs.WithStatus(http.StatusNotImplemented, err)
		}
		fail(err)
		return
	}
	s.mu.Lock()
	s.proc = proc // read by endSessionsOf, attach and kill from other goroutines
	s.mu.Unlock()
	a.log.Info("session started", "container_id", id, "parent", parent, "framework_id", s.fwID, "executor_id", s.exID,
		"command", argv[0], "tty", tty, "user", target.userName(), "principal", operatorPrincipal(r), "remote_addr", r.RemoteAddr)
	primary := s.subscribe(true)
	go s.run()
	a.streamOutput(w, r, s, primary, out, recordIO, true)
}

func (t *sessionTarget) userName() string {
	if t.user != "" {
		return t.user
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return ""
}

// streamOutput writes a session's output records to w until the output
// ends, or until the client goes (then, for the launch stream, the
// session is killed: its life is the connection's).
func (a *Agent) streamOutput(w http.ResponseWriter, r *http.Request, s *session, sub *outputSub, c codec.Codec, recordIO, owner bool) {
	defer close(sub.gone)
	h := w.Header()
	if recordIO {
		h.Set("Content-Type", mediaTypeRecordIO)
		h.Set("Message-Content-Type", c.MediaType())
	} else {
		h.Set("Content-Type", c.MediaType())
	}
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	enc := recordio.NewEncoder(w, c)
	write := func(rec *agentapi.ProcessIO) error {
		_ = rc.SetWriteDeadline(time.Now().Add(outputWriteTimeout))
		return enc.Encode(rec)
	}
	tick := time.NewTicker(sessionHeartbeat)
	defer tick.Stop()
	heartbeat := &agentapi.ProcessIO{Type: agentapi.ProcessIO_CONTROL.Enum(), Control: &agentapi.ProcessIO_Control{
		Type:      agentapi.ProcessIO_Control_HEARTBEAT.Enum(),
		Heartbeat: &agentapi.ProcessIO_Control_Heartbeat{Interval: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(sessionHeartbeat))}},
	}}
	for {
		var err error
		select {
		case rec, ok := <-sub.ch:
			if !ok {
				if owner {
					// The status is recorded before the stream ends, so
					// a WAIT right after finds it.
					<-s.done
				}
				return
			}
			err = write(rec)
		case <-tick.C:
			err = write(heartbeat)
		case <-r.Context().Done():
			err = r.Context().Err()
		}
		if err != nil {
			if owner && !s.ended() {
				a.log.Info("session's client went away; killing it", "container_id", s.id, "reason", err)
				_ = s.process().Signal(context.Background(), syscall.SIGKILL)
			}
			return
		}
	}
}

// attachOutput serves ATTACH_CONTAINER_OUTPUT: the output from now on,
// of a session, or of a task's own container (attach.go).
func (a *Agent) attachOutput(w http.ResponseWriter, r *http.Request, id *mesos.ContainerID) {
	if a.sessions.get(id.GetValue()) == nil {
		a.attachTaskOutput(w, r, id)
		return
	}
	s, err := a.lookupSession(id)
	if err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	if err := a.cfg.ACLs.Check("attach_containers_output", operatorPrincipal(r), s.user); err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	c, recordIO, err := streamCodec(r)
	if err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	sub := s.subscribe(false)
	if sub == nil || s.process() == nil {
		errdefs.HTTPError(w, errdefs.Statusf(http.StatusConflict, "Container '%s' has ended", s.id))
		return
	}
	a.streamOutput(w, r, s, sub, c, recordIO, false)
}

// waitSession serves WAIT_NESTED_CONTAINER and WAIT_CONTAINER.
func (a *Agent) waitSession(w http.ResponseWriter, r *http.Request, id *mesos.ContainerID, nested bool) error {
	s, err := a.lookupSession(id)
	if err != nil {
		return err
	}
	respCodec, err := codec.ForAccept(r.Header.Get("Accept"), codec.JSON)
	if err != nil {
		return err
	}
	select {
	case <-s.done:
	case <-r.Context().Done():
		return nil
	}
	s.mu.Lock()
	status := s.status
	s.mu.Unlock()
	var exit *int32
	if status != -1 {
		exit = proto.Int32(int32(status))
	}
	resp := &agentapi.Response{}
	if nested {
		resp.Type = agentapi.Response_WAIT_NESTED_CONTAINER.Enum()
		resp.WaitNestedContainer = &agentapi.Response_WaitNestedContainer{ExitStatus: exit}
	} else {
		resp.Type = agentapi.Response_WAIT_CONTAINER.Enum()
		resp.WaitContainer = &agentapi.Response_WaitContainer{ExitStatus: exit}
	}
	data, err := respCodec.Marshal(resp)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", respCodec.MediaType())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
	return nil
}

// killSession serves KILL_NESTED_CONTAINER and KILL_CONTAINER; a session
// that ended already is not an error.
func (a *Agent) killSession(r *http.Request, id *mesos.ContainerID, signal *int32) error {
	s, err := a.lookupSession(id)
	if err != nil {
		return err
	}
	sig := syscall.SIGKILL
	if signal != nil {
		if *signal <= 0 || *signal > 64 {
			return errdefs.Statusf(http.StatusBadRequest, "Invalid signal %d", *signal)
		}
		sig = syscall.Signal(*signal)
	}
	proc := s.process()
	if proc == nil || s.ended() {
		return nil
	}
	a.log.Info("session signalled by the operator", "container_id", s.id, "signal", sig.String(), "principal", operatorPrincipal(r), "remote_addr", r.RemoteAddr)
	return proc.Signal(r.Context(), sig)
}

// removeSession serves REMOVE_NESTED_CONTAINER and REMOVE_CONTAINER: an
// ended session is forgotten; a running one may not be.
func (a *Agent) removeSession(id *mesos.ContainerID) error {
	if err := validate.ID("container_id.value", id.GetValue()); err != nil {
		return errdefs.WithStatus(http.StatusBadRequest, err)
	}
	s := a.sessions.get(id.GetValue())
	if s == nil {
		return nil
	}
	if !s.ended() {
		return errdefs.Statusf(http.StatusConflict, "Container '%s' is still running: kill it first", s.id)
	}
	a.sessions.remove(s.id)
	return nil
}

// endSessionsOf kills the sessions of a container that ended: a command
// entered into a container without a pid namespace or a cgroup would
// outlive it otherwise. Every session when cid is "" (the agent stops).
func (a *Agent) endSessionsOf(cid string) {
	for _, s := range a.sessions.all(cid) {
		if proc := s.process(); proc != nil && !s.ended() {
			_ = proc.Signal(context.Background(), syscall.SIGKILL)
		}
	}
}

// sessionContainers are the running sessions, as GET_CONTAINERS lists
// them with show_nested.
func (a *Agent) sessionContainers() []*agentapi.Response_GetContainers_Container {
	var out []*agentapi.Response_GetContainers_Container
	for _, s := range a.sessions.all("") {
		if s.ended() || s.process() == nil {
			continue
		}
		out = append(out, &agentapi.Response_GetContainers_Container{
			FrameworkId: &mesos.FrameworkID{Value: proto.String(s.fwID)},
			ExecutorId:  &mesos.ExecutorID{Value: proto.String(s.exID)},
			ContainerId: &mesos.ContainerID{Value: proto.String(s.id), Parent: &mesos.ContainerID{Value: proto.String(s.parent)}},
		})
	}
	return out
}

// serveAttachInput serves ATTACH_CONTAINER_INPUT, a streaming request
// (Content-Type application/recordio, the records' type in
// Message-Content-Type): the first record names the session, the next
// feed it. It answers 200 once the client ends its stream (or the session
// ends); only one input stream per session at a time.
func (a *Agent) serveAttachInput(w http.ResponseWriter, r *http.Request) {
	if err := a.attachInput(w, r); err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (a *Agent) attachInput(w http.ResponseWriter, r *http.Request) error {
	mt := r.Header.Get("Message-Content-Type")
	if mt == "" {
		mt = codec.MediaTypeJSON
	}
	in, err := codec.ForContentType(mt)
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	dec := recordio.NewDecoder(r.Body, in, maxInputRecord)
	next := func() (*agentapi.Call_AttachContainerInput, error) {
		_ = rc.SetReadDeadline(time.Now().Add(inputIdleTimeout))
		call := &agentapi.Call{}
		if err := dec.Decode(call); err != nil {
			return nil, err
		}
		if call.GetType() != agentapi.Call_ATTACH_CONTAINER_INPUT || call.GetAttachContainerInput() == nil {
			return nil, errdefs.Statusf(http.StatusBadRequest, "Expecting 'type' to be 'ATTACH_CONTAINER_INPUT' with 'attach_container_input' in every record of a streaming request")
		}
		return call.GetAttachContainerInput(), nil
	}
	first, err := next()
	if errors.Is(err, io.EOF) {
		return errdefs.Statusf(http.StatusBadRequest, "Expecting a first record of type 'CONTAINER_ID'")
	}
	if err != nil {
		return inputError(err)
	}
	if first.GetType() != agentapi.Call_AttachContainerInput_CONTAINER_ID || first.GetContainerId() == nil {
		return errdefs.Statusf(http.StatusBadRequest, "Expecting the first record to be of type 'CONTAINER_ID' with 'container_id'")
	}
	if a.sessions.get(first.GetContainerId().GetValue()) == nil {
		return a.attachTaskInput(r, rc, first.GetContainerId(), next)
	}
	s, err := a.lookupSession(first.GetContainerId())
	if err != nil {
		return err
	}
	if err := a.cfg.ACLs.Check("attach_containers_input", operatorPrincipal(r), s.user); err != nil {
		return err
	}
	s.mu.Lock()
	switch {
	case s.proc == nil || s.ended():
		s.mu.Unlock()
		return errdefs.Statusf(http.StatusConflict, "Container '%s' has ended", s.id)
	case s.inputAttached:
		s.mu.Unlock()
		return errdefs.Statusf(http.StatusConflict, "Container '%s' has an input stream attached already", s.id)
	}
	s.inputAttached = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.inputAttached = false
		s.mu.Unlock()
	}()
	// A session that ends ends its input stream too: the read in progress
	// gives up.
	handled := make(chan struct{})
	defer close(handled)
	go func() {
		select {
		case <-s.done:
			_ = rc.SetReadDeadline(time.Now())
		case <-handled:
		}
	}()
	stdin := s.proc.Stdin()
	for {
		rec, err := next()
		if errors.Is(err, io.EOF) || s.ended() {
			return nil
		}
		if err != nil {
			return inputError(err)
		}
		if rec.GetType() != agentapi.Call_AttachContainerInput_PROCESS_IO || rec.GetProcessIo() == nil {
			return errdefs.Statusf(http.StatusBadRequest, "Expecting records of type 'PROCESS_IO' after the first")
		}
		pio := rec.GetProcessIo()
		switch pio.GetType() {
		case agentapi.ProcessIO_DATA:
			if pio.GetData().GetType() != agentapi.ProcessIO_Data_STDIN {
				return errdefs.Statusf(http.StatusBadRequest, "Expecting 'process_io.data.type' to be 'STDIN'")
			}
			data := pio.GetData().GetData()
			if len(data) == 0 {
				// Mesos's end of input.
				_ = stdin.Close()
				continue
			}
			if _, err := stdin.Write(data); err != nil {
				// The command stopped reading (it exited, or closed its
				// input): what follows has nowhere to go.
				return errdefs.Statusf(http.StatusConflict, "Container '%s' does not take input any more: %v", s.id, err)
			}
		case agentapi.ProcessIO_CONTROL:
			switch pio.GetControl().GetType() {
			case agentapi.ProcessIO_Control_TTY_INFO:
				ws := pio.GetControl().GetTtyInfo().GetWindowSize()
				if ws != nil && s.tty {
					_ = s.proc.Resize(r.Context(), uint16(min(ws.GetRows(), 1<<16-1)), uint16(min(ws.GetColumns(), 1<<16-1)))
				}
			case agentapi.ProcessIO_Control_HEARTBEAT:
			default:
				return errdefs.Statusf(http.StatusBadRequest, "Unknown control record type %s", pio.GetControl().GetType())
			}
		default:
			return errdefs.Statusf(http.StatusBadRequest, "Expecting 'process_io.type' to be 'DATA' or 'CONTROL'")
		}
	}
}

// inputError classes a failure to read an input stream.
func inputError(err error) error {
	if errdefs.HTTPStatus(err) != http.StatusInternalServerError {
		return err
	}
	return errdefs.Statusf(http.StatusBadRequest, "Failed to read the input stream: %v", err)
}
