package master

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"

	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/quota"
	"github.com/mesolite/mesolite/master/allocator"
	"github.com/mesolite/mesolite/master/store"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

// Quota (GET_QUOTA, UPDATE_QUOTA, and the older SET_QUOTA and
// REMOVE_QUOTA): per role, guarantees served before other roles and limits
// never exceeded, as Mesos 1.9+ has them. Kept in the registry.

// settingQuota is the registry key of the quota configs.
const settingQuota = "quota"

// quotaConfig is one role's quota as the registry keeps it.
type quotaConfig struct {
	Role       string             `json:"role"`
	Guarantees map[string]float64 `json:"guarantees,omitempty"`
	Limits     map[string]float64 `json:"limits,omitempty"`
	Principal  string             `json:"principal,omitempty"`
}

func (q quotaConfig) allocator() allocator.Quota {
	var unsetG, unsetL [4]bool
	out := allocator.Quota{Guarantees: resources.QuantitiesOf(q.Guarantees, &unsetG), Limits: resources.QuantitiesOf(q.Limits, &unsetL)}
	for i := range unsetG {
		out.HasGuarantee[i], out.HasLimit[i] = !unsetG[i], !unsetL[i]
	}
	return out
}

func (q quotaConfig) proto() *quota.QuotaConfig {
	scalars := func(m map[string]float64) map[string]*mesos.Value_Scalar {
		if len(m) == 0 {
			return nil
		}
		out := map[string]*mesos.Value_Scalar{}
		for k, v := range m {
			out[k] = &mesos.Value_Scalar{Value: proto.Float64(v)}
		}
		return out
	}
	return &quota.QuotaConfig{Role: proto.String(q.Role), Guarantees: scalars(q.Guarantees), Limits: scalars(q.Limits)}
}

// validQuotaResource is a resource a quota may name: the scalars DRF
// counts.
func validQuotaResource(name string) bool {
	return slices.Contains(resources.QuantityNames[:], name)
}

// quotaFromProto checks a QuotaConfig: a role other than "*", known scalar
// resources with finite non-negative amounts, guarantees within limits.
func quotaFromProto(c *quota.QuotaConfig) (quotaConfig, error) {
	q := quotaConfig{Role: c.GetRole(), Guarantees: map[string]float64{}, Limits: map[string]float64{}}
	if err := resources.ValidateRole(q.Role); err != nil || q.Role == resources.Unreserved {
		return q, httpErr(http.StatusBadRequest, "Invalid quota role '%s'", q.Role)
	}
	read := func(field string, in map[string]*mesos.Value_Scalar, out map[string]float64) error {
		for name, v := range in {
			if !validQuotaResource(name) {
				return httpErr(http.StatusBadRequest, "Quota of role '%s': '%s' names '%s'; quota covers cpus, mem, disk and gpus", q.Role, field, name)
			}
			f := v.GetValue()
			if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 {
				return httpErr(http.StatusBadRequest, "Quota of role '%s': %s of %s must be a finite non-negative number", q.Role, field, name)
			}
			out[name] = f
		}
		return nil
	}
	if err := read("guarantees", c.GetGuarantees(), q.Guarantees); err != nil {
		return q, err
	}
	if err := read("limits", c.GetLimits(), q.Limits); err != nil {
		return q, err
	}
	for name, g := range q.Guarantees {
		if l, ok := q.Limits[name]; ok && g > l {
			return q, httpErr(http.StatusBadRequest, "Quota of role '%s': the guarantee of %v %s is above its limit of %v", q.Role, g, name, l)
		}
	}
	return q, nil
}

// quotasLocked are the quota configs by role. m.mu must be held.
func (m *Master) quotasLocked() map[string]quotaConfig {
	if m.quotas == nil {
		m.quotas = map[string]quotaConfig{}
	}
	return m.quotas
}

// getQuotaLocked is GET_QUOTA: the configs, and the guarantees again in
// the deprecated `infos` for older clients.
//
// Under --acls, v sees the roles get_quotas lets it.
func (m *Master) getQuotaLocked(v *viewer) *masterpb.Response_GetQuota {
	st := &quota.QuotaStatus{}
	qs := m.quotasLocked()
	for _, role := range slices.Sorted(maps.Keys(qs)) {
		if !v.seesRole(role) {
			continue
		}
		q := qs[role]
		st.Configs = append(st.Configs, q.proto())
		info := &quota.QuotaInfo{Role: proto.String(role)}
		if q.Principal != "" {
			info.Principal = proto.String(q.Principal)
		}
		for _, name := range slices.Sorted(maps.Keys(q.Guarantees)) {
			info.Guarantee = append(info.Guarantee, &mesos.Resource{Name: proto.String(name), Type: mesos.Value_SCALAR.Enum(),
				Scalar: &mesos.Value_Scalar{Value: proto.Float64(q.Guarantees[name])}})
		}
		st.Infos = append(st.Infos, info)
	}
	return &masterpb.Response_GetQuota{Status: st}
}

// updateQuota is UPDATE_QUOTA: each config replaces its role's quota; a
// config with neither guarantees nor limits removes it. Without force, the
// guarantees together must fit in the cluster's resources.
func (m *Master) updateQuota(r *http.Request, u *masterpb.Call_UpdateQuota) error {
	if len(u.GetQuotaConfigs()) == 0 {
		return httpErr(http.StatusBadRequest, "Expecting 'quota_configs' to be present")
	}
	var configs []quotaConfig
	seen := map[string]bool{}
	for _, c := range u.GetQuotaConfigs() {
		q, err := quotaFromProto(c)
		if err != nil {
			return err
		}
		if seen[q.Role] {
			return httpErr(http.StatusBadRequest, "Role '%s' appears twice in 'quota_configs'", q.Role)
		}
		seen[q.Role] = true
		if err := m.cfg.ACLs.Check("update_quotas", operatorPrincipal(r), q.Role); err != nil {
			return err
		}
		q.Principal = operatorPrincipal(r)
		configs = append(configs, q)
	}
	return m.applyQuotas(configs, u.GetForce())
}

// setQuotaLegacy is SET_QUOTA (deprecated): its guarantee becomes the
// role's guarantee and limit, as Mesos 1.9+ reads it.
func (m *Master) setQuotaLegacy(r *http.Request, s *masterpb.Call_SetQuota) error {
	req := s.GetQuotaRequest()
	c := &quota.QuotaConfig{Role: req.Role, Guarantees: map[string]*mesos.Value_Scalar{}, Limits: map[string]*mesos.Value_Scalar{}}
	for _, res := range req.GetGuarantee() {
		if res.GetType() != mesos.Value_SCALAR || len(res.GetReservations()) > 0 || res.Reservation != nil {
			return httpErr(http.StatusBadRequest, "Quota guarantee '%s' must be an unreserved scalar", res.GetName())
		}
		v := c.Guarantees[res.GetName()].GetValue() + res.GetScalar().GetValue()
		c.Guarantees[res.GetName()] = &mesos.Value_Scalar{Value: proto.Float64(v)}
		c.Limits[res.GetName()] = &mesos.Value_Scalar{Value: proto.Float64(v)}
	}
	if len(c.Guarantees) == 0 {
		return httpErr(http.StatusBadRequest, "Expecting 'quota_request.guarantee' to be present")
	}
	q, err := quotaFromProto(c)
	if err != nil {
		return err
	}
	if err := m.cfg.ACLs.Check("update_quotas", operatorPrincipal(r), q.Role); err != nil {
		return err
	}
	q.Principal = operatorPrincipal(r)
	return m.applyQuotas([]quotaConfig{q}, req.GetForce())
}

// removeQuota is REMOVE_QUOTA (deprecated).
func (m *Master) removeQuota(r *http.Request, role string) error {
	if err := m.cfg.ACLs.Check("update_quotas", operatorPrincipal(r), role); err != nil {
		return err
	}
	m.mu.Lock()
	_, ok := m.quotasLocked()[role]
	m.mu.Unlock()
	if !ok {
		return httpErr(http.StatusBadRequest, "Role '%s' has no quota", role)
	}
	return m.applyQuotas([]quotaConfig{{Role: role}}, true)
}

// applyQuotas installs configs: the allocator, the registry and the next
// allocation follow.
func (m *Master) applyQuotas(configs []quotaConfig, force bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.role != roleLeading {
		return httpErr(http.StatusServiceUnavailable, "Not the leading master")
	}
	next := maps.Clone(m.quotasLocked())
	for _, q := range configs {
		if len(q.Guarantees) == 0 && len(q.Limits) == 0 {
			delete(next, q.Role)
		} else {
			next[q.Role] = q
		}
	}
	if !force {
		var guaranteed, total resources.Quantities
		for _, q := range next {
			guaranteed = guaranteed.Add(resources.QuantitiesOf(q.Guarantees, nil))
		}
		for _, a := range m.agents {
			total = total.Add(a.total.Quantities())
		}
		for i, name := range resources.QuantityNames {
			if guaranteed[i] > total[i] {
				return httpErr(http.StatusBadRequest, "The quota guarantees ask for %v %s; the cluster has %v (use 'force' to set them anyway)",
					guaranteed.Get(i), name, total.Get(i))
			}
		}
	}
	list := make([]quotaConfig, 0, len(next))
	for _, role := range slices.Sorted(maps.Keys(next)) {
		list = append(list, next[role])
	}
	data, err := json.Marshal(list)
	if err != nil {
		return fmt.Errorf("encode quota: %w", err)
	}
	for role := range m.quotas {
		if _, ok := next[role]; !ok {
			m.alloc.SetQuota(role, allocator.Quota{})
		}
	}
	for role, q := range next {
		m.alloc.SetQuota(role, q.allocator())
	}
	m.quotas = next
	m.persist(store.PutSetting{Key: settingQuota, Value: data})
	m.log.Info("quota updated", "roles", slices.Sorted(maps.Keys(next)))
	m.triggerAllocation()
	return nil
}

// installQuotaLocked applies the registry's quota. m.mu must be held.
func (m *Master) installQuotaLocked(data []byte) {
	var list []quotaConfig
	if err := json.Unmarshal(data, &list); err != nil {
		m.log.Error("registry holds a quota this master cannot read; no quota", "error", err)
		return
	}
	m.quotas = map[string]quotaConfig{}
	for _, q := range list {
		m.quotas[q.Role] = q
		m.alloc.SetQuota(q.Role, q.allocator())
	}
}

// quotaMetricsLocked adds Mesos's quota metrics:
// allocator/mesos/quota/roles/<role>/resources/<name>/guarantee (and
// /limit, /offered_or_allocated). m.mu must be held.
func (m *Master) quotaMetricsLocked(s map[string]float64) {
	for role, q := range m.quotas {
		_, held := m.alloc.QuotaOf(role)
		for i, name := range resources.QuantityNames {
			prefix := "allocator/mesos/quota/roles/" + role + "/resources/" + name
			g, hasG := q.Guarantees[name]
			l, hasL := q.Limits[name]
			if !hasG && !hasL {
				continue
			}
			if hasG {
				s[prefix+"/guarantee"] = g
			}
			if hasL {
				s[prefix+"/limit"] = l
			}
			s[prefix+"/offered_or_allocated"] = held.Get(i)
		}
	}
}
