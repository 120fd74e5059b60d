// Package acls is Mesos's local authorizer: the --acls JSON that says which
// principals may do what to which objects, read by masters and agents.
//
// Each action has a list of rules; a rule has a subject (principals) and
// an object (roles, users, framework principals...), each an Entity:
// {"values": [...]}, {"type": "ANY"} or {"type": "NONE"}. The first rule
// whose subject and object both match the request decides: allowed, unless
// either entity of that rule is NONE. When no rule matches, "permissive"
// decides (true by default). A request without a principal matches only
// rules whose principals are ANY.
package acls

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/mesolite/mesolite/errdefs"
)

// Actions this project checks, by their --acls key, and the JSON field of
// each rule's object.
var objectField = map[string]string{
	"register_frameworks":               "roles",
	"run_tasks":                         "users",
	"teardown_frameworks":               "framework_principals",
	"reserve_resources":                 "roles",
	"unreserve_resources":               "reserver_principals",
	"update_quotas":                     "roles",
	"get_quotas":                        "roles",
	"update_weights":                    "roles",
	"view_frameworks":                   "users",
	"view_tasks":                        "users",
	"view_executors":                    "users",
	"access_sandboxes":                  "users",
	"access_mesos_logs":                 "logs",
	"get_maintenance_schedules":         "machines",
	"get_maintenance_statuses":          "machines",
	"update_maintenance_schedules":      "machines",
	"start_maintenances":                "machines",
	"stop_maintenances":                 "machines",
	"drain_agents":                      "agents",
	"mark_agents_gone":                  "agents",
	"launch_nested_containers_sessions": "users",
	"attach_containers_input":           "users",
	"attach_containers_output":          "users",
}

// Entity is a subject or object of a rule.
type Entity struct {
	Type   string   `json:"type,omitempty"` // ANY, NONE or "" (values)
	Values []string `json:"values,omitempty"`
}

func (e Entity) matches(v string, given bool) bool {
	switch e.Type {
	case "ANY", "NONE":
		return true
	}
	return given && slices.Contains(e.Values, v)
}

func (e Entity) denies() bool { return e.Type == "NONE" }

type rule struct {
	subject, object Entity
}

// ACLs is a parsed --acls. The zero value (and nil) allows everything.
type ACLs struct {
	permissive bool
	rules      map[string][]rule
}

// Parse reads --acls: JSON, or file:///path holding it. Unknown actions
// are refused by name, so a typo does not silently allow everything.
func Parse(s string) (*ACLs, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if path, ok := strings.CutPrefix(s, "file://"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--acls: %w: %w", err, errdefs.ErrInvalid)
		}
		s = string(b)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, fmt.Errorf("--acls: not a JSON object: %w: %w", err, errdefs.ErrInvalid)
	}
	a := &ACLs{permissive: true, rules: map[string][]rule{}}
	for key, v := range raw {
		if key == "permissive" {
			if err := json.Unmarshal(v, &a.permissive); err != nil {
				return nil, fmt.Errorf("--acls: 'permissive' must be true or false: %w", errdefs.ErrInvalid)
			}
			continue
		}
		field, ok := objectField[key]
		if !ok {
			return nil, fmt.Errorf("--acls: unknown action %q: %w", key, errdefs.ErrInvalid)
		}
		var list []map[string]json.RawMessage
		if err := json.Unmarshal(v, &list); err != nil {
			return nil, fmt.Errorf("--acls: %s must be a list of rules: %w", key, errdefs.ErrInvalid)
		}
		for i, r := range list {
			var sub, obj Entity
			if err := decodeEntity(r["principals"], &sub); err != nil {
				return nil, fmt.Errorf("--acls: %s[%d].principals: %w", key, i, err)
			}
			if err := decodeEntity(r[field], &obj); err != nil {
				return nil, fmt.Errorf("--acls: %s[%d].%s: %w", key, i, field, err)
			}
			a.rules[key] = append(a.rules[key], rule{subject: sub, object: obj})
		}
	}
	return a, nil
}

func decodeEntity(raw json.RawMessage, e *Entity) error {
	if len(raw) == 0 {
		// An entity left out is ANY, as in Mesos.
		e.Type = "ANY"
		return nil
	}
	if err := json.Unmarshal(raw, e); err != nil {
		return fmt.Errorf("not an entity: %w", errdefs.ErrInvalid)
	}
	switch e.Type {
	case "", "ANY", "NONE":
	default:
		return fmt.Errorf("type %q is not ANY or NONE: %w", e.Type, errdefs.ErrInvalid)
	}
	if e.Type == "" && e.Values == nil {
		return fmt.Errorf("an entity needs 'values' or a 'type': %w", errdefs.ErrInvalid)
	}
	return nil
}

// Allowed says whether principal (empty: the request did not authenticate)
// may do action to object.
func (a *ACLs) Allowed(action, principal, object string) bool {
	if a == nil {
		return true
	}
	for _, r := range a.rules[action] {
		if r.subject.matches(principal, principal != "") && r.object.matches(object, true) {
			return !r.subject.denies() && !r.object.denies()
		}
	}
	return a.permissive
}

// Check is Allowed as an error wrapping errdefs.ErrForbidden that names
// what was refused.
func (a *ACLs) Check(action, principal, object string) error {
	if a.Allowed(action, principal, object) {
		return nil
	}
	who := principal
	if who == "" {
		who = "an unauthenticated caller"
	}
	return errdefs.Classf(errdefs.ErrForbidden, "%s may not %s '%s' (--acls)", who, strings.ReplaceAll(action, "_", " "), object)
}
