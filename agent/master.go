package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"github.com/mesolite/mesolite/internal/tlsconfig"
	"google.golang.org/protobuf/proto"
)

// ProtocolVersion is the master-agent protocol version this agent speaks.
const ProtocolVersion = 1

// LeaderFunc returns the leading master's host:port. While the agent waits
// to register again it calls the func every few tens of milliseconds to
// notice a new leader at once, so the func should answer from memory (as
// the detector does), waiting only while no master leads.
type LeaderFunc func(ctx context.Context) (string, error)

// masterLink keeps the agent registered: it opens the REGISTER stream,
// handles its events and sends calls with the stream id.
type masterLink struct {
	a      *Agent
	client *http.Client
	stream *http.Client
	codec  codec.Codec
	leader LeaderFunc

	mu        sync.Mutex
	addr      string // current master host:port
	streamID  string
	connected bool
	masterID  string
	// token is the registration token the master gave this agent id; the
	// agent presents it whenever it registers again, since the master
	// refuses a REGISTER with a known id and no token (it would be anyone
	// claiming to be this agent). Kept beside agent.info across restarts.
	token string
}

// agentTokenHeader is master.AgentTokenHeader; the agent does not import
// the master.
const agentTokenHeader = "Mesolite-Agent-Token"

// agentSchemeHeader is master.AgentSchemeHeader: a REGISTER says "https"
// in it when the agent serves TLS, so that the master's offers point
// frameworks at the right scheme.
const agentSchemeHeader = "Mesolite-Agent-Scheme"

// tokenFile is where an agent id's registration token is checkpointed.
func (a *Agent) tokenFile(id string) string { return filepath.Join(a.meta.agent(id), "master.token") }

// registrationToken is the token to present for id: the one in memory, else
// the checkpointed one (after an agent restart), else none.
func (m *masterLink) registrationToken(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.token == "" && id != "" {
		if b, err := os.ReadFile(m.a.tokenFile(id)); err == nil {
			m.token = strings.TrimSpace(string(b))
		}
	}
	return m.token
}

// saveToken keeps the token the master handed out for id, readable by the
// agent's user only: whoever holds it can register as this agent.
func (m *masterLink) saveToken(id, token string) error {
	m.mu.Lock()
	same := m.token == token
	m.token = token
	m.mu.Unlock()
	path := m.a.tokenFile(id)
	if same {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// authorize adds the agent's credential (--credential), for a master with
// --authenticate_agents; without one, nothing.
func (m *masterLink) authorize(req *http.Request) {
	if c := m.a.cfg.Credential; c != nil {
		req.SetBasicAuth(c.Principal, c.Secret)
	}
}

func newMasterLink(a *Agent) *masterLink {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = a.cfg.MasterTLS
	// One transport for calls and the stream; TLS failures come back
	// saying what to fix rather than as a bare handshake error.
	rt := tlsconfig.ExplainErrors(tr)
	return &masterLink{
		a:      a,
		client: &http.Client{Timeout: 10 * time.Second, Transport: rt},
		stream: &http.Client{Transport: rt},
		codec:  codec.Protobuf,
		leader: staticLeader(a.cfg.Master),
	}
}

// apiURL is the master's agent API at addr (host:port, or https://host:port
// when the --master value said so): https when the agent was given TLS
// for the master. ZooKeeper entries carry no scheme, so the agent's own
// setting decides for them.
func (m *masterLink) apiURL(addr string) string {
	if hp, ok := strings.CutPrefix(addr, "https://"); ok {
		return "https://" + hp + "/api/v1/agent"
	}
	return tlsconfig.Scheme(m.a.cfg.MasterTLS) + "://" + addr + "/api/v1/agent"
}

// SetLeaderFunc replaces master discovery (ZooKeeper, file://).
func (a *Agent) SetLeaderFunc(f LeaderFunc) { a.master.leader = f }

func staticLeader(master string) LeaderFunc {
	return func(ctx context.Context) (string, error) {
		m := strings.TrimPrefix(strings.TrimPrefix(master, "http://"), "//")
		if _, _, err := net.SplitHostPort(strings.TrimPrefix(m, "https://")); err != nil {
			return "", fmt.Errorf("--master=%q: want host:port, zk://... or file://...", master)
		}
		return m, nil
	}
}

// Connected reports whether the agent is registered right now.
func (a *Agent) Connected() bool {
	a.master.mu.Lock()
	defer a.master.mu.Unlock()
	return a.master.connected
}

// The registration retry policy follows Mesos's agent: a random wait that
// doubles from --registration_backoff_factor up to one minute
// (REGISTER_RETRY_INTERVAL_MAX), started over when a new leader is
// detected. Two cases wait less, because the master is known to be there.
const (
	// maxRegistrationBackoff caps the doubling, as Mesos does.
	maxRegistrationBackoff = time.Minute
	// lostRetry follows a registered stream that broke: the master was
	// there a moment ago, or its successor is about to be.
	lostRetry = 100 * time.Millisecond
	// busyRetry follows a 503: a master that answers but is not ready,
	// typically a new leader reading its registry (tens of ms; ~1.5 s for
	// 10,000 agents). The wait is busyRetry to twice that, jittered so that
	// a cluster's agents do not come back in lockstep (the scheduler
	// library does the same).
	busyRetry = 200 * time.Millisecond
	// busyRetries bounds the quick retries in a row: a master that stays
	// unready (no leader for long, ZooKeeper lost) gets the growing
	// backoff like an unreachable one.
	busyRetries = 20
	// leaderPoll is how often a wait asks the leader func whether another
	// master leads. The func answers from the detector's memory, so this
	// costs no request; it bounds how late a new leader is noticed.
	leaderPoll = 25 * time.Millisecond
)

// attempt is how a registration attempt ended, as the backoff sees it.
type attempt int

const (
	// attemptLost: a registered session ended.
	attemptLost attempt = iota
	// attemptFailed: unreachable, refused, or an answer other than 503.
	attemptFailed
	// attemptBusy: the master answered 503.
	attemptBusy
)

// registrationBackoff says how long to wait before the next attempt to
// register. Not safe for concurrent use: the master link's loop owns it.
type registrationBackoff struct {
	factor   time.Duration
	failures int // attempts failed in a row
	busy     int // 503 answers in a row
	// randN is rand.Int64N; tests fix it.
	randN func(n int64) int64
}

// next records how an attempt ended and returns the wait before the next.
func (b *registrationBackoff) next(a attempt) time.Duration {
	switch a {
	case attemptLost:
		b.reset()
		return b.jitter(lostRetry)
	case attemptBusy:
		if b.busy < busyRetries {
			b.busy++
			// A master that answers is up: what grew against an
			// unreachable one no longer applies.
			b.failures = 0
			return b.jitter(2 * busyRetry)
		}
	default:
		b.busy = 0
	}
	b.failures++
	return b.jitter(b.grown())
}

// reset starts over, as after a registration or a new leader.
func (b *registrationBackoff) reset() { b.failures, b.busy = 0, 0 }

// grown is factor·2^failures capped at maxRegistrationBackoff, doubled step
// by step so that many failures cannot overflow it.
func (b *registrationBackoff) grown() time.Duration {
	d := max(b.factor, time.Millisecond)
	for i := 0; i < b.failures && d < maxRegistrationBackoff; i++ {
		d *= 2
	}
	return min(d, maxRegistrationBackoff)
}

// jitter picks a wait between d/2 and d: spread, so that agents that lost
// the same master do not return together, yet never much shorter than d,
// so that a down master is not hammered.
func (b *registrationBackoff) jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(b.randN(int64(d/2)+1))
}

// busyError is a 503 answer to REGISTER: the master is up but not ready.
type busyError struct{ err error }

func (e *busyError) Error() string { return e.err.Error() }
func (e *busyError) Unwrap() error { return e.err }

// notLeaderError is a 307 answer to REGISTER: addr is a follower, and
// leader (host:port, possibly empty) is who it says leads.
type notLeaderError struct{ master, leader string }

func (e *notLeaderError) Error() string {
	return fmt.Sprintf("master %s is not the leader (leader: %s)", e.master, e.leader)
}

// redirectTarget reads a follower's Location (//host:port/path, as Mesos
// sends it) into the master address to try, keeping the https:// that the
// follower's own address had: ZooKeeper entries and redirects carry no
// scheme.
func redirectTarget(from, location string) string {
	hp := strings.TrimPrefix(location, "//")
	if u, ok := strings.CutPrefix(hp, "http://"); ok {
		hp = u
	} else if u, ok := strings.CutPrefix(hp, "https://"); ok {
		hp, from = u, "https://"
	}
	hp, _, _ = strings.Cut(hp, "/")
	if _, _, err := net.SplitHostPort(hp); err != nil {
		return ""
	}
	if strings.HasPrefix(from, "https://") {
		return "https://" + hp
	}
	return hp
}

func (m *masterLink) run(ctx context.Context) {
	bo := registrationBackoff{factor: m.a.cfg.RegistrationBackoffFactor, randN: rand.Int64N}
	failing := 0 // attempts since the last registration, for the log
	known := ""  // what the leader func last said: a change is a new leader
	hint := ""   // a leader named by a redirect, tried next instead of asking
	for ctx.Err() == nil {
		addr, following := hint, hint != ""
		hint = ""
		var err error
		if !following {
			addr, err = m.leader(ctx)
			if err == nil {
				known = addr
			}
		}
		if err == nil {
			err = m.session(ctx, addr)
		}
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		wasConnected := m.connected
		m.connected = false
		m.streamID = ""
		m.mu.Unlock()
		var busy *busyError
		var moved *notLeaderError
		var d time.Duration
		switch {
		case wasConnected:
			failing = 0
			m.a.log.Warn("lost the master, re-registering", "master", addr, "error", err)
			d = bo.next(attemptLost)
		case !following && errors.As(err, &moved) && moved.leader != "":
			// A follower that knows the leader before our detector does:
			// ask that one at once, but only one hop, so that two masters
			// naming each other cannot make us spin.
			m.a.log.Info("master is not the leader; registering with the one it names", "master", addr, "leader", moved.leader)
			hint = moved.leader
			continue
		case errors.As(err, &busy):
			m.a.log.Info("master not ready yet, asking again shortly", "master", addr, "error", err)
			d = bo.next(attemptBusy)
		default:
			d = bo.next(attemptFailed)
		}
		if !wasConnected {
			failing++
			// One clear line when the master is first unreachable, then a
			// reminder now and then rather than a line per attempt.
			if failing == 1 || failing%10 == 0 {
				m.a.log.Warn("cannot reach master, retrying with backoff", "master", m.a.cfg.Master, "attempt", failing, "error", err, "retry_in", d)
			}
		}
		next, ok := m.wait(ctx, d, known)
		if !ok {
			return
		}
		if next != "" {
			// The backoff grew against a master that is gone (a SIGKILLed
			// leader's znode outlives it by the ZooKeeper session); it says
			// nothing about the new one.
			m.a.log.Info("a new leading master was detected; registering now", "master", next, "previous", known)
			bo.reset()
		}
	}
}

// wait sleeps d, watching the leader func meanwhile: it returns early with
// the new leader's address when the leader func names a master other than
// known, and false when ctx ends.
func (m *masterLink) wait(ctx context.Context, d time.Duration, known string) (string, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	poll := time.NewTicker(leaderPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return "", false
		case <-timer.C:
			return "", true
		case <-poll.C:
			// The leader func answers from the detector's memory (it
			// waits while no master leads; the timeout bounds that).
			lctx, cancel := context.WithTimeout(ctx, leaderPoll)
			addr, err := m.leader(lctx)
			cancel()
			if err == nil && addr != "" && addr != known {
				return addr, true
			}
		}
	}
}

// session registers once and handles events until the stream breaks.
func (m *masterLink) session(ctx context.Context, addr string) error {
	reg, err := m.a.registerCall()
	if err != nil {
		return err
	}
	body, err := m.codec.Marshal(reg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.apiURL(addr), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", m.codec.MediaType())
	req.Header.Set("Accept", m.codec.MediaType())
	if tok := m.registrationToken(reg.GetAgentId().GetValue()); tok != "" {
		req.Header.Set(agentTokenHeader, tok)
	}
	if m.a.cfg.TLS != nil {
		req.Header.Set(agentSchemeHeader, "https")
	}
	m.authorize(req)
	resp, err := m.stream.Do(req)
	if err != nil {
		return fmt.Errorf("register with master %s: %w", addr, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusTemporaryRedirect {
		return &notLeaderError{master: addr, leader: redirectTarget(addr, resp.Header.Get("Location"))}
	}
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		err := fmt.Errorf("register with master %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(msg)))
		if resp.StatusCode == http.StatusServiceUnavailable {
			return &busyError{err: err}
		}
		return err
	}
	m.mu.Lock()
	m.addr = addr
	m.streamID = resp.Header.Get("Mesos-Stream-Id")
	m.mu.Unlock()

	// A silent master is a dead master: expect a PING at least every few
	// heartbeat intervals. lastEvent guards last and interval.
	var lastEvent sync.Mutex
	last := time.Now()
	interval := 15 * time.Second
	watchdog := time.NewTicker(time.Second)
	defer watchdog.Stop()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-watchdog.C:
				lastEvent.Lock()
				idle, iv := time.Since(last), interval
				lastEvent.Unlock()
				if idle > 3*iv+5*time.Second {
					m.a.log.Warn("no event or ping from the master; reconnecting", "idle", idle)
					cancel()
					return
				}
			}
		}
	}()

	// Each PING is answered with a PONG, posted beside the stream so a
	// slow master never stalls the events; at most one is in flight and
	// a PING that comes meanwhile is answered by it.
	pings := make(chan struct{}, 1)
	var pongs sync.WaitGroup
	defer pongs.Wait()
	defer cancel()
	pongs.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-pings:
				pctx, done := context.WithTimeout(ctx, 10*time.Second)
				if err := m.call(pctx, &agentpb.Call{Type: agentpb.Call_PONG.Enum()}); err != nil && ctx.Err() == nil {
					m.a.log.Debug("answer the master's ping", "error", err)
				}
				done()
			}
		}
	})

	rd := recordio.NewReader(bufio.NewReaderSize(resp.Body, 64<<10), 64<<20)
	for {
		rec, err := rd.ReadRecord()
		if err != nil {
			return fmt.Errorf("event stream from %s: %w", addr, err)
		}
		lastEvent.Lock()
		last = time.Now()
		lastEvent.Unlock()
		ev := &agentpb.Event{}
		if err := m.codec.Unmarshal(rec, ev); err != nil {
			m.a.log.Error("undecodable event from master, skipped", "error", err)
			continue
		}
		if ev.GetType() == agentpb.Event_REGISTERED {
			if s := ev.GetRegistered().GetHeartbeatIntervalSeconds(); s > 0 {
				// Read by the watchdog: under its lock.
				lastEvent.Lock()
				interval = time.Duration(s * float64(time.Second))
				lastEvent.Unlock()
			}
		}
		if ev.GetType() == agentpb.Event_PING {
			select {
			case pings <- struct{}{}:
			default:
			}
		}
		if err := m.a.handleEvent(ctx, ev); err != nil {
			return err
		}
		if ev.GetType() == agentpb.Event_REGISTERED {
			if tok := resp.Header.Get(agentTokenHeader); tok != "" {
				if err := m.saveToken(ev.GetRegistered().GetAgentId().GetValue(), tok); err != nil {
					// Without it, the next REGISTER after a restart is
					// refused until the master forgets this agent.
					m.a.log.Error("cannot checkpoint the master's registration token", "agent_id", ev.GetRegistered().GetAgentId().GetValue(), "error", err)
				}
			}
		}
	}
}

// call posts one agent call on the current stream.
func (m *masterLink) call(ctx context.Context, c *agentpb.Call) error {
	m.mu.Lock()
	addr, sid, ok := m.addr, m.streamID, m.connected
	m.mu.Unlock()
	if !ok {
		return errors.New("not registered with a master")
	}
	c.AgentId = &mesos.AgentID{Value: proto.String(m.a.ID())}
	body, err := m.codec.Marshal(c)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.apiURL(addr), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", m.codec.MediaType())
	req.Header.Set("Mesos-Stream-Id", sid)
	m.authorize(req)
	resp, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s: %s", c.GetType(), resp.Status, strings.TrimSpace(string(msg)))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

func (a *Agent) forwardUpdate(ctx context.Context, fwID string, st *mesos.TaskStatus, latest mesos.TaskState) error {
	return a.master.call(context.WithoutCancel(ctx), &agentpb.Call{
		Type: agentpb.Call_UPDATE.Enum(),
		Update: &agentpb.Call_Update{
			FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
			Status:      st,
			LatestState: latest.Enum(),
		},
	})
}

func (m *masterLink) executorExited(ctx context.Context, fwID, exID string, status int) {
	c := &agentpb.Call{Type: agentpb.Call_EXECUTOR_EXITED.Enum(), ExecutorExited: &agentpb.Call_ExecutorExited{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
		ExecutorId:  &mesos.ExecutorID{Value: proto.String(exID)},
		Status:      proto.Int32(int32(status)),
	}}
	if err := m.call(context.WithoutCancel(ctx), c); err != nil {
		m.a.log.Debug("tell master executor exited", "error", err)
	}
}

func (m *masterLink) message(ctx context.Context, fwID, exID string, data []byte) {
	c := &agentpb.Call{Type: agentpb.Call_MESSAGE.Enum(), Message: &agentpb.Call_Message{
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
		ExecutorId:  &mesos.ExecutorID{Value: proto.String(exID)},
		Data:        data,
	}}
	if err := m.call(context.WithoutCancel(ctx), c); err != nil {
		m.a.log.Warn("forward executor message to master", "error", err)
	}
}

// registerCall describes this agent and, when it has an id, every task it
// still knows, so the master can reconcile.
func (a *Agent) registerCall() (*agentpb.Call, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	info := proto.Clone(a.info).(*mesos.AgentInfo)
	reg := &agentpb.Call_Register{
		ProtocolVersion: proto.Uint32(ProtocolVersion),
		AgentInfo:       info,
		Address:         &mesos.Address{Ip: proto.String(a.cfg.AdvertiseIP), Port: proto.Int32(int32(a.advertisedPort())), Hostname: proto.String(a.cfg.Hostname)},
		Version:         proto.String(a.cfg.Version),
		AnswersPings:    proto.Bool(true),
	}
	c := &agentpb.Call{Type: agentpb.Call_REGISTER.Enum(), Register: reg}
	if a.agentID != "" {
		id := &mesos.AgentID{Value: proto.String(a.agentID)}
		info.Id = id
		c.AgentId = id
		for fwID, fw := range a.frameworks {
			reg.Frameworks = append(reg.Frameworks, fw.info)
			for _, es := range fw.executors {
				reg.Executors = append(reg.Executors, es.info)
				reg.Containers = append(reg.Containers, &agentpb.Call_ExecutorContainer{
					FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
					ExecutorId:  es.info.GetExecutorId(),
					ContainerId: &mesos.ContainerID{Value: proto.String(es.containerID)},
					Directory:   proto.String(es.directory),
				})
				for _, m := range []map[string]*taskState{es.queued, es.launched, es.terminal} {
					for _, ts := range m {
						reg.Tasks = append(reg.Tasks, a.taskLocked(fwID, es, ts))
					}
				}
			}
		}
	}
	return c, nil
}

func (a *Agent) taskLocked(fwID string, es *executorState, ts *taskState) *mesos.Task {
	t := &mesos.Task{
		Name:        ts.info.Name,
		TaskId:      ts.info.TaskId,
		FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
		ExecutorId:  es.info.GetExecutorId(),
		AgentId:     &mesos.AgentID{Value: proto.String(a.agentID)},
		State:       ts.state.Enum(),
		Resources:   ts.info.GetResources(),
		Statuses:    ts.statuses,
		Labels:      ts.info.Labels,
		Discovery:   ts.info.Discovery,
		Container:   ts.info.Container,
		KillPolicy:  ts.info.KillPolicy,
	}
	if n := len(ts.statuses); n > 0 {
		t.StatusUpdateState = ts.statuses[n-1].State
		t.StatusUpdateUuid = ts.statuses[n-1].Uuid
	}
	if es.commandTask {
		t.ExecutorId = nil
	}
	return t
}

// handleEvent applies one master event.
func (a *Agent) handleEvent(ctx context.Context, ev *agentpb.Event) error {
	switch ev.GetType() {
	case agentpb.Event_REGISTERED:
		r := ev.GetRegistered()
		id := r.GetAgentId().GetValue()
		a.mu.Lock()
		old := a.agentID
		if old != "" && old != id {
			a.mu.Unlock()
			return fmt.Errorf("master gave agent id %s but this agent is %s; refusing (remove %s to start afresh)", id, old, a.meta.latest())
		}
		a.agentID = id
		a.info.Id = r.GetAgentId()
		a.ensureFilesHandlerLocked()
		a.mu.Unlock()
		if old == "" {
			if err := a.checkpointAgentID(id); err != nil {
				return err
			}
		}
		a.master.mu.Lock()
		a.master.connected = true
		a.master.masterID = r.GetMasterInfo().GetId()
		a.master.mu.Unlock()
		a.log.Info("registered with master", "agent_id", id, "master", net.JoinHostPort(r.GetMasterInfo().GetHostname(), strconv.Itoa(int(r.GetMasterInfo().GetPort()))), "reregistered", old != "")
		a.sum.ResendAll(ctx)
	case agentpb.Event_RUN_TASK:
		rt := ev.GetRunTask()
		a.runTask(ctx, rt.GetFramework(), rt.GetTask())
	case agentpb.Event_RUN_TASK_GROUP:
		g := ev.GetRunTaskGroup()
		a.runTaskGroup(ctx, g.GetFramework(), g.GetExecutor(), g.GetTaskGroup())
	case agentpb.Event_KILL_TASK:
		k := ev.GetKillTask()
		a.killTask(ctx, k.GetFrameworkId().GetValue(), k.GetTaskId(), k.GetKillPolicy())
	case agentpb.Event_ACKNOWLEDGE:
		ack := ev.GetAcknowledge()
		if ok, err := a.sum.Acknowledge(ctx, ack.GetFrameworkId().GetValue(), ack.GetTaskId().GetValue(), ack.GetUuid()); err != nil {
			a.log.Error("checkpoint acknowledgement", "error", err)
		} else if !ok {
			a.log.Debug("acknowledgement for an update not at the head of its stream", "task_id", ack.GetTaskId().GetValue())
		}
	case agentpb.Event_SHUTDOWN_FRAMEWORK:
		a.shutdownFramework(ctx, ev.GetShutdownFramework().GetFrameworkId().GetValue())
	case agentpb.Event_SHUTDOWN_EXECUTOR:
		s := ev.GetShutdownExecutor()
		a.shutdownExecutor(ctx, s.GetFrameworkId().GetValue(), s.GetExecutorId().GetValue())
	case agentpb.Event_MESSAGE:
		msg := ev.GetMessage()
		a.frameworkMessage(msg.GetFrameworkId().GetValue(), msg.GetExecutorId().GetValue(), msg.GetData())
	case agentpb.Event_RECONCILE:
		a.reconcile(ctx, ev.GetReconcile())
	case agentpb.Event_PING:
	case agentpb.Event_ERROR:
		return fmt.Errorf("master error: %s", ev.GetError().GetMessage())
	default:
		a.log.Warn("unknown event from master, ignored", "type", ev.GetType().String())
	}
	return nil
}

func (a *Agent) frameworkMessage(fwID, exID string, data []byte) {
	a.mu.Lock()
	es := a.lookupExecutorLocked(fwID, exID)
	var conn *executorConn
	if es != nil {
		conn = es.conn
	}
	if conn == nil {
		a.metrics.invalidFrameworkMsgs++
	} else {
		a.metrics.validFrameworkMsgs++
	}
	a.mu.Unlock()
	if conn == nil {
		a.log.Warn("framework message for an executor that is not subscribed, dropped", "framework_id", fwID, "executor_id", exID)
		return
	}
	conn.send(executorMessageEvent(data))
}

// reconcile resends the latest known status of the named tasks (all when
// none are named) so the master's view catches up.
func (a *Agent) reconcile(ctx context.Context, r *agentpb.Event_Reconcile) {
	a.sum.ResendAll(ctx)
}
