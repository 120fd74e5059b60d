package master

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/google/uuid"
	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/internal/version"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The v1 master operator API: POST /api/v1 (and /master/api/v1), a
// mesos.v1.master.Call in JSON or protobuf by Content-Type, answered in
// the encoding the Accept header asks for (JSON when it asks for none).
// Calls that read answer 200 with a Response of their type; calls that
// change the cluster answer an empty 200, as Mesos's do; SUBSCRIBE answers
// a RecordIO stream of Events (operator_events.go). Calls a later phase
// serves answer 501 naming the call. See docs/operator-api.md.

// maxOperatorBody caps a call's body: the cap of every endpoint but the
// scheduler and agent APIs (maxSmallBody); operator calls are small.
const maxOperatorBody = maxSmallBody

// operatorCalls are the calls this master serves.
var operatorCalls = map[masterpb.Call_Type]bool{
	masterpb.Call_GET_HEALTH:                  true,
	masterpb.Call_GET_FLAGS:                   true,
	masterpb.Call_GET_VERSION:                 true,
	masterpb.Call_GET_METRICS:                 true,
	masterpb.Call_GET_LOGGING_LEVEL:           true,
	masterpb.Call_SET_LOGGING_LEVEL:           true,
	masterpb.Call_GET_STATE:                   true,
	masterpb.Call_GET_AGENTS:                  true,
	masterpb.Call_GET_FRAMEWORKS:              true,
	masterpb.Call_GET_EXECUTORS:               true,
	masterpb.Call_GET_OPERATIONS:              true,
	masterpb.Call_GET_TASKS:                   true,
	masterpb.Call_GET_ROLES:                   true,
	masterpb.Call_GET_MASTER:                  true,
	masterpb.Call_SUBSCRIBE:                   true,
	masterpb.Call_TEARDOWN:                    true,
	masterpb.Call_MARK_AGENT_GONE:             true,
	masterpb.Call_DEACTIVATE_AGENT:            true,
	masterpb.Call_REACTIVATE_AGENT:            true,
	masterpb.Call_GET_WEIGHTS:                 true,
	masterpb.Call_UPDATE_WEIGHTS:              true,
	masterpb.Call_GET_MAINTENANCE_SCHEDULE:    true,
	masterpb.Call_UPDATE_MAINTENANCE_SCHEDULE: true,
	masterpb.Call_GET_MAINTENANCE_STATUS:      true,
	masterpb.Call_START_MAINTENANCE:           true,
	masterpb.Call_STOP_MAINTENANCE:            true,
	masterpb.Call_LIST_FILES:                  true,
	masterpb.Call_READ_FILE:                   true,
	masterpb.Call_DRAIN_AGENT:                 true,
	masterpb.Call_GET_QUOTA:                   true,
	masterpb.Call_UPDATE_QUOTA:                true,
	masterpb.Call_SET_QUOTA:                   true,
	masterpb.Call_REMOVE_QUOTA:                true,
	masterpb.Call_RESERVE_RESOURCES:           true,
	masterpb.Call_UNRESERVE_RESOURCES:         true,
}

// readOnlyCalls change nothing. Every other call needs read-write
// credentials when Config.ReadWriteAuth is set, whether this master serves
// it yet or not.
var readOnlyCalls = map[masterpb.Call_Type]bool{
	masterpb.Call_GET_HEALTH:               true,
	masterpb.Call_GET_FLAGS:                true,
	masterpb.Call_GET_VERSION:              true,
	masterpb.Call_GET_METRICS:              true,
	masterpb.Call_GET_LOGGING_LEVEL:        true,
	masterpb.Call_LIST_FILES:               true,
	masterpb.Call_READ_FILE:                true,
	masterpb.Call_GET_STATE:                true,
	masterpb.Call_GET_AGENTS:               true,
	masterpb.Call_GET_FRAMEWORKS:           true,
	masterpb.Call_GET_EXECUTORS:            true,
	masterpb.Call_GET_OPERATIONS:           true,
	masterpb.Call_GET_TASKS:                true,
	masterpb.Call_GET_ROLES:                true,
	masterpb.Call_GET_WEIGHTS:              true,
	masterpb.Call_GET_MASTER:               true,
	masterpb.Call_SUBSCRIBE:                true,
	masterpb.Call_GET_MAINTENANCE_STATUS:   true,
	masterpb.Call_GET_MAINTENANCE_SCHEDULE: true,
	masterpb.Call_GET_QUOTA:                true,
}

// localCalls are about this master process, not the cluster: any master
// answers them, leading or not. The others are redirected to the leader.
var localCalls = map[masterpb.Call_Type]bool{
	masterpb.Call_GET_HEALTH:        true,
	masterpb.Call_GET_FLAGS:         true,
	masterpb.Call_GET_VERSION:       true,
	masterpb.Call_GET_METRICS:       true,
	masterpb.Call_GET_LOGGING_LEVEL: true,
	masterpb.Call_SET_LOGGING_LEVEL: true,
}

// callMessage is the sub-message each call type needs, by field name, as
// Mesos's validation asks for it; calls absent here need none.
var callMessage = map[masterpb.Call_Type]protoreflect.Name{
	masterpb.Call_SET_LOGGING_LEVEL:           "set_logging_level",
	masterpb.Call_LIST_FILES:                  "list_files",
	masterpb.Call_READ_FILE:                   "read_file",
	masterpb.Call_UPDATE_WEIGHTS:              "update_weights",
	masterpb.Call_RESERVE_RESOURCES:           "reserve_resources",
	masterpb.Call_UNRESERVE_RESOURCES:         "unreserve_resources",
	masterpb.Call_CREATE_VOLUMES:              "create_volumes",
	masterpb.Call_DESTROY_VOLUMES:             "destroy_volumes",
	masterpb.Call_GROW_VOLUME:                 "grow_volume",
	masterpb.Call_SHRINK_VOLUME:               "shrink_volume",
	masterpb.Call_UPDATE_MAINTENANCE_SCHEDULE: "update_maintenance_schedule",
	masterpb.Call_START_MAINTENANCE:           "start_maintenance",
	masterpb.Call_STOP_MAINTENANCE:            "stop_maintenance",
	masterpb.Call_DRAIN_AGENT:                 "drain_agent",
	masterpb.Call_DEACTIVATE_AGENT:            "deactivate_agent",
	masterpb.Call_REACTIVATE_AGENT:            "reactivate_agent",
	masterpb.Call_UPDATE_QUOTA:                "update_quota",
	masterpb.Call_SET_QUOTA:                   "set_quota",
	masterpb.Call_REMOVE_QUOTA:                "remove_quota",
	masterpb.Call_TEARDOWN:                    "teardown",
	masterpb.Call_MARK_AGENT_GONE:             "mark_agent_gone",
}

// validateOperatorCall checks what Mesos's validation checks: a known type
// and the message it needs. The messages' own required fields were
// checked by the codec.
func validateOperatorCall(c *masterpb.Call) error {
	if c.Type == nil {
		return httpErr(http.StatusBadRequest, "Expecting 'type' to be present")
	}
	if _, known := masterpb.Call_Type_name[int32(c.GetType())]; !known || c.GetType() == masterpb.Call_UNKNOWN {
		return httpErr(http.StatusBadRequest, "Unknown call type %d", c.GetType())
	}
	if name, ok := callMessage[c.GetType()]; ok {
		fd := c.ProtoReflect().Descriptor().Fields().ByName(name)
		if !c.ProtoReflect().Has(fd) {
			return httpErr(http.StatusBadRequest, "Expecting '%s' to be present", name)
		}
	}
	return nil
}

// handleOperator serves POST /api/v1 and /master/api/v1.
func (m *Master) handleOperator(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength > maxOperatorBody {
		writeError(w, httpErr(http.StatusRequestEntityTooLarge, "Request body is larger than %d bytes", maxOperatorBody))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxOperatorBody)
	call := &masterpb.Call{}
	_, err := readCall(w, r, call)
	if err != nil {
		writeError(w, err)
		return
	}
	if err := validateOperatorCall(call); err != nil {
		writeError(w, err)
		return
	}
	// Mesos answers in JSON unless asked otherwise, whatever the call's
	// own encoding.
	respCodec, err := codec.ForAccept(r.Header.Get("Accept"), codec.JSON)
	if err != nil {
		writeError(w, err)
		return
	}
	if !localCalls[call.GetType()] && !m.isLeader() {
		m.redirect(w, r)
		return
	}
	serve := func(w http.ResponseWriter, r *http.Request) { m.operatorCall(w, r, call, respCodec) }
	if !readOnlyCalls[call.GetType()] && m.cfg.ReadWriteAuth != nil {
		m.cfg.ReadWriteAuth(http.HandlerFunc(serve)).ServeHTTP(w, r)
		return
	}
	serve(w, r)
}

// operatorCall answers a valid call, authenticated as it needs to be.
func (m *Master) operatorCall(w http.ResponseWriter, r *http.Request, call *masterpb.Call, respCodec codec.Codec) {
	typ := call.GetType()
	if !operatorCalls[typ] {
		writeError(w, httpErr(http.StatusNotImplemented, "Call '%s' is not implemented by this master yet", typ))
		return
	}
	if typ == masterpb.Call_SUBSCRIBE {
		m.operatorSubscribe(w, r, respCodec)
		return
	}
	resp, encs, err := m.operatorAnswer(r, call)
	if err != nil {
		writeError(w, err)
		return
	}
	if resp == nil {
		// A call that changes the cluster: done, nothing to say. Mesos
		// answers reservations 202, the rest 200.
		if typ == masterpb.Call_RESERVE_RESOURCES || typ == masterpb.Call_UNRESERVE_RESOURCES {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.WriteHeader(http.StatusOK)
		return
	}
	// Encoded outside the master's lock: a GET_STATE of a large cluster
	// takes a while (state_encode.go).
	data, err := encs.encodeResponse(respCodec, resp)
	if err != nil {
		m.log.Error("BUG: cannot encode an operator API answer", "type", typ.String(), "error", err)
		writeError(w, httpErr(http.StatusInternalServerError, "Internal error: cannot encode the answer to %s", typ))
		return
	}
	w.Header().Set("Content-Type", respCodec.MediaType())
	w.Header().Set("Content-Length", strconv.Itoa(data.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = data.WriteTo(w)
}

// operatorAnswer carries out a served call other than SUBSCRIBE. It
// returns the Response to send, or nil for an empty 200, and the encoding
// caches of the tasks it lists.
func (m *Master) operatorAnswer(r *http.Request, call *masterpb.Call) (*masterpb.Response, taskEncodings, error) {
	encs := taskEncodings{}
	resp, err := m.operatorAnswerWith(r, call, encs)
	return resp, encs, err
}

func (m *Master) operatorAnswerWith(r *http.Request, call *masterpb.Call, encs taskEncodings) (*masterpb.Response, error) {
	typ := call.GetType()
	resp := &masterpb.Response{}
	switch typ {
	case masterpb.Call_GET_HEALTH:
		resp.Type = masterpb.Response_GET_HEALTH.Enum()
		resp.GetHealth = &masterpb.Response_GetHealth{Healthy: proto.Bool(true)}
	case masterpb.Call_GET_FLAGS:
		flags := m.cfg.flagMap()
		out := &masterpb.Response_GetFlags{}
		for _, name := range slices.Sorted(maps.Keys(flags)) {
			out.Flags = append(out.Flags, &mesos.Flag{Name: proto.String(name), Value: proto.String(flags[name])})
		}
		resp.Type, resp.GetFlags = masterpb.Response_GET_FLAGS.Enum(), out
	case masterpb.Call_GET_VERSION:
		resp.Type = masterpb.Response_GET_VERSION.Enum()
		resp.GetVersion = &masterpb.Response_GetVersion{VersionInfo: m.versionInfo()}
	case masterpb.Call_GET_METRICS:
		// Every metric is at hand: the timeout a caller may give has
		// nothing to cut short.
		s := m.metricsSnapshot()
		out := &masterpb.Response_GetMetrics{}
		for _, name := range slices.Sorted(maps.Keys(s)) {
			out.Metrics = append(out.Metrics, &mesos.Metric{Name: proto.String(name), Value: proto.Float64(s[name])})
		}
		resp.Type, resp.GetMetrics = masterpb.Response_GET_METRICS.Enum(), out
	case masterpb.Call_GET_LOGGING_LEVEL:
		resp.Type = masterpb.Response_GET_LOGGING_LEVEL.Enum()
		resp.GetLoggingLevel = &masterpb.Response_GetLoggingLevel{Level: proto.Uint32(m.ops.levels.Get())}
	case masterpb.Call_SET_LOGGING_LEVEL:
		return nil, m.setLoggingLevel(r, call.GetSetLoggingLevel())
	case masterpb.Call_TEARDOWN:
		return nil, m.operatorTeardown(r, call.GetTeardown().GetFrameworkId().GetValue())
	case masterpb.Call_MARK_AGENT_GONE:
		return nil, m.markAgentGone(r, call.GetMarkAgentGone().GetAgentId().GetValue())
	case masterpb.Call_DEACTIVATE_AGENT:
		return nil, m.setAgentDeactivated(r, call.GetDeactivateAgent().GetAgentId().GetValue(), true)
	case masterpb.Call_REACTIVATE_AGENT:
		return nil, m.setAgentDeactivated(r, call.GetReactivateAgent().GetAgentId().GetValue(), false)
	case masterpb.Call_UPDATE_WEIGHTS:
		return nil, m.updateWeights(r, call.GetUpdateWeights())
	case masterpb.Call_LIST_FILES, masterpb.Call_READ_FILE:
		// Mesos's master attaches its log as /master/log (LogFile); task
		// sandboxes are the agents' (their own operator API).
		return m.operatorFiles(r, call)
	case masterpb.Call_DRAIN_AGENT:
		return nil, m.drainAgent(r, call.GetDrainAgent())
	case masterpb.Call_UPDATE_MAINTENANCE_SCHEDULE:
		return nil, m.updateSchedule(r, call.GetUpdateMaintenanceSchedule().GetSchedule())
	case masterpb.Call_START_MAINTENANCE:
		return nil, m.startMaintenance(r, call.GetStartMaintenance().GetMachines())
	case masterpb.Call_STOP_MAINTENANCE:
		return nil, m.stopMaintenance(r, call.GetStopMaintenance().GetMachines())
	case masterpb.Call_UPDATE_QUOTA:
		return nil, m.updateQuota(r, call.GetUpdateQuota())
	case masterpb.Call_SET_QUOTA:
		return nil, m.setQuotaLegacy(r, call.GetSetQuota())
	case masterpb.Call_REMOVE_QUOTA:
		return nil, m.removeQuota(r, call.GetRemoveQuota().GetRole())
	case masterpb.Call_RESERVE_RESOURCES:
		return nil, m.reserve(r, call.GetReserveResources())
	case masterpb.Call_UNRESERVE_RESOURCES:
		return nil, m.unreserve(r, call.GetUnreserveResources())
	default:
		// The calls about the cluster's books, read under the lock.
		m.mu.Lock()
		defer m.mu.Unlock()
		if m.role != roleLeading {
			return nil, httpErr(http.StatusServiceUnavailable, "Not the leading master")
		}
		switch typ {
		case masterpb.Call_GET_STATE:
			resp.Type, resp.GetState = masterpb.Response_GET_STATE.Enum(), m.stateProtoLocked(false, encs)
		case masterpb.Call_GET_AGENTS:
			resp.Type, resp.GetAgents = masterpb.Response_GET_AGENTS.Enum(), m.agentsProtoLocked()
		case masterpb.Call_GET_FRAMEWORKS:
			resp.Type, resp.GetFrameworks = masterpb.Response_GET_FRAMEWORKS.Enum(), m.frameworksProtoLocked()
		case masterpb.Call_GET_EXECUTORS:
			resp.Type, resp.GetExecutors = masterpb.Response_GET_EXECUTORS.Enum(), m.executorsProtoLocked()
		case masterpb.Call_GET_TASKS:
			resp.Type, resp.GetTasks = masterpb.Response_GET_TASKS.Enum(), m.tasksProtoLocked(false, encs)
		case masterpb.Call_GET_ROLES:
			resp.Type, resp.GetRoles = masterpb.Response_GET_ROLES.Enum(), m.rolesProtoLocked()
		case masterpb.Call_GET_MASTER:
			resp.Type, resp.GetMaster = masterpb.Response_GET_MASTER.Enum(), m.masterProtoLocked()
		case masterpb.Call_GET_MAINTENANCE_SCHEDULE:
			resp.Type, resp.GetMaintenanceSchedule = masterpb.Response_GET_MAINTENANCE_SCHEDULE.Enum(), m.getScheduleLocked(m.viewerOf(r))
		case masterpb.Call_GET_MAINTENANCE_STATUS:
			resp.Type, resp.GetMaintenanceStatus = masterpb.Response_GET_MAINTENANCE_STATUS.Enum(), m.getMaintenanceStatusLocked(m.viewerOf(r))
		case masterpb.Call_GET_QUOTA:
			resp.Type, resp.GetQuota = masterpb.Response_GET_QUOTA.Enum(), m.getQuotaLocked(m.viewerOf(r))
		case masterpb.Call_GET_WEIGHTS:
			resp.Type, resp.GetWeights = masterpb.Response_GET_WEIGHTS.Enum(), m.getWeightsLocked()
		case masterpb.Call_GET_OPERATIONS:
			// Offer operations other than launches are answered
			// OPERATION_ERROR at once and kept nowhere; there are no
			// operator-driven operations yet. An empty list is the
			// truth.
			resp.Type, resp.GetOperations = masterpb.Response_GET_OPERATIONS.Enum(), &masterpb.Response_GetOperations{}
		default:
			return nil, fmt.Errorf("BUG: operator call %s is listed as served but has no handler", typ)
		}
		if v := m.viewerOf(r); v != nil {
			v.filterResponse(resp, m.frameworkUsersLocked())
		}
	}
	return resp, nil
}

// versionInfo is GET_VERSION's answer: the version the master reports in
// MasterInfo, and the VCS revision when the build recorded one.
func (m *Master) versionInfo() *mesos.VersionInfo { return version.Get().Proto() }

// operatorSubscribe serves SUBSCRIBE: SUBSCRIBED with the whole state, then
// the events of every change, and HEARTBEAT every HeartbeatInterval.
func (m *Master) operatorSubscribe(w http.ResponseWriter, r *http.Request, respCodec codec.Codec) {
	s, err := m.addOperatorSubscriber(respCodec, r.RemoteAddr, m.viewerOf(r))
	if err != nil {
		if errors.Is(err, errNotLeader) {
			m.redirect(w, r)
			return
		}
		writeError(w, err)
		return
	}
	startStream(w, respCodec, "")
	m.serveOperatorSubscriber(r.Context(), w, s)
}

// addOperatorSubscriber registers a subscriber with SUBSCRIBED queued:
// the books as they are, which from then on its events keep current.
// Under --acls, v says what the subscriber may see: the snapshot is
// filtered as GET_STATE is, and events about frameworks and tasks it may
// not see are not sent to it.
func (m *Master) addOperatorSubscriber(c codec.Codec, remote string, v *viewer) (*opSubscriber, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading || m.shutdown {
		return nil, errNotLeader
	}
	if len(m.ops.subs) >= maxOperatorSubscribers {
		return nil, httpErr(http.StatusServiceUnavailable, "Maximum number of operator event stream subscribers (%d) reached", maxOperatorSubscribers)
	}
	// The subscribers there are hear what changed first; then what they
	// were told is the books, and the snapshot says the same.
	if len(m.ops.subs) == 0 {
		m.resetAnnouncedLocked()
	} else {
		m.opSyncLocked()
	}
	s := newOpSubscriber(uuid.NewString(), c, remote, m.ops.maxQueue)
	s.viewer = v
	encs := taskEncodings{}
	snapshot := m.stateProtoLocked(true, encs)
	if v != nil {
		v.filterResponse(&masterpb.Response{GetState: snapshot}, m.frameworkUsersLocked())
	}
	s.queue = append(s.queue, &opEvent{ev: &masterpb.Event{
		Type: masterpb.Event_SUBSCRIBED.Enum(),
		Subscribed: &masterpb.Event_Subscribed{
			GetState:                 snapshot,
			HeartbeatIntervalSeconds: proto.Float64(m.cfg.HeartbeatInterval.Seconds()),
		},
	}, encs: encs})
	m.ops.subs[s] = struct{}{}
	m.log.Info("operator event subscriber added", "subscriber", s.id, "remote_addr", remote, "subscribers", len(m.ops.subs))
	return s, nil
}

// serveOperatorSubscriber writes the subscriber's events until its stream
// ends, then forgets it. The response headers must have been written.
func (m *Master) serveOperatorSubscriber(ctx context.Context, w http.ResponseWriter, s *opSubscriber) error {
	err := s.serve(ctx, w, m.cfg.HeartbeatInterval, m.cfg.AgentPingTimeout)
	m.mu.Lock()
	delete(m.ops.subs, s)
	m.mu.Unlock()
	m.log.Info("operator event subscriber ended", "subscriber", s.id, "remote_addr", s.remote, "reason", err)
	return err
}
