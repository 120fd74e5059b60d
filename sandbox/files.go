package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"mime"
	"net/http"
	"os"
	"os/user"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// DefaultMaxReadLength caps one /files/read answer at 16 pages, as Mesos does.
const DefaultMaxReadLength = 16 * 4096

// FilesOptions configures NewFilesHandler. Layout and AgentID are required.
type FilesOptions struct {
	// Layout is the agent's sandbox layout (its --work_dir).
	Layout Layout
	// AgentID is the agent whose sandboxes /frameworks/... paths name.
	AgentID string
	// Collected reports whether the GC removed a host path or one of its
	// parents (GC.Collected); such paths answer 404 "garbage collected".
	Collected func(hostPath string) bool
	// Authorize, when set, is asked before any byte of a sandbox is served;
	// an error answers with its errdefs class (ErrForbidden: 403).
	Authorize func(r *http.Request, id RunID) error
	// Logs are the process's own log files served at a virtual path, as
	// Mesos serves /master/log and /slave/log (--log_dir's file, or
	// --external_log_file).
	Logs map[string]string
	// AuthorizeLog, when set, is asked before a log of Logs is served
	// (Mesos's access_mesos_logs); Authorize is not asked for them.
	AuthorizeLog func(r *http.Request) error
	// Logger gets request failures at debug level; nil discards.
	Logger *slog.Logger
	// MaxReadLength caps /files/read; 0 means DefaultMaxReadLength.
	MaxReadLength int
	// HeartbeatInterval between stream heartbeats; 0 means 5s.
	HeartbeatInterval time.Duration
	// PollInterval is how often a stream checks its file when inotify is
	// unavailable; 0 means 50ms, which keeps the write-to-client latency of
	// the fallback under the 100ms target too. With inotify, streams still check every
	// second in case an event was missed (network and overlay filesystems).
	PollInterval time.Duration
	// ChunkSize is the largest data event of a stream; 0 means 64 KiB.
	ChunkSize int
	// DisableInotify forces polling (tests, filesystems without inotify).
	DisableInotify bool
}

// FilesHandler serves Mesos's files API for the sandboxes of one agent,
// mounted by the agent under /files/:
//
//	GET /files/browse?path=P[&jsonp=CB]                JSON array of {gid,mode,mtime,nlink,path,size,uid}
//	GET /files/read?path=P&offset=N&length=N[&jsonp=CB] {"data":"...","offset":N}
//	GET /files/download?path=P                         the raw file, with Range support
//	GET /files/debug[?jsonp=CB]                        attached virtual path -> host path
//	GET /files/stream?path=P&offset=N&follow=true      server-sent events (see stream.go)
//
// plus the legacy /files/browse.json, /files/read.json, /files/download.json
// and /files/debug.json. Status codes: 400 bad parameters or a directory
// where a file is needed, 403 any path leading out of its sandbox, 404 no
// such file (with "garbage collected" in the message when the GC took it).
type FilesHandler struct {
	opts     FilesOptions
	log      *slog.Logger
	resolver *Resolver

	mu       sync.Mutex
	attached map[string]string // virtual path -> host path, for /files/debug

	watchOnce sync.Once
	watch     *watcher // nil when inotify is unavailable

	bufs  sync.Pool
	names nameCache
}

// NewFilesHandler returns the handler; Close it to stop its inotify watcher.
func NewFilesHandler(opts FilesOptions) *FilesHandler {
	if opts.MaxReadLength <= 0 {
		opts.MaxReadLength = DefaultMaxReadLength
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = 5 * time.Second
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 50 * time.Millisecond
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = 64 << 10
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &FilesHandler{
		opts:     opts,
		log:      log.With("component", "files"),
		resolver: NewResolver(opts.Layout, opts.AgentID, opts.Collected),
		attached: make(map[string]string),
	}
	for virtual, host := range opts.Logs {
		h.resolver.AttachLog(virtual, host)
		h.attached[virtual] = host
	}
	h.bufs.New = func() any {
		return &readBuffers{data: make([]byte, opts.MaxReadLength), out: make([]byte, 0, 2*opts.MaxReadLength+256)}
	}
	return h
}

// Resolver is the handler's resolver, for agent code that serves sandbox
// files elsewhere with the same rules.
func (h *FilesHandler) Resolver() *Resolver { return h.resolver }

// Attach lists a run under /files/debug with the virtual paths Mesos
// attaches: the host directory itself and /frameworks/.../runs/latest (which
// then names this run), plus /frameworks/.../runs/<container_id>. Serving
// does not depend on it: every run directory of the layout is served.
func (h *FilesHandler) Attach(id RunID) {
	dir := h.opts.Layout.RunDir(id)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.attached[dir] = dir
	h.attached[id.VirtualPath()] = dir
	h.attached[VirtualLatestPath(id.FrameworkID, id.ExecutorID)] = dir
}

// Detach removes what Attach added (the latest path only if it still names
// this run).
func (h *FilesHandler) Detach(id RunID) {
	dir := h.opts.Layout.RunDir(id)
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.attached, dir)
	delete(h.attached, id.VirtualPath())
	latest := VirtualLatestPath(id.FrameworkID, id.ExecutorID)
	if h.attached[latest] == dir {
		delete(h.attached, latest)
	}
}

// Close stops the inotify watcher shared by streams and closes the
// directories kept open. Streams still open fall back to polling.
func (h *FilesHandler) Close() error {
	h.resolver.Close()
	h.watchOnce.Do(func() {}) // no watcher may start after Close
	if h.watch != nil {
		return h.watch.close()
	}
	return nil
}

// ServeHTTP routes on the last path element, so the handler works whether
// the agent mounts it at /files/ or strips that prefix.
func (h *FilesHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		errdefs.MethodNotAllowed(w, r, http.MethodGet, http.MethodHead)
		return
	}
	var err error
	switch path.Base(r.URL.Path) {
	case "browse", "browse.json":
		err = h.browse(w, r)
	case "read", "read.json":
		err = h.read(w, r)
	case "download", "download.json":
		err = h.download(w, r)
	case "debug", "debug.json":
		err = h.debug(w, r)
	case "stream":
		err = h.stream(w, r)
	default:
		err = fmt.Errorf("no such endpoint %s: %w", r.URL.Path, errdefs.ErrNotFound)
	}
	if err != nil {
		h.log.Debug("files request failed", "path", r.URL.Path, "query", r.URL.RawQuery,
			"remote_addr", r.RemoteAddr, "status", errdefs.HTTPStatus(err), "err", err)
		errdefs.HTTPError(w, err)
	}
}

// open resolves the request's path parameter and checks authorization.
func (h *FilesHandler) open(r *http.Request, q queryValues) (*Target, error) {
	return h.openPath(r, q.get("path"))
}

// openPath resolves a virtual path and checks r's authorization for it.
func (h *FilesHandler) openPath(r *http.Request, p string) (*Target, error) {
	t, err := h.resolver.Resolve(p)
	if err != nil {
		return nil, err
	}
	auth := func() error {
		if h.opts.Authorize == nil {
			return nil
		}
		return h.opts.Authorize(r, t.ID)
	}
	if t.Log {
		auth = func() error {
			if h.opts.AuthorizeLog == nil {
				return nil
			}
			return h.opts.AuthorizeLog(r)
		}
	}
	if err := auth(); err != nil {
		t.Close()
		return nil, err
	}
	return t, nil
}

// openRegular opens the target for reading and refuses anything but a
// regular file: a FIFO or device planted in a sandbox must not block or
// feed the agent. O_NONBLOCK keeps the open of a FIFO from hanging.
func openRegular(t *Target, verb string) (*os.File, fs.FileInfo, error) {
	f, err := t.root.OpenFile(t.Rel, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, classify(err, t.Virtual)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", t.Virtual, err)
	}
	if fi.IsDir() {
		f.Close()
		return nil, nil, fmt.Errorf("cannot %s a directory: %w", verb, errdefs.ErrInvalid)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("cannot %s %s: not a regular file: %w", verb, t.Virtual, errdefs.ErrInvalid)
	}
	// A file with more than one name may be a host file the task linked
	// into its sandbox (a task running as root can link /etc/shadow); the
	// agent reads as root, so it serves only files the sandbox alone holds.
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Nlink > 1 {
		f.Close()
		return nil, nil, fmt.Errorf("cannot %s %s: it is hard-linked from elsewhere, and may not be the task's: %w", verb, t.Virtual, errdefs.ErrForbidden)
	}
	return f, fi, nil
}

func (h *FilesHandler) browse(w http.ResponseWriter, r *http.Request) error {
	q := parseQuery(r)
	jsonp, err := q.jsonp()
	if err != nil {
		return err
	}
	out := []byte{'['}
	first := true
	err = h.list(r, q.get("path"), func(virtual string, fi fs.FileInfo) {
		if !first {
			out = append(out, ',')
		}
		first = false
		out = h.appendFileInfo(out, virtual, fi)
	})
	if err != nil {
		return err
	}
	out = append(out, ']')
	writeJSON(w, out, jsonp)
	return nil
}

// list calls each for every entry of the directory p, in name order, with
// the entry's virtual path; a file lists nothing (Mesos's answer to
// browsing a file is an empty list).
func (h *FilesHandler) list(r *http.Request, p string, each func(virtual string, fi fs.FileInfo)) error {
	t, err := h.openPath(r, p)
	if err != nil {
		return err
	}
	defer t.Close()
	fi, err := t.Stat()
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return nil
	}
	dir, err := t.root.Open(t.Rel)
	if err != nil {
		return classify(err, t.Virtual)
	}
	names, err := dir.Readdirnames(-1)
	dir.Close()
	if err != nil {
		return fmt.Errorf("%s: list: %w", t.Virtual, err)
	}
	slices.Sort(names)
	for _, name := range names {
		rel := path.Join(t.Rel, name)
		efi, err := t.root.Stat(rel)
		if err != nil {
			// A dangling link, or one leading out of the sandbox:
			// show the link itself, never what it points at.
			if efi, err = t.root.Lstat(rel); err != nil {
				continue
			}
		}
		each(t.Virtual+"/"+name, efi)
	}
	return nil
}

// FileEntry is one entry of a sandbox listing, what Mesos's FileInfo
// holds.
type FileEntry struct {
	// Path is the entry's virtual path (/frameworks/.../runs/latest/x).
	Path  string
	Nlink uint64
	Size  int64
	Mtime time.Time
	// Mode is st_mode: the file type and permission bits.
	Mode uint32
	// UID and GID are the owner's names when the host knows them, else
	// the numbers.
	UID, GID string
}

// Browse lists the directory p (a virtual path) with the rules of
// /files/browse: the same resolution, refusals and authorization (r is
// the request asked on behalf of), and the same entries. Errors carry
// /files/browse's classes (ErrForbidden for a path out of its sandbox,
// ErrNotFound, ErrGone).
func (h *FilesHandler) Browse(r *http.Request, p string) ([]FileEntry, error) {
	out := []FileEntry{}
	err := h.list(r, p, func(virtual string, fi fs.FileInfo) {
		e := FileEntry{Path: virtual, Nlink: 1, Size: fi.Size(), Mtime: fi.ModTime(), Mode: uint32(fi.Mode().Perm())}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			e.Nlink, e.Mode = uint64(st.Nlink), st.Mode
			e.UID, e.GID = h.names.user(st.Uid), h.names.group(st.Gid)
		}
		out = append(out, e)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Read reads the file p (a virtual path) with the rules of /files/read:
// at most length bytes from offset (length -1: as much as the cap allows;
// the cap is FilesOptions.MaxReadLength), only regular files the sandbox
// alone holds, the same authorization. It returns the data and the file's
// size; an offset at or past the end reads nothing. Errors as Browse's,
// and ErrInvalid for a directory or a file that is not regular.
func (h *FilesHandler) Read(r *http.Request, p string, offset, length int64) ([]byte, int64, error) {
	if offset < 0 {
		return nil, 0, fmt.Errorf("negative offset provided: %d: %w", offset, errdefs.ErrInvalid)
	}
	t, err := h.openPath(r, p)
	if err != nil {
		return nil, 0, err
	}
	defer t.Close()
	f, fi, err := openRegular(t, "read")
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	size := fi.Size()
	n := size - offset
	if length >= 0 && length < n {
		n = length
	}
	n = min(n, int64(h.opts.MaxReadLength))
	if n <= 0 {
		return []byte{}, size, nil
	}
	data := make([]byte, n)
	got, err := f.ReadAt(data, offset)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, 0, fmt.Errorf("%s: read: %w", t.Virtual, err)
	}
	return data[:got], size, nil
}

func (h *FilesHandler) read(w http.ResponseWriter, r *http.Request) error {
	q := parseQuery(r)
	jsonp, err := q.jsonp()
	if err != nil {
		return err
	}
	offset := int64(-1)
	if v, ok := q.lookup("offset"); ok {
		if offset, err = strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Errorf("failed to parse offset %q: %w", v, errdefs.ErrInvalid)
		}
		if offset < -1 {
			return fmt.Errorf("negative offset provided: %d: %w", offset, errdefs.ErrInvalid)
		}
	}
	length := int64(-1)
	if v, ok := q.lookup("length"); ok {
		if length, err = strconv.ParseInt(v, 10, 64); err != nil {
			return fmt.Errorf("failed to parse length %q: %w", v, errdefs.ErrInvalid)
		}
		if length < -1 {
			return fmt.Errorf("negative length provided: %d: %w", length, errdefs.ErrInvalid)
		}
	}
	t, err := h.open(r, q)
	if err != nil {
		return err
	}
	defer t.Close()
	f, fi, err := openRegular(t, "read")
	if err != nil {
		return err
	}
	defer f.Close()
	size := fi.Size()

	rb := h.bufs.Get().(*readBuffers)
	defer h.bufs.Put(rb)
	var data []byte
	respOffset := offset
	switch {
	case offset == -1:
		// The pailer asks with offset=-1 to learn the size.
		respOffset = size
	case offset >= size, length == 0:
	default:
		n := size - offset
		if length >= 0 && length < n {
			n = length
		}
		n = min(n, int64(h.opts.MaxReadLength))
		got, err := f.ReadAt(rb.data[:n], offset)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: read: %w", t.Virtual, err)
		}
		data = rb.data[:got]
	}
	out := append(rb.out[:0], `{"data":`...)
	out = appendJSONString(out, data, jsonp != "")
	out = append(out, `,"offset":`...)
	out = strconv.AppendInt(out, respOffset, 10)
	out = append(out, '}')
	writeJSON(w, out, jsonp)
	if cap(out) <= 6*h.opts.MaxReadLength+256 {
		rb.out = out[:0] // keep a grown buffer, unless binary data blew it up
	}
	return nil
}

func (h *FilesHandler) download(w http.ResponseWriter, r *http.Request) error {
	q := parseQuery(r)
	t, err := h.open(r, q)
	if err != nil {
		return err
	}
	defer t.Close()
	f, fi, err := openRegular(t, "download")
	if err != nil {
		return err
	}
	defer f.Close()
	name := path.Base(t.Rel)
	if t.Rel == "." {
		name = t.ID.ContainerID
	}
	ctype := "application/octet-stream"
	if ext := path.Ext(name); ext != "" {
		if m := mime.TypeByExtension(ext); m != "" {
			ctype = m
		}
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": name}))
	// ServeContent answers Range, If-Range and HEAD; given the *os.File
	// itself it sends with sendfile.
	http.ServeContent(w, r, name, fi.ModTime(), f)
	return nil
}

func (h *FilesHandler) debug(w http.ResponseWriter, r *http.Request) error {
	jsonp, err := parseQuery(r).jsonp()
	if err != nil {
		return err
	}
	h.mu.Lock()
	b, err := json.Marshal(h.attached)
	h.mu.Unlock()
	if err != nil {
		return err
	}
	writeJSON(w, b, jsonp)
	return nil
}

// readBuffers are reused across /files/read requests: the data read and the
// JSON answer, which escapes make up to twice as long for log text.
type readBuffers struct{ data, out []byte }

// writeJSON answers 200 with body, or with jsonp(body); as Mesos does.
func writeJSON(w http.ResponseWriter, body []byte, jsonp string) {
	hdr := w.Header()
	if jsonp == "" {
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		w.Write(body)
		return
	}
	hdr.Set("Content-Type", "text/javascript")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Length", strconv.Itoa(len(jsonp)+len(body)+3))
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, jsonp)
	io.WriteString(w, "(")
	w.Write(body)
	io.WriteString(w, ");")
}

// appendFileInfo writes Mesos's FileInfo JSON (keys in Mesos's order, which
// is sorted): uid and gid are names when the host knows them, mode is the
// ls -l string, mtime whole seconds.
func (h *FilesHandler) appendFileInfo(out []byte, virtual string, fi fs.FileInfo) []byte {
	var nlink uint64 = 1
	var uid, gid uint32
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		nlink = uint64(st.Nlink)
		uid, gid = st.Uid, st.Gid
	}
	out = append(out, `{"gid":`...)
	out = appendJSONString(out, []byte(h.names.group(gid)), true)
	out = append(out, `,"mode":"`...)
	out = appendMode(out, fi.Mode())
	out = append(out, `","mtime":`...)
	out = strconv.AppendInt(out, fi.ModTime().Unix(), 10)
	out = append(out, `,"nlink":`...)
	out = strconv.AppendUint(out, nlink, 10)
	out = append(out, `,"path":`...)
	out = appendJSONString(out, []byte(virtual), true)
	out = append(out, `,"size":`...)
	out = strconv.AppendInt(out, fi.Size(), 10)
	out = append(out, `,"uid":`...)
	out = appendJSONString(out, []byte(h.names.user(uid)), true)
	return append(out, '}')
}

// appendMode writes the 10-character ls -l mode Mesos reports ("-rw-r--r--",
// "drwxr-xr-x"); Mesos ignores setuid, setgid and sticky bits, and so do we.
func appendMode(out []byte, m fs.FileMode) []byte {
	t := byte('-')
	switch {
	case m.IsDir():
		t = 'd'
	case m&fs.ModeSymlink != 0:
		t = 'l'
	case m&fs.ModeNamedPipe != 0:
		t = 'p'
	case m&fs.ModeSocket != 0:
		t = 's'
	case m&fs.ModeCharDevice != 0:
		t = 'c'
	case m&fs.ModeDevice != 0:
		t = 'b'
	}
	out = append(out, t)
	const rwx = "rwxrwxrwx"
	for i := range 9 {
		if m&(1<<uint(8-i)) != 0 {
			out = append(out, rwx[i])
		} else {
			out = append(out, '-')
		}
	}
	return out
}

// nameCache remembers user and group names: a listing of a big sandbox
// would otherwise read /etc/passwd once per entry.
type nameCache struct {
	mu     sync.Mutex
	users  map[uint32]string
	groups map[uint32]string
}

func (c *nameCache) user(id uint32) string {
	return c.lookup(&c.users, id, func(s string) (string, error) {
		u, err := user.LookupId(s)
		if err != nil {
			return "", err
		}
		return u.Username, nil
	})
}

func (c *nameCache) group(id uint32) string {
	return c.lookup(&c.groups, id, func(s string) (string, error) {
		g, err := user.LookupGroupId(s)
		if err != nil {
			return "", err
		}
		return g.Name, nil
	})
}

func (c *nameCache) lookup(m *map[uint32]string, id uint32, find func(string) (string, error)) string {
	c.mu.Lock()
	name, ok := (*m)[id]
	c.mu.Unlock()
	if ok {
		return name
	}
	s := strconv.FormatUint(uint64(id), 10)
	name = s
	if n, err := find(s); err == nil && n != "" {
		name = n
	}
	c.mu.Lock()
	if *m == nil {
		*m = make(map[uint32]string)
	}
	if len(*m) < 4096 {
		(*m)[id] = name
	}
	c.mu.Unlock()
	return name
}

// queryValues is the request's query; Mesos takes the first value of a key.
type queryValues map[string][]string

func parseQuery(r *http.Request) queryValues { return queryValues(r.URL.Query()) }

func (q queryValues) lookup(k string) (string, bool) {
	v, ok := q[k]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func (q queryValues) get(k string) string { v, _ := q.lookup(k); return v }

// jsonp returns the callback name, refusing anything but a JavaScript
// identifier path: the name is echoed into a script, so it must not be able
// to carry code.
func (q queryValues) jsonp() (string, error) {
	cb, ok := q.lookup("jsonp")
	if !ok {
		return "", nil
	}
	if cb == "" || len(cb) > 128 {
		return "", fmt.Errorf("invalid jsonp callback: %w", errdefs.ErrInvalid)
	}
	for i := 0; i < len(cb); i++ {
		c := cb[i]
		if !(c == '_' || c == '$' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return "", fmt.Errorf("invalid jsonp callback %q: %w", cb, errdefs.ErrInvalid)
		}
	}
	if strings.HasPrefix(cb, ".") || strings.HasSuffix(cb, ".") {
		return "", fmt.Errorf("invalid jsonp callback %q: %w", cb, errdefs.ErrInvalid)
	}
	return cb, nil
}
