package master

import (
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/validate"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

// The master keeps what frameworks and agents send (FrameworkInfo for the
// framework's life and in the registry, TaskInfo parts and statuses for
// the state endpoints), so every free-text field has a cap: without them a
// handful of SUBSCRIBEs with 31 MB names grew a master to a gigabyte and
// its /master/state to 196 MB. The caps are validate's, shared with the
// agent, so a message one door refuses is refused at every door.

// maxFailoverTimeout is the longest failover_timeout a framework gets.
// Frameworks ask for "forever" with huge values (1e308 was seen); a year
// keeps such a framework for any practical purpose while every deadline
// stays a finite, comparable time.
const maxFailoverTimeout = 365 * 24 * time.Hour

// validateFrameworkText checks the size of every field of a FrameworkInfo
// the master stores. Errors wrap errdefs.ErrInvalid.
func validateFrameworkText(info *mesos.FrameworkInfo) error {
	for _, f := range []struct {
		kind string
		s    string
		max  int
	}{
		{"'FrameworkInfo.name'", info.GetName(), validate.MaxNameLen},
		{"'FrameworkInfo.user'", info.GetUser(), validate.MaxNameLen},
		{"'FrameworkInfo.principal'", info.GetPrincipal(), validate.MaxNameLen},
		{"'FrameworkInfo.hostname'", info.GetHostname(), validate.MaxNameLen},
		{"'FrameworkInfo.role'", info.GetRole(), validate.MaxNameLen},
		{"'FrameworkInfo.webui_url'", info.GetWebuiUrl(), validate.MaxMessageLen},
	} {
		if err := validate.Text(f.kind, f.s, f.max); err != nil {
			return err
		}
	}
	if n := len(info.GetRoles()); n > validate.MaxRoles {
		return fmt.Errorf("'FrameworkInfo.roles' has %d roles, more than the %d allowed: %w", n, validate.MaxRoles, errdefs.ErrInvalid)
	}
	for _, r := range info.GetRoles() {
		if err := validate.Text("a role in 'FrameworkInfo.roles'", r, validate.MaxNameLen); err != nil {
			return err
		}
	}
	if n := len(info.GetCapabilities()); n > validate.MaxCapabilities {
		return fmt.Errorf("'FrameworkInfo.capabilities' has %d entries, more than the %d allowed: %w", n, validate.MaxCapabilities, errdefs.ErrInvalid)
	}
	if err := validateLabels("'FrameworkInfo.labels'", info.GetLabels()); err != nil {
		return err
	}
	// Last, so that the error names a field when one is too long.
	if n := proto.Size(info); n > validate.MaxFrameworkInfoSize {
		return fmt.Errorf("FrameworkInfo is %d bytes encoded, more than the %d allowed: %w", n, validate.MaxFrameworkInfoSize, errdefs.ErrInvalid)
	}
	return nil
}

// clampFailoverTimeout refuses a failover_timeout that is not a number of
// seconds (NaN, infinite, negative) and caps a finite one at
// maxFailoverTimeout, in info itself, so what the master keeps, persists
// and shows is the value it applies. It reports whether it capped.
func clampFailoverTimeout(info *mesos.FrameworkInfo) (bool, error) {
	if info.FailoverTimeout == nil {
		return false, nil
	}
	ft := info.GetFailoverTimeout()
	if math.IsNaN(ft) || math.IsInf(ft, 0) || ft < 0 {
		return false, fmt.Errorf("Invalid 'FrameworkInfo.failover_timeout' %v: must be a non-negative number of seconds: %w", ft, errdefs.ErrInvalid)
	}
	if ft > maxFailoverTimeout.Seconds() {
		info.FailoverTimeout = proto.Float64(maxFailoverTimeout.Seconds())
		return true, nil
	}
	return false, nil
}

// safeWebURL reports whether a framework-supplied URL may become a link:
// absolute http or https only. Anything else (javascript:, data:, a
// relative path that would resolve against the master's own origin) is
// refused, because the master UI renders it as an href.
func safeWebURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
		return true
	}
	return false
}

func validateLabels(kind string, l *mesos.Labels) error {
	if n := len(l.GetLabels()); n > validate.MaxLabels {
		return fmt.Errorf("%s has %d labels, more than the %d allowed: %w", kind, n, validate.MaxLabels, errdefs.ErrInvalid)
	}
	for _, lb := range l.GetLabels() {
		if err := validate.Text(kind+" key", lb.GetKey(), validate.MaxLabelLen); err != nil {
			return err
		}
		if err := validate.Text(kind+" value", lb.GetValue(), validate.MaxLabelLen); err != nil {
			return err
		}
	}
	return nil
}

func validateCommand(kind string, c *mesos.CommandInfo) error {
	if c == nil {
		return nil
	}
	if err := validate.Text(kind+" 'value'", c.GetValue(), validate.MaxArgLen); err != nil {
		return err
	}
	if err := validate.Text(kind+" 'user'", c.GetUser(), validate.MaxNameLen); err != nil {
		return err
	}
	if n := len(c.GetArguments()); n > validate.MaxArgs {
		return fmt.Errorf("%s has %d arguments, more than the %d allowed: %w", kind, n, validate.MaxArgs, errdefs.ErrInvalid)
	}
	for _, a := range c.GetArguments() {
		if err := validate.Text(kind+" argument", a, validate.MaxArgLen); err != nil {
			return err
		}
	}
	if n := len(c.GetEnvironment().GetVariables()); n > validate.MaxEnvVars {
		return fmt.Errorf("%s has %d environment variables, more than the %d allowed: %w", kind, n, validate.MaxEnvVars, errdefs.ErrInvalid)
	}
	for _, v := range c.GetEnvironment().GetVariables() {
		if err := validate.Text(kind+" environment variable name", v.GetName(), validate.MaxNameLen); err != nil {
			return err
		}
		if err := validate.Text(kind+" environment variable value", v.GetValue(), validate.MaxArgLen); err != nil {
			return err
		}
	}
	if n := len(c.GetUris()); n > validate.MaxURIs {
		return fmt.Errorf("%s has %d URIs, more than the %d allowed: %w", kind, n, validate.MaxURIs, errdefs.ErrInvalid)
	}
	for _, u := range c.GetUris() {
		if err := validate.Text(kind+" URI", u.GetValue(), validate.MaxMessageLen); err != nil {
			return err
		}
	}
	return nil
}

// validateTaskText checks the sizes of what a TaskInfo carries: the master
// keeps its name and labels for the state endpoints and passes the rest to
// an agent, which must not be made to hold more than a task needs.
func validateTaskText(ti *mesos.TaskInfo) error {
	if err := validate.Text("Task 'name'", ti.GetName(), validate.MaxNameLen); err != nil {
		return err
	}
	if err := dataCap("Task 'data'", ti.GetData(), validate.MaxDataLen); err != nil {
		return err
	}
	if err := validateLabels("Task 'labels'", ti.GetLabels()); err != nil {
		return err
	}
	if err := validateCommand("Task 'command'", ti.GetCommand()); err != nil {
		return err
	}
	if err := validateExecutorText(ti.GetExecutor()); err != nil {
		return err
	}
	if n := proto.Size(ti); n > validate.MaxTaskInfoSize {
		return fmt.Errorf("TaskInfo is %d bytes encoded, more than the %d allowed: %w", n, validate.MaxTaskInfoSize, errdefs.ErrInvalid)
	}
	return nil
}

func validateExecutorText(e *mesos.ExecutorInfo) error {
	if e == nil {
		return nil
	}
	if err := validate.Text("Executor 'name'", e.GetName(), validate.MaxNameLen); err != nil {
		return err
	}
	if err := dataCap("Executor 'data'", e.GetData(), validate.MaxDataLen); err != nil {
		return err
	}
	if err := validateLabels("Executor 'labels'", e.GetLabels()); err != nil {
		return err
	}
	return validateCommand("Executor 'command'", e.GetCommand())
}

// validateStatusText checks a status update from an agent: the master keeps
// the last statuses of every task (without their data) for the state
// endpoints, and queues the update for a disconnected framework.
func validateStatusText(st *mesos.TaskStatus) error {
	if n := proto.Size(st); n > validate.MaxStatusSize {
		return fmt.Errorf("TaskStatus is %d bytes encoded, more than the %d allowed: %w", n, validate.MaxStatusSize, errdefs.ErrInvalid)
	}
	if err := validate.ID("Task ID", st.GetTaskId().GetValue()); err != nil {
		return err
	}
	if err := validate.Text("'status.message'", st.GetMessage(), validate.MaxMessageLen); err != nil {
		return err
	}
	if err := dataCap("'status.data'", st.GetData(), validate.MaxDataLen); err != nil {
		return err
	}
	return validateLabels("'status.labels'", st.GetLabels())
}

// dataCap is validate.Text for bytes, without copying them into a string.
func dataCap(kind string, b []byte, max int) error {
	if len(b) > max {
		return fmt.Errorf("%s is %d bytes, more than the %d allowed: %w", kind, len(b), max, errdefs.ErrInvalid)
	}
	return nil
}
