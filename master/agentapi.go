package master

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/api/v1/validate"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/master/allocator"
	"github.com/mesolite/mesolite/master/store"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

// ProtocolVersion is the master-agent protocol version this master speaks
// (docs/agent-protocol.md). A REGISTER with another version is refused.
const ProtocolVersion = 1

// handleAgent serves POST /api/v1/agent.
func (m *Master) handleAgent(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && !m.isLeader() {
		m.redirect(w, r)
		return
	}
	call := &agentpb.Call{}
	reqCodec, err := readCall(w, r, call)
	if err != nil {
		writeError(w, err)
		return
	}
	switch call.GetType() {
	case agentpb.Call_REGISTER:
		m.registerHTTP(w, r, call, reqCodec)
		return
	case agentpb.Call_UPDATE, agentpb.Call_MESSAGE, agentpb.Call_EXECUTOR_EXITED, agentpb.Call_UPDATE_RESOURCES, agentpb.Call_PONG:
	default:
		writeError(w, httpErr(http.StatusBadRequest, "Unknown or missing call type %q", call.GetType().String()))
		return
	}
	if err := m.agentCall(r, call); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// registration is a validated REGISTER.
type registration struct {
	id      string // empty for a new agent
	claimed bool   // the agent came with an id
	info    *mesos.AgentInfo
	total   resources.Resources
	ip      string
	port    int
	addr    string
	https   bool
	version string
	reg     *agentpb.Call_Register
	// principal the agent authenticated as ("" without
	// --authenticate_agents); token its registration token, tokenHash
	// the digest the master keeps.
	principal string
	token     string
	tokenHash []byte
}

func validateRegister(call *agentpb.Call) (*registration, error) {
	reg := call.GetRegister()
	if reg == nil {
		return nil, errors.New("Expecting 'register' to be present")
	}
	if v := reg.GetProtocolVersion(); v != ProtocolVersion {
		return nil, fmt.Errorf("Agent speaks protocol version %d; this master speaks version %d: upgrade the older of the two", v, ProtocolVersion)
	}
	info := proto.Clone(reg.GetAgentInfo()).(*mesos.AgentInfo)
	if info.GetHostname() == "" {
		return nil, errors.New("'agent_info.hostname' must not be empty")
	}
	for _, f := range []struct{ kind, s string }{
		{"'agent_info.hostname'", info.GetHostname()},
		{"'version'", reg.GetVersion()},
		{"'address.ip'", reg.GetAddress().GetIp()},
		{"'address.hostname'", reg.GetAddress().GetHostname()},
	} {
		if err := validate.Text(f.kind, f.s, validate.MaxNameLen); err != nil {
			return nil, err
		}
	}
	if n := len(info.GetAttributes()); n > validate.MaxLabels {
		return nil, fmt.Errorf("'agent_info.attributes' has %d entries, more than the %d allowed", n, validate.MaxLabels)
	}
	total, err := resources.FromProto(info.GetResources())
	if err != nil {
		return nil, fmt.Errorf("'agent_info.resources' are invalid: %v", err)
	}
	id := call.GetAgentId().GetValue()
	if id == "" {
		id = info.GetId().GetValue()
	} else if info.Id != nil && info.GetId().GetValue() != id {
		return nil, fmt.Errorf("'agent_id' %q differs from 'agent_info.id' %q", id, info.GetId().GetValue())
	}
	if id != "" {
		if err := validateID("Agent ID", id); err != nil {
			return nil, err
		}
	}
	addr := reg.GetAddress()
	port := int(addr.GetPort())
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("'address.port' %d is not a TCP port", port)
	}
	ip := addr.GetIp()
	if ip == "" {
		ip = addr.GetHostname()
	}
	if ip == "" {
		ip = info.GetHostname()
	}
	if info.Port == nil {
		info.Port = proto.Int32(int32(port))
	}
	for _, t := range reg.GetTasks() {
		if t.GetAgentId().GetValue() != "" && id != "" && t.GetAgentId().GetValue() != id {
			return nil, fmt.Errorf("task %s is reported on agent %s, not %s", t.GetTaskId().GetValue(), t.GetAgentId().GetValue(), id)
		}
	}
	return &registration{
		id: id, claimed: id != "", info: info, total: total, ip: ip, port: port,
		addr: net.JoinHostPort(ip, strconv.Itoa(port)), version: reg.GetVersion(), reg: reg,
	}, nil
}

func (m *Master) registerHTTP(w http.ResponseWriter, r *http.Request, call *agentpb.Call, reqCodec codec.Codec) {
	respCodec, err := codec.ForAccept(r.Header.Get("Accept"), reqCodec)
	if err != nil {
		writeError(w, err)
		return
	}
	reg, err := validateRegister(call)
	if err != nil {
		writeError(w, httpErr(http.StatusBadRequest, "%v", err))
		return
	}
	reg.principal, _ = httpauth.Principal(r.Context())
	reg.token = r.Header.Get(AgentTokenHeader)
	reg.https = r.Header.Get(AgentSchemeHeader) == "https"
	m.mu.Lock()
	if m.role != roleLeading {
		m.mu.Unlock()
		m.redirect(w, r)
		return
	}
	registeredAt := m.clock.Now()
	if m.maint.isDown(&agent{hostname: reg.info.GetHostname(), ip: reg.ip}) {
		m.mu.Unlock()
		writeError(w, httpErr(http.StatusForbidden, "Agent's machine is down for maintenance; it may register once STOP_MAINTENANCE brings it up"))
		return
	}
	var known *agent
	if reg.id == "" {
		reg.id = fmt.Sprintf("%s-S%d", m.id, m.nextAgentID.Add(1)-1)
	} else if known = m.agents[reg.id]; known != nil {
		// Refused before the registry is written, so a refused REGISTER
		// leaves the owner's record alone.
		if err := agentMayRegister(known, reg); err != nil {
			m.mu.Unlock()
			m.log.Warn("REGISTER with the id of another agent refused", "agent_id", reg.id, "principal", reg.principal, "remote_addr", r.RemoteAddr, "reason", err.Error())
			writeError(w, err)
			return
		}
		if !known.registeredTime.IsZero() {
			registeredAt = known.registeredTime
		}
	} else if u := m.unreachable[reg.id]; u != nil {
		// An agent removed earlier comes back: its id is still its own,
		// and so are the reservations made on it.
		known = &agent{id: reg.id, principal: u.rec.Principal, tokenHash: u.rec.TokenHash, reserved: storedReservations(u.rec)}
		if err := agentMayRegister(known, reg); err != nil {
			m.mu.Unlock()
			m.log.Warn("REGISTER with the id of an unreachable agent refused", "agent_id", reg.id, "principal", reg.principal, "remote_addr", r.RemoteAddr, "reason", err.Error())
			writeError(w, err)
			return
		}
		if !u.rec.RegisteredAt.IsZero() {
			registeredAt = u.rec.RegisteredAt
		}
	}
	expect := m.agents[reg.id]
	if known != nil && known.tokenHash != nil {
		reg.tokenHash = known.tokenHash
	} else {
		// A new agent, an id this master did not know, or one admitted
		// before tokens existed: from now on the id is this agent's.
		reg.token, reg.tokenHash = newAgentToken()
	}
	reg.info.Id = &mesos.AgentID{Value: proto.String(reg.id)}
	principal := reg.principal
	if known != nil && known.principal != "" {
		principal = known.principal
	}
	// Admission is durable before the agent hears of it, so that no
	// master, this one after a restart or the next leader, forgets an id
	// it handed out. Queued under the lock, so the registry sees it in
	// the order of the books; waited for outside it.
	var reserved []*mesos.Resource
	if known != nil {
		reserved = known.reserved.ToProto("")
	}
	done := m.persist(store.PutAgent{Agent: store.Agent{ID: reg.id, Info: proto.Clone(reg.info).(*mesos.AgentInfo), Address: reg.addr, Version: reg.version,
		RegisteredAt: registeredAt, Principal: principal, TokenHash: reg.tokenHash, Reserved: reserved}})
	m.mu.Unlock()
	if err := <-done; err != nil {
		m.log.Error("cannot persist agent", "agent_id", reg.id, "error", err)
		writeError(w, persistError(err))
		return
	}
	s := newStream(uuid.NewString(), respCodec)
	if err := m.admitAgent(reg, s, expect); err != nil {
		if errors.Is(err, errNotLeader) {
			m.redirect(w, r)
			return
		}
		writeError(w, err)
		return
	}
	w.Header().Set(AgentTokenHeader, reg.token)
	startStream(w, respCodec, s.id)
	ping, _ := respCodec.Marshal(&agentpb.Event{Type: agentpb.Event_PING.Enum()})
	err = s.serve(r.Context(), w, ping, m.cfg.AgentPingTimeout, m.cfg.AgentPingTimeout)
	m.agentStreamEnded(reg.id, s, err)
}

// agentMayRegister says whether reg may take over the id of the known agent
// a: a REGISTER with a real agent's id would otherwise disconnect it,
// report its running tasks lost and receive its tasks and their secrets.
// The id belongs to the principal that registered it (once it had one)
// and to whoever holds its registration token. m.mu must be held.
func agentMayRegister(a *agent, reg *registration) error {
	if a.principal != "" && !principalMatches(a.principal, reg.principal) {
		return fmt.Errorf("Agent '%s' is registered by another principal: %w", a.id, errdefs.ErrForbidden)
	}
	if a.tokenHash != nil && !agentTokenMatches(reg.token, a.tokenHash) {
		return fmt.Errorf("Agent '%s' is registered by another agent: a REGISTER with its id must carry its %s: %w", a.id, AgentTokenHeader, errdefs.ErrForbidden)
	}
	return nil
}

// fillAgent sets an agent's description from what it registered with.
func (m *Master) fillAgent(a *agent, info *mesos.AgentInfo, addr, version string) {
	a.info = info
	a.hostname = info.GetHostname()
	a.addr = addr
	a.version = version
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		a.ip = host
		a.port, _ = strconv.Atoi(port)
	}
	total, _ := resources.FromProto(info.GetResources())
	a.total = m.withReservations(a, total)
}

// admitAgent installs a registration: a new agent, or an agent coming back
// (after a disconnection, an agent restart or a master failover), whose
// reported tasks are reconciled with the master's books.
func (m *Master) admitAgent(reg *registration, s *stream, expect *agent) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading || m.shutdown {
		return errNotLeader
	}
	now := m.clock.Now()
	a := m.agents[reg.id]
	if a != expect {
		// Removed (or admitted by another REGISTER) while the registry
		// was written: what was written may no longer be true. The
		// agent retries and is judged afresh.
		return httpErr(http.StatusServiceUnavailable, "Agent '%s' changed state during its registration; retry", reg.id)
	}
	_, returning := m.unreachable[reg.id]
	log := m.log.With("agent_id", reg.id, "hostname", reg.info.GetHostname(), "address", reg.addr)
	reregister := a != nil
	if a != nil {
		if err := agentMayRegister(a, reg); err != nil {
			log.Warn("REGISTER with the id of another agent refused", "principal", reg.principal, "reason", err.Error())
			return err
		}
	}
	if a == nil {
		a = newAgent(reg.id)
		a.registeredTime = now
		m.agents[a.id] = a
		if u := m.unreachable[reg.id]; u != nil {
			a.reserved = storedReservations(u.rec)
		}
		switch {
		case returning:
			log.Warn("agent re-registered after it was removed as unreachable", "tasks", len(reg.reg.GetTasks()))
			m.forgetUnreachable(reg.id)
		case reg.claimed:
			log.Info("agent re-admitted with an id this master did not know", "tasks", len(reg.reg.GetTasks()))
		}
	}
	if a.stream != nil {
		_ = a.stream.send(&agentpb.Event{Type: agentpb.Event_ERROR.Enum(), Error: &agentpb.Event_Error{Message: proto.String("agent re-registered on a new connection")}})
		a.stream.close()
	}
	// Offers on the agent are void: its resources may have changed.
	for _, o := range a.offers {
		m.removeOffer(o, true, 0)
	}
	if reregister {
		a.reregisteredTime = now
		m.counters.agentReregistrations++
	} else {
		m.counters.agentRegistrations++
	}
	if a.registeredTime.IsZero() {
		a.registeredTime = now
	}
	m.fillAgent(a, reg.info, reg.addr, reg.version)
	a.https = reg.https
	if a.principal == "" {
		a.principal = reg.principal
	}
	a.tokenHash = reg.tokenHash
	a.stream = s
	a.connected = true
	a.recovered = false
	a.removeDeadline = time.Time{}
	a.answersPings = reg.reg.GetAnswersPings()
	a.lastContact = now

	m.alloc.AddAgent(a.id, a.total, true)
	m.reconcileAgent(a, reg.reg, returning)
	for _, ts := range a.tasks {
		for _, t := range ts {
			if !t.released {
				m.alloc.Use(t.fw.id, a.id, t.role, t.res)
			}
		}
	}
	for _, es := range a.executors {
		for _, e := range es {
			m.alloc.Use(e.fwID, a.id, e.role, e.res)
		}
	}
	if addr := net.ParseIP(a.ip); addr != nil && addr.IsLoopback() && !m.selfIsLoopback() {
		log.Warn("agent advertises a loopback address to a master that is not on loopback; set the agent's --advertise_ip")
	}
	_ = s.send(&agentpb.Event{
		Type: agentpb.Event_REGISTERED.Enum(),
		Registered: &agentpb.Event_Registered{
			AgentId:                  &mesos.AgentID{Value: proto.String(a.id)},
			MasterInfo:               m.info,
			HeartbeatIntervalSeconds: proto.Float64(m.cfg.AgentPingTimeout.Seconds()),
		},
	})
	// Kills the agent missed while it was away.
	for _, ts := range a.tasks {
		for _, t := range ts {
			if t.killRequested && !mesos.IsTerminal(t.state()) {
				m.sendAgent(a, killEvent(t.fw.id, t.t.GetTaskId(), t.killPolicy))
			}
		}
	}
	log.Info("agent registered", "reregistered", reregister, "resources", a.total.String(), "tasks", len(reg.reg.GetTasks()))
	m.triggerAllocation()
	return nil
}

func (m *Master) selfIsLoopback() bool {
	ip := net.ParseIP(m.self.IP)
	return ip != nil && ip.IsLoopback()
}

// reconcileAgent brings the books in line with what a (re-)registering
// agent reports. Tasks the master knows there but the agent does not are
// lost (TASK_GONE for PARTITION_AWARE frameworks); tasks the agent reports
// that the master does not know are adopted; tasks of torn-down frameworks
// are shut down. An agent returning after it was removed (returning) had
// its tasks reported lost or unreachable: as Mesos does, the running ones
// are killed for frameworks that are not PARTITION_AWARE, and reported
// (TASK_RUNNING after TASK_UNREACHABLE) to those that are.
func (m *Master) reconcileAgent(a *agent, reg *agentpb.Call_Register, returning bool) {
	infos := make(map[string]*mesos.FrameworkInfo)
	for _, fi := range reg.GetFrameworks() {
		infos[fi.GetId().GetValue()] = fi
	}
	reported := make(map[string]map[string]*mesos.Task)
	shutdown := make(map[string]bool)
	for _, rt := range reg.GetTasks() {
		fwID := rt.GetFrameworkId().GetValue()
		if m.removedFWs[fwID] {
			shutdown[fwID] = true
			continue
		}
		if reported[fwID] == nil {
			reported[fwID] = make(map[string]*mesos.Task)
		}
		reported[fwID][rt.GetTaskId().GetValue()] = rt
	}
	for _, e := range reg.GetExecutors() {
		if fwID := e.GetFrameworkId().GetValue(); m.removedFWs[fwID] {
			shutdown[fwID] = true
		}
	}
	for fwID := range shutdown {
		m.sendAgent(a, shutdownFramework(fwID))
	}

	// Known here, not reported: gone.
	for fwID, ts := range a.tasks {
		for _, id := range sortedTaskIDs(ts) {
			t := ts[id]
			if reported[fwID][id] != nil {
				continue
			}
			if mesos.IsTerminal(t.state()) {
				// Its terminal update was delivered and the agent moved on.
				m.completeTask(t)
				continue
			}
			state := mesos.TaskState_TASK_LOST
			if t.fw.partitionAware {
				state = mesos.TaskState_TASK_GONE
			}
			msg := "Task is unknown to agent " + a.id + " which re-registered without it"
			st := &mesos.TaskStatus{
				TaskId: t.t.GetTaskId(), State: state.Enum(), Source: mesos.TaskStatus_SOURCE_MASTER.Enum(),
				Reason: mesos.TaskStatus_REASON_TASK_UNKNOWN.Enum(), Message: proto.String(msg),
				AgentId: t.t.GetAgentId(), Timestamp: proto.Float64(timestamp(m.clock.Now())),
			}
			m.setTaskState(t, st, state)
			m.completeTask(t)
			m.sendFramework(t.fw, &scheduler.Event{Type: scheduler.Event_UPDATE.Enum(), Update: &scheduler.Event_Update{Status: st}})
		}
	}

	// Executors, with their containers for sandbox links. An executor's
	// framework is its framework_id, or that of the container record or
	// the tasks that name it (an agent's synthesized command executors
	// carry none).
	containers := make(map[string]*agentpb.Call_ExecutorContainer)
	owner := make(map[string]string) // executor id -> framework id, when unambiguous
	claim := func(execID, fwID string) {
		if prev, ok := owner[execID]; ok && prev != fwID {
			owner[execID] = ""
			return
		}
		owner[execID] = fwID
	}
	for _, c := range reg.GetContainers() {
		containers[c.GetFrameworkId().GetValue()+"/"+c.GetExecutorId().GetValue()] = c
		claim(c.GetExecutorId().GetValue(), c.GetFrameworkId().GetValue())
	}
	// A command task runs under an executor whose id is the task id; the
	// master books no executor for it, as Mesos's does not.
	commandExec := make(map[string]bool)
	for fwID, ts := range reported {
		for id, rt := range ts {
			if rt.ExecutorId == nil {
				commandExec[fwID+"/"+id] = true
				claim(id, fwID)
			} else {
				claim(rt.GetExecutorId().GetValue(), fwID)
			}
		}
	}
	running := make(map[string]bool) // fw/executor ids the agent runs
	commandContainers := make(map[string]*agentpb.Call_ExecutorContainer)
	for _, ei := range reg.GetExecutors() {
		id := ei.GetExecutorId().GetValue()
		fwID := ei.GetFrameworkId().GetValue()
		if fwID == "" {
			fwID = owner[id]
		}
		if fwID == "" || shutdown[fwID] {
			if fwID == "" {
				m.log.Debug("executor of unknown framework reported; ignored", "agent_id", a.id, "executor_id", id)
			}
			continue
		}
		key := fwID + "/" + id
		running[key] = true
		if commandExec[key] {
			if c := containers[key]; c != nil {
				commandContainers[key] = c
			}
			continue
		}
		fw := m.adoptFramework(fwID, infos[fwID])
		e := fw.executor(a.id, id)
		if e == nil {
			res, err := resources.FromProto(ei.GetResources())
			if err != nil {
				m.log.Warn("executor with invalid resources reported; counting none", "agent_id", a.id, "executor_id", id, "error", err)
			}
			role := fw.allocationRole()
			if roles, _ := resources.AllocationRoles(ei.GetResources()); len(roles) == 1 {
				role = roles[0]
			}
			info := proto.Clone(ei).(*mesos.ExecutorInfo)
			info.FrameworkId = &mesos.FrameworkID{Value: proto.String(fwID)}
			e = &executor{info: info, fwID: fwID, agentID: a.id, res: res, role: role}
			if fw.executors[a.id] == nil {
				fw.executors[a.id] = map[string]*executor{}
			}
			fw.executors[a.id][id] = e
			if a.executors[fwID] == nil {
				a.executors[fwID] = map[string]*executor{}
			}
			a.executors[fwID][id] = e
		}
		if c := containers[key]; c != nil {
			e.containerID = c.GetContainerId().GetValue()
			e.directory = c.GetDirectory()
		}
	}
	// Executors the master knows here but the agent no longer runs.
	for fwID, es := range a.executors {
		for id, e := range es {
			if !running[fwID+"/"+id] {
				if fw := m.frameworks[fwID]; fw != nil {
					m.removeExecutor(a, fw, e)
				}
			}
		}
	}

	// Reported: adopt or refresh.
	for fwID, ts := range reported {
		fw := m.adoptFramework(fwID, infos[fwID])
		for id, rt := range ts {
			t := fw.tasks[id]
			if t == nil && mesos.IsTerminal(rt.GetState()) && completedOn(fw, id, a.id) {
				// Complete here already (its terminal update was
				// acknowledged): the agent lost the acknowledgement in a
				// restart and resends the update, which is acknowledged
				// for the framework, not delivered again.
				continue
			}
			adopted := false
			if t == nil || t.agentID != a.id {
				adopted = true
				if t != nil {
					if m.agents[t.agentID] != nil {
						// The master placed it on an agent it still
						// knows: one agent may not claim another's tasks.
						m.log.Warn("agent reports a task the master placed on another agent; ignored", "framework_id", fwID, "task_id", id, "agent_id", a.id, "placed_on", t.agentID)
						continue
					}
					m.log.Warn("task of a removed agent reported by another agent; adopting it", "framework_id", fwID, "task_id", id, "old_agent", t.agentID, "agent_id", a.id)
					m.completeTask(t)
				}
				t = m.adoptTask(a, fw, rt)
			}
			t.change(func(n *mesos.Task) {
				if len(rt.GetStatuses()) > 0 {
					last := rt.GetStatuses()[len(rt.GetStatuses())-1]
					if k := len(n.Statuses); k == 0 || !proto.Equal(n.Statuses[k-1], last) {
						n.Statuses = append(n.Statuses, proto.Clone(last).(*mesos.TaskStatus))
					}
				}
				n.State = rt.State
				n.StatusUpdateState = rt.StatusUpdateState
				n.StatusUpdateUuid = rt.StatusUpdateUuid
			})
			if len(rt.GetStatuses()) > 0 {
				last := rt.GetStatuses()[len(rt.GetStatuses())-1]
				if cid := last.GetContainerStatus().GetContainerId(); cid != nil {
					for cid.GetParent() != nil {
						cid = cid.GetParent()
					}
					t.containerID = cid.GetValue()
				}
			}
			if mesos.IsTerminal(rt.GetState()) && !t.released {
				t.released = true
			} else if !mesos.IsTerminal(rt.GetState()) && t.released {
				// Back from the dead (the agent was removed, then returned).
				t.released = false
			}
			if returning && adopted && !mesos.IsTerminal(rt.GetState()) {
				m.partitionedTaskBack(a, fw, t)
			}
		}
	}
	for key, c := range commandContainers {
		fwID, taskID, _ := strings.Cut(key, "/")
		if fw := m.frameworks[fwID]; fw != nil {
			if t := fw.tasks[taskID]; t != nil && t.agentID == a.id {
				t.containerID = c.GetContainerId().GetValue()
				t.directory = c.GetDirectory()
			}
		}
	}
}

// partitionedTaskBack handles a running task of an agent that returned
// after it was removed: the framework was told the task was lost
// (unreachable), so its completed copy goes, and then it is killed
// (frameworks that are not PARTITION_AWARE gave up on it and may have
// replaced it) or reported as running again (PARTITION_AWARE ones expect
// tasks to come back). m.mu must be held.
func (m *Master) partitionedTaskBack(a *agent, fw *framework, t *task) {
	id := t.id()
	before := len(fw.completedTasks)
	fw.completedTasks = slices.DeleteFunc(fw.completedTasks, func(c *task) bool { return c.id() == id && c.agentID == a.id })
	if len(fw.completedTasks) != before {
		m.persist(store.RemoveTask{FrameworkID: fw.id, TaskID: id})
	}
	if !fw.partitionAware {
		m.log.Warn("task of a framework that is not PARTITION_AWARE came back with its agent; killing it", "framework_id", fw.id, "task_id", id, "agent_id", a.id)
		t.killRequested = true
		return
	}
	m.log.Info("task came back with its agent; telling its PARTITION_AWARE framework", "framework_id", fw.id, "task_id", id, "agent_id", a.id, "state", t.state().String())
	st := &mesos.TaskStatus{
		TaskId: t.t.GetTaskId(), State: t.t.State, Source: mesos.TaskStatus_SOURCE_MASTER.Enum(),
		Reason:  mesos.TaskStatus_REASON_AGENT_REREGISTERED.Enum(),
		Message: proto.String("Agent " + a.id + " re-registered after it was removed; its task is back"),
		AgentId: &mesos.AgentID{Value: proto.String(a.id)}, Timestamp: proto.Float64(timestamp(m.clock.Now())),
	}
	if t.t.ExecutorId != nil {
		st.ExecutorId = t.t.ExecutorId
	}
	m.sendFramework(fw, &scheduler.Event{Type: scheduler.Event_UPDATE.Enum(), Update: &scheduler.Event_Update{Status: st}})
}

// adoptFramework returns the framework, creating a recovered one when an
// agent reports tasks of a framework this master has not seen subscribe.
func (m *Master) adoptFramework(fwID string, info *mesos.FrameworkInfo) *framework {
	if fw := m.frameworks[fwID]; fw != nil {
		return fw
	}
	if info == nil {
		info = &mesos.FrameworkInfo{User: proto.String(""), Name: proto.String("")}
	} else {
		info = proto.Clone(info).(*mesos.FrameworkInfo)
	}
	info.Id = &mesos.FrameworkID{Value: proto.String(fwID)}
	fw := newFramework(fwID, info)
	fw.recovered = true
	fw.failoverTimeout = m.failoverTimeout(info)
	fw.failoverDeadline = m.clock.Now().Add(max(fw.failoverTimeout, m.cfg.AgentReregisterTimeout))
	m.frameworks[fwID] = fw
	m.alloc.AddFramework(fwID, allocatorFramework(fw, false))
	m.log.Info("framework recovered from an agent's report", "framework_id", fwID, "name", info.GetName())
	return fw
}

// adoptTask records a task an agent reports that the master did not know.
func (m *Master) adoptTask(a *agent, fw *framework, rt *mesos.Task) *task {
	t := &task{t: proto.Clone(rt).(*mesos.Task), fw: fw, agentID: a.id, role: fw.allocationRole()}
	t.t.AgentId = &mesos.AgentID{Value: proto.String(a.id)}
	t.t.FrameworkId = &mesos.FrameworkID{Value: proto.String(fw.id)}
	res, err := resources.FromProto(rt.GetResources())
	if err != nil {
		m.log.Warn("task with invalid resources reported; counting none", "agent_id", a.id, "task_id", rt.GetTaskId().GetValue(), "error", err)
	}
	t.res = res
	if roles, _ := resources.AllocationRoles(rt.GetResources()); len(roles) == 1 {
		t.role = roles[0]
	}
	t.released = mesos.IsTerminal(rt.GetState())
	fw.tasks[t.id()] = t
	a.addTask(t)
	return t
}

// agentCall handles the calls an agent makes on its stream.
func (m *Master) agentCall(r *http.Request, call *agentpb.Call) error {
	id := call.GetAgentId().GetValue()
	if id == "" {
		return httpErr(http.StatusBadRequest, "Expecting 'agent_id' to be present")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading {
		return httpErr(http.StatusServiceUnavailable, "Not the leading master")
	}
	a := m.agents[id]
	if a == nil || a.stream == nil {
		return httpErr(http.StatusForbidden, "Agent '%s' is not registered: send REGISTER first", id)
	}
	sid := r.Header.Get("Mesos-Stream-Id")
	if sid == "" {
		return httpErr(http.StatusBadRequest, "All non-register calls should include the 'Mesos-Stream-Id' header")
	}
	if sid != a.stream.id {
		return httpErr(http.StatusForbidden, "The stream ID '%s' included in this request didn't match the stream ID currently associated with agent ID '%s'", sid, id)
	}
	a.lastContact = m.clock.Now()
	if m.counters.agentCalls == nil {
		m.counters.agentCalls = map[agentpb.Call_Type]uint64{}
	}
	m.counters.agentCalls[call.GetType()]++
	switch call.GetType() {
	case agentpb.Call_PONG:
	case agentpb.Call_UPDATE:
		if call.Update == nil || call.GetUpdate().Status == nil {
			return httpErr(http.StatusBadRequest, "Expecting 'update.status' to be present")
		}
		if err := validateStatusText(call.GetUpdate().GetStatus()); err != nil {
			return httpErr(http.StatusBadRequest, "Invalid status update: %v", err)
		}
		return m.statusUpdate(a, call.GetUpdate())
	case agentpb.Call_MESSAGE:
		msg := call.GetMessage()
		if msg == nil {
			return httpErr(http.StatusBadRequest, "Expecting 'message' to be present")
		}
		if err := dataCap("'message.data'", msg.GetData(), validate.MaxDataLen); err != nil {
			return httpErr(http.StatusBadRequest, "%v", err)
		}
		fwID := msg.GetFrameworkId().GetValue()
		fw := m.frameworks[fwID]
		if fw == nil || fw.stream == nil {
			m.counters.droppedMessages++
			return nil
		}
		if len(a.tasks[fwID]) == 0 && len(a.executors[fwID]) == 0 {
			// Only an executor of the framework, so an agent running
			// one of its tasks or executors, speaks to it.
			m.counters.droppedMessages++
			m.log.Warn("message for a framework with nothing on this agent refused", "framework_id", fwID, "agent_id", a.id)
			return httpErr(http.StatusForbidden, "Framework '%s' has no task or executor on agent '%s'", fwID, a.id)
		}
		m.counters.executorToFramework++
		m.sendFramework(fw, &scheduler.Event{
			Type: scheduler.Event_MESSAGE.Enum(),
			Message: &scheduler.Event_Message{
				AgentId:    &mesos.AgentID{Value: proto.String(a.id)},
				ExecutorId: msg.GetExecutorId(),
				Data:       msg.GetData(),
			},
		})
	case agentpb.Call_EXECUTOR_EXITED:
		ex := call.GetExecutorExited()
		if ex == nil {
			return httpErr(http.StatusBadRequest, "Expecting 'executor_exited' to be present")
		}
		fw := m.frameworks[ex.GetFrameworkId().GetValue()]
		if fw == nil {
			return nil
		}
		if e := fw.executor(a.id, ex.GetExecutorId().GetValue()); e != nil {
			m.removeExecutor(a, fw, e)
			m.triggerAllocation()
		}
		failure := &scheduler.Event_Failure{AgentId: &mesos.AgentID{Value: proto.String(a.id)}, ExecutorId: ex.GetExecutorId()}
		if ex.Status != nil {
			failure.Status = ex.Status
		}
		m.sendFramework(fw, &scheduler.Event{Type: scheduler.Event_FAILURE.Enum(), Failure: failure})
	case agentpb.Call_UPDATE_RESOURCES:
		ur := call.GetUpdateResources()
		if ur == nil {
			return httpErr(http.StatusBadRequest, "Expecting 'update_resources' to be present")
		}
		total, err := resources.FromProto(ur.GetResources())
		if err != nil {
			return httpErr(http.StatusBadRequest, "Invalid resources: %v", err)
		}
		for _, o := range a.offers {
			m.removeOffer(o, true, 0)
		}
		// AgentInfo values are shared with offers and state snapshots:
		// replace, never mutate.
		info := proto.Clone(a.info).(*mesos.AgentInfo)
		info.Resources = ur.GetResources()
		a.info = info
		a.total = m.withReservations(a, total)
		m.alloc.UpdateAgent(a.id, a.total)
		m.persist(store.PutAgent{Agent: agentRecord(a)})
		m.log.Info("agent resources updated", "agent_id", a.id, "resources", total.String())
		m.triggerAllocation()
	}
	return nil
}

// agentStreamEnded handles an agent's connection going away: its offers
// are rescinded and it has agentGone to come back.
func (m *Master) agentStreamEnded(id string, s *stream, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a := m.agents[id]
	if a == nil || a.stream != s || m.shutdown {
		return
	}
	m.disconnectAgent(a, m.clock.Now().Add(m.cfg.agentGone()))
	m.log.Warn("agent disconnected", "agent_id", id, "hostname", a.hostname, "remove_in", m.cfg.agentGone(), "error", err)
}

// disconnectAgent takes a connected agent's stream and offers away; it is
// removed at removeAt unless it re-registers first. m.mu must be held.
func (m *Master) disconnectAgent(a *agent, removeAt time.Time) {
	if a.stream != nil {
		a.stream.close()
	}
	a.stream = nil
	a.connected = false
	a.removeDeadline = removeAt
	m.alloc.SetAgentActive(a.id, false)
	for _, o := range a.offers {
		m.removeOffer(o, true, 0)
	}
}

// silentAgents disconnects agents that answer pings and have not called
// for longer than the ping budget: a stopped (SIGSTOP, frozen VM) agent's
// stream keeps taking writes into its socket buffer, so only the missing
// PONGs show it. Mesos marks such an agent unreachable once
// agent_ping_timeout * max_agent_ping_timeouts passed without a pong; so
// does this (the budget is spent, so no removal grace follows). m.mu must
// be held.
func (m *Master) silentAgents(now time.Time) {
	limit := m.cfg.AgentPingTimeout * time.Duration(m.cfg.MaxAgentPingTimeouts)
	for _, a := range m.agents {
		if !a.connected || !a.answersPings || now.Sub(a.lastContact) <= limit {
			continue
		}
		m.log.Warn("agent stopped answering pings; disconnecting it", "agent_id", a.id, "hostname", a.hostname,
			"silent_for", now.Sub(a.lastContact).Round(time.Second), "ping_budget", limit)
		m.counters.agentsUnhealthy++
		m.disconnectAgent(a, now)
	}
}

// removeAgent removes an agent that did not come back: its tasks are lost
// (TASK_UNREACHABLE for PARTITION_AWARE frameworks), frameworks are told
// with a FAILURE event, and it is forgotten.
func (m *Master) removeAgent(a *agent) {
	now := m.clock.Now()
	m.log.Warn("removing agent that did not re-register in time", "agent_id", a.id, "hostname", a.hostname)
	if a.recovered {
		m.counters.recoveryRemovals++
	}
	for _, o := range a.offers {
		m.removeOffer(o, true, 0)
	}
	affected := map[*framework]bool{}
	for _, ts := range a.tasks {
		for _, id := range sortedTaskIDs(ts) {
			t := ts[id]
			affected[t.fw] = true
			if mesos.IsTerminal(t.state()) {
				m.completeTask(t)
				continue
			}
			state := mesos.TaskState_TASK_LOST
			if t.fw.partitionAware {
				state = mesos.TaskState_TASK_UNREACHABLE
			}
			st := &mesos.TaskStatus{
				TaskId: t.t.GetTaskId(), State: state.Enum(), Source: mesos.TaskStatus_SOURCE_MASTER.Enum(),
				Reason:  mesos.TaskStatus_REASON_AGENT_REMOVED.Enum(),
				Message: proto.String(fmt.Sprintf("Agent %s (%s) was removed: it did not re-register in time", a.hostname, a.id)),
				AgentId: t.t.GetAgentId(), Timestamp: proto.Float64(timestamp(now)),
			}
			if state == mesos.TaskState_TASK_UNREACHABLE {
				st.UnreachableTime = &mesos.TimeInfo{Nanoseconds: proto.Int64(now.UnixNano())}
			}
			m.setTaskState(t, st, state)
			if !t.released {
				t.released = true
				m.alloc.Recover(t.fw.id, t.agentID, t.role, t.res, 0)
			}
			m.completeTask(t)
			m.sendFramework(t.fw, &scheduler.Event{Type: scheduler.Event_UPDATE.Enum(), Update: &scheduler.Event_Update{Status: st}})
		}
	}
	for fwID, es := range a.executors {
		fw := m.frameworks[fwID]
		for _, e := range es {
			if fw != nil {
				m.removeExecutor(a, fw, e)
				affected[fw] = true
			}
		}
	}
	for _, fw := range m.frameworks {
		if fw.stream != nil {
			m.sendFramework(fw, &scheduler.Event{Type: scheduler.Event_FAILURE.Enum(), Failure: &scheduler.Event_Failure{AgentId: &mesos.AgentID{Value: proto.String(a.id)}}})
		}
	}
	if a.stream != nil {
		a.stream.close()
	}
	m.alloc.RemoveAgent(a.id)
	delete(m.agents, a.id)
	m.counters.agentRemovals++
	// Kept as unreachable, token and all: when it comes back it is
	// recognised, and its tasks are killed or reported as they should be.
	rec := agentRecord(a)
	rec.UnreachableAt = now
	m.persist(append([]store.Op{store.PutAgent{Agent: rec}}, m.markUnreachable(rec)...)...)
}

// allocatorFramework describes fw to the allocator.
func allocatorFramework(fw *framework, active bool) allocator.Framework {
	return allocator.Framework{Roles: fw.roles, GPU: fw.gpu, Suppressed: fw.suppressed, Active: active}
}
