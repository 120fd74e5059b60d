package jobs

import (
	"embed"
	"net/http"

	"github.com/mesolite/mesolite/frameworks"
)

// The web page at /: the job list, "+ New Job", each job's page with its
// runs (linked to their tasks in the master's UI, and from there to their
// sandboxes), and the dependency graph. It reads the service's own
// Chronos API; /ui/info tells it where the master's UI is.

//go:embed ui
var uiFiles embed.FS

var page = frameworks.PageHandler(uiFiles, "ui")

// handleUIInfo is what the page needs besides the API: the master's web
// UI and the framework id, to link runs to their tasks there.
func (s *Service) handleUIInfo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"master_ui":    s.driver.MasterWebURL(),
		"framework_id": s.driver.FrameworkID(),
		"leader":       s.leader(),
	})
}
