package apps

import (
	"embed"

	"github.com/mesolite/mesolite/frameworks"
)

// The web page at /: plain HTML and JavaScript embedded in the binary
// (ui/), no build step, served as every built-in framework's page is
// (frameworks.PageHandler: webui's style and helpers under /static/, the
// pages' security headers). It reads only the service's Marathon API.

//go:embed ui
var uiFiles embed.FS

var page = frameworks.PageHandler(uiFiles, "ui")
