package master

import (
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

// maxBodyBytes bounds a call's body. An ACCEPT launching thousands of tasks
// is a few megabytes; beyond this it is not a call but an attack.
const maxBodyBytes = 32 << 20

// httpErr is the error answered with code and the reason, Mesos's plain
// text: errdefs' one scheme, under the name the master's handlers use.
func httpErr(code int, format string, args ...any) error {
	return errdefs.Statusf(code, format, args...)
}

// writeError answers err as plain text, as Mesos does; an unclassified
// error (it may name a host path: the registry's file, a work_dir) is
// answered with a reference to the log line that has it.
func writeError(w http.ResponseWriter, err error) { errdefs.HTTPError(w, err) }

// readCall decodes a POSTed call into msg by the request's Content-Type
// and returns that codec. Errors carry their status: 405, 415, 413, 400.
func readCall(w http.ResponseWriter, r *http.Request, msg proto.Message) (codec.Codec, error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, httpErr(http.StatusMethodNotAllowed, "Expecting a 'POST' request, received '%s'", r.Method)
	}
	c, err := codec.ForContentType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, httpErr(http.StatusUnsupportedMediaType, "%v", err)
	}
	// A body trickled in byte by byte would hold this handler for ever;
	// the deadline ends it (not every ResponseWriter has one: tests).
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, httpErr(http.StatusRequestEntityTooLarge, "Request body is larger than %d bytes", tooBig.Limit)
		}
		return nil, httpErr(http.StatusBadRequest, "Failed to read the request body: %v", err)
	}
	if err := c.Unmarshal(body, msg); err != nil {
		return nil, httpErr(http.StatusBadRequest, "Failed to parse body into %s: %v", msg.ProtoReflect().Descriptor().Name(), err)
	}
	return c, nil
}

// redirect answers a request that only the leader may serve: 307 to the
// leader's //host:port plus the path, as Mesos does, or 503 while no
// master leads.
func (m *Master) redirect(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	leader, role := m.leader, m.role
	m.mu.Unlock()
	switch role {
	case roleRecovering:
		// Elected, but the registry is not read yet: come back shortly.
		http.Error(w, "Leading master is recovering the registry", http.StatusServiceUnavailable)
		return
	case roleDeposed:
		http.Error(w, "Not the leading master any more", http.StatusServiceUnavailable)
		return
	}
	if leader.IsZero() {
		http.Error(w, "No leader elected", http.StatusServiceUnavailable)
		return
	}
	loc := "//" + leader.HostPort()
	switch r.URL.Path {
	case "/redirect", "/master/redirect":
		// The leader's base URL: redirecting to the same path would loop.
	default:
		loc += r.URL.Path
	}
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusTemporaryRedirect)
}

func (m *Master) isLeader() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.role == roleLeading
}

// startStream writes the headers of a streaming answer: 200, the codec's
// exact media type, no Content-Length (so chunked), the stream id.
func startStream(w http.ResponseWriter, c codec.Codec, streamID string) {
	h := w.Header()
	h.Set("Content-Type", c.MediaType())
	h.Set("Cache-Control", "no-cache")
	if streamID != "" {
		h.Set("Mesos-Stream-Id", streamID)
	}
	w.WriteHeader(http.StatusOK)
	_ = http.NewResponseController(w).Flush()
}
