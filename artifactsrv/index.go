package artifactsrv

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strings"
)

// IndexEntry is one element of the JSON directory index, an array sorted
// by name. Symlinks appear as what they point to (inside the directory);
// links that lead out or dangle are left out.
type IndexEntry struct {
	Name string `json:"name"`
	// Type is "file" or "dir".
	Type string `json:"type"`
	Size int64  `json:"size"`
	// Mtime is the modification time in seconds since the epoch.
	Mtime int64 `json:"mtime"`
	// SHA256 is the file's digest in hex; absent for directories.
	SHA256 string `json:"sha256,omitempty"`
}

func wantsJSON(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "application/json")
}

func (s *Server) serveIndex(w http.ResponseWriter, r *http.Request, rel string, dir *os.File) {
	names, err := dir.Readdirnames(-1)
	if err != nil {
		s.httpError(w, fmt.Errorf("read directory %s: %w", rel, err))
		return
	}
	sort.Strings(names)
	entries := make([]IndexEntry, 0, len(names))
	for _, name := range names {
		if strings.HasPrefix(name, uploadTempPrefix) {
			continue
		}
		p := path.Join(rel, name)
		// Stat follows symlinks through the root: one that leads out of
		// the directory fails here and is not listed.
		fi, err := s.root.Stat(p)
		if err != nil {
			continue
		}
		e := IndexEntry{Name: name, Mtime: fi.ModTime().Unix()}
		switch {
		case fi.IsDir():
			e.Type = "dir"
		case fi.Mode().IsRegular():
			e.Type, e.Size = "file", fi.Size()
			e.SHA256 = s.digestOf(p)
		default:
			continue
		}
		entries = append(entries, e)
	}
	w.Header().Set("Vary", "Accept")
	if wantsJSON(r) {
		w.Header().Set("Content-Type", "application/json")
		if r.Method == http.MethodHead {
			return
		}
		_ = json.NewEncoder(w).Encode(entries)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	base := "/" + strings.TrimPrefix(rel, ".")
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	type row struct {
		IndexEntry
		Href string
	}
	rows := make([]row, len(entries))
	for i, e := range entries {
		href := base + url.PathEscape(e.Name)
		if e.Type == "dir" {
			href += "/"
		}
		rows[i] = row{IndexEntry: e, Href: href}
	}
	_ = indexTemplate.Execute(w, struct {
		Path string
		Rows []row
	}{Path: base, Rows: rows})
}

// digestOf is the digest for a listing: computed (once) when missing.
func (s *Server) digestOf(rel string) string {
	f, fi, err := s.openServed(rel)
	if err != nil {
		return ""
	}
	defer f.Close()
	if !fi.Mode().IsRegular() {
		return ""
	}
	sum, _ := s.digests.get(rel, f, fi)
	return sum
}

var indexTemplate = template.Must(template.New("index").Funcs(template.FuncMap{
	"size": func(e IndexEntry) string {
		if e.Type == "dir" {
			return "-"
		}
		return humanBytes(e.Size)
	},
}).Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Index of {{.Path}}</title></head>
<body><h1>Index of {{.Path}}</h1>
<table>
<tr><th>Name</th><th>Size</th><th>SHA-256</th></tr>
{{range .Rows}}<tr><td><a href="{{.Href}}">{{.Name}}{{if eq .Type "dir"}}/{{end}}</a></td><td>{{size .IndexEntry}}</td><td><code>{{.SHA256}}</code></td></tr>
{{end}}</table>
</body></html>
`))
