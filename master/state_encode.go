package master

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sync/atomic"

	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Encoding the whole state (GET_STATE, and the SUBSCRIBED that starts an
// operator event stream) for a large cluster. Tasks are nearly all of it
// (50,000 of them in the benchmark) and few change between two answers, so
// each task record keeps its encodings once made: a record is never
// written once in the books (task.change makes a new one, dropping them),
// so an encoding stays true for as long as the record is the task's. The
// answer is then the rest of the state encoded as usual with the tasks'
// cached bytes spliced in where the codec would have put them: the same
// bytes as encoding the whole message, which state_encode_test.go checks.

// taskEncoding holds one task record's encodings, each made the first time
// an answer needs it, outside the master's lock.
type taskEncoding struct {
	pb, json atomic.Pointer[[]byte]
	// state is the task's object in /master/state and /master/tasks,
	// with what it was built from beyond the record.
	state atomic.Pointer[stateJSON]
}

// taskEncodings maps the task records of one answer to their caches. It is
// filled under the master's lock (note) and read after.
type taskEncodings map[*mesos.Task]*taskEncoding

// note records the cache of t's current record. A nil map notes nothing.
func (e taskEncodings) note(t *task) {
	if e == nil {
		return
	}
	if t.enc == nil {
		t.enc = &taskEncoding{}
	}
	e[t.t] = t.enc
}

// task returns the encoding of record t in c, from the cache when it has
// one.
func (e taskEncodings) task(c codec.Codec, t *mesos.Task) ([]byte, error) {
	var slot *atomic.Pointer[[]byte]
	if enc := e[t]; enc != nil {
		slot = &enc.pb
		if c.MediaType() == codec.MediaTypeJSON {
			slot = &enc.json
		}
		if b := slot.Load(); b != nil {
			return *b, nil
		}
	}
	b, err := c.Marshal(t)
	if err != nil {
		return nil, err
	}
	if slot != nil {
		// Two answers may encode the same record at once; either
		// result is the same bytes.
		slot.Store(&b)
	}
	return b, nil
}

// Field descriptors of the messages spliced, looked up by name so that
// numbers and names come from the generated code.
var (
	fdResponseGetState  = field(&masterpb.Response{}, "get_state")
	fdResponseGetTasks  = field(&masterpb.Response{}, "get_tasks")
	fdGetStateGetTasks  = field(&masterpb.Response_GetState{}, "get_tasks")
	fdEventSubscribed   = field(&masterpb.Event{}, "subscribed")
	fdSubscribedState   = field(&masterpb.Event_Subscribed{}, "get_state")
	getTasksListsByNum  = taskLists(false)
	getTasksListsByDecl = taskLists(true)
)

func field(m proto.Message, name protoreflect.Name) protoreflect.FieldDescriptor {
	fd := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if fd == nil {
		panic(fmt.Sprintf("BUG: %s has no field %s", m.ProtoReflect().Descriptor().FullName(), name))
	}
	return fd
}

// taskLists are GetTasks's repeated Task fields, in declaration order (the
// order the JSON codec writes) or by number (the order protobuf does).
func taskLists(declared bool) []protoreflect.FieldDescriptor {
	fields := (&masterpb.Response_GetTasks{}).ProtoReflect().Descriptor().Fields()
	var out []protoreflect.FieldDescriptor
	for i := range fields.Len() {
		if fd := fields.Get(i); fd.IsList() && fd.Message() != nil && fd.Message().FullName() == (&mesos.Task{}).ProtoReflect().Descriptor().FullName() {
			out = append(out, fd)
		}
	}
	if !declared {
		slices.SortFunc(out, func(a, b protoreflect.FieldDescriptor) int { return int(a.Number()) - int(b.Number()) })
	}
	return out
}

// parts is an encoding held as a list of byte slices, most of them the
// tasks' cached encodings, written out one after the other: the tens of
// megabytes of a large state are copied once, into the connection, and
// never into one buffer. Short pieces (tags, lengths, separators) go into
// arenas that are never grown in place, so the slices handed out stay
// valid.
type parts struct {
	bufs  [][]byte
	n     int
	arena []byte
	start int // where the piece being built starts in arena
}

const arenaSize = 64 << 10

// small appends b to the current short piece.
func (p *parts) small(b ...byte) {
	if len(p.arena)+len(b) > cap(p.arena) {
		p.cut()
		p.arena, p.start = make([]byte, 0, max(arenaSize, len(b))), 0
	}
	p.arena = append(p.arena, b...)
}

// cut ends the current short piece.
func (p *parts) cut() {
	if len(p.arena) > p.start {
		piece := p.arena[p.start:len(p.arena):len(p.arena)]
		p.bufs = append(p.bufs, piece)
		p.n += len(piece)
		p.start = len(p.arena)
	}
}

// add appends b, which the caller will not change, as a piece of its own.
func (p *parts) add(b []byte) {
	p.cut()
	if len(b) > 0 {
		p.bufs = append(p.bufs, b)
		p.n += len(b)
	}
}

// addParts appends q, which is done with.
func (p *parts) addParts(q *parts) {
	p.cut()
	q.cut()
	p.bufs = append(p.bufs, q.bufs...)
	p.n += q.n
}

// done ends the encoding; p is not added to after.
func (p *parts) done() *parts {
	p.cut()
	return p
}

// Len is the encoding's length in bytes.
func (p *parts) Len() int { return p.n }

// Bytes is the encoding in one slice.
func (p *parts) Bytes() []byte {
	out := make([]byte, 0, p.n)
	for _, b := range p.bufs {
		out = append(out, b...)
	}
	return out
}

// Parts are the pieces to write in order.
func (p *parts) Parts() [][]byte { return p.bufs }

// WriteTo writes the encoding to w.
func (p *parts) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for _, b := range p.bufs {
		k, err := w.Write(b)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func whole(b []byte) *parts {
	p := &parts{}
	p.add(b)
	return p
}

// encodeTasks encodes gt as c would, with the tasks' bytes from e.
func (e taskEncodings) encodeTasks(c codec.Codec, gt *masterpb.Response_GetTasks) (*parts, error) {
	m := gt.ProtoReflect()
	out := &parts{}
	var hdr [2 * binary.MaxVarintLen64]byte
	if c.MediaType() != codec.MediaTypeJSON {
		for _, fd := range getTasksListsByNum {
			list := m.Get(fd).List()
			for i := range list.Len() {
				b, err := e.task(c, list.Get(i).Message().Interface().(*mesos.Task))
				if err != nil {
					return nil, err
				}
				h := protowire.AppendTag(hdr[:0], fd.Number(), protowire.BytesType)
				out.small(protowire.AppendVarint(h, uint64(len(b)))...)
				out.add(b)
			}
		}
		return out.done(), nil
	}
	out.small('{')
	first := true
	for _, fd := range getTasksListsByDecl {
		list := m.Get(fd).List()
		if list.Len() == 0 {
			continue
		}
		if !first {
			out.small(',')
		}
		first = false
		out.small('"')
		out.small([]byte(fd.Name())...)
		out.small('"', ':', '[')
		for i := range list.Len() {
			b, err := e.task(c, list.Get(i).Message().Interface().(*mesos.Task))
			if err != nil {
				return nil, err
			}
			if i > 0 {
				out.small(',')
			}
			out.add(b)
		}
		out.small(']')
	}
	out.small('}')
	return out.done(), nil
}

// splice adds the encoded field fd (inner) to outer, the encoding in c of
// a message without it. first says whether fd comes before every field set
// in outer in the codec's order (JSON: declaration order; protobuf: field
// number), so that the result is the bytes the codec would have written.
func splice(c codec.Codec, outer []byte, fd protoreflect.FieldDescriptor, inner *parts, first bool) *parts {
	out := &parts{}
	if c.MediaType() != codec.MediaTypeJSON {
		var hdr [2 * binary.MaxVarintLen64]byte
		h := protowire.AppendTag(hdr[:0], fd.Number(), protowire.BytesType)
		h = protowire.AppendVarint(h, uint64(inner.Len()))
		if !first {
			out.add(outer)
		}
		out.small(h...)
		out.addParts(inner)
		if first {
			out.add(outer)
		}
		return out.done()
	}
	// outer is an object: "{}" or "{...}".
	empty := len(outer) == 2
	if first {
		out.small('{', '"')
		out.small([]byte(fd.Name())...)
		out.small('"', ':')
		out.addParts(inner)
		if !empty {
			out.small(',')
		}
		out.add(outer[1:])
		return out.done()
	}
	out.add(outer[:len(outer)-1])
	if !empty {
		out.small(',')
	}
	out.small('"')
	out.small([]byte(fd.Name())...)
	out.small('"', ':')
	out.addParts(inner)
	out.small('}')
	return out.done()
}

// encodeState encodes st as c would, its tasks from e.
func (e taskEncodings) encodeState(c codec.Codec, st *masterpb.Response_GetState) (*parts, error) {
	if st.GetTasks == nil {
		b, err := c.Marshal(st)
		return whole(b), err
	}
	rest, err := c.Marshal(&masterpb.Response_GetState{
		GetExecutors:  st.GetExecutors,
		GetFrameworks: st.GetFrameworks,
		GetAgents:     st.GetAgents,
	})
	if err != nil {
		return nil, err
	}
	tasks, err := e.encodeTasks(c, st.GetTasks)
	if err != nil {
		return nil, err
	}
	return splice(c, rest, fdGetStateGetTasks, tasks, true), nil
}

// encodeResponse encodes resp as c would; a GET_STATE or GET_TASKS answer
// with its tasks from e.
func (e taskEncodings) encodeResponse(c codec.Codec, resp *masterpb.Response) (*parts, error) {
	var inner *parts
	var fd protoreflect.FieldDescriptor
	var err error
	switch {
	case resp.GetTasks != nil && resp.GetType() == masterpb.Response_GET_TASKS:
		inner, err = e.encodeTasks(c, resp.GetTasks)
		fd = fdResponseGetTasks
	case resp.GetState != nil && resp.GetType() == masterpb.Response_GET_STATE:
		inner, err = e.encodeState(c, resp.GetState)
		fd = fdResponseGetState
	default:
		b, err := c.Marshal(resp)
		return whole(b), err
	}
	if err != nil {
		return nil, err
	}
	outer, err := c.Marshal(&masterpb.Response{Type: resp.Type})
	if err != nil {
		return nil, err
	}
	// get_tasks and get_state are declared and numbered after type.
	return splice(c, outer, fd, inner, false), nil
}

// encodeEvent encodes ev as c would; a SUBSCRIBED with its tasks from e.
func (e taskEncodings) encodeEvent(c codec.Codec, ev *masterpb.Event) (*parts, error) {
	sub := ev.Subscribed
	if sub == nil || sub.GetState == nil || ev.GetType() != masterpb.Event_SUBSCRIBED {
		b, err := c.Marshal(ev)
		return whole(b), err
	}
	inner, err := e.encodeState(c, sub.GetState)
	if err != nil {
		return nil, err
	}
	rest, err := c.Marshal(&masterpb.Event_Subscribed{HeartbeatIntervalSeconds: sub.HeartbeatIntervalSeconds})
	if err != nil {
		return nil, err
	}
	subscribed := splice(c, rest, fdSubscribedState, inner, true)
	outer, err := c.Marshal(&masterpb.Event{Type: ev.Type})
	if err != nil {
		return nil, err
	}
	return splice(c, outer, fdEventSubscribed, subscribed, false), nil
}

// The JSON endpoints (/master/state, /master/tasks) cache each task's
// object the same way: the map built under the lock is encoded outside it
// and kept; while neither the record nor what else the object shows (the
// container, the sandbox directory, the agent's address) changed, the next
// answer takes the bytes and builds nothing.

// stateJSONKey is what a task's state object shows besides its record.
type stateJSONKey struct {
	containerID, directory, agentAddr string
	agentKnown                        bool
}

type stateJSON struct {
	key stateJSONKey
	raw []byte
}

// lazyTaskJSON is one task of a JSON answer: cached bytes, or the object to
// encode (outside the lock) and cache.
type lazyTaskJSON struct {
	raw   []byte
	obj   map[string]any
	cache *taskEncoding
	key   stateJSONKey
}

func (l *lazyTaskJSON) MarshalJSON() ([]byte, error) {
	if l.raw != nil {
		return l.raw, nil
	}
	b, err := json.Marshal(l.obj)
	if err != nil {
		return nil, err
	}
	// Answers encoding the same record at once store the same bytes.
	l.cache.state.Store(&stateJSON{key: l.key, raw: b})
	return b, nil
}

// taskJSONLazy is taskJSON for an answer encoded after the lock is
// released. m.mu must be held.
func (m *Master) taskJSONLazy(t *task) *lazyTaskJSON {
	key := stateJSONKey{containerID: t.containerID, directory: t.directory}
	if a := m.agents[t.agentID]; a != nil {
		key.agentKnown, key.agentAddr = true, a.addr
		if e := t.fw.executor(t.agentID, t.executorID()); e != nil && e.directory != "" {
			key.directory = e.directory
		}
	}
	if t.enc == nil {
		t.enc = &taskEncoding{}
	}
	if c := t.enc.state.Load(); c != nil && c.key == key {
		return &lazyTaskJSON{raw: c.raw}
	}
	return &lazyTaskJSON{obj: m.taskJSON(t), cache: t.enc, key: key}
}
