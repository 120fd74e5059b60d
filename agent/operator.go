package agent

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/loglevel"
	"github.com/mesolite/mesolite/internal/version"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// The v1 agent operator API: POST /api/v1 (and /slave(1)/api/v1), a
// mesos.v1.agent.Call in JSON or protobuf by Content-Type, answered in the
// encoding the Accept header asks for (JSON when it asks for none). Calls
// that read answer 200 with a Response of their type; calls that change
// something answer an empty 200, as Mesos's do. The nested container
// session calls stream (operator_session.go). Calls this agent does not
// serve answer 501 naming the call. See docs/operator-api.md.
//
// Who may call: every call goes through the read-only authentication
// (--authenticate_http_readonly, Config.Wrap); the calls that change the
// agent or run, feed or end processes in its containers need the
// read-write authentication too (--authenticate_http_readwrite,
// Config.ReadWriteAuth), whether this agent serves them yet or not.

// maxOperatorBody caps a call's body: the largest call is a session's
// command, whose every part validate caps far below this.
const maxOperatorBody = 4 << 20

// operatorBodyTimeout bounds reading a call's body: one trickled in byte
// by byte would hold a handler for ever.
const operatorBodyTimeout = 30 * time.Second

// readOnlyOperatorCalls change nothing and run nothing. Every other call
// needs read-write credentials when Config.ReadWriteAuth is set.
var readOnlyOperatorCalls = map[agentapi.Call_Type]bool{
	agentapi.Call_GET_HEALTH:             true,
	agentapi.Call_GET_FLAGS:              true,
	agentapi.Call_GET_VERSION:            true,
	agentapi.Call_GET_METRICS:            true,
	agentapi.Call_GET_LOGGING_LEVEL:      true,
	agentapi.Call_LIST_FILES:             true,
	agentapi.Call_READ_FILE:              true,
	agentapi.Call_GET_STATE:              true,
	agentapi.Call_GET_CONTAINERS:         true,
	agentapi.Call_GET_FRAMEWORKS:         true,
	agentapi.Call_GET_EXECUTORS:          true,
	agentapi.Call_GET_OPERATIONS:         true,
	agentapi.Call_GET_TASKS:              true,
	agentapi.Call_GET_AGENT:              true,
	agentapi.Call_GET_RESOURCE_PROVIDERS: true,
}

// operatorCallMessage is the sub-message each call type needs, by field
// name, as Mesos's validation asks for it; calls absent here need none.
var operatorCallMessage = map[agentapi.Call_Type]protoreflect.Name{
	agentapi.Call_SET_LOGGING_LEVEL:               "set_logging_level",
	agentapi.Call_LIST_FILES:                      "list_files",
	agentapi.Call_READ_FILE:                       "read_file",
	agentapi.Call_LAUNCH_NESTED_CONTAINER:         "launch_nested_container",
	agentapi.Call_WAIT_NESTED_CONTAINER:           "wait_nested_container",
	agentapi.Call_KILL_NESTED_CONTAINER:           "kill_nested_container",
	agentapi.Call_REMOVE_NESTED_CONTAINER:         "remove_nested_container",
	agentapi.Call_LAUNCH_NESTED_CONTAINER_SESSION: "launch_nested_container_session",
	agentapi.Call_ATTACH_CONTAINER_INPUT:          "attach_container_input",
	agentapi.Call_ATTACH_CONTAINER_OUTPUT:         "attach_container_output",
	agentapi.Call_LAUNCH_CONTAINER:                "launch_container",
	agentapi.Call_WAIT_CONTAINER:                  "wait_container",
	agentapi.Call_KILL_CONTAINER:                  "kill_container",
	agentapi.Call_REMOVE_CONTAINER:                "remove_container",
	agentapi.Call_REMOVE_RESOURCE_PROVIDER_CONFIG: "remove_resource_provider_config",
	agentapi.Call_MARK_RESOURCE_PROVIDER_GONE:     "mark_resource_provider_gone",
}

// validateOperatorCall checks what Mesos's validation checks: a known type
// and the message it needs. The messages' own required fields were
// checked by the codec.
func validateOperatorCall(c *agentapi.Call) error {
	if c.Type == nil {
		return errdefs.Statusf(http.StatusBadRequest, "Expecting 'type' to be present")
	}
	if _, known := agentapi.Call_Type_name[int32(c.GetType())]; !known || c.GetType() == agentapi.Call_UNKNOWN {
		return errdefs.Statusf(http.StatusBadRequest, "Unknown call type %d", c.GetType())
	}
	if name, ok := operatorCallMessage[c.GetType()]; ok {
		fd := c.ProtoReflect().Descriptor().Fields().ByName(name)
		if !c.ProtoReflect().Has(fd) {
			return errdefs.Statusf(http.StatusBadRequest, "Expecting '%s' to be present", name)
		}
	}
	return nil
}

// serveOperator serves POST /api/v1 and /slave(1)/api/v1. It runs behind
// the read-only authentication (see Handler).
func (a *Agent) serveOperator(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		errdefs.MethodNotAllowed(w, r, http.MethodPost)
		return
	}
	if isRecordIO(r.Header.Get("Content-Type")) {
		// A streaming request: ATTACH_CONTAINER_INPUT is the only one, and
		// it feeds a process, so it needs the read-write credentials
		// before a record is read.
		var h http.Handler = http.HandlerFunc(a.serveAttachInput)
		if a.cfg.ReadWriteAuth != nil {
			h = a.cfg.ReadWriteAuth(h)
		}
		h.ServeHTTP(w, r)
		return
	}
	call := &agentapi.Call{}
	if err := readOperatorCall(w, r, call); err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	if err := validateOperatorCall(call); err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	serve := func(w http.ResponseWriter, r *http.Request) { a.operatorCall(w, r, call) }
	if !readOnlyOperatorCalls[call.GetType()] && a.cfg.ReadWriteAuth != nil {
		a.cfg.ReadWriteAuth(http.HandlerFunc(serve)).ServeHTTP(w, r)
		return
	}
	serve(w, r)
}

// readOperatorCall decodes a POSTed call by the request's Content-Type.
// Errors carry their status: 415, 413, 400.
func readOperatorCall(w http.ResponseWriter, r *http.Request, call *agentapi.Call) error {
	c, err := codec.ForContentType(r.Header.Get("Content-Type"))
	if err != nil {
		return err
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(operatorBodyTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOperatorBody))
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return errdefs.Statusf(http.StatusRequestEntityTooLarge, "Request body is larger than %d bytes", tooBig.Limit)
		}
		return errdefs.Statusf(http.StatusBadRequest, "Failed to read the request body: %v", err)
	}
	if err := c.Unmarshal(body, call); err != nil {
		return errdefs.Statusf(http.StatusBadRequest, "Failed to parse body into Call: %v", err)
	}
	return nil
}

// mediaTypeRecordIO is the Content-Type of Mesos's streaming requests and
// answers; the records' own type is in Message-Content-Type (a request)
// or Message-Accept (what the client wants back).
const mediaTypeRecordIO = "application/recordio"

func isRecordIO(header string) bool {
	mt, _, err := mime.ParseMediaType(header)
	return err == nil && mt == mediaTypeRecordIO
}

// acceptsRecordIO reports whether the Accept header names
// application/recordio (with a q above 0).
func acceptsRecordIO(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || mt != mediaTypeRecordIO {
			continue
		}
		if q, ok := params["q"]; ok && (q == "0" || strings.Trim(q, "0.") == "") {
			continue
		}
		return true
	}
	return false
}

// operatorCall answers a valid call, authenticated as it needs to be.
func (a *Agent) operatorCall(w http.ResponseWriter, r *http.Request, call *agentapi.Call) {
	typ := call.GetType()
	if a.serveSessionCall(w, r, call) {
		return
	}
	// Mesos answers in JSON unless asked otherwise, whatever the call's
	// own encoding.
	respCodec, err := codec.ForAccept(r.Header.Get("Accept"), codec.JSON)
	if err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	resp, err := a.operatorAnswer(r, call)
	if err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	if resp == nil {
		// A call that changes something: done, nothing to say.
		w.WriteHeader(http.StatusOK)
		return
	}
	data, err := respCodec.Marshal(resp)
	if err != nil {
		a.log.Error("BUG: cannot encode an operator API answer", "type", typ.String(), "error", err)
		errdefs.HTTPError(w, fmt.Errorf("encode the answer to %s: %w", typ, err))
		return
	}
	w.Header().Set("Content-Type", respCodec.MediaType())
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(data)
}

// operatorAnswer carries out a call with a synchronous answer. It returns
// the Response to send, or nil for an empty 200.
func (a *Agent) operatorAnswer(r *http.Request, call *agentapi.Call) (*agentapi.Response, error) {
	typ := call.GetType()
	resp := &agentapi.Response{}
	switch typ {
	case agentapi.Call_GET_HEALTH:
		resp.Type = agentapi.Response_GET_HEALTH.Enum()
		resp.GetHealth = &agentapi.Response_GetHealth{Healthy: proto.Bool(true)}
	case agentapi.Call_GET_FLAGS:
		out := &agentapi.Response_GetFlags{}
		for _, name := range slices.Sorted(maps.Keys(a.cfg.Flags)) {
			out.Flags = append(out.Flags, &mesos.Flag{Name: proto.String(name), Value: proto.String(a.cfg.Flags[name])})
		}
		resp.Type, resp.GetFlags = agentapi.Response_GET_FLAGS.Enum(), out
	case agentapi.Call_GET_VERSION:
		resp.Type = agentapi.Response_GET_VERSION.Enum()
		resp.GetVersion = &agentapi.Response_GetVersion{VersionInfo: version.Get().Proto()}
	case agentapi.Call_GET_METRICS:
		// The same figures as /metrics/snapshot; every one is at hand, so
		// a caller's timeout has nothing to cut short.
		s := a.metricsSnapshot()
		out := &agentapi.Response_GetMetrics{}
		for _, name := range slices.Sorted(maps.Keys(s)) {
			out.Metrics = append(out.Metrics, &mesos.Metric{Name: proto.String(name), Value: proto.Float64(s[name])})
		}
		resp.Type, resp.GetMetrics = agentapi.Response_GET_METRICS.Enum(), out
	case agentapi.Call_GET_LOGGING_LEVEL:
		resp.Type = agentapi.Response_GET_LOGGING_LEVEL.Enum()
		resp.GetLoggingLevel = &agentapi.Response_GetLoggingLevel{Level: proto.Uint32(a.levels.Get())}
	case agentapi.Call_SET_LOGGING_LEVEL:
		return nil, a.setLoggingLevel(r, call.GetSetLoggingLevel())
	case agentapi.Call_LIST_FILES:
		out, err := a.listFiles(r, call.GetListFiles().GetPath())
		if err != nil {
			return nil, err
		}
		resp.Type, resp.ListFiles = agentapi.Response_LIST_FILES.Enum(), out
	case agentapi.Call_READ_FILE:
		out, err := a.readFile(r, call.GetReadFile())
		if err != nil {
			return nil, err
		}
		resp.Type, resp.ReadFile = agentapi.Response_READ_FILE.Enum(), out
	case agentapi.Call_GET_STATE:
		s := a.stateSnapshot()
		resp.Type, resp.GetState = agentapi.Response_GET_STATE.Enum(), s.stateProto()
	case agentapi.Call_GET_FRAMEWORKS:
		s := a.stateSnapshot()
		resp.Type, resp.GetFrameworks = agentapi.Response_GET_FRAMEWORKS.Enum(), s.frameworksProto()
	case agentapi.Call_GET_EXECUTORS:
		s := a.stateSnapshot()
		resp.Type, resp.GetExecutors = agentapi.Response_GET_EXECUTORS.Enum(), s.executorsProto()
	case agentapi.Call_GET_TASKS:
		s := a.stateSnapshot()
		resp.Type, resp.GetTasks = agentapi.Response_GET_TASKS.Enum(), s.tasksProto()
	case agentapi.Call_GET_AGENT:
		s := a.stateSnapshot()
		resp.Type, resp.GetAgent = agentapi.Response_GET_AGENT.Enum(), s.agentProto()
	case agentapi.Call_GET_CONTAINERS:
		resp.Type = agentapi.Response_GET_CONTAINERS.Enum()
		resp.GetContainers = a.containersProto(r, call.GetGetContainers())
	case agentapi.Call_GET_OPERATIONS:
		// Operations (reservations, volumes) are refused by the master
		// and never reach an agent: an empty list is the truth.
		resp.Type, resp.GetOperations = agentapi.Response_GET_OPERATIONS.Enum(), &agentapi.Response_GetOperations{}
	default:
		return nil, errdefs.Statusf(http.StatusNotImplemented, "Call '%s' is not implemented by this agent", typ)
	}
	return resp, nil
}

func operatorPrincipal(r *http.Request) string {
	p, _ := httpauth.Principal(r.Context())
	return p
}

func (a *Agent) setLoggingLevel(r *http.Request, c *agentapi.Call_SetLoggingLevel) error {
	if !a.levels.Adjustable() {
		return errdefs.Statusf(http.StatusNotImplemented, "This agent's logging level is fixed: it was started without an adjustable level")
	}
	d := time.Duration(c.GetDuration().GetNanoseconds())
	if d <= 0 {
		return errdefs.Statusf(http.StatusBadRequest, "'set_logging_level.duration' must be positive")
	}
	d = min(d, loglevel.MaxDuration)
	a.levels.Set(c.GetLevel(), d)
	// Logged at WARN, so it shows whatever the level was.
	a.log.Warn("logging level changed by the operator", "level", c.GetLevel(), "duration", d, "principal", operatorPrincipal(r), "remote_addr", r.RemoteAddr)
	return nil
}

// listFiles is LIST_FILES: /files/browse's listing, rules and refusals.
func (a *Agent) listFiles(r *http.Request, p string) (*agentapi.Response_ListFiles, error) {
	fh := a.filesHandler()
	if fh == nil {
		return nil, errdefs.Statusf(http.StatusServiceUnavailable, "The agent has not registered yet: no sandboxes to list")
	}
	entries, err := fh.Browse(r, p)
	if err != nil {
		return nil, err
	}
	out := &agentapi.Response_ListFiles{}
	for _, e := range entries {
		out.FileInfos = append(out.FileInfos, &mesos.FileInfo{
			Path: proto.String(e.Path), Nlink: proto.Int32(int32(min(e.Nlink, 1<<31-1))), Size: proto.Uint64(uint64(max(e.Size, 0))),
			Mtime: timeInfo(e.Mtime), Mode: proto.Uint32(e.Mode), Uid: proto.String(e.UID), Gid: proto.String(e.GID),
		})
	}
	return out, nil
}

// readFile is READ_FILE: /files/read's rules, refusals and cap on length.
func (a *Agent) readFile(r *http.Request, c *agentapi.Call_ReadFile) (*agentapi.Response_ReadFile, error) {
	fh := a.filesHandler()
	if fh == nil {
		return nil, errdefs.Statusf(http.StatusServiceUnavailable, "The agent has not registered yet: no sandboxes to read")
	}
	if c.GetOffset() > 1<<62 {
		return nil, errdefs.Statusf(http.StatusBadRequest, "'read_file.offset' %d is too large", c.GetOffset())
	}
	length := int64(-1)
	if c.Length != nil {
		length = int64(min(c.GetLength(), 1<<62))
	}
	data, size, err := fh.Read(r, c.GetPath(), int64(c.GetOffset()), length)
	if err != nil {
		return nil, err
	}
	return &agentapi.Response_ReadFile{Size: proto.Uint64(uint64(size)), Data: data}, nil
}

// containersProto is GET_CONTAINERS: every executor container with its
// status and usage, and, with show_nested, the sessions running in them.
func (a *Agent) containersProto(r *http.Request, c *agentapi.Call_GetContainers) *agentapi.Response_GetContainers {
	out := &agentapi.Response_GetContainers{}
	live := a.liveContainers()
	for _, ref := range live {
		out.Containers = append(out.Containers, &agentapi.Response_GetContainers_Container{
			FrameworkId:        &mesos.FrameworkID{Value: proto.String(ref.fwID)},
			ExecutorId:         &mesos.ExecutorID{Value: proto.String(ref.exID)},
			ExecutorName:       proto.String(ref.name),
			ContainerId:        &mesos.ContainerID{Value: proto.String(ref.cid)},
			ContainerStatus:    a.containerStatus(ref.cid, ref.pid),
			ResourceStatistics: a.usageProto(r.Context(), ref),
		})
	}
	if c.GetShowNested() {
		out.Containers = append(out.Containers, a.sessionContainers()...)
		// Tasks of groups with cgroups of their own, with their usage.
		for _, ref := range a.nestedContainers(r.Context(), live) {
			out.Containers = append(out.Containers, &agentapi.Response_GetContainers_Container{
				FrameworkId:        &mesos.FrameworkID{Value: proto.String(ref.fwID)},
				ExecutorId:         &mesos.ExecutorID{Value: proto.String(ref.exID)},
				ExecutorName:       proto.String(ref.name),
				ContainerId:        &mesos.ContainerID{Value: proto.String(ref.cid), Parent: &mesos.ContainerID{Value: proto.String(ref.parent)}},
				ContainerStatus:    &mesos.ContainerStatus{ContainerId: &mesos.ContainerID{Value: proto.String(ref.cid), Parent: &mesos.ContainerID{Value: proto.String(ref.parent)}}, NetworkInfos: a.agentNetwork()},
				ResourceStatistics: a.usageProto(r.Context(), ref),
			})
		}
	}
	slices.SortFunc(out.Containers, byID)
	return out
}
