package allocator

import (
	"cmp"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/mesolite/mesolite/resources"
)

// Options configure an Allocator. The zero value is usable.
type Options struct {
	// Now is the clock for offer filters; time.Now when nil.
	Now func() time.Time
	// Rand orders agents in each cycle; a randomly seeded source when nil.
	// Tests pass a seeded one for repeatable cycles.
	Rand *rand.Rand
	// Weights of roles; a role not listed weighs 1.
	Weights map[string]float64
}

// Framework describes a framework to the allocator.
type Framework struct {
	// Roles the framework is subscribed with (one unless MULTI_ROLE).
	Roles []string
	// GPU is true for frameworks with the GPU_RESOURCES capability.
	GPU bool
	// Suppressed roles get no offers until revived.
	Suppressed []string
	// Active frameworks are offered resources; a disconnected one is not.
	Active bool
}

// Allocation grants Resources on an agent to a framework in a role; the
// master turns each into one offer.
type Allocation struct {
	FrameworkID string
	AgentID     string
	Role        string
	Resources   resources.Resources
}

// Minimum allocatable resources, as Mesos's default
// --min_allocatable_resources=cpus:0.01|mem:32: offering a few ports or a
// crumb of cpu is noise to every scheduler.
const (
	minCPUsMilli = 10     // 0.01 cpus
	minMemMilli  = 32_000 // 32 MB
)

type agentState struct {
	id        string
	total     resources.Resources
	available resources.Resources
	hasGPU    bool
	active    bool
	// filters holds the offer filters on this agent, indexed by client
	// slot: the hot loop asks "is this framework filtered here" for every
	// agent and framework, and an index is far cheaper than a map.
	filters []*filter
}

type filter struct {
	res     resources.Resources
	q       resources.Quantities
	expires time.Time
}

// covers reports whether the filter refuses offerable (with quantities q):
// whether offerable is within the declined resources. The cheap tests come
// first: more of some scalar is never covered, and the very same slice
// (the declined offer, recovered whole and unchanged since) always is.
func (f *filter) covers(offerable resources.Resources, q resources.Quantities) bool {
	for i := range q {
		if q[i] > f.q[i] {
			return false
		}
	}
	if len(offerable) == len(f.res) && len(offerable) > 0 && &offerable[0] == &f.res[0] {
		return true
	}
	return f.res.Contains(offerable)
}

// client is a framework within one role: DRF sorts these.
type client struct {
	fw         *frameworkState
	role       *roleState
	alloc      resources.Quantities
	share      float64
	grants     uint64 // breaks ties, as Mesos's sorter counts allocations
	suppressed bool
	enrolled   bool          // false once the framework left the role; kept while it holds resources
	slot       int           // index into agentState.filters
	filtered   []*agentState // agents that may hold a filter of this client
}

type frameworkState struct {
	id      string
	gpu     bool
	active  bool
	clients map[string]*client
}

type roleState struct {
	name    string
	weight  float64
	clients []*client // sorted by share
	alloc   resources.Quantities
	share   float64
	quota   Quota
}

// Quota is a role's quota (UPDATE_QUOTA): Guarantees are allocated to it
// before roles without unmet guarantees are served; Limits are never
// exceeded by what it holds and is offered. Only the quantities a field
// names count (Has*).
type Quota struct {
	Guarantees, Limits     resources.Quantities
	HasGuarantee, HasLimit [4]bool
}

// unmet says whether the role holds less than a guarantee.
func (r *roleState) unmet() bool {
	for i, has := range r.quota.HasGuarantee {
		if has && r.alloc[i] < r.quota.Guarantees[i] {
			return true
		}
	}
	return false
}

// limited says whether the role has any limit.
func (r *roleState) limited() bool {
	for _, has := range r.quota.HasLimit {
		if has {
			return true
		}
	}
	return false
}

// Allocator is a hierarchical DRF allocator. See the package comment.
type Allocator struct {
	now     func() time.Time
	rng     *rand.Rand
	weights map[string]float64
	quotas  map[string]Quota

	agents     map[string]*agentState
	agentList  []*agentState
	frameworks map[string]*frameworkState
	roles      map[string]*roleState
	roleList   []*roleState // sorted by weighted share
	total      resources.Quantities

	nextSlot  int
	freeSlots []int

	// scratch space reused by Cycle
	order     []*agentState
	roleOrder []*roleState
}

// New returns an empty allocator.
func New(opts Options) *Allocator {
	a := &Allocator{
		now:        opts.Now,
		rng:        opts.Rand,
		weights:    opts.Weights,
		agents:     make(map[string]*agentState),
		frameworks: make(map[string]*frameworkState),
		roles:      make(map[string]*roleState),
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.rng == nil {
		a.rng = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return a
}

// AddFramework adds a framework, or updates it if it is known.
func (a *Allocator) AddFramework(id string, f Framework) {
	fw := a.frameworks[id]
	if fw == nil {
		fw = &frameworkState{id: id, clients: make(map[string]*client)}
		a.frameworks[id] = fw
	}
	fw.gpu = f.GPU
	fw.active = f.Active
	for _, c := range fw.clients {
		c.enrolled = false
	}
	for _, r := range f.Roles {
		c := fw.clients[r]
		if c == nil {
			c = &client{fw: fw, role: a.role(r), slot: a.newSlot()}
			fw.clients[r] = c
			c.role.clients = append(c.role.clients, c)
		}
		c.enrolled = true
		c.suppressed = slices.Contains(f.Suppressed, r)
	}
	for r, c := range fw.clients {
		if !c.enrolled && c.alloc == (resources.Quantities{}) {
			a.dropClient(c)
			delete(fw.clients, r)
		}
	}
}

// RemoveFramework forgets a framework. The master recovers its offers and
// tasks first; whatever it still held is written off.
func (a *Allocator) RemoveFramework(id string) {
	fw := a.frameworks[id]
	if fw == nil {
		return
	}
	for _, c := range fw.clients {
		c.role.alloc = c.role.alloc.Sub(c.alloc)
		a.dropClient(c)
	}
	delete(a.frameworks, id)
}

// SetFrameworkActive starts or stops offers to a framework, as it connects
// and disconnects.
func (a *Allocator) SetFrameworkActive(id string, active bool) {
	if fw := a.frameworks[id]; fw != nil {
		fw.active = active
	}
}

// Suppress stops offers to the framework for roles (all of its roles when
// empty) until Revive.
func (a *Allocator) Suppress(id string, roles []string) {
	a.forClients(id, roles, func(c *client) { c.suppressed = true })
}

// Revive resumes offers for roles (all of the framework's roles when empty)
// and drops the framework's offer filters in them.
func (a *Allocator) Revive(id string, roles []string) {
	a.forClients(id, roles, func(c *client) {
		c.suppressed = false
		a.clearFilters(c)
	})
}

func (a *Allocator) forClients(id string, roles []string, f func(*client)) {
	fw := a.frameworks[id]
	if fw == nil {
		return
	}
	for r, c := range fw.clients {
		if c.enrolled && (len(roles) == 0 || slices.Contains(roles, r)) {
			f(c)
		}
	}
}

// AddAgent adds an agent with its total resources, all of them free. Tasks
// it already runs are then recorded with Use.
func (a *Allocator) AddAgent(id string, total resources.Resources, active bool) {
	if ag := a.agents[id]; ag != nil {
		a.RemoveAgent(id)
	}
	ag := &agentState{id: id, total: total, available: total, active: active, hasGPU: total.Scalar(resources.GPUs) > 0}
	a.agents[id] = ag
	a.agentList = append(a.agentList, ag)
	a.total = a.total.Add(total.Quantities())
}

// UpdateAgent replaces an agent's total; what is in use stays in use.
func (a *Allocator) UpdateAgent(id string, total resources.Resources) {
	ag := a.agents[id]
	if ag == nil {
		return
	}
	used := ag.total.Subtract(ag.available)
	a.total = a.total.Sub(ag.total.Quantities()).Add(total.Quantities())
	ag.total = total
	ag.available = total.Subtract(used)
	ag.hasGPU = total.Scalar(resources.GPUs) > 0
}

// RemoveAgent forgets an agent.
func (a *Allocator) RemoveAgent(id string) {
	ag := a.agents[id]
	if ag == nil {
		return
	}
	a.total = a.total.Sub(ag.total.Quantities())
	delete(a.agents, id)
	a.agentList = slices.DeleteFunc(a.agentList, func(x *agentState) bool { return x == ag })
	ag.filters = nil
}

// SetAgentActive starts or stops offers of an agent's resources, as it
// connects and disconnects.
func (a *Allocator) SetAgentActive(id string, active bool) {
	if ag := a.agents[id]; ag != nil {
		ag.active = active
	}
}

// Use records resources on an agent as allocated to a framework in a role
// without offering them: tasks an agent reports when it re-registers.
func (a *Allocator) Use(frameworkID, agentID, role string, r resources.Resources) {
	if ag := a.agents[agentID]; ag != nil {
		ag.available = ag.available.Subtract(r)
	}
	if c := a.clientFor(frameworkID, role); c != nil {
		c.alloc = c.alloc.Add(r.Quantities())
		c.role.alloc = c.role.alloc.Add(r.Quantities())
	}
}

// Recover returns resources to an agent's free pool: a declined or
// rescinded offer, the unused part of an accepted one, a finished task. With
// refuse > 0 the framework is not offered these resources (or less) on this
// agent again until refuse has passed.
func (a *Allocator) Recover(frameworkID, agentID, role string, r resources.Resources, refuse time.Duration) {
	ag := a.agents[agentID]
	if ag != nil {
		ag.available = ag.available.Add(r)
		// Never more than the total: a double recovery must not mint resources.
		if !ag.total.Contains(ag.available) {
			ag.available = ag.total.Subtract(ag.total.Subtract(ag.available))
		}
	}
	fw := a.frameworks[frameworkID]
	if fw == nil {
		return
	}
	c := fw.clients[role]
	if c == nil {
		return
	}
	q := r.Quantities()
	c.alloc = c.alloc.Sub(q)
	c.role.alloc = c.role.alloc.Sub(q)
	if refuse > 0 && ag != nil && !r.IsEmpty() {
		a.setFilter(c, ag, &filter{res: r, q: q, expires: a.now().Add(refuse)})
	}
	if !c.enrolled && c.alloc == (resources.Quantities{}) {
		a.dropClient(c)
		delete(fw.clients, role)
	}
}

// Available returns an agent's free resources.
func (a *Allocator) Available(agentID string) resources.Resources {
	if ag := a.agents[agentID]; ag != nil {
		return ag.available
	}
	return nil
}

// Share returns a framework's dominant share in role, for state endpoints.
func (a *Allocator) Share(frameworkID, role string) float64 {
	if c := a.clientFor(frameworkID, role); c != nil {
		return a.shareOf(c.alloc)
	}
	return 0
}

func (a *Allocator) clientFor(frameworkID, role string) *client {
	if fw := a.frameworks[frameworkID]; fw != nil {
		return fw.clients[role]
	}
	return nil
}

// SetQuota sets a role's quota; the zero Quota removes it. It holds
// whether or not the role has frameworks now.
func (a *Allocator) SetQuota(role string, q Quota) {
	if a.quotas == nil {
		a.quotas = map[string]Quota{}
	}
	if q == (Quota{}) {
		delete(a.quotas, role)
	} else {
		a.quotas[role] = q
	}
	if r := a.roles[role]; r != nil {
		r.quota = q
	}
}

// QuotaOf returns a role's quota and what it holds, for metrics.
func (a *Allocator) QuotaOf(role string) (Quota, resources.Quantities) {
	if r := a.roles[role]; r != nil {
		return r.quota, r.alloc
	}
	return Quota{}, resources.Quantities{}
}

// SetWeights replaces the role weights (UPDATE_WEIGHTS): a role not listed
// weighs 1. Shares are recomputed on the next Cycle.
func (a *Allocator) SetWeights(weights map[string]float64) {
	a.weights = maps.Clone(weights)
	for name, r := range a.roles {
		r.weight = 1
		if v, ok := a.weights[name]; ok && v > 0 {
			r.weight = v
		}
	}
}

func (a *Allocator) role(name string) *roleState {
	r := a.roles[name]
	if r == nil {
		w := 1.0
		if v, ok := a.weights[name]; ok && v > 0 {
			w = v
		}
		r = &roleState{name: name, weight: w, quota: a.quotas[name]}
		a.roles[name] = r
		a.roleList = append(a.roleList, r)
	}
	return r
}

func (a *Allocator) dropClient(c *client) {
	a.clearFilters(c)
	a.freeSlots = append(a.freeSlots, c.slot)
	r := c.role
	r.clients = slices.DeleteFunc(r.clients, func(x *client) bool { return x == c })
	if len(r.clients) == 0 {
		delete(a.roles, r.name)
		a.roleList = slices.DeleteFunc(a.roleList, func(x *roleState) bool { return x == r })
	}
}

// shareOf is the dominant share of q: its largest fraction of the cluster.
func (a *Allocator) shareOf(q resources.Quantities) float64 {
	var s float64
	for i := range q {
		if a.total[i] > 0 {
			s = max(s, float64(q[i])/float64(a.total[i]))
		}
	}
	return s
}

func clientLess(x, y *client) int {
	if c := cmp.Compare(x.share, y.share); c != 0 {
		return c
	}
	if c := cmp.Compare(x.grants, y.grants); c != 0 {
		return c
	}
	return strings.Compare(x.fw.id, y.fw.id)
}

func roleLess(x, y *roleState) int {
	// Roles below a quota guarantee are served first, as Mesos's first
	// allocation stage serves them.
	if ux, uy := x.unmet(), y.unmet(); ux != uy {
		if ux {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(x.share, y.share); c != 0 {
		return c
	}
	return strings.Compare(x.name, y.name)
}

// Cycle runs one allocation cycle and returns the grants, at most one per
// agent and role. The granted resources count as allocated until the master
// recovers them.
func (a *Allocator) Cycle() []Allocation {
	now := a.now()
	// The cluster total moves as agents come and go, so every share is
	// recomputed once per cycle; within the cycle they are kept current
	// incrementally.
	for _, r := range a.roleList {
		for _, c := range r.clients {
			c.share = a.shareOf(c.alloc)
		}
		slices.SortFunc(r.clients, clientLess)
		r.share = a.shareOf(r.alloc) / r.weight
	}
	slices.SortFunc(a.roleList, roleLess)

	a.order = a.order[:0]
	for _, ag := range a.agentList {
		if ag.active && !ag.available.IsEmpty() {
			a.order = append(a.order, ag)
		}
	}
	a.rng.Shuffle(len(a.order), func(i, j int) { a.order[i], a.order[j] = a.order[j], a.order[i] })

	var out []Allocation
	for _, ag := range a.order {
		// The role order for this agent is fixed when it starts, as in
		// Mesos; grants reorder roleList for the next agent.
		a.roleOrder = append(a.roleOrder[:0], a.roleList...)
		for _, r := range a.roleOrder {
			if ag.available.IsEmpty() {
				break
			}
			offerable := ag.available.AllocatableTo(r.name)
			if r.limited() {
				offerable = offerable.CapQuantities(r.quota.Limits.Sub(r.alloc), r.quota.HasLimit)
			}
			if offerable.IsEmpty() {
				continue
			}
			q := offerable.Quantities()
			if q[resources.QCPUs] < minCPUsMilli && q[resources.QMem] < minMemMilli {
				continue
			}
			for i, c := range r.clients {
				if !a.eligible(c, ag, offerable, q, now) {
					continue
				}
				out = append(out, Allocation{FrameworkID: c.fw.id, AgentID: ag.id, Role: r.name, Resources: offerable})
				if offerable.Equal(ag.available) {
					ag.available = nil
				} else {
					ag.available = ag.available.Subtract(offerable)
				}
				c.alloc = c.alloc.Add(q)
				c.grants++
				c.share = a.shareOf(c.alloc)
				// Move the client right to its new place.
				for j := i; j+1 < len(r.clients) && clientLess(r.clients[j+1], c) < 0; j++ {
					r.clients[j], r.clients[j+1] = r.clients[j+1], r.clients[j]
				}
				r.alloc = r.alloc.Add(q)
				r.share = a.shareOf(r.alloc) / r.weight
				a.repositionRole(r)
				break
			}
		}
	}
	return out
}

func (a *Allocator) repositionRole(r *roleState) {
	i := slices.Index(a.roleList, r)
	for ; i+1 < len(a.roleList) && roleLess(a.roleList[i+1], r) < 0; i++ {
		a.roleList[i], a.roleList[i+1] = a.roleList[i+1], a.roleList[i]
	}
}

func (a *Allocator) eligible(c *client, ag *agentState, offerable resources.Resources, q resources.Quantities, now time.Time) bool {
	if !c.enrolled || c.suppressed || !c.fw.active {
		return false
	}
	if ag.hasGPU && !c.fw.gpu {
		return false
	}
	if c.slot < len(ag.filters) {
		if f := ag.filters[c.slot]; f != nil {
			if now.Before(f.expires) {
				if f.covers(offerable, q) {
					return false
				}
			} else {
				ag.filters[c.slot] = nil
			}
		}
	}
	return true
}

// newSlot hands out the lowest free client slot.
func (a *Allocator) newSlot() int {
	if n := len(a.freeSlots); n > 0 {
		s := a.freeSlots[n-1]
		a.freeSlots = a.freeSlots[:n-1]
		return s
	}
	a.nextSlot++
	return a.nextSlot - 1
}

func (a *Allocator) setFilter(c *client, ag *agentState, f *filter) {
	if c.slot >= len(ag.filters) {
		ag.filters = append(ag.filters, make([]*filter, c.slot+1-len(ag.filters))...)
	}
	if ag.filters[c.slot] == nil {
		c.filtered = append(c.filtered, ag)
		// Expired filters vanish lazily, so the list can hold agents
		// twice; keep it in proportion to the cluster.
		if len(c.filtered) > 2*len(a.agentList)+16 {
			seen := make(map[*agentState]bool, len(c.filtered))
			kept := c.filtered[:0]
			for _, x := range c.filtered {
				if c.slot < len(x.filters) && x.filters[c.slot] != nil && !seen[x] {
					seen[x] = true
					kept = append(kept, x)
				}
			}
			c.filtered = kept
		}
	}
	ag.filters[c.slot] = f
}

func (a *Allocator) clearFilters(c *client) {
	for _, ag := range c.filtered {
		if c.slot < len(ag.filters) {
			ag.filters[c.slot] = nil
		}
	}
	c.filtered = nil
}
