package agent

import (
	"net/http"

	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/errdefs"
)

// serveSessionCall serves the nested container calls; false for any other.
func (a *Agent) serveSessionCall(w http.ResponseWriter, r *http.Request, call *agentapi.Call) bool {
	return false
}

// serveAttachInput serves a streaming ATTACH_CONTAINER_INPUT.
func (a *Agent) serveAttachInput(w http.ResponseWriter, r *http.Request) {
	errdefs.HTTPError(w, errdefs.Statusf(http.StatusNotImplemented, "Call 'ATTACH_CONTAINER_INPUT' is not implemented by this agent"))
}

// sessionContainers are the sessions, as GET_CONTAINERS lists them.
func (a *Agent) sessionContainers() []*agentapi.Response_GetContainers_Container { return nil }
