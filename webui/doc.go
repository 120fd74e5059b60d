// Package webui is the browser face of mesolite: a single-page app for the
// master (cluster overview, frameworks, agents, tasks) and one for the agent
// (its executors, a sandbox browser and a live log viewer). Both are plain
// HTML, CSS and JavaScript embedded in the binary; no CDN is ever contacted,
// so the pages work on an air-gapped cluster.
//
// The pages only read the JSON endpoints that already exist: the master page
// polls /master/state, the agent page reads /state and the files API
// (/files/browse, /files/read, /files/download and the /files/stream
// server-sent events). The handlers therefore serve nothing but the page at
// "/" and its assets under /static/; every other path answers 404, so
// mounting them at "/" of a mux never shadows an API endpoint:
//
//	mux.Handle("/master/state", state)
//	mux.Handle("/", webui.Master(webui.Options{Title: cluster}))
//
// Navigation is client-side (hash routes such as /#/frameworks or
// /#/file?path=...), which keeps links stable when the master UI points a
// browser at an agent's sandbox.
package webui
