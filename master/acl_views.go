package master

import (
	"net/http"

	masterpb "github.com/mesolite/mesolite/api/v1/master"
	"github.com/mesolite/mesolite/api/v1/mesos"
)

// What a caller may see under --acls: view_frameworks hides frameworks
// (by the user they run as), view_tasks and view_executors hide their
// tasks and executors. Without --acls everything is shown. The books are
// built whole, then filtered for the caller, so every endpoint and call
// applies the same rule.

// viewer is what one request may see.
type viewer struct {
	m         *Master
	principal string
}

func (m *Master) viewerOf(r *http.Request) *viewer {
	if m.cfg.ACLs == nil {
		return nil
	}
	return &viewer{m: m, principal: operatorPrincipal(r)}
}

func (v *viewer) framework(user string) bool {
	return v == nil || v.m.cfg.ACLs.Allowed("view_frameworks", v.principal, user)
}

func (v *viewer) tasks(user string) bool {
	return v == nil || v.m.cfg.ACLs.Allowed("view_tasks", v.principal, user)
}

func (v *viewer) executors(user string) bool {
	return v == nil || v.m.cfg.ACLs.Allowed("view_executors", v.principal, user)
}

// filterFrameworksJSON drops the frameworks v may not see and empties the
// task and executor lists of those whose tasks or executors it may not.
func (v *viewer) filterFrameworksJSON(list []any) []any {
	if v == nil {
		return list
	}
	out := make([]any, 0, len(list))
	for _, x := range list {
		fw, ok := x.(map[string]any)
		if !ok {
			continue
		}
		user, _ := fw["user"].(string)
		if !v.framework(user) {
			continue
		}
		if !v.tasks(user) {
			for _, k := range []string{"tasks", "completed_tasks", "unreachable_tasks"} {
				if _, ok := fw[k]; ok {
					fw[k] = []any{}
				}
			}
		}
		if !v.executors(user) {
			if _, ok := fw["executors"]; ok {
				fw["executors"] = []any{}
			}
		}
		out = append(out, fw)
	}
	return out
}

// filterStateJSON applies filterFrameworksJSON to a /master/state-like
// object.
func (v *viewer) filterStateJSON(st map[string]any) {
	if v == nil {
		return
	}
	for _, k := range []string{"frameworks", "completed_frameworks"} {
		if list, ok := st[k].([]any); ok {
			st[k] = v.filterFrameworksJSON(list)
		}
	}
}

// taskUsersLocked maps framework ids to the users their tasks run as, for
// filtering lists of tasks. m.mu must be held.
func (m *Master) frameworkUsersLocked() map[string]string {
	users := make(map[string]string, len(m.frameworks))
	for id, fw := range m.frameworks {
		users[id] = fw.info.GetUser()
	}
	for _, fw := range m.completed {
		users[fw.id] = fw.info.GetUser()
	}
	return users
}

// filterResponse filters an operator API answer for v. users maps
// framework ids to their users.
func (v *viewer) filterResponse(resp *masterpb.Response, users map[string]string) {
	if v == nil || resp == nil {
		return
	}
	fws := func(f *masterpb.Response_GetFrameworks) {
		if f == nil {
			return
		}
		keep := func(list []*masterpb.Response_GetFrameworks_Framework) []*masterpb.Response_GetFrameworks_Framework {
			out := list[:0]
			for _, x := range list {
				if v.framework(x.GetFrameworkInfo().GetUser()) {
					out = append(out, x)
				}
			}
			return out
		}
		f.Frameworks, f.CompletedFrameworks = keep(f.Frameworks), keep(f.CompletedFrameworks)
	}
	tasks := func(t *masterpb.Response_GetTasks) {
		if t == nil {
			return
		}
		keep := func(list []*mesos.Task) []*mesos.Task {
			out := list[:0]
			for _, x := range list {
				u := users[x.GetFrameworkId().GetValue()]
				if v.framework(u) && v.tasks(u) {
					out = append(out, x)
				}
			}
			return out
		}
		t.PendingTasks, t.Tasks, t.UnreachableTasks, t.CompletedTasks = keep(t.PendingTasks), keep(t.Tasks), keep(t.UnreachableTasks), keep(t.CompletedTasks)
	}
	execs := func(e *masterpb.Response_GetExecutors) {
		if e == nil {
			return
		}
		out := e.Executors[:0]
		for _, x := range e.Executors {
			u := users[x.GetExecutorInfo().GetFrameworkId().GetValue()]
			if v.framework(u) && v.executors(u) {
				out = append(out, x)
			}
		}
		e.Executors = out
	}
	fws(resp.GetFrameworks)
	tasks(resp.GetTasks)
	execs(resp.GetExecutors)
	if st := resp.GetState; st != nil {
		fws(st.GetFrameworks)
		tasks(st.GetTasks)
		execs(st.GetExecutors)
	}
}
