package master

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/mesolite/mesolite/api/v1/validate"
	"github.com/mesolite/mesolite/httpauth"

	"github.com/google/uuid"
	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/master/allocator"
	"github.com/mesolite/mesolite/master/store"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

// handleScheduler serves POST /api/v1/scheduler.
func (m *Master) handleScheduler(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && !m.isLeader() {
		m.redirect(w, r)
		return
	}
	call := &scheduler.Call{}
	reqCodec, err := readCall(w, r, call)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := validateSchedulerCall(call); err != nil {
		writeError(w, httpErr(http.StatusBadRequest, "%v", err))
		return
	}
	if call.GetType() == scheduler.Call_SUBSCRIBE {
		m.subscribeHTTP(w, r, call)
		return
	}
	status, body, err := m.schedulerCall(r, call, reqCodec)
	if err != nil {
		writeError(w, err)
		return
	}
	if body != nil {
		w.Header().Set("Content-Type", body.codec.MediaType())
		w.WriteHeader(status)
		_, _ = w.Write(body.data)
		return
	}
	w.WriteHeader(status)
}

// validateSchedulerCall checks what Mesos's call validation checks: a known
// type and the message that type needs. Messages' own required fields were
// checked by the codec.
func validateSchedulerCall(c *scheduler.Call) error {
	if c.Type == nil {
		return errors.New("Expecting 'type' to be present")
	}
	present := func(ok bool, field string) error {
		if !ok {
			return fmt.Errorf("Expecting '%s' to be present", field)
		}
		return nil
	}
	switch c.GetType() {
	case scheduler.Call_SUBSCRIBE:
		if err := present(c.Subscribe != nil, "subscribe"); err != nil {
			return err
		}
		if n := len(c.GetSubscribe().GetSuppressedRoles()); n > validate.MaxRoles {
			return fmt.Errorf("'subscribe.suppressed_roles' has %d roles, more than the %d allowed", n, validate.MaxRoles)
		}
		return validateFrameworkText(c.GetSubscribe().GetFrameworkInfo())
	case scheduler.Call_TEARDOWN, scheduler.Call_REVIVE, scheduler.Call_SUPPRESS:
		return nil
	case scheduler.Call_ACCEPT:
		return present(c.Accept != nil, "accept")
	case scheduler.Call_DECLINE:
		return present(c.Decline != nil, "decline")
	case scheduler.Call_ACCEPT_INVERSE_OFFERS:
		return present(c.AcceptInverseOffers != nil, "accept_inverse_offers")
	case scheduler.Call_DECLINE_INVERSE_OFFERS:
		return present(c.DeclineInverseOffers != nil, "decline_inverse_offers")
	case scheduler.Call_KILL:
		return present(c.Kill != nil, "kill")
	case scheduler.Call_SHUTDOWN:
		return present(c.Shutdown != nil, "shutdown")
	case scheduler.Call_ACKNOWLEDGE:
		if err := present(c.Acknowledge != nil, "acknowledge"); err != nil {
			return err
		}
		if _, err := uuid.FromBytes(c.GetAcknowledge().GetUuid()); err != nil {
			return fmt.Errorf("Invalid UUID in 'acknowledge.uuid': must be 16 bytes, got %d", len(c.GetAcknowledge().GetUuid()))
		}
		return nil
	case scheduler.Call_ACKNOWLEDGE_OPERATION_STATUS:
		return present(c.AcknowledgeOperationStatus != nil, "acknowledge_operation_status")
	case scheduler.Call_RECONCILE:
		return present(c.Reconcile != nil, "reconcile")
	case scheduler.Call_RECONCILE_OPERATIONS:
		return present(c.ReconcileOperations != nil, "reconcile_operations")
	case scheduler.Call_MESSAGE:
		if err := present(c.Message != nil, "message"); err != nil {
			return err
		}
		return dataCap("'message.data'", c.GetMessage().GetData(), validate.MaxDataLen)
	case scheduler.Call_REQUEST:
		return present(c.Request != nil, "request")
	case scheduler.Call_UPDATE_FRAMEWORK:
		if err := present(c.UpdateFramework != nil, "update_framework"); err != nil {
			return err
		}
		if n := len(c.GetUpdateFramework().GetSuppressedRoles()); n > validate.MaxRoles {
			return fmt.Errorf("'update_framework.suppressed_roles' has %d roles, more than the %d allowed", n, validate.MaxRoles)
		}
		return validateFrameworkText(c.GetUpdateFramework().GetFrameworkInfo())
	default:
		return fmt.Errorf("Unknown call type %s", c.GetType())
	}
}

// validateID applies Mesos's rules for framework-chosen ids (task,
// executor, framework, agent): they become path components of the sandbox.
func validateID(kind, id string) error { return validate.ID(kind, id) }

func (m *Master) validateFrameworkInfo(info *mesos.FrameworkInfo, suppressed []string) error {
	if id := info.GetId().GetValue(); info.Id != nil {
		if err := validateID("Framework ID", id); err != nil {
			return err
		}
	}
	multiRole := false
	for _, c := range info.GetCapabilities() {
		if c.GetType() == mesos.FrameworkInfo_Capability_MULTI_ROLE {
			multiRole = true
		}
	}
	var roles []string
	if multiRole {
		if info.Role != nil {
			return errors.New("'FrameworkInfo.role' must not be set when the framework is MULTI_ROLE capable; use 'roles'")
		}
		roles = info.GetRoles()
	} else {
		if len(info.GetRoles()) > 0 {
			return errors.New("'FrameworkInfo.roles' is set but the framework lacks the MULTI_ROLE capability")
		}
		roles = []string{info.GetRole()}
	}
	seen := map[string]bool{}
	for _, r := range roles {
		if err := resources.ValidateRole(r); err != nil {
			return fmt.Errorf("invalid role: %v", err)
		}
		if seen[r] {
			return fmt.Errorf("'FrameworkInfo.roles' contains duplicate role '%s'", r)
		}
		seen[r] = true
		if len(m.cfg.Roles) > 0 && r != resources.Unreserved && !slices.Contains(m.cfg.Roles, r) {
			return fmt.Errorf("Role '%s' is not present in the master's --roles", r)
		}
	}
	for _, r := range suppressed {
		if !seen[r] {
			return fmt.Errorf("Suppressed role '%s' is not contained in the list of roles", r)
		}
	}
	if err := validateFrameworkText(info); err != nil {
		return err
	}
	_, err := clampFailoverTimeout(info)
	return err
}

// updateFrameworkLocked is UPDATE_FRAMEWORK: the framework's info and
// suppressed roles replaced, as Mesos does it, without a new subscription.
// The fields that decide where and as whom tasks run or who owns the
// framework (user, checkpoint, principal) cannot change. Offers for roles
// it left are rescinded; allocation, the registry and operator
// subscribers follow. m.mu must be held.
func (m *Master) updateFrameworkLocked(fw *framework, u *scheduler.Call_UpdateFramework) error {
	info := proto.Clone(u.GetFrameworkInfo()).(*mesos.FrameworkInfo)
	if info.GetId().GetValue() != fw.id {
		return httpErr(http.StatusBadRequest, "'update_framework.framework_info.id' must be the framework's id '%s'", fw.id)
	}
	for _, f := range []struct {
		name     string
		old, new any
	}{
		{"user", fw.info.GetUser(), info.GetUser()},
		{"checkpoint", fw.info.GetCheckpoint(), info.GetCheckpoint()},
		{"principal", fw.info.GetPrincipal(), info.GetPrincipal()},
	} {
		if f.old != f.new {
			return httpErr(http.StatusBadRequest, "Updating 'FrameworkInfo.%s' is unsupported", f.name)
		}
	}
	suppressed := u.GetSuppressedRoles()
	if err := m.validateFrameworkInfo(info, suppressed); err != nil {
		return httpErr(http.StatusBadRequest, "Invalid framework: %v", err)
	}
	if err := m.authorizeRoles(fw.principal, info); err != nil {
		return err
	}
	if info.WebuiUrl != nil && !safeWebURL(info.GetWebuiUrl()) {
		m.log.Warn("framework webui_url is not an absolute http(s) URL; dropped", "framework_id", fw.id, "webui_url", truncate(info.GetWebuiUrl(), 256))
		info.WebuiUrl = nil
	}
	fw.setInfo(info)
	fw.failoverTimeout = m.failoverTimeout(info)
	fw.suppressed = slices.Clone(suppressed)
	for _, o := range fw.offers {
		if !slices.Contains(fw.roles, o.role) {
			m.removeOffer(o, true, 0)
		}
	}
	m.alloc.AddFramework(fw.id, allocator.Framework{Roles: fw.roles, GPU: fw.gpu, Suppressed: fw.suppressed, Active: true})
	// Queued in the order of the books; the answer does not wait for the
	// write (a lost update is the scheduler's to repeat, as a SUBSCRIBE).
	m.persist(store.PutFramework{Framework: store.Framework{ID: fw.id, Info: proto.Clone(info).(*mesos.FrameworkInfo),
		RegisteredAt: fw.registeredTime, Principal: fw.principal}})
	m.opFrameworkChangedLocked(fw)
	m.log.Info("framework updated", "framework_id", fw.id, "name", info.GetName(), "roles", fw.roles, "suppressed_roles", fw.suppressed)
	m.triggerAllocation()
	return nil
}

func (m *Master) subscribeHTTP(w http.ResponseWriter, r *http.Request, call *scheduler.Call) {
	if r.Header.Get("Mesos-Stream-Id") != "" {
		writeError(w, httpErr(http.StatusBadRequest, "Subscribe calls should not include the 'Mesos-Stream-Id' header"))
		return
	}
	respCodec, err := codec.ForAccept(r.Header.Get("Accept"), codec.JSON)
	if err != nil {
		writeError(w, err)
		return
	}
	info := proto.Clone(call.GetSubscribe().GetFrameworkInfo()).(*mesos.FrameworkInfo)
	if callID := call.GetFrameworkId().GetValue(); call.FrameworkId != nil {
		if info.Id != nil && info.GetId().GetValue() != callID {
			writeError(w, httpErr(http.StatusBadRequest, "'framework_id' differs from 'subscribe.framework_info.id'"))
			return
		}
		info.Id = &mesos.FrameworkID{Value: proto.String(callID)}
	}
	// The principal that owns the framework id: the authenticated one,
	// which FrameworkInfo.principal must match (Mesos's rule), or with
	// authentication off the one the framework claims.
	principal, authenticated := httpauth.Principal(r.Context())
	if authenticated {
		switch {
		case info.Principal == nil:
			m.log.Warn("authenticated framework sets no 'FrameworkInfo.principal'; using the authenticated one", "principal", principal, "framework_id", info.GetId().GetValue())
			info.Principal = &principal
		case info.GetPrincipal() != principal:
			writeError(w, httpErr(http.StatusBadRequest, "Authenticated principal '%s' does not match principal '%s' set in `FrameworkInfo`", principal, info.GetPrincipal()))
			return
		}
	} else {
		principal = info.GetPrincipal()
	}
	suppressed := call.GetSubscribe().GetSuppressedRoles()
	askedFailover := info.GetFailoverTimeout()
	if err := m.validateFrameworkInfo(info, suppressed); err != nil {
		writeError(w, httpErr(http.StatusBadRequest, "Invalid framework: %v", err))
		return
	}
	if err := m.authorizeRoles(principal, info); err != nil {
		m.log.Warn("SUBSCRIBE refused", "framework_id", info.GetId().GetValue(), "principal", principal, "remote_addr", r.RemoteAddr, "reason", err.Error())
		writeError(w, err)
		return
	}
	if info.GetFailoverTimeout() != askedFailover {
		m.log.Warn("framework failover_timeout capped", "framework_id", info.GetId().GetValue(), "asked_seconds", askedFailover, "capped_seconds", info.GetFailoverTimeout())
	}
	if info.WebuiUrl != nil && !safeWebURL(info.GetWebuiUrl()) {
		// The UI renders webui_url as a link: a javascript: URL there
		// runs in the master's origin for whoever clicks it.
		m.log.Warn("framework webui_url is not an absolute http(s) URL; dropped", "framework_id", info.GetId().GetValue(), "principal", principal, "webui_url", truncate(info.GetWebuiUrl(), 256))
		info.WebuiUrl = nil
	}

	// Pick the id under the lock, write the registry outside it (an fsync
	// must not stall every other call), then install the subscription.
	m.mu.Lock()
	if m.role != roleLeading {
		m.mu.Unlock()
		m.redirect(w, r)
		return
	}
	id := info.GetId().GetValue()
	removed := id != "" && m.removedFWs[id]
	registeredAt := m.clock.Now()
	// Refused before the registry is written: a refused SUBSCRIBE must
	// not overwrite the owner's record.
	if !removed {
		if err := m.mayInstallFrameworkLocked(id, principal); err != nil {
			m.mu.Unlock()
			m.log.Warn("SUBSCRIBE refused", "framework_id", id, "principal", principal, "remote_addr", r.RemoteAddr, "reason", err.Error())
			writeError(w, err)
			return
		}
	}
	if id == "" {
		id = fmt.Sprintf("%s-%04d", m.id, m.nextFrameworkID.Add(1)-1)
		info.Id = &mesos.FrameworkID{Value: proto.String(id)}
	} else if fw := m.frameworks[id]; fw != nil && !fw.registeredTime.IsZero() {
		registeredAt = fw.registeredTime
	}
	var done <-chan error
	if !removed {
		// Durable before the framework hears its id, so that the next
		// leader knows it. Queued under the lock, in the order of the
		// books; waited for outside it.
		done = m.persist(store.PutFramework{Framework: store.Framework{ID: id, Info: proto.Clone(info).(*mesos.FrameworkInfo), RegisteredAt: registeredAt, Principal: principal}})
	}
	m.mu.Unlock()

	s := newStream(uuid.NewString(), respCodec)
	if removed {
		// As Mesos: the stream opens and says why it ends.
		startStream(w, respCodec, s.id)
		_ = s.send(&scheduler.Event{Type: scheduler.Event_ERROR.Enum(), Error: &scheduler.Event_Error{Message: proto.String("Framework has been removed")}})
		s.close()
		_ = s.serve(r.Context(), w, nil, 0, m.cfg.AgentPingTimeout)
		return
	}
	if err := <-done; err != nil {
		// The error names the registry's path; the log keeps it, the
		// answer does not.
		m.log.Error("cannot persist framework", "framework_id", id, "error", err)
		writeError(w, persistError(err))
		return
	}
	if err := m.installFramework(info, principal, suppressed, s); err != nil {
		if errors.Is(err, errNotLeader) {
			m.redirect(w, r)
			return
		}
		writeError(w, err)
		return
	}
	startStream(w, respCodec, s.id)
	heartbeat, _ := respCodec.Marshal(&scheduler.Event{Type: scheduler.Event_HEARTBEAT.Enum()})
	err = s.serve(r.Context(), w, heartbeat, m.cfg.HeartbeatInterval, m.cfg.AgentPingTimeout)
	m.frameworkStreamEnded(id, s, err)
}

var errNotLeader = errors.New("not the leading master")

// mayInstallFrameworkLocked says whether principal may subscribe framework
// id ("" for a new one): an existing framework only under the principal
// that owns it, since a SUBSCRIBE with its id fails the owner over and
// hands its tasks to the caller; a new one only within MaxFrameworks and
// MaxFrameworksPerPrincipal. m.mu must be held.
func (m *Master) mayInstallFrameworkLocked(id, principal string) error {
	if fw := m.frameworks[id]; id != "" && fw != nil {
		if !principalMatches(fw.principal, principal) {
			return fmt.Errorf("Framework '%s' is registered by another principal: only that principal may subscribe with its id: %w", id, errdefs.ErrForbidden)
		}
		return nil
	}
	if len(m.frameworks) >= m.cfg.MaxFrameworks {
		return fmt.Errorf("Too many frameworks: this master holds at most %d (--max_frameworks): %w", m.cfg.MaxFrameworks, errdefs.ErrForbidden)
	}
	if max := m.cfg.MaxFrameworksPerPrincipal; max > 0 {
		n := 0
		for _, fw := range m.frameworks {
			if fw.principal == principal {
				n++
			}
		}
		if n >= max {
			return fmt.Errorf("Too many frameworks of principal '%s': at most %d (--max_frameworks_per_principal): %w", principal, max, errdefs.ErrForbidden)
		}
	}
	return nil
}

// truncate shortens s for a log line.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// installFramework makes s the framework's stream: a new framework, a
// re-subscription after a disconnection or a master failover, or a
// takeover of a live connection.
func (m *Master) installFramework(info *mesos.FrameworkInfo, principal string, suppressed []string, s *stream) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading || m.shutdown {
		return errNotLeader
	}
	id := info.GetId().GetValue()
	if m.removedFWs[id] {
		return httpErr(http.StatusForbidden, "Framework has been removed")
	}
	// Checked again: another SUBSCRIBE may have come between the check
	// before the registry write and now.
	if err := m.mayInstallFrameworkLocked(id, principal); err != nil {
		return err
	}
	now := m.clock.Now()
	fw := m.frameworks[id]
	resubscribe := fw != nil
	if resubscribe {
		m.counters.frameworkReregisters++
	} else {
		m.counters.frameworkRegisters++
	}
	log := m.log.With("framework_id", id, "name", info.GetName())
	if fw == nil {
		fw = newFramework(id, info)
		fw.principal = principal
		fw.registeredTime = now
		m.frameworks[id] = fw
		log.Info("framework subscribed", "roles", fw.roles)
	} else {
		if fw.stream != nil {
			// A second connection with the same id takes over, as a
			// scheduler failover does; the old one is told and closed.
			_ = fw.stream.send(&scheduler.Event{Type: scheduler.Event_ERROR.Enum(), Error: &scheduler.Event_Error{Message: proto.String("Framework failed over")}})
			fw.stream.close()
			log.Info("framework failed over to a new connection")
		} else {
			log.Info("framework re-subscribed", "recovered", fw.recovered)
		}
		// Offers made to the old connection are void; the new one never
		// saw them.
		for _, o := range fw.offers {
			m.removeOffer(o, false, 0)
		}
		fw.setInfo(info)
		if fw.registeredTime.IsZero() {
			fw.registeredTime = now
		}
		fw.reregisteredTime = now
	}
	fw.recovered = false
	fw.stream = s
	fw.connected = true
	fw.failoverDeadline = time.Time{}
	fw.unregisteredTime = time.Time{}
	fw.failoverTimeout = m.failoverTimeout(info)
	fw.suppressed = slices.Clone(suppressed)
	m.alloc.AddFramework(id, allocator.Framework{Roles: fw.roles, GPU: fw.gpu, Suppressed: fw.suppressed, Active: true})
	m.opFrameworkChangedLocked(fw)

	_ = s.send(&scheduler.Event{
		Type: scheduler.Event_SUBSCRIBED.Enum(),
		Subscribed: &scheduler.Event_Subscribed{
			FrameworkId:              &mesos.FrameworkID{Value: proto.String(id)},
			HeartbeatIntervalSeconds: proto.Float64(m.cfg.HeartbeatInterval.Seconds()),
			MasterInfo:               m.info,
		},
	})
	pending := fw.pending
	fw.pending = nil
	for _, ev := range pending {
		m.sendFramework(fw, ev)
	}
	if resubscribe {
		// Agents retry unacknowledged updates with a backoff of up to ten
		// minutes; ask them to resend now that someone listens.
		for agentID := range m.agentsWithFramework(fw) {
			m.sendAgent(m.agents[agentID], &agentpb.Event{
				Type:      agentpb.Event_RECONCILE.Enum(),
				Reconcile: &agentpb.Event_Reconcile{FrameworkId: &mesos.FrameworkID{Value: proto.String(id)}},
			})
		}
	}
	m.triggerAllocation()
	return nil
}

// agentsWithFramework returns the ids of agents with tasks or executors of fw.
func (m *Master) agentsWithFramework(fw *framework) map[string]bool {
	ids := make(map[string]bool)
	for _, t := range fw.tasks {
		ids[t.agentID] = true
	}
	for agentID := range fw.executors {
		ids[agentID] = true
	}
	return ids
}

// frameworkStreamEnded handles a framework's connection going away.
func (m *Master) frameworkStreamEnded(id string, s *stream, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fw := m.frameworks[id]
	if fw == nil || fw.stream != s || m.shutdown {
		return
	}
	now := m.clock.Now()
	fw.stream = nil
	fw.connected = false
	m.alloc.SetFrameworkActive(id, false)
	for _, o := range fw.offers {
		m.removeOffer(o, false, 0)
	}
	fw.failoverDeadline = now.Add(fw.failoverTimeout)
	m.log.Info("framework disconnected", "framework_id", id, "failover_timeout", fw.failoverTimeout, "error", err)
	m.opFrameworkChangedLocked(fw)
	if fw.failoverTimeout == 0 {
		m.removeFramework(fw, "disconnected with no failover timeout")
	}
}

// removeFramework tears a framework down: its tasks are killed on the
// agents, its offers withdrawn, its resources recovered, and its id may
// not subscribe again.
func (m *Master) removeFramework(fw *framework, reason string) {
	now := m.clock.Now()
	m.log.Info("removing framework", "framework_id", fw.id, "reason", reason)
	for _, o := range fw.offers {
		m.removeOffer(o, false, 0)
	}
	// Every connected agent, as Mesos does, not only those the books
	// place the framework on: an agent may run an executor of it that
	// the master never heard of (adopted, launched before a failover).
	// Disconnected agents get it when they re-register.
	for _, a := range m.agents {
		if a.connected {
			m.sendAgent(a, shutdownFramework(fw.id))
		}
	}
	for _, t := range fw.tasks {
		if !mesos.IsTerminal(t.state()) {
			m.setTaskState(t, &mesos.TaskStatus{
				TaskId:    t.t.GetTaskId(),
				State:     mesos.TaskState_TASK_KILLED.Enum(),
				Source:    mesos.TaskStatus_SOURCE_MASTER.Enum(),
				Reason:    mesos.TaskStatus_REASON_FRAMEWORK_REMOVED.Enum(),
				Message:   proto.String("Framework removed: " + reason),
				AgentId:   t.t.GetAgentId(),
				Timestamp: proto.Float64(timestamp(now)),
			}, mesos.TaskState_TASK_KILLED)
		}
		m.completeTask(t)
	}
	for agentID, es := range fw.executors {
		for _, e := range es {
			m.removeExecutor(m.agents[agentID], fw, e)
		}
	}
	if fw.stream != nil {
		fw.stream.close()
		fw.stream = nil
	}
	fw.connected = false
	fw.unregisteredTime = now
	fw.failoverDeadline = time.Time{}
	fw.pending = nil
	m.alloc.RemoveFramework(fw.id)
	delete(m.frameworks, fw.id)
	m.counters.frameworksRemoved++
	m.opFrameworkRemovedLocked(fw)
	rec := store.Framework{ID: fw.id, Info: fw.info, RegisteredAt: fw.registeredTime, Principal: fw.principal, Completed: true, CompletedAt: now}
	m.persist(append([]store.Op{store.PutFramework{Framework: rec}}, m.markRemoved(fw)...)...)
	m.triggerAllocation()
}

// encodedBody is a call's answer body, for the few calls that have one.
type encodedBody struct {
	codec codec.Codec
	data  []byte
}

// schedulerCall handles every call but SUBSCRIBE. It returns the status to
// answer (202, or 200 with a body) or an error carrying its status.
func (m *Master) schedulerCall(r *http.Request, call *scheduler.Call, reqCodec codec.Codec) (int, *encodedBody, error) {
	if call.FrameworkId == nil {
		return 0, nil, httpErr(http.StatusBadRequest, "Expecting 'framework_id' to be present")
	}
	var respCodec codec.Codec
	if call.GetType() == scheduler.Call_RECONCILE_OPERATIONS {
		c, err := codec.ForAccept(r.Header.Get("Accept"), reqCodec)
		if err != nil {
			return 0, nil, err
		}
		respCodec = c
	}
	fwID := call.GetFrameworkId().GetValue()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading {
		return 0, nil, httpErr(http.StatusServiceUnavailable, "Not the leading master")
	}
	fw := m.frameworks[fwID]
	if fw == nil {
		return 0, nil, httpErr(http.StatusForbidden, "Framework '%s' cannot be found: subscribe first", fwID)
	}
	if p, ok := httpauth.Principal(r.Context()); ok && !principalMatches(p, fw.principal) {
		m.log.Warn("scheduler call refused: framework belongs to another principal", "framework_id", fwID, "principal", p, "type", call.GetType().String())
		return 0, nil, httpErr(http.StatusForbidden, "Framework '%s' is registered by another principal", fwID)
	}
	if fw.stream == nil {
		return 0, nil, httpErr(http.StatusForbidden, "Framework '%s' is not subscribed", fwID)
	}
	sid := r.Header.Get("Mesos-Stream-Id")
	if sid == "" {
		return 0, nil, httpErr(http.StatusBadRequest, "All non-subscribe calls should include the 'Mesos-Stream-Id' header")
	}
	if sid != fw.stream.id {
		return 0, nil, httpErr(http.StatusBadRequest, "The stream ID '%s' included in this request didn't match the stream ID currently associated with framework ID '%s'", sid, fwID)
	}
	m.counters.schedulerCalls[call.GetType()]++

	switch call.GetType() {
	case scheduler.Call_UPDATE_FRAMEWORK:
		if err := m.updateFrameworkLocked(fw, call.GetUpdateFramework()); err != nil {
			return 0, nil, err
		}
	case scheduler.Call_TEARDOWN:
		m.removeFramework(fw, "TEARDOWN")
	case scheduler.Call_ACCEPT:
		m.accept(fw, call.GetAccept())
	case scheduler.Call_DECLINE:
		refuse := refuseDuration(call.GetDecline().GetFilters())
		for _, oid := range call.GetDecline().GetOfferIds() {
			if o := fw.offers[oid.GetValue()]; o != nil {
				m.removeOffer(o, false, refuse)
				m.counters.offersDeclined++
			}
		}
	case scheduler.Call_ACCEPT_INVERSE_OFFERS:
		m.answerInverseOffersLocked(fw, call.GetAcceptInverseOffers().GetInverseOfferIds(), true)
	case scheduler.Call_DECLINE_INVERSE_OFFERS:
		m.answerInverseOffersLocked(fw, call.GetDeclineInverseOffers().GetInverseOfferIds(), false)
	case scheduler.Call_REVIVE:
		roles := call.GetRevive().GetRoles()
		if err := rolesOf(fw, roles); err != nil {
			return 0, nil, httpErr(http.StatusBadRequest, "%v", err)
		}
		m.alloc.Revive(fw.id, roles)
		if len(roles) == 0 {
			fw.suppressed = nil
		} else {
			fw.suppressed = slices.DeleteFunc(fw.suppressed, func(r string) bool { return slices.Contains(roles, r) })
		}
		m.triggerAllocation()
	case scheduler.Call_SUPPRESS:
		roles := call.GetSuppress().GetRoles()
		if err := rolesOf(fw, roles); err != nil {
			return 0, nil, httpErr(http.StatusBadRequest, "%v", err)
		}
		m.alloc.Suppress(fw.id, roles)
		if len(roles) == 0 {
			roles = fw.roles
		}
		for _, r := range roles {
			if !slices.Contains(fw.suppressed, r) {
				fw.suppressed = append(fw.suppressed, r)
			}
		}
	case scheduler.Call_KILL:
		m.kill(fw, call.GetKill())
	case scheduler.Call_SHUTDOWN:
		sh := call.GetShutdown()
		a := m.agents[sh.GetAgentId().GetValue()]
		if !m.sendAgent(a, &agentpb.Event{
			Type: agentpb.Event_SHUTDOWN_EXECUTOR.Enum(),
			ShutdownExecutor: &agentpb.Event_ShutdownExecutor{
				FrameworkId: &mesos.FrameworkID{Value: proto.String(fw.id)},
				ExecutorId:  sh.GetExecutorId(),
			},
		}) {
			m.log.Warn("cannot shut down executor: agent unknown or disconnected", "framework_id", fw.id, "agent_id", sh.GetAgentId().GetValue(), "executor_id", sh.GetExecutorId().GetValue())
		}
	case scheduler.Call_ACKNOWLEDGE:
		m.acknowledge(fw, call.GetAcknowledge())
	case scheduler.Call_ACKNOWLEDGE_OPERATION_STATUS:
		// Offer operations with feedback are answered by the master itself
		// (OPERATION_ERROR); there is nothing to acknowledge to an agent.
	case scheduler.Call_RECONCILE:
		m.reconcile(fw, call.GetReconcile())
	case scheduler.Call_RECONCILE_OPERATIONS:
		data, err := respCodec.Marshal(&scheduler.Response{
			Type:                scheduler.Response_RECONCILE_OPERATIONS.Enum(),
			ReconcileOperations: &scheduler.Response_ReconcileOperations{},
		})
		if err != nil {
			return 0, nil, err
		}
		return http.StatusOK, &encodedBody{codec: respCodec, data: data}, nil
	case scheduler.Call_MESSAGE:
		msg := call.GetMessage()
		a := m.agents[msg.GetAgentId().GetValue()]
		if m.sendAgent(a, &agentpb.Event{
			Type: agentpb.Event_MESSAGE.Enum(),
			Message: &agentpb.Event_Message{
				FrameworkId: &mesos.FrameworkID{Value: proto.String(fw.id)},
				ExecutorId:  msg.GetExecutorId(),
				Data:        msg.GetData(),
			},
		}) {
			m.counters.frameworkToExecutor++
		} else {
			m.counters.droppedMessages++
			m.log.Warn("framework message dropped: agent unknown or disconnected", "framework_id", fw.id, "agent_id", msg.GetAgentId().GetValue())
		}
	case scheduler.Call_REQUEST:
		// Requests were never acted upon by Mesos's allocator either.
		m.log.Debug("resource request ignored", "framework_id", fw.id)
	}
	return http.StatusAccepted, nil, nil
}

// rolesOf checks that roles (of a REVIVE or SUPPRESS) are the framework's.
func rolesOf(fw *framework, roles []string) error {
	for _, r := range roles {
		if !slices.Contains(fw.roles, r) {
			return fmt.Errorf("Role '%s' is not one of the framework's roles %v", r, fw.roles)
		}
	}
	return nil
}

// defaultRefuse is Filters.refuse_seconds' default.
const defaultRefuse = 5 * time.Second

// refuseDuration reads Filters.refuse_seconds: 5 s when unset, as the proto
// default; a negative or NaN value gets the default too; a huge one is
// capped.
func refuseDuration(f *mesos.Filters) time.Duration {
	s := f.GetRefuseSeconds()
	if math.IsNaN(s) || s < 0 {
		return defaultRefuse
	}
	return secondsToDuration(s)
}

func timestamp(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}
