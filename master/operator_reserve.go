package master

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"github.com/mesolite/mesolite/api/v1/codec"
	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/master/store"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

// Dynamic reservations (RESERVE_RESOURCES, UNRESERVE_RESOURCES) and role
// weights (GET_WEIGHTS, UPDATE_WEIGHTS): what an operator changes about
// allocation. Both are kept in the registry, so the next leader and this
// one after a restart allocate the same way.

// storedReservations reads an agent record's reservations; a record a
// newer master wrote that this one cannot read keeps none (logged by the
// caller's load, never fatal).
func storedReservations(rec store.Agent) resources.Resources {
	r, err := resources.FromProto(rec.Reserved)
	if err != nil {
		return nil
	}
	return r.Filter(func(x resources.Resource) bool { return x.Dynamic })
}

// withReservations turns what an agent reports into what it offers: each
// dynamic reservation made on it takes its amount out of the unreserved
// resources. A reservation the agent no longer has room for (it came back
// smaller) is left out, and said so; it stays recorded.
func (m *Master) withReservations(a *agent, total resources.Resources) resources.Resources {
	for _, r := range a.reserved {
		flat := resources.Of(r).Flatten()
		unreserved := total.Filter(func(x resources.Resource) bool { return !x.Reserved() })
		if !unreserved.Contains(flat) {
			m.log.Warn("agent lacks the unreserved resources of a reservation made on it; not offered until it has them",
				"agent_id", a.id, "reservation", resources.Of(r).String(), "unreserved", unreserved.String())
			continue
		}
		total = total.Subtract(flat).Add(resources.Of(r))
	}
	return total
}

// reservationRequest checks a RESERVE or UNRESERVE call's resources: Mesos
// resources that are dynamically reserved (one reservation each, no
// refinement), by the caller when it authenticated.
func reservationRequest(r *http.Request, rs []*mesos.Resource) (resources.Resources, error) {
	if len(rs) == 0 {
		return nil, httpErr(http.StatusBadRequest, "Expecting 'resources' to be present")
	}
	principal := operatorPrincipal(r)
	for i, x := range rs {
		if len(x.GetReservations()) > 1 {
			return nil, httpErr(http.StatusBadRequest, "Resource %d: reservation refinement (more than one reservation) is not supported", i)
		}
		last := x.GetReservations()
		if len(last) == 0 || last[0].GetType() != mesos.Resource_ReservationInfo_DYNAMIC || last[0].GetRole() == "" {
			return nil, httpErr(http.StatusBadRequest, "Resource %d: expecting one DYNAMIC reservation with a role in 'reservations'", i)
		}
		if p := last[0].GetPrincipal(); principal != "" && p != "" && p != principal {
			return nil, httpErr(http.StatusForbidden, "Resource %d: the reservation's principal '%s' is not the caller's '%s'", i, p, principal)
		}
	}
	out, err := resources.FromProto(rs)
	if err != nil {
		return nil, httpErr(http.StatusBadRequest, "Invalid resources: %v", err)
	}
	if principal != "" {
		for i := range out {
			if out[i].Principal == "" {
				out[i].Principal = principal
			}
		}
		out = resources.Of(out...)
	}
	return out, nil
}

// reserve is RESERVE_RESOURCES: unreserved resources of an agent that no
// task uses become reserved for a role; outstanding offers of the agent
// are rescinded first (their resources may be the ones reserved).
func (m *Master) reserve(r *http.Request, c *masterpb.Call_ReserveResources) error {
	if len(c.GetSource()) > 0 {
		return httpErr(http.StatusBadRequest, "'source' (changing existing reservations) is not supported; unreserve and reserve again")
	}
	want, err := reservationRequest(r, c.GetResources())
	if err != nil {
		return err
	}
	for _, x := range want {
		if err := m.cfg.ACLs.Check("reserve_resources", operatorPrincipal(r), x.Role); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a, err := m.liveAgentLocked(c.GetAgentId().GetValue())
	if err != nil {
		return err
	}
	for _, o := range a.offers {
		m.removeOffer(o, true, 0)
	}
	free := m.alloc.Available(a.id).Filter(func(x resources.Resource) bool { return !x.Reserved() })
	if !free.Contains(want.Flatten()) {
		return httpErr(http.StatusConflict, "Agent '%s' has not %s unreserved and unused (free: %s)", a.id, want.Flatten().String(), free.String())
	}
	a.reserved = a.reserved.Add(want)
	m.setAgentTotalLocked(a, a.total.Subtract(want.Flatten()).Add(want))
	m.log.Info("resources reserved", "agent_id", a.id, "reserved", want.String(), "principal", operatorPrincipal(r))
	return nil
}

// unreserve is UNRESERVE_RESOURCES: dynamically reserved resources that no
// task uses go back to the unreserved pool.
func (m *Master) unreserve(r *http.Request, c *masterpb.Call_UnreserveResources) error {
	want, err := reservationRequest(r, c.GetResources())
	if err != nil {
		return err
	}
	for _, x := range want {
		if err := m.cfg.ACLs.Check("unreserve_resources", operatorPrincipal(r), x.Principal); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	a, err := m.liveAgentLocked(c.GetAgentId().GetValue())
	if err != nil {
		return err
	}
	if !a.reserved.Contains(want) {
		return httpErr(http.StatusBadRequest, "Agent '%s' has no such reservation: %s (reserved: %s)", a.id, want.String(), a.reserved.String())
	}
	for _, o := range a.offers {
		m.removeOffer(o, true, 0)
	}
	if free := m.alloc.Available(a.id); !free.Contains(want) {
		return httpErr(http.StatusConflict, "Agent '%s': tasks still use the reserved %s", a.id, want.String())
	}
	a.reserved = a.reserved.Subtract(want)
	m.setAgentTotalLocked(a, a.total.Subtract(want).Add(want.Flatten()))
	m.log.Info("resources unreserved", "agent_id", a.id, "unreserved", want.String(), "principal", operatorPrincipal(r))
	return nil
}

// liveAgentLocked is an agent an operator call may change: registered
// with this master. m.mu must be held.
func (m *Master) liveAgentLocked(id string) (*agent, error) {
	if m.role != roleLeading {
		return nil, httpErr(http.StatusServiceUnavailable, "Not the leading master")
	}
	a := m.agents[id]
	if a == nil || a.recovered {
		return nil, httpErr(http.StatusNotFound, "No agent found with ID '%s'", id)
	}
	return a, nil
}

// setAgentTotalLocked installs an agent's new total: the allocator, the
// registry (its reservations) and the next allocation follow. m.mu must
// be held.
func (m *Master) setAgentTotalLocked(a *agent, total resources.Resources) {
	a.total = total
	m.alloc.UpdateAgent(a.id, total)
	m.persist(store.PutAgent{Agent: agentRecord(a)})
	m.triggerAllocation()
}

// settingWeights is the registry key of the role weights.
const settingWeights = "weights"

// weightsLocked are the role weights in force: --weights, replaced by
// UPDATE_WEIGHTS (kept in the registry). m.mu must be held.
func (m *Master) weightsLocked() map[string]float64 {
	if m.weights == nil {
		return m.cfg.Weights
	}
	return m.weights
}

// getWeightsLocked is GET_WEIGHTS, sorted by role.
func (m *Master) getWeightsLocked() *masterpb.Response_GetWeights {
	w := m.weightsLocked()
	out := &masterpb.Response_GetWeights{}
	for _, role := range slices.Sorted(maps.Keys(w)) {
		out.WeightInfos = append(out.WeightInfos, &mesos.WeightInfo{Role: proto.String(role), Weight: proto.Float64(w[role])})
	}
	return out
}

// updateWeights is UPDATE_WEIGHTS: the roles named get their weight (> 0),
// the others keep theirs. Allocation follows on its next cycle.
func (m *Master) updateWeights(r *http.Request, u *masterpb.Call_UpdateWeights) error {
	if len(u.GetWeightInfos()) == 0 {
		return httpErr(http.StatusBadRequest, "Expecting 'weight_infos' to be present")
	}
	for _, wi := range u.GetWeightInfos() {
		if err := resources.ValidateRole(wi.GetRole()); err != nil || wi.GetRole() == resources.Unreserved {
			return httpErr(http.StatusBadRequest, "Invalid role '%s' in 'weight_infos'", wi.GetRole())
		}
		if err := m.cfg.ACLs.Check("update_weights", operatorPrincipal(r), wi.GetRole()); err != nil {
			return err
		}
		if w := wi.GetWeight(); !(w > 0) || w > 1e9 {
			return httpErr(http.StatusBadRequest, "Invalid weight %v for role '%s': must be a positive number", w, wi.GetRole())
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading {
		return httpErr(http.StatusServiceUnavailable, "Not the leading master")
	}
	next := maps.Clone(m.weightsLocked())
	if next == nil {
		next = map[string]float64{}
	}
	for _, wi := range u.GetWeightInfos() {
		next[wi.GetRole()] = wi.GetWeight()
	}
	data, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("encode weights: %w", err)
	}
	m.weights = next
	m.alloc.SetWeights(next)
	m.persist(store.PutSetting{Key: settingWeights, Value: data})
	m.log.Info("role weights updated", "weights", next, "principal", operatorPrincipal(r))
	m.triggerAllocation()
	return nil
}

// installSettingsLocked applies the settings of a registry snapshot. A
// setting that does not decode is logged and ignored: the flags' value
// stands. m.mu must be held.
func (m *Master) installSettingsLocked(settings map[string][]byte) {
	if data, ok := settings[settingWeights]; ok {
		var w map[string]float64
		if err := json.Unmarshal(data, &w); err != nil {
			m.log.Error("registry holds role weights this master cannot read; using --weights", "error", err)
		} else {
			m.weights = w
			m.alloc.SetWeights(w)
		}
	}
	if data, ok := settings[settingQuota]; ok {
		m.installQuotaLocked(data)
	}
	if data, ok := settings[settingMaintenance]; ok {
		m.installMaintenanceLocked(data)
	}

}

// weightsCall reads the body of PUT /master/weights, a JSON array of
// WeightInfo (Mesos's endpoint form of UPDATE_WEIGHTS), into the call.
func weightsCall(body []byte) (*masterpb.Call, error) {
	var infos []json.RawMessage
	if err := json.Unmarshal(body, &infos); err != nil {
		return nil, errdefs.Statusf(http.StatusBadRequest, "Expecting a JSON array of weight infos: %v", err)
	}
	call := &masterpb.Call{Type: masterpb.Call_UPDATE_WEIGHTS.Enum(), UpdateWeights: &masterpb.Call_UpdateWeights{}}
	for _, raw := range infos {
		wi := &mesos.WeightInfo{}
		if err := codec.JSON.Unmarshal(raw, wi); err != nil {
			return nil, errdefs.Statusf(http.StatusBadRequest, "Invalid weight info: %v", err)
		}
		call.UpdateWeights.WeightInfos = append(call.UpdateWeights.WeightInfos, wi)
	}
	return call, nil
}
