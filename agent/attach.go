package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/user"
	"path"
	"syscall"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentapi"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"github.com/mesolite/mesolite/api/v1/validate"
	"github.com/mesolite/mesolite/containerizer"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/executor/defaultexec"
	"google.golang.org/protobuf/proto"
)

// Attaching to a task's own output (ATTACH_CONTAINER_OUTPUT naming a
// task's container rather than a session): an executor's container (a
// command or docker task's output is its executor's) or the nested
// container of a task of a group. The task writes its stdout and stderr to
// its sandbox files as always, by itself, with nothing of the agent's in
// the way: the agent follows those files for each attached client, from
// their end at attach time, and sends what is appended as STDOUT and
// STDERR records, across rotations and truncations, until the container
// (or the task) ended and the rest was sent. So an attached client never
// slows the task, an agent restart never breaks its output, and a client
// costs a poll of two files. Bounded: maxTaskAttach streams per agent and
// maxTaskAttachPerContainer per container; a client more than
// attachMaxLag bytes behind the file, or that does not read for
// outputWriteTimeout, is dropped.
const (
	maxTaskAttach             = 128
	maxTaskAttachPerContainer = 16
	attachPoll                = 50 * time.Millisecond
	attachMaxLag              = 8 << 20
	// attachEndCheck spaces the checks that the container still runs.
	attachEndCheck = 500 * time.Millisecond
)

// attachTarget is a task's container to follow the output of.
type attachTarget struct {
	cid, parent string // parent is set for a task's nested container
	dir         string // the sandbox that holds stdout and stderr
	user        string // whom --acls judge access by
	live        func() bool
}

// taskAttachTarget resolves id to a running task's container: an
// executor's container (no parent) or a nested container of a task of a
// group (parent: its executor's container). 404 when no task has it, 409
// when it ended.
func (a *Agent) taskAttachTarget(id *mesos.ContainerID) (*attachTarget, error) {
	cid, parent := id.GetValue(), id.GetParent().GetValue()
	if err := validate.ID("container_id.value", cid); err != nil {
		return nil, errdefs.WithStatus(http.StatusBadRequest, err)
	}
	if id.GetParent() != nil {
		if err := validate.ID("container_id.parent.value", parent); err != nil {
			return nil, errdefs.WithStatus(http.StatusBadRequest, err)
		}
		if id.GetParent().GetParent() != nil {
			return nil, fmt.Errorf("Container '%s' not found: %w", cid, errdefs.ErrNotFound)
		}
	}
	exCID := cid
	if parent != "" {
		exCID = parent
	}
	a.mu.Lock()
	var es *executorState
	var fi *mesos.FrameworkInfo
	for _, fw := range a.frameworks {
		for _, x := range fw.executors {
			if x.containerID == exCID {
				es, fi = x, fw.info
			}
		}
	}
	if es == nil {
		a.mu.Unlock()
		return nil, fmt.Errorf("Container '%s' not found: %w", cid, errdefs.ErrNotFound)
	}
	var task *taskState
	for _, m := range []map[string]*taskState{es.launched, es.queued} {
		for tid, ts := range m {
			if parent == "" || (isDefaultExecutor(es) && defaultexec.NestedContainerID(exCID, tid) == cid) {
				task = ts
			}
		}
	}
	live, dir := es.live() && es.handle != nil, es.directory
	a.mu.Unlock()
	if task == nil && parent != "" {
		return nil, fmt.Errorf("Container '%s' not found: no task of container '%s' runs in it: %w", cid, parent, errdefs.ErrNotFound)
	}
	if !live || task == nil || mesos.IsTerminal(task.state) {
		return nil, errdefs.Statusf(http.StatusConflict, "Container '%s' has ended", cid)
	}
	t := &attachTarget{cid: cid, parent: parent, dir: dir}
	if parent != "" {
		t.dir = path.Join(dir, defaultexec.TasksDir, task.info.GetTaskId().GetValue())
	}
	t.user = a.taskUser(es, task.info, fi)
	if t.user == "" {
		if u, err := user.Current(); err == nil {
			t.user = u.Username
		}
	}
	t.live = func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return es.live() && !mesos.IsTerminal(task.state)
	}
	return t, nil
}

// reserveAttach counts one more stream on cid within the caps; the
// returned func gives it back.
func (a *Agent) reserveAttach(cid string) (func(), error) {
	a.attachMu.Lock()
	defer a.attachMu.Unlock()
	if a.attached == nil {
		a.attached = map[string]int{}
	}
	total := 0
	for _, n := range a.attached {
		total += n
	}
	if total >= maxTaskAttach {
		return nil, errdefs.Statusf(http.StatusServiceUnavailable, "This agent serves %d attached output streams already, its most", maxTaskAttach)
	}
	if a.attached[cid] >= maxTaskAttachPerContainer {
		return nil, errdefs.Statusf(http.StatusServiceUnavailable, "Container '%s' has %d attached output streams already, its most", cid, maxTaskAttachPerContainer)
	}
	a.attached[cid]++
	return func() {
		a.attachMu.Lock()
		defer a.attachMu.Unlock()
		if a.attached[cid]--; a.attached[cid] <= 0 {
			delete(a.attached, cid)
		}
	}, nil
}

// attachTaskOutput serves ATTACH_CONTAINER_OUTPUT for a task's container.
func (a *Agent) attachTaskOutput(w http.ResponseWriter, r *http.Request, id *mesos.ContainerID) {
	t, err := a.taskAttachTarget(id)
	if err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	if err := a.cfg.ACLs.Check("attach_containers_output", operatorPrincipal(r), t.user); err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	c, recordIO, err := streamCodec(r)
	if err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	release, err := a.reserveAttach(t.cid)
	if err != nil {
		errdefs.HTTPError(w, err)
		return
	}
	defer release()
	root, err := os.OpenRoot(t.dir)
	if err != nil {
		errdefs.HTTPError(w, fmt.Errorf("Container '%s' has no sandbox to follow: %w", t.cid, errdefs.ErrNotFound))
		return
	}
	defer root.Close()
	files := []*tailFile{
		{root: root, name: "stdout", typ: agentapi.ProcessIO_Data_STDOUT},
		{root: root, name: "stderr", typ: agentapi.ProcessIO_Data_STDERR},
	}
	for _, f := range files {
		f.openAtEnd()
		defer f.close()
	}
	h := w.Header()
	if recordIO {
		h.Set("Content-Type", mediaTypeRecordIO)
		h.Set("Message-Content-Type", c.MediaType())
	} else {
		h.Set("Content-Type", c.MediaType())
	}
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	_ = rc.Flush()
	a.log.Info("attached to a task's output", "container_id", t.cid, "parent_container_id", t.parent, "principal", operatorPrincipal(r), "remote_addr", r.RemoteAddr)
	enc := recordio.NewEncoder(w, c)
	write := func(rec *agentapi.ProcessIO) error {
		_ = rc.SetWriteDeadline(time.Now().Add(outputWriteTimeout))
		if err := enc.Encode(rec); err != nil {
			return err
		}
		return rc.Flush()
	}
	heartbeat := &agentapi.ProcessIO{Type: agentapi.ProcessIO_CONTROL.Enum(), Control: &agentapi.ProcessIO_Control{
		Type:      agentapi.ProcessIO_Control_HEARTBEAT.Enum(),
		Heartbeat: &agentapi.ProcessIO_Control_Heartbeat{Interval: &mesos.DurationInfo{Nanoseconds: proto.Int64(int64(sessionHeartbeat))}},
	}}
	poll := time.NewTicker(attachPoll)
	defer poll.Stop()
	beat := time.NewTicker(sessionHeartbeat)
	defer beat.Stop()
	lastCheck := time.Now()
	buf := make([]byte, sessionChunk)
	for {
		ended := false
		if time.Since(lastCheck) >= attachEndCheck {
			ended, lastCheck = !t.live(), time.Now()
		}
		for _, f := range files {
			if err := f.pump(buf, write); err != nil {
				if !errors.Is(err, context.Canceled) {
					a.log.Info("attached output stream dropped", "container_id", t.cid, "reason", err)
				}
				return
			}
		}
		if ended {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-poll.C:
		case <-beat.C:
			if err := write(heartbeat); err != nil {
				return
			}
		}
	}
}

// tailFile follows one sandbox log file for one client.
type tailFile struct {
	root     *os.Root
	name     string
	typ      agentapi.ProcessIO_Data_Type
	f        *os.File
	dev, ino uint64
	pos      int64
}

// open opens the file as it is now: a regular file only (a FIFO the task
// put there must not block the agent), read without blocking.
func (t *tailFile) open() (*os.File, fs.FileInfo, error) {
	f, err := t.root.OpenFile(t.name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fmt.Errorf("%s is not a regular file", t.name)
	}
	return f, fi, nil
}

func (t *tailFile) openAtEnd() {
	if f, fi, err := t.open(); err == nil {
		t.set(f, fi)
		t.pos = fi.Size()
	}
}

func (t *tailFile) set(f *os.File, fi fs.FileInfo) {
	if t.f != nil {
		t.f.Close()
	}
	t.f, t.pos = f, 0
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		t.dev, t.ino = uint64(st.Dev), st.Ino
	}
}

func (t *tailFile) close() {
	if t.f != nil {
		t.f.Close()
	}
}

// pump sends what was appended since the last call; after a rotation it
// finishes the old file and goes on with the new one from its start.
func (t *tailFile) pump(buf []byte, write func(*agentapi.ProcessIO) error) error {
	if t.f == nil {
		// Not there at attach time (not yet made): from its start.
		if f, fi, err := t.open(); err == nil {
			t.set(f, fi)
		} else {
			return nil
		}
	}
	for {
		if err := t.drain(buf, write); err != nil {
			return err
		}
		fi, err := t.root.Lstat(t.name)
		if err != nil {
			return nil // rotated away and not yet replaced
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || (uint64(st.Dev) == t.dev && st.Ino == t.ino) {
			if fi.Size() < t.pos {
				t.pos = 0 // truncated (copytruncate)
			}
			return nil
		}
		f, nfi, err := t.open()
		if err != nil {
			return nil
		}
		t.set(f, nfi)
	}
}

// drain sends the open file from pos to its end.
func (t *tailFile) drain(buf []byte, write func(*agentapi.ProcessIO) error) error {
	if fi, err := t.f.Stat(); err == nil && fi.Size()-t.pos > attachMaxLag {
		return fmt.Errorf("the client is more than %d bytes behind %s", attachMaxLag, t.name)
	}
	for {
		n, err := t.f.ReadAt(buf, t.pos)
		if n > 0 {
			t.pos += int64(n)
			rec := &agentapi.ProcessIO{Type: agentapi.ProcessIO_DATA.Enum(), Data: &agentapi.ProcessIO_Data{
				Type: t.typ.Enum(), Data: append([]byte(nil), buf[:n]...)}}
			if werr := write(rec); werr != nil {
				return werr
			}
		}
		if err == io.EOF || n == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// attachTaskInput serves ATTACH_CONTAINER_INPUT for a task's own container,
// after its first record (next gives the others): only a container
// launched with a TTY takes input (containerizer.InputAttacher), one
// stream at a time, as for sessions.
func (a *Agent) attachTaskInput(r *http.Request, rc *http.ResponseController, id *mesos.ContainerID, next func() (*agentapi.Call_AttachContainerInput, error)) error {
	t, err := a.taskAttachTarget(id)
	if err != nil {
		return err
	}
	if err := a.cfg.ACLs.Check("attach_containers_input", operatorPrincipal(r), t.user); err != nil {
		return err
	}
	ia, ok := a.cz.(containerizer.InputAttacher)
	if !ok || t.parent != "" {
		return errdefs.Statusf(http.StatusConflict, "Container '%s' was launched without a TTY: it takes no input", t.cid)
	}
	a.attachMu.Lock()
	if a.inputAttached == nil {
		a.inputAttached = map[string]bool{}
	}
	if a.inputAttached[t.cid] {
		a.attachMu.Unlock()
		return errdefs.Statusf(http.StatusConflict, "Container '%s' has an input stream attached already", t.cid)
	}
	a.inputAttached[t.cid] = true
	a.attachMu.Unlock()
	defer func() {
		a.attachMu.Lock()
		delete(a.inputAttached, t.cid)
		a.attachMu.Unlock()
	}()
	in, err := ia.AttachInput(r.Context(), t.cid)
	if err != nil {
		if errors.Is(err, errdefs.ErrConflict) {
			return errdefs.WithStatus(http.StatusConflict, err)
		}
		return err
	}
	defer in.Detach()
	a.log.Info("attached to a task's input", "container_id", t.cid, "principal", operatorPrincipal(r), "remote_addr", r.RemoteAddr)
	// A container that ends ends its input stream too.
	handled := make(chan struct{})
	defer close(handled)
	go func() {
		tick := time.NewTicker(attachEndCheck)
		defer tick.Stop()
		for {
			select {
			case <-handled:
				return
			case <-tick.C:
				if !t.live() {
					_ = rc.SetReadDeadline(time.Now())
					return
				}
			}
		}
	}()
	for {
		rec, err := next()
		if errors.Is(err, io.EOF) || !t.live() {
			return nil
		}
		if err != nil {
			return inputError(err)
		}
		if rec.GetType() != agentapi.Call_AttachContainerInput_PROCESS_IO || rec.GetProcessIo() == nil {
			return errdefs.Statusf(http.StatusBadRequest, "Expecting records of type 'PROCESS_IO' after the first")
		}
		pio := rec.GetProcessIo()
		switch pio.GetType() {
		case agentapi.ProcessIO_DATA:
			if pio.GetData().GetType() != agentapi.ProcessIO_Data_STDIN {
				return errdefs.Statusf(http.StatusBadRequest, "Expecting 'process_io.data.type' to be 'STDIN'")
			}
			data := pio.GetData().GetData()
			if len(data) == 0 {
				// Mesos's end of input: the terminal's ^D.
				_ = in.Close()
				return nil
			}
			if _, err := in.Write(data); err != nil {
				return errdefs.Statusf(http.StatusConflict, "Container '%s' does not take input any more: %v", t.cid, err)
			}
		case agentapi.ProcessIO_CONTROL:
			switch pio.GetControl().GetType() {
			case agentapi.ProcessIO_Control_TTY_INFO:
				if ws := pio.GetControl().GetTtyInfo().GetWindowSize(); ws != nil {
					_ = in.Resize(r.Context(), uint16(min(ws.GetRows(), 1<<16-1)), uint16(min(ws.GetColumns(), 1<<16-1)))
				}
			case agentapi.ProcessIO_Control_HEARTBEAT:
			default:
				return errdefs.Statusf(http.StatusBadRequest, "Unknown control record type %s", pio.GetControl().GetType())
			}
		default:
			return errdefs.Statusf(http.StatusBadRequest, "Expecting 'process_io.type' to be 'DATA' or 'CONTROL'")
		}
	}
}
