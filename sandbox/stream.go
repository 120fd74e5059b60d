package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strconv"
	"syscall"
	"time"

	"github.com/mesolite/mesolite/errdefs"
)

// GET /files/stream?path=P[&offset=N][&follow=true] answers server-sent
// events (text/event-stream), each a JSON object:
//
//	event: data       {"offset":N,"data":"..."}   bytes [N, N+len(data)) of the file; id: is the next offset
//	event: heartbeat  {"offset":N}                once caught up with the file, then every HeartbeatInterval,
//	                                               so proxies and clients see a live stream
//	event: truncated  {"offset":0,"size":S}       the file shrank (copytruncate); reading goes on from 0
//	event: rotated    {"offset":0,"renamed_to":P} the file was replaced (renamed to P by rotation); the old one
//	                                               was read to its end and reading goes on in the new one from 0
//	event: deleted    {"offset":N}                the file is gone; the stream ends
//	event: eof        {"offset":N}                follow=false and the end is reached; the stream ends
//
// offset defaults to 0; -1 starts at the current end (tail -f). An offset past
// the end is treated as a truncation. A reconnecting EventSource's
// Last-Event-ID is used as the offset when the query has none.

// Stream event names.
const (
	EventData      = "data"
	EventHeartbeat = "heartbeat"
	EventTruncated = "truncated"
	EventRotated   = "rotated"
	EventDeleted   = "deleted"
	EventEOF       = "eof"
)

// safetyPoll is how often a stream looks at its file even with inotify.
const safetyPoll = time.Second

// errStreamEnd ends a stream normally (deleted, eof).
var errStreamEnd = errors.New("stream ended")

func (h *FilesHandler) stream(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		errdefs.MethodNotAllowed(w, r, http.MethodGet)
		return nil
	}
	q := parseQuery(r)
	follow := false
	if v, ok := q.lookup("follow"); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("failed to parse follow %q: %w", v, errdefs.ErrInvalid)
		}
		follow = b
	}
	offset := int64(0)
	v, ok := q.lookup("offset")
	if !ok {
		v, ok = r.Header.Get("Last-Event-ID"), r.Header.Get("Last-Event-ID") != ""
	}
	if ok {
		var err error
		if offset, err = strconv.ParseInt(v, 10, 64); err != nil || offset < -1 {
			return fmt.Errorf("failed to parse offset %q: %w", v, errdefs.ErrInvalid)
		}
	}
	t, err := h.open(r, q)
	if err != nil {
		return err
	}
	defer t.Close()
	f, fi, err := openRegular(t, "stream")
	if err != nil {
		return err
	}
	s := &streamer{
		h:      h,
		t:      t,
		w:      w,
		rc:     http.NewResponseController(w),
		follow: follow,
		wake:   make(chan struct{}, 1),
		buf:    make([]byte, h.opts.ChunkSize),
	}
	defer func() { s.close() }()
	s.setFile(f, fi)

	// A stream lasts as long as the task; a server-wide WriteTimeout must
	// not cut it (heartbeats show the client is still there).
	_ = s.rc.SetWriteDeadline(time.Time{})
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	// Send the headers now: a client waiting for them must not wait for
	// the first byte of a quiet file.
	s.pending = true

	switch {
	case offset == -1:
		s.pos = fi.Size()
	case offset > fi.Size() && s.resumeRotated(offset):
		// The client read up to offset of a file that has since been
		// rotated: carry on in the rotated file, then follow the rotation.
	case offset > fi.Size():
		if err := s.event(EventTruncated, 0, "size", fi.Size()); err != nil {
			return nil
		}
	default:
		s.pos = offset
	}
	if err := s.flush(); err != nil {
		return nil
	}
	if err := s.run(r.Context()); err != nil && !errors.Is(err, errStreamEnd) {
		// The status is sent; all that is left is to say why we stopped.
		h.log.Debug("files stream ended", "path", t.Virtual, "remote_addr", r.RemoteAddr, "err", err)
	}
	return nil
}

// streamer follows one file for one client.
type streamer struct {
	h      *FilesHandler
	t      *Target
	w      io.Writer
	rc     *http.ResponseController
	follow bool

	f       *os.File
	dev     uint64
	ino     uint64
	pos     int64
	dir     *os.File // the file's directory, watched for the new file after a rotation
	watch   *watcher
	sub     *subscription
	wake    chan struct{}
	buf     []byte
	out     []byte
	pending bool // events written but not flushed
}

func (s *streamer) setFile(f *os.File, fi fs.FileInfo) {
	s.f = f
	s.dev, s.ino = devIno(fi)
	s.pos = 0
	if s.h.opts.DisableInotify {
		return
	}
	w := s.h.watcher()
	if w == nil {
		return
	}
	s.watch = w
	if s.dir == nil {
		if d, err := s.t.root.Open(path.Dir(s.t.Rel)); err == nil {
			s.dir = d
		}
	}
	w.unsubscribe(s.sub)
	sub, err := w.subscribe(s.wake, f, s.dir)
	if err != nil {
		s.h.log.Debug("inotify unavailable, polling", "path", s.t.Virtual, "err", err)
		sub = nil
	}
	s.sub = sub
}

func (s *streamer) close() {
	if s.watch != nil {
		s.watch.unsubscribe(s.sub)
	}
	if s.f != nil {
		s.f.Close()
	}
	if s.dir != nil {
		s.dir.Close()
	}
}

// watcher starts the handler's shared inotify instance on first use.
func (h *FilesHandler) watcher() *watcher {
	h.watchOnce.Do(func() {
		w, err := newWatcher()
		if err != nil {
			h.log.Info("inotify unavailable, streams will poll", "err", err)
			return
		}
		h.watch = w
	})
	return h.watch
}

func (s *streamer) run(ctx context.Context) error {
	poll := s.h.opts.PollInterval
	if s.sub != nil {
		poll = safetyPoll
	}
	pollT := time.NewTicker(poll)
	defer pollT.Stop()
	beat := time.NewTicker(s.h.opts.HeartbeatInterval)
	defer beat.Stop()
	caughtUp := false
	for {
		if err := s.pump(); err != nil {
			return err
		}
		if !s.follow {
			if err := s.event(EventEOF, s.pos); err != nil {
				return err
			}
			return errStreamEnd
		}
		if !caughtUp {
			// The first heartbeat comes as soon as what the file held is
			// sent: a client opening at an earlier offset knows its backlog
			// is complete, and an idle file does not look like a dead stream.
			if err := s.event(EventHeartbeat, s.pos); err != nil {
				return err
			}
			caughtUp = true
		}
		if err := s.flush(); err != nil {
			return err
		}
		// Polling may have become necessary (watch lost) or unnecessary.
		if want := s.pollInterval(); want != poll {
			poll = want
			pollT.Reset(poll)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.wake:
		case <-pollT.C:
		case <-beat.C:
			if err := s.event(EventHeartbeat, s.pos); err != nil {
				return err
			}
		}
	}
}

func (s *streamer) pollInterval() time.Duration {
	if s.sub != nil {
		return safetyPoll
	}
	return s.h.opts.PollInterval
}

// pump sends everything new in the file, then looks at what happened to the
// file's name: truncation, rotation, deletion.
func (s *streamer) pump() error {
	for {
		if err := s.drain(); err != nil {
			return err
		}
		fi, err := s.f.Stat()
		if err != nil {
			return fmt.Errorf("stat: %w", err)
		}
		if fi.Size() < s.pos {
			if err := s.event(EventTruncated, 0, "size", fi.Size()); err != nil {
				return err
			}
			s.pos = 0
			continue
		}
		cur, err := s.t.root.Stat(s.t.Rel)
		switch {
		case err == nil && sameFile(cur, s.dev, s.ino):
			return nil // nothing happened to the name
		case err == nil && cur.Mode().IsRegular():
			// A new file under the name. The writer has let go of the
			// old one, so read it to its very end first.
			if err := s.drain(); err != nil {
				return err
			}
			if err := s.switchFile(); err != nil {
				return err
			}
			continue
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return classify(err, s.t.Virtual)
		}
		// The name is gone (or is no longer a regular file).
		if nlink(fi) > 0 {
			// Renamed away by a rotation whose new file is not there
			// yet: keep following the old one until it appears.
			return nil
		}
		if err := s.drain(); err != nil {
			return err
		}
		if err := s.event(EventDeleted, s.pos); err != nil {
			return err
		}
		return errStreamEnd
	}
}

// resumeRotated switches to <name>.1 at offset when that file is long
// enough to hold it. A viewer that read a file's tail and then opened the
// stream at its end races the writer's rotation; without this it would see a
// truncation and lose the old file's last lines.
func (s *streamer) resumeRotated(offset int64) bool {
	prev := &Target{ID: s.t.ID, RunDir: s.t.RunDir, Rel: rotatedName(s.t.Rel, 1), Virtual: s.t.Virtual, root: s.t.root}
	f, fi, err := openRegular(prev, "stream")
	if err != nil {
		return false
	}
	if fi.Size() < offset {
		f.Close()
		return false
	}
	s.f.Close()
	s.setFile(f, fi)
	s.pos = offset
	return true
}

// maxChain is how far down <name>.1, <name>.2, ... switchFile looks for the
// file it was reading.
const maxChain = 64

// switchFile leaves the file it has read to the end for its successor. After
// one rotation that is the live file; after several in a row (the stream
// looked away while the writer rotated twice) the old file is now <name>.k
// and its successor <name>.k-1, which is finished too and read whole before
// moving on, so no rotated file is skipped while it still exists.
func (s *streamer) switchFile() error {
	var nf *os.File
	var nfi fs.FileInfo
	var k int
	for attempt := 0; nf == nil; attempt++ {
		k = s.chainIndex()
		next := s.t
		if k >= 2 {
			next = &Target{ID: s.t.ID, RunDir: s.t.RunDir, Rel: rotatedName(s.t.Rel, k-1), Virtual: s.t.Virtual, root: s.t.root}
		}
		f, fi, err := openRegular(next, "stream")
		if err == nil && k >= 1 && !s.stillAt(k) {
			// A rotation slipped in between the look and the open: what
			// was opened may not be the successor.
			f.Close()
			err = errors.New("rotated meanwhile")
		}
		if err == nil {
			nf, nfi = f, fi
			break
		}
		if attempt >= 100 {
			// The chain does not settle; go on with the live file.
			if nf, nfi, err = openRegular(s.t, "stream"); err != nil {
				return err
			}
			break
		}
		time.Sleep(time.Millisecond) // a rotation is half-way
	}
	s.f.Close()
	s.setFile(nf, nfi)
	if k >= 1 {
		return s.event(EventRotated, 0, "renamed_to", rotatedName(s.t.Virtual, k))
	}
	return s.event(EventRotated, 0)
}

// chainIndex finds the file being read among <name>.1, <name>.2, ...; 0 when
// it is not there. A single gap is tolerated: a rotation renames from the
// oldest down, so the chain may miss one link for a moment.
func (s *streamer) chainIndex() int {
	misses := 0
	for i := 1; i <= maxChain && misses < 2; i++ {
		fi, err := s.t.root.Lstat(rotatedName(s.t.Rel, i))
		if err != nil {
			misses++
			continue
		}
		misses = 0
		if sameFile(fi, s.dev, s.ino) {
			return i
		}
	}
	return 0
}

func (s *streamer) stillAt(k int) bool {
	fi, err := s.t.root.Lstat(rotatedName(s.t.Rel, k))
	return err == nil && sameFile(fi, s.dev, s.ino)
}

// drain sends the bytes from pos to the current end, one chunk per event.
func (s *streamer) drain() error {
	for {
		n, err := s.f.ReadAt(s.buf, s.pos)
		if n > 0 {
			if err := s.data(s.buf[:n]); err != nil {
				return err
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read: %w", err)
		}
	}
}

func (s *streamer) data(b []byte) error {
	next := s.pos + int64(len(b))
	out := s.out[:0]
	out = append(out, "id: "...)
	out = strconv.AppendInt(out, next, 10)
	out = append(out, "\nevent: data\ndata: {\"offset\":"...)
	out = strconv.AppendInt(out, s.pos, 10)
	out = append(out, `,"data":`...)
	out = appendJSONString(out, b, false)
	out = append(out, "}\n\n"...)
	s.out = out
	s.pos = next
	return s.write(out)
}

// event writes a control event: {"offset":N} plus an optional key and value
// (a string or an int64).
func (s *streamer) event(name string, offset int64, kv ...any) error {
	out := s.out[:0]
	out = append(out, "event: "...)
	out = append(out, name...)
	out = append(out, "\ndata: {\"offset\":"...)
	out = strconv.AppendInt(out, offset, 10)
	if len(kv) == 2 {
		out = append(out, ",\""...)
		out = append(out, kv[0].(string)...)
		out = append(out, "\":"...)
		switch v := kv[1].(type) {
		case int64:
			out = strconv.AppendInt(out, v, 10)
		case string:
			out = appendJSONString(out, []byte(v), false)
		}
	}
	out = append(out, "}\n\n"...)
	s.out = out
	if err := s.write(out); err != nil {
		return err
	}
	return s.flush()
}

func (s *streamer) write(b []byte) error {
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	s.pending = true
	return nil
}

func (s *streamer) flush() error {
	if !s.pending {
		return nil
	}
	s.pending = false
	return s.rc.Flush()
}

func devIno(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino)
	}
	return 0, 0
}

func sameFile(fi fs.FileInfo, dev, ino uint64) bool {
	d, i := devIno(fi)
	return d == dev && i == ino
}

func nlink(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
