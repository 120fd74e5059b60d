package master

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/mesolite/mesolite/api/v1/allocator"
	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/maintenance"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/scheduler"
	"github.com/mesolite/mesolite/master/store"
	"google.golang.org/protobuf/proto"
)

// Maintenance, as Mesos has it: the operator posts a schedule of windows
// (machines and when they will be unavailable). Machines in the schedule
// are DRAINING: offers of their agents carry the unavailability, and
// frameworks with tasks there get an inverse offer, which they accept
// (they will move) or decline. START_MAINTENANCE takes DRAINING machines
// DOWN: their agents are removed and may not register until
// STOP_MAINTENANCE brings the machines UP again (and out of the schedule).
// The schedule and the down machines are kept in the registry.

// settingMaintenance is the registry key of the schedule and down machines.
const settingMaintenance = "maintenance"

// machineKey identifies a machine: hostname (lowercased, as Mesos does)
// and ip, either of which may be empty.
type machineKey struct{ hostname, ip string }

func keyOf(id *mesos.MachineID) machineKey {
	return machineKey{hostname: strings.ToLower(id.GetHostname()), ip: id.GetIp()}
}

func (k machineKey) proto() *mesos.MachineID {
	id := &mesos.MachineID{}
	if k.hostname != "" {
		id.Hostname = proto.String(k.hostname)
	}
	if k.ip != "" {
		id.Ip = proto.String(k.ip)
	}
	return id
}

// matches says whether agent a is on the machine: every field the
// machine id sets is the agent's.
func (k machineKey) matches(a *agent) bool {
	return (k.hostname != "" || k.ip != "") &&
		(k.hostname == "" || k.hostname == strings.ToLower(a.hostname)) && (k.ip == "" || k.ip == a.ip)
}

// maintenanceState is the master's maintenance book. Guarded by Master.mu.
type maintenanceState struct {
	schedule *maintenance.Schedule
	down     map[machineKey]bool
	// statuses are the frameworks' answers to inverse offers, by machine
	// and framework id.
	statuses map[machineKey]map[string]*allocator.InverseOfferStatus
	// inverse are the outstanding inverse offers by id; sent marks the
	// framework/agent pairs that have one or answered one.
	inverse map[string]inverseOffer
	sent    map[[2]string]bool
}

type inverseOffer struct {
	fwID, agentID string
	machine       machineKey
}

func (s *maintenanceState) init() {
	if s.down == nil {
		s.down = map[machineKey]bool{}
		s.statuses = map[machineKey]map[string]*allocator.InverseOfferStatus{}
		s.inverse = map[string]inverseOffer{}
		s.sent = map[[2]string]bool{}
	}
}

// windowOf returns the machine of the schedule agent a is on and its
// unavailability; ok is false when a is on no scheduled machine.
func (s *maintenanceState) windowOf(a *agent) (machineKey, *mesos.Unavailability, bool) {
	for _, w := range s.schedule.GetWindows() {
		for _, id := range w.GetMachineIds() {
			if k := keyOf(id); k.matches(a) {
				return k, w.GetUnavailability(), true
			}
		}
	}
	return machineKey{}, nil, false
}

// isDown says whether agent a is on a machine that is down.
func (s *maintenanceState) isDown(a *agent) bool {
	for k := range s.down {
		if k.matches(a) {
			return true
		}
	}
	return false
}

// scheduled lists the machines of the schedule.
func (s *maintenanceState) scheduled() []machineKey {
	var out []machineKey
	for _, w := range s.schedule.GetWindows() {
		for _, id := range w.GetMachineIds() {
			out = append(out, keyOf(id))
		}
	}
	return out
}

// validateSchedule checks a schedule as Mesos does: each machine named by
// a hostname or an ip, in one window only, each window with a start; the
// machines that are down stay in it.
func validateSchedule(s *maintenance.Schedule, down map[machineKey]bool) error {
	seen := map[machineKey]bool{}
	for i, w := range s.GetWindows() {
		if len(w.GetMachineIds()) == 0 {
			return httpErr(http.StatusBadRequest, "Window %d names no machine", i)
		}
		if w.GetUnavailability().GetStart() == nil {
			return httpErr(http.StatusBadRequest, "Window %d has no 'unavailability.start'", i)
		}
		if d := w.GetUnavailability().GetDuration(); d != nil && d.GetNanoseconds() < 0 {
			return httpErr(http.StatusBadRequest, "Window %d has a negative duration", i)
		}
		for _, id := range w.GetMachineIds() {
			k := keyOf(id)
			if k.hostname == "" && k.ip == "" {
				return httpErr(http.StatusBadRequest, "Window %d has a machine with neither hostname nor ip", i)
			}
			if len(k.hostname) > 255 || len(k.ip) > 64 {
				return httpErr(http.StatusBadRequest, "Window %d has a machine id that is too long", i)
			}
			if seen[k] {
				return httpErr(http.StatusBadRequest, "Machine '%s' is in more than one window", machineName(k))
			}
			seen[k] = true
		}
	}
	for k := range down {
		if !seen[k] {
			return httpErr(http.StatusBadRequest, "Machine '%s' is down; bring it up (STOP_MAINTENANCE) before taking it out of the schedule", machineName(k))
		}
	}
	return nil
}

func machineName(k machineKey) string {
	switch {
	case k.hostname != "" && k.ip != "":
		return k.hostname + "/" + k.ip
	case k.hostname != "":
		return k.hostname
	}
	return k.ip
}

// updateSchedule is UPDATE_MAINTENANCE_SCHEDULE.
func (m *Master) updateSchedule(r *http.Request, s *maintenance.Schedule) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading {
		return httpErr(http.StatusServiceUnavailable, "Not the leading master")
	}
	m.maint.init()
	if err := validateSchedule(s, m.maint.down); err != nil {
		return err
	}
	for _, w := range s.GetWindows() {
		if err := m.authorizeMachines(r, "update_maintenance_schedules", w.GetMachineIds()); err != nil {
			return err
		}
	}
	m.maint.schedule = proto.Clone(s).(*maintenance.Schedule)
	// Answers and inverse offers belong to the machines as they were.
	scheduled := map[machineKey]bool{}
	for _, k := range m.maint.scheduled() {
		scheduled[k] = true
	}
	for k := range m.maint.statuses {
		if !scheduled[k] {
			delete(m.maint.statuses, k)
		}
	}
	m.rescindInverseOffersLocked()
	// Offers out there lack the new unavailability.
	for _, a := range m.agents {
		for _, o := range a.offers {
			m.removeOffer(o, true, 0)
		}
	}
	m.persistMaintenanceLocked()
	m.log.Info("maintenance schedule updated", "windows", len(s.GetWindows()), "principal", operatorPrincipal(r))
	m.triggerAllocation()
	return nil
}

// startMaintenance is START_MAINTENANCE: scheduled machines go down; their
// agents are removed and may not register while they are down.
func (m *Master) startMaintenance(r *http.Request, machines []*mesos.MachineID) error {
	if len(machines) == 0 {
		return httpErr(http.StatusBadRequest, "Expecting 'machines' to be present")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading {
		return httpErr(http.StatusServiceUnavailable, "Not the leading master")
	}
	if err := m.authorizeMachines(r, "start_maintenances", machines); err != nil {
		return err
	}
	m.maint.init()
	scheduled := map[machineKey]bool{}
	for _, k := range m.maint.scheduled() {
		scheduled[k] = true
	}
	for _, id := range machines {
		if k := keyOf(id); !scheduled[k] || m.maint.down[k] {
			return httpErr(http.StatusBadRequest, "Machine '%s' is not draining: it must be in the maintenance schedule and not down", machineName(k))
		}
	}
	for _, id := range machines {
		k := keyOf(id)
		m.maint.down[k] = true
		delete(m.maint.statuses, k)
		for _, a := range m.agents {
			if k.matches(a) && !a.recovered {
				m.log.Warn("agent removed: its machine went down for maintenance", "agent_id", a.id, "machine", machineName(k))
				m.removeGoneAgent(a)
			}
		}
	}
	m.rescindInverseOffersLocked()
	m.opSyncLocked()
	m.persistMaintenanceLocked()
	m.log.Info("maintenance started", "machines", len(machines), "principal", operatorPrincipal(r))
	return nil
}

// stopMaintenance is STOP_MAINTENANCE: down machines come up and leave the
// schedule.
func (m *Master) stopMaintenance(r *http.Request, machines []*mesos.MachineID) error {
	if len(machines) == 0 {
		return httpErr(http.StatusBadRequest, "Expecting 'machines' to be present")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading {
		return httpErr(http.StatusServiceUnavailable, "Not the leading master")
	}
	if err := m.authorizeMachines(r, "stop_maintenances", machines); err != nil {
		return err
	}
	m.maint.init()
	up := map[machineKey]bool{}
	for _, id := range machines {
		k := keyOf(id)
		if !m.maint.down[k] {
			return httpErr(http.StatusBadRequest, "Machine '%s' is not down", machineName(k))
		}
		up[k] = true
	}
	for k := range up {
		delete(m.maint.down, k)
	}
	if m.maint.schedule != nil {
		sched := proto.Clone(m.maint.schedule).(*maintenance.Schedule)
		var windows []*maintenance.Window
		for _, w := range sched.GetWindows() {
			w.MachineIds = slices.DeleteFunc(w.MachineIds, func(id *mesos.MachineID) bool { return up[keyOf(id)] })
			if len(w.GetMachineIds()) > 0 {
				windows = append(windows, w)
			}
		}
		sched.Windows = windows
		m.maint.schedule = sched
	}
	m.persistMaintenanceLocked()
	m.log.Info("maintenance stopped", "machines", len(machines), "principal", operatorPrincipal(r))
	return nil
}

// getScheduleLocked is GET_MAINTENANCE_SCHEDULE.
//
// Under --acls, v sees the machines get_maintenance_schedules lets it;
// windows left without machines are left out.
func (m *Master) getScheduleLocked(v *viewer) *masterpb.Response_GetMaintenanceSchedule {
	s := &maintenance.Schedule{}
	if m.maint.schedule != nil {
		s = proto.Clone(m.maint.schedule).(*maintenance.Schedule)
	}
	if v != nil {
		windows := s.Windows[:0]
		for _, w := range s.Windows {
			ids := w.MachineIds[:0]
			for _, id := range w.MachineIds {
				if v.sees("get_maintenance_schedules", keyOf(id)) {
					ids = append(ids, id)
				}
			}
			if w.MachineIds = ids; len(ids) > 0 {
				windows = append(windows, w)
			}
		}
		s.Windows = windows
	}
	return &masterpb.Response_GetMaintenanceSchedule{Schedule: s}
}

// getMaintenanceStatusLocked is GET_MAINTENANCE_STATUS: draining machines
// with the frameworks' answers, and down machines.
//
// Under --acls, v sees the machines get_maintenance_statuses lets it.
func (m *Master) getMaintenanceStatusLocked(v *viewer) *masterpb.Response_GetMaintenanceStatus {
	st := &maintenance.ClusterStatus{}
	for _, k := range m.maint.scheduled() {
		if m.maint.down[k] || !v.sees("get_maintenance_statuses", k) {
			continue
		}
		dm := &maintenance.ClusterStatus_DrainingMachine{Id: k.proto()}
		byFw := m.maint.statuses[k]
		ids := make([]string, 0, len(byFw))
		for id := range byFw {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			dm.Statuses = append(dm.Statuses, proto.Clone(byFw[id]).(*allocator.InverseOfferStatus))
		}
		st.DrainingMachines = append(st.DrainingMachines, dm)
	}
	down := make([]machineKey, 0, len(m.maint.down))
	for k := range m.maint.down {
		down = append(down, k)
	}
	slices.SortFunc(down, func(a, b machineKey) int { return strings.Compare(machineName(a), machineName(b)) })
	for _, k := range down {
		if v.sees("get_maintenance_statuses", k) {
			st.DownMachines = append(st.DownMachines, k.proto())
		}
	}
	return &masterpb.Response_GetMaintenanceStatus{Status: st}
}

// sendInverseOffersLocked offers back, once per framework and agent, the
// agents of draining machines to the frameworks with tasks on them. Runs
// before each allocation cycle. m.mu must be held.
func (m *Master) sendInverseOffersLocked() {
	if len(m.maint.schedule.GetWindows()) == 0 {
		return
	}
	m.maint.init()
	now := m.clock.Now()
	byFw := map[*framework][]*mesos.InverseOffer{}
	for _, a := range m.agents {
		k, unavailability, ok := m.maint.windowOf(a)
		if !ok || m.maint.down[k] || !a.connected {
			continue
		}
		for fwID, ts := range a.tasks {
			fw := m.frameworks[fwID]
			if fw == nil || fw.stream == nil || m.maint.sent[[2]string{fwID, a.id}] {
				continue
			}
			live := false
			for _, t := range ts {
				live = live || !mesos.IsTerminal(t.state())
			}
			if !live {
				continue
			}
			id := fmt.Sprintf("%s-IO%d", m.id, m.nextOfferID.Add(1)-1)
			m.maint.inverse[id] = inverseOffer{fwID: fwID, agentID: a.id, machine: k}
			m.maint.sent[[2]string{fwID, a.id}] = true
			if m.maint.statuses[k] == nil {
				m.maint.statuses[k] = map[string]*allocator.InverseOfferStatus{}
			}
			if m.maint.statuses[k][fwID] == nil {
				m.maint.statuses[k][fwID] = &allocator.InverseOfferStatus{Status: allocator.InverseOfferStatus_UNKNOWN.Enum(),
					FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)}, Timestamp: timeInfo(now)}
			}
			byFw[fw] = append(byFw[fw], &mesos.InverseOffer{
				Id: &mesos.OfferID{Value: proto.String(id)}, FrameworkId: &mesos.FrameworkID{Value: proto.String(fwID)},
				AgentId: &mesos.AgentID{Value: proto.String(a.id)}, Unavailability: proto.Clone(unavailability).(*mesos.Unavailability),
			})
		}
	}
	for fw, ios := range byFw {
		m.sendFramework(fw, &scheduler.Event{Type: scheduler.Event_INVERSE_OFFERS.Enum(), InverseOffers: &scheduler.Event_InverseOffers{InverseOffers: ios}})
	}
}

// answerInverseOffersLocked records ACCEPT/DECLINE_INVERSE_OFFERS. m.mu
// must be held.
func (m *Master) answerInverseOffersLocked(fw *framework, ids []*mesos.OfferID, accept bool) {
	status := allocator.InverseOfferStatus_DECLINE
	if accept {
		status = allocator.InverseOfferStatus_ACCEPT
	}
	for _, id := range ids {
		io, ok := m.maint.inverse[id.GetValue()]
		if !ok || io.fwID != fw.id {
			continue
		}
		delete(m.maint.inverse, id.GetValue())
		if byFw := m.maint.statuses[io.machine]; byFw != nil {
			byFw[fw.id] = &allocator.InverseOfferStatus{Status: status.Enum(), FrameworkId: &mesos.FrameworkID{Value: proto.String(fw.id)},
				Timestamp: timeInfo(m.clock.Now())}
		}
	}
}

// rescindInverseOffersLocked withdraws every outstanding inverse offer
// (the schedule changed): new ones go out for what is scheduled now.
func (m *Master) rescindInverseOffersLocked() {
	for id, io := range m.maint.inverse {
		if fw := m.frameworks[io.fwID]; fw != nil {
			m.sendFramework(fw, &scheduler.Event{Type: scheduler.Event_RESCIND_INVERSE_OFFER.Enum(),
				RescindInverseOffer: &scheduler.Event_RescindInverseOffer{InverseOfferId: &mesos.OfferID{Value: proto.String(id)}}})
		}
		delete(m.maint.inverse, id)
	}
	clear(m.maint.sent)
}

// offerUnavailability is the unavailability an offer of agent a carries.
// m.mu must be held.
func (m *Master) offerUnavailability(a *agent) *mesos.Unavailability {
	if _, u, ok := m.maint.windowOf(a); ok {
		return proto.Clone(u).(*mesos.Unavailability)
	}
	return nil
}

// maintenanceRecord is the registry's form of the maintenance book.
type maintenanceRecord struct {
	Schedule json.RawMessage `json:"schedule,omitempty"`
	Down     []struct {
		Hostname string `json:"hostname,omitempty"`
		IP       string `json:"ip,omitempty"`
	} `json:"down,omitempty"`
}

func (m *Master) persistMaintenanceLocked() {
	var rec maintenanceRecord
	if m.maint.schedule != nil {
		data, err := codec.JSON.Marshal(m.maint.schedule)
		if err != nil {
			m.log.Error("BUG: cannot encode the maintenance schedule", "error", err)
			return
		}
		rec.Schedule = data
	}
	for k := range m.maint.down {
		rec.Down = append(rec.Down, struct {
			Hostname string `json:"hostname,omitempty"`
			IP       string `json:"ip,omitempty"`
		}{k.hostname, k.ip})
	}
	data, err := json.Marshal(rec)
	if err != nil {
		m.log.Error("BUG: cannot encode the maintenance book", "error", err)
		return
	}
	m.persist(store.PutSetting{Key: settingMaintenance, Value: data})
}

// installMaintenanceLocked reads the registry's maintenance book. m.mu
// must be held.
func (m *Master) installMaintenanceLocked(data []byte) {
	m.maint.init()
	var rec maintenanceRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		m.log.Error("registry holds a maintenance book this master cannot read; none", "error", err)
		return
	}
	if len(rec.Schedule) > 0 {
		s := &maintenance.Schedule{}
		if err := codec.JSON.Unmarshal(rec.Schedule, s); err != nil {
			m.log.Error("registry holds a maintenance schedule this master cannot read; none", "error", err)
		} else {
			m.maint.schedule = s
		}
	}
	for _, d := range rec.Down {
		m.maint.down[machineKey{hostname: d.Hostname, ip: d.IP}] = true
	}
}
