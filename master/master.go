package master

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/mesolite/mesolite/api/v1/agentpb"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/detector"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/master/allocator"
	"github.com/mesolite/mesolite/resources"
	"github.com/mesolite/mesolite/sandbox"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
)

// housekeepingInterval is how often timers (offer timeout, failover
// timeout, agent removal) are checked against the clock.
const housekeepingInterval = 250 * time.Millisecond

// Master is a mesolite master. Create it with New, serve with Run.
type Master struct {
	cfg Config
	log *slog.Logger
	// files serves the files API: the master's log at /master/log.
	files     *sandbox.FilesHandler
	clock     Clock
	id        string
	startTime time.Time
	// reg is the registry: nil with an in-memory one. With --zk it is
	// opened once this master is elected.
	reg registry

	nextFrameworkID atomic.Uint64
	nextAgentID     atomic.Uint64
	nextOfferID     atomic.Uint64

	kick    chan struct{}
	handler http.Handler
	// fwAuth and agentAuth check the credentials of scheduler and agent
	// calls; nil when their flag is off.
	fwAuth, agentAuth *httpauth.Authenticator
	perIP             *ipLimiter
	prom              *prometheus.Registry

	closeOnce sync.Once
	// bg is the registry writer, waited for before the registry closes.
	bg sync.WaitGroup
	// The registry writer's queue (see persist); wmu is never held with
	// mu taken after it.
	wmu    sync.Mutex
	wqueue []persistReq
	wkick  chan struct{}
	wstop  chan struct{}
	// deposed is closed when a registry write was refused because another
	// master claimed the registry.
	deposed    chan struct{}
	deposeOnce sync.Once

	// mu guards everything below. Streams are written by their own
	// handlers; the master only queues events on them while holding mu.
	mu          sync.Mutex
	self        detector.MasterInfo
	info        *mesos.MasterInfo
	role        masterRole
	electedTime time.Time
	leader      detector.MasterInfo // zero while no leader is known
	alloc       *allocator.Allocator
	frameworks  map[string]*framework
	completed   []*framework    // torn-down frameworks shown, newest last
	removedFWs  map[string]bool // ids of torn-down frameworks, from the registry too
	// removedOrder is removedFWs oldest first, to bound it.
	removedOrder []string
	agents       map[string]*agent
	// unreachable agents were removed for not coming back in time; they
	// are kept (bounded, oldest first in unreachableOrder) to recognise
	// them when they return.
	unreachable      map[string]*unreachableAgent
	unreachableOrder []string
	// weights are the role weights UPDATE_WEIGHTS set (nil: --weights).
	weights map[string]float64
	// quotas are the roles' quota configs (UPDATE_QUOTA), by role.
	quotas map[string]quotaConfig
	// maint is the maintenance schedule, down machines and inverse
	// offers (maintenance.go).
	maint    maintenanceState
	offers   map[string]*offer
	counters counters
	shutdown bool
	// ops is the operator API's state (operator_events.go).
	ops operatorHub
}

// New creates a master from cfg, opening (or creating) the registry under
// cfg.WorkDir and reading back the agents and frameworks it holds. The
// master serves nothing until Run.
func New(cfg Config) (*Master, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	m := &Master{
		cfg:         cfg,
		log:         cfg.Logger.With("component", "master"),
		clock:       cfg.Clock,
		id:          uuid.NewString(),
		kick:        make(chan struct{}, 1),
		frameworks:  make(map[string]*framework),
		removedFWs:  make(map[string]bool),
		agents:      make(map[string]*agent),
		wkick:       make(chan struct{}, 1),
		wstop:       make(chan struct{}),
		deposed:     make(chan struct{}),
		unreachable: make(map[string]*unreachableAgent),
		offers:      make(map[string]*offer),
		counters: counters{
			schedulerCalls: make(map[scheduler.Call_Type]uint64),
			terminal:       make(map[mesos.TaskState]uint64),
		},
	}
	m.startTime = m.clock.Now()
	m.ops.init()
	m.ops.levels.Init(cfg.LoggingLevel)
	fwAuth, agentAuth, err := newAuthenticators(&cfg)
	if err != nil {
		return nil, err
	}
	m.fwAuth, m.agentAuth = fwAuth, agentAuth
	m.perIP = newIPLimiter(cfg.MaxRequestsPerIP)
	m.alloc = allocator.New(allocator.Options{Now: m.clock.Now, Weights: cfg.Weights})
	m.setSelf(cfg.IP, cfg.Port)
	if cfg.ZK == "" {
		// A standalone master reads its registry now, so a broken or
		// locked one fails the start; one in ZooKeeper is read when this
		// master is elected.
		reg, err := openRegistry(context.Background(), &m.cfg, m.id)
		if err != nil {
			return nil, err
		}
		if reg != nil {
			m.reg = reg
			if err := m.loadRegistry(context.Background()); err != nil {
				reg.Close()
				return nil, err
			}
			m.startWriter()
		}
	}
	m.files = m.newFilesHandler()
	var routes http.Handler = m.routes()
	if cfg.ReadOnlyAuth != nil {
		routes = readOnlyAuth(routes, cfg.ReadOnlyAuth)
	}
	m.handler = m.limitPerIP(m.bounded(m.recoverPanics(routes)))
	m.prom = m.newPrometheus()
	return m, nil
}

// ID is this master's id (a new one every start, as in Mesos).
func (m *Master) ID() string { return m.id }

// Handler serves every endpoint of the master.
func (m *Master) Handler() http.Handler { return m.handler }

// setSelf fills this master's MasterInfo from the address others reach it at.
func (m *Master) setSelf(ip string, port int) {
	if m.cfg.AdvertiseIP != "" {
		ip = m.cfg.AdvertiseIP
	}
	if m.cfg.AdvertisePort != 0 {
		port = m.cfg.AdvertisePort
	}
	if ip == "" || net.ParseIP(ip).IsUnspecified() {
		ip = outboundIP()
	}
	host := m.cfg.Hostname
	if host == "" {
		if h, err := os.Hostname(); err == nil && h != "" && !m.cfg.NoHostnameLookup {
			host = h
		} else {
			host = ip
		}
	}
	hp := net.JoinHostPort(ip, strconv.Itoa(port))
	m.self = detector.MasterInfo{ID: m.id, IP: ip, Port: port, Hostname: host, PID: "master@" + hp, Version: m.cfg.Version}
	m.info = &mesos.MasterInfo{
		Id:       proto.String(m.id),
		Ip:       proto.Uint32(detector.IPToUint32(ip)),
		Port:     proto.Uint32(uint32(port)),
		Pid:      proto.String(m.self.PID),
		Hostname: proto.String(host),
		Version:  proto.String(m.cfg.Version),
		Address:  &mesos.Address{Hostname: proto.String(host), Ip: proto.String(ip), Port: proto.Int32(int32(port))},
		Capabilities: []*mesos.MasterInfo_Capability{
			{Type: mesos.MasterInfo_Capability_AGENT_UPDATE.Enum()},
		},
	}
}

// outboundIP is a non-loopback address of this machine, for a master bound
// to 0.0.0.0; loopback when there is none.
func outboundIP() string {
	addrs, err := net.InterfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				return n.IP.String()
			}
		}
	}
	return "127.0.0.1"
}

// Run serves on ln until ctx ends, and in HA mode until this master loses
// its ZooKeeper candidacy, which returns an error: like a Mesos master, the
// process should then exit and be restarted, because another master may
// already lead. Run closes the registry when it returns.
func (m *Master) Run(ctx context.Context, ln net.Listener) error {
	defer m.Close()
	if tcp, ok := ln.Addr().(*net.TCPAddr); ok {
		m.mu.Lock()
		ip := m.cfg.IP
		if tcp.IP != nil && !tcp.IP.IsUnspecified() {
			ip = tcp.IP.String()
		}
		m.setSelf(ip, tcp.Port)
		m.mu.Unlock()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	srv := m.newServer(ctx)
	m.warnIfOpen(ln)
	if m.cfg.TLS != nil {
		ln = tls.NewListener(ln, m.cfg.TLS)
	}
	srvErr := make(chan error, 1)
	go func() { srvErr <- srv.Serve(ln) }()
	m.log.Info("master listening", "address", ln.Addr().String(), "id", m.id, "advertised", m.self.Addr(), "tls", m.cfg.TLS != nil, "version", m.cfg.Version)

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); m.allocationLoop(ctx) }()
	go func() { defer wg.Done(); m.housekeepingLoop(ctx) }()

	var lost <-chan struct{}
	var contender *detector.Contender
	recoverErr := make(chan error, 1)
	if m.cfg.ZK == "" {
		m.becomeLeader()
	} else {
		det, err := detector.New(m.cfg.ZK, detector.WithLogger(m.cfg.Logger), detector.WithSessionTimeout(m.cfg.ZKSessionTimeout))
		if err != nil {
			cancel()
			_ = srv.Close()
			wg.Wait()
			return fmt.Errorf("--zk: %w", err)
		}
		defer det.Close()
		wg.Add(1)
		go func() { defer wg.Done(); m.followLeader(ctx, det) }()
		m.mu.Lock()
		self := m.self
		m.mu.Unlock()
		contender, err = detector.Contend(ctx, m.cfg.ZK, self, detector.WithLogger(m.cfg.Logger), detector.WithSessionTimeout(m.cfg.ZKSessionTimeout))
		if err != nil {
			cancel()
			_ = srv.Close()
			wg.Wait()
			return fmt.Errorf("contend for leadership: %w", err)
		}
		defer contender.Close()
		lost = contender.Lost()
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-contender.Elected():
				if err := m.recoverAsLeader(ctx); err != nil {
					if ctx.Err() == nil {
						recoverErr <- err
					}
					return
				}
				m.becomeLeader()
			case <-ctx.Done():
			case <-lost:
			}
		}()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-srvErr:
		runErr = fmt.Errorf("serve: %w", err)
	case <-lost:
		runErr = fmt.Errorf("lost leadership candidacy, exiting so another master can lead: %w", contender.Err())
	case err := <-recoverErr:
		runErr = fmt.Errorf("elected, but cannot take over the registry; exiting so another master can lead: %w", err)
	case <-m.deposed:
		runErr = errors.New("deposed: another master claimed the registry; exiting")
	}
	cancel()
	m.closeStreams()
	shCtx, shCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer shCancel()
	if err := srv.Shutdown(shCtx); err != nil {
		_ = srv.Close()
	}
	wg.Wait()
	return runErr
}

// Close releases the registry. Run calls it; it is for masters that were
// created but never run.
func (m *Master) Close() error {
	var err error
	m.closeOnce.Do(func() {
		m.closeStreams()
		_ = m.files.Close()
		// The writer drains its queue, then stops.
		close(m.wstop)
		m.bg.Wait()
		m.mu.Lock()
		reg := m.reg
		m.mu.Unlock()
		if reg != nil {
			err = reg.Close()
		}
	})
	return err
}

// recoverAsLeader is the step from elected to leading with --zk: the
// registry in ZooKeeper is claimed and read before anything is served, so
// a new leader knows every agent and framework the previous one admitted.
func (m *Master) recoverAsLeader(ctx context.Context) error {
	m.mu.Lock()
	if m.shutdown {
		m.mu.Unlock()
		return errNotLeader
	}
	m.role = roleRecovering
	m.mu.Unlock()
	m.log.Info("elected; reading the registry before serving", "registry", m.cfg.registryKind())
	reg, err := openRegistry(ctx, &m.cfg, m.id)
	if err != nil {
		return err
	}
	if reg == nil {
		return nil
	}
	m.mu.Lock()
	if m.shutdown {
		m.mu.Unlock()
		reg.Close()
		return errNotLeader
	}
	m.reg = reg
	m.mu.Unlock()
	if err := m.loadRegistry(ctx); err != nil {
		return err
	}
	m.startWriter()
	return nil
}

// closeStreams ends every event stream so their handlers return.
func (m *Master) closeStreams() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.shutdown = true
	m.closeOperatorStreamsLocked()
	for _, fw := range m.frameworks {
		if fw.stream != nil {
			fw.stream.close()
		}
	}
	for _, a := range m.agents {
		if a.stream != nil {
			a.stream.close()
		}
	}
}

func (m *Master) becomeLeader() {
	m.mu.Lock()
	if m.role == roleDeposed || m.shutdown {
		m.mu.Unlock()
		return
	}
	now := m.clock.Now()
	m.role = roleLeading
	m.electedTime = now
	m.leader = m.self
	// Whoever the registry remembers gets the re-registration window from
	// now, not from when it was last seen.
	for _, a := range m.agents {
		if a.recovered {
			a.removeDeadline = now.Add(m.cfg.AgentReregisterTimeout)
		}
	}
	for _, fw := range m.frameworks {
		if fw.recovered && fw.stream == nil {
			fw.failoverDeadline = now.Add(max(fw.failoverTimeout, m.cfg.AgentReregisterTimeout))
		}
	}
	m.mu.Unlock()
	m.log.Info("elected as the leading master", "id", m.id, "address", m.self.Addr())
	m.triggerAllocation()
}

// followLeader keeps the known leader current for redirects.
func (m *Master) followLeader(ctx context.Context, det detector.Detector) {
	for info := range det.Watch(ctx) {
		m.mu.Lock()
		if m.role == roleFollower {
			m.leader = info
		}
		m.mu.Unlock()
	}
}

func (m *Master) triggerAllocation() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *Master) allocationLoop(ctx context.Context) {
	t := time.NewTicker(m.cfg.AllocationInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.kick:
		}
		m.allocate()
	}
}

func (m *Master) housekeepingLoop(ctx context.Context) {
	t := time.NewTicker(housekeepingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		m.housekeeping()
	}
}

// allocate runs one allocation cycle and sends the offers.
func (m *Master) allocate() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading || m.shutdown {
		return
	}
	m.operatorBeforeAllocationLocked()
	m.sendInverseOffersLocked()
	start := time.Now()
	grants := m.alloc.Cycle()
	m.counters.allocRuns.add(float64(time.Since(start).Microseconds()) / 1000)
	m.counters.allocationRuns++
	if len(grants) == 0 {
		return
	}
	byFramework := make(map[*framework][]*mesos.Offer)
	for _, g := range grants {
		fw := m.frameworks[g.FrameworkID]
		a := m.agents[g.AgentID]
		if fw == nil || a == nil || fw.stream == nil || !a.connected {
			m.alloc.Recover(g.FrameworkID, g.AgentID, g.Role, g.Resources, 0)
			continue
		}
		o := &offer{
			id:    fmt.Sprintf("%s-O%d", m.id, m.nextOfferID.Add(1)-1),
			fw:    fw,
			agent: a,
			role:  g.Role,
			res:   g.Resources,
		}
		if m.cfg.OfferTimeout > 0 {
			o.expires = m.clock.Now().Add(m.cfg.OfferTimeout)
		}
		m.offers[o.id] = o
		fw.offers[o.id] = o
		a.offers[o.id] = o
		byFramework[fw] = append(byFramework[fw], m.offerProto(o))
	}
	for fw, offers := range byFramework {
		m.sendFramework(fw, &scheduler.Event{
			Type:   scheduler.Event_OFFERS.Enum(),
			Offers: &scheduler.Event_Offers{Offers: offers},
		})
	}
}

func (m *Master) offerProto(o *offer) *mesos.Offer {
	a := o.agent
	allocRole := ""
	if o.fw.multiRole {
		allocRole = o.role
	}
	p := &mesos.Offer{
		Id:          &mesos.OfferID{Value: proto.String(o.id)},
		FrameworkId: &mesos.FrameworkID{Value: proto.String(o.fw.id)},
		AgentId:     &mesos.AgentID{Value: proto.String(a.id)},
		Hostname:    proto.String(a.hostname),
		Url: &mesos.URL{
			Scheme:  proto.String(a.scheme()),
			Address: &mesos.Address{Hostname: proto.String(a.hostname), Ip: proto.String(a.ip), Port: proto.Int32(int32(a.port))},
			Path:    proto.String("/slave(1)"),
		},
		Domain:         a.info.GetDomain(),
		Resources:      o.res.ToProto(allocRole),
		Attributes:     a.info.GetAttributes(),
		Unavailability: m.offerUnavailability(a),
	}
	if o.fw.refinement {
		// Frameworks that understand reservation refinement read
		// `reservations` only; the deprecated `role` would confuse them.
		for _, r := range p.Resources {
			r.Role = nil
		}
	}
	for id := range o.fw.executors[a.id] {
		p.ExecutorIds = append(p.ExecutorIds, &mesos.ExecutorID{Value: proto.String(id)})
	}
	if o.fw.multiRole {
		p.AllocationInfo = &mesos.Resource_AllocationInfo{Role: proto.String(o.role)}
	}
	return p
}

// removeOffer forgets an offer and gives its resources back, with a filter
// of refuse for the framework. With rescind, the framework is told.
func (m *Master) removeOffer(o *offer, rescind bool, refuse time.Duration) {
	delete(m.offers, o.id)
	delete(o.fw.offers, o.id)
	delete(o.agent.offers, o.id)
	m.alloc.Recover(o.fw.id, o.agent.id, o.role, o.res, refuse)
	if rescind {
		m.counters.offersRescinded++
		m.sendFramework(o.fw, &scheduler.Event{
			Type:    scheduler.Event_RESCIND.Enum(),
			Rescind: &scheduler.Event_Rescind{OfferId: &mesos.OfferID{Value: proto.String(o.id)}},
		})
	}
}

// housekeeping fires the timers that are due.
func (m *Master) housekeeping() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading || m.shutdown {
		return
	}
	now := m.clock.Now()
	for _, o := range m.offers {
		if !o.expires.IsZero() && !now.Before(o.expires) {
			m.log.Info("offer timed out, rescinding", "offer_id", o.id, "framework_id", o.fw.id, "agent_id", o.agent.id)
			m.removeOffer(o, true, 0)
		}
	}
	for _, fw := range m.frameworks {
		if fw.stream == nil && !fw.failoverDeadline.IsZero() && !now.Before(fw.failoverDeadline) {
			m.log.Info("framework failover timeout passed, tearing it down", "framework_id", fw.id, "failover_timeout", fw.failoverTimeout)
			m.removeFramework(fw, "failover timeout")
		}
	}
	m.silentAgents(now)
	m.goneDrainedLocked()
	for _, a := range m.agents {
		if !a.connected && !a.removeDeadline.IsZero() && !now.Before(a.removeDeadline) {
			m.removeAgent(a)
		}
	}
	// Agents removed above (or since the last cycle) leave the operator
	// event streams.
	m.opSyncLocked()
}

// sendFramework sends an event to a connected framework. UPDATE events for
// a disconnected one are kept for when it comes back; others are dropped,
// as Mesos drops them.
func (m *Master) sendFramework(fw *framework, ev *scheduler.Event) {
	if fw.stream != nil {
		if err := fw.stream.send(ev); err == nil {
			return
		} else if !errors.Is(err, errStreamClosed) && !errors.Is(err, errStreamOverflow) {
			m.log.Error("cannot encode an event for a framework", "framework_id", fw.id, "type", ev.GetType().String(), "error", err)
			return
		}
	}
	if ev.GetType() != scheduler.Event_UPDATE {
		m.counters.droppedMessages++
		return
	}
	uuid := ev.GetUpdate().GetStatus().GetUuid()
	if len(uuid) > 0 {
		for _, p := range fw.pending {
			if string(p.GetUpdate().GetStatus().GetUuid()) == string(uuid) {
				return
			}
		}
	}
	if len(fw.pending) >= maxPendingUpdates {
		fw.pending = fw.pending[1:]
		m.counters.droppedMessages++
	}
	fw.pending = append(fw.pending, ev)
}

// sendAgent sends an event to a connected agent; it reports whether it
// could.
func (m *Master) sendAgent(a *agent, ev *agentpb.Event) bool {
	if a == nil || a.stream == nil {
		return false
	}
	if err := a.stream.send(ev); err != nil {
		if !errors.Is(err, errStreamClosed) && !errors.Is(err, errStreamOverflow) {
			m.log.Error("cannot encode an event for an agent", "agent_id", a.id, "type", ev.GetType().String(), "error", err)
		}
		return false
	}
	return true
}

// failoverTimeout is a framework's failover_timeout, or the configured
// default when it sets none. Absurd values are capped so deadlines cannot
// overflow.
func (m *Master) failoverTimeout(info *mesos.FrameworkInfo) time.Duration {
	if info.FailoverTimeout == nil {
		return m.cfg.FrameworkFailoverTimeout
	}
	return min(secondsToDuration(info.GetFailoverTimeout()), maxFailoverTimeout)
}

// maxTimeout caps durations from the wire (failover timeouts, filters).
const maxTimeout = 100 * 365 * 24 * time.Hour

func secondsToDuration(s float64) time.Duration {
	if !(s > 0) {
		return 0
	}
	if s >= maxTimeout.Seconds() {
		return maxTimeout
	}
	return time.Duration(s * float64(time.Second))
}

// usedOnAgent sums the resources of non-terminal tasks and executors.
func usedOnAgent(a *agent) resources.Resources {
	var acc resources.Accumulator
	for _, ts := range a.tasks {
		for _, t := range ts {
			if !t.released {
				acc.Add(t.res)
			}
		}
	}
	for _, es := range a.executors {
		for _, e := range es {
			acc.Add(e.res)
		}
	}
	return acc.Resources()
}

// readOnlyAuth puts the read-only endpoints (UI, state, metrics) behind
// auth, as --authenticate_http_readonly does; the scheduler and agent APIs
// and /health stay open to their own protocol rules.
func readOnlyAuth(next http.Handler, wrap func(http.Handler) http.Handler) http.Handler {
	protected := wrap(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch p := r.URL.Path; {
		case strings.HasPrefix(p, "/api/v1/"), p == "/health", p == "/master/health":
			next.ServeHTTP(w, r)
		default:
			protected.ServeHTTP(w, r)
		}
	})
}
