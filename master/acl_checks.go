package master

import (
	"fmt"
	"net/http"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
)

// The --acls a framework's own calls pass: register_frameworks (which
// roles a principal may subscribe with, checked at SUBSCRIBE and
// UPDATE_FRAMEWORK) and run_tasks (which users a principal's tasks and
// executors may run as, checked for each launch). The subject is the
// framework's principal, as in Mesos; without --acls both allow all.

// infoRoles are the roles info subscribes with.
func infoRoles(info *mesos.FrameworkInfo) []string {
	for _, c := range info.GetCapabilities() {
		if c.GetType() == mesos.FrameworkInfo_Capability_MULTI_ROLE {
			return info.GetRoles()
		}
	}
	return []string{info.GetRole()}
}

// authorizeRoles checks register_frameworks for each role of info.
func (m *Master) authorizeRoles(principal string, info *mesos.FrameworkInfo) error {
	for _, role := range infoRoles(info) {
		if !m.cfg.ACLs.Allowed("register_frameworks", principal, role) {
			who := principal
			if who == "" {
				who = "a framework without a principal"
			}
			return errdefs.Classf(errdefs.ErrForbidden, "Not authorized: %s may not subscribe with role '%s' (--acls register_frameworks)", who, role)
		}
	}
	return nil
}

// launchUsers are the users a task runs as: its command's user (or the
// framework's), and its executor's.
func launchUsers(fw *framework, ti *mesos.TaskInfo, exec *mesos.ExecutorInfo) []string {
	user := func(c *mesos.CommandInfo) string {
		if c.GetUser() != "" {
			return c.GetUser()
		}
		return fw.info.GetUser()
	}
	var out []string
	if ti.GetCommand() != nil || exec == nil {
		out = append(out, user(ti.GetCommand()))
	}
	if exec != nil {
		out = append(out, user(exec.GetCommand()))
	}
	return out
}

// authorizeLaunch checks run_tasks for the users ti and its executor
// (exec, or ti's own) would run as. The error is the status message.
func (m *Master) authorizeLaunch(fw *framework, ti *mesos.TaskInfo, exec *mesos.ExecutorInfo) error {
	if m.cfg.ACLs == nil {
		return nil
	}
	if exec == nil {
		exec = ti.GetExecutor()
	}
	for _, u := range launchUsers(fw, ti, exec) {
		if !m.cfg.ACLs.Allowed("run_tasks", fw.principal, u) {
			return fmt.Errorf("Task is not authorized to launch: principal '%s' may not run tasks as user '%s' (--acls run_tasks)", fw.principal, u)
		}
	}
	return nil
}

// The operator calls on machines and agents: an ACL's "machines" are
// machine hostnames (or IPs, for a machine known only by one), its
// "agents" agent ids.

// machineObject is what a "machines" entity matches for k.
func machineObject(k machineKey) string {
	if k.hostname != "" {
		return k.hostname
	}
	return k.ip
}

// authorizeMachines checks action for every machine of ids: all of them
// or the call is refused, as Mesos does.
func (m *Master) authorizeMachines(r *http.Request, action string, ids []*mesos.MachineID) error {
	for _, id := range ids {
		if err := m.cfg.ACLs.Check(action, operatorPrincipal(r), machineObject(keyOf(id))); err != nil {
			return err
		}
	}
	return nil
}

// sees says whether v may see machine k under action; nil sees all.
func (v *viewer) sees(action string, k machineKey) bool {
	return v == nil || v.m.cfg.ACLs.Allowed(action, v.principal, machineObject(k))
}

// seesRole says whether v may see role's quota; nil sees all.
func (v *viewer) seesRole(role string) bool {
	return v == nil || v.m.cfg.ACLs.Allowed("get_quotas", v.principal, role)
}
