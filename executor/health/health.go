// Package health runs a task's Mesos-native health check (TaskInfo.health_check)
// and general check (TaskInfo.check) for the built-in executors, as Mesos's
// checker library does for its executors:
//
//   - COMMAND checks run a command in the task's context (the executor says
//     how: the task's namespaces, a `docker exec`); exit status 0 is success.
//   - HTTP checks GET scheme://host:port/path; 200-399 is success.
//   - TCP checks connect to host:port.
//
// The host is the task's own address as the executor reaches it: 127.0.0.1
// for a task in the executor's network, the container's address for a
// bridged container. A probe that outlives timeout_seconds failed.
//
// A health check waits delay_seconds, then probes every interval_seconds.
// Failures within grace_period_seconds of the start are ignored until the
// first success. Every failure counted is reported (healthy=false), as is
// the first success after a start or a failure; once consecutive_failures
// failures in a row were counted the report says to kill the task.
package health

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
)

// CommandFunc runs the command of a COMMAND check in the task's context
// (its namespaces or container, its environment) and returns its exit
// status; an error means it could not be run. It must give up when ctx
// ends: the check timed out.
type CommandFunc func(ctx context.Context, ci *mesos.CommandInfo) (int32, error)

// Target is where and how checks reach the task.
type Target struct {
	// Host is the address HTTP and TCP checks connect to.
	Host string
	// Command makes COMMAND checks; nil refuses them.
	Command CommandFunc
}

// Report is one change the executor passes on.
type Report struct {
	Healthy bool
	// Failures is the count of failures in a row so far (0 when healthy).
	Failures int
	// Kill: consecutive_failures was reached; the executor kills the task.
	Kill bool
	// Message says why the last probe failed.
	Message string
}

// probe is one attempt of a check: nil is success.
type probe func(ctx context.Context) error

// Validate says whether hc can be run, as Mesos's master validates it.
func Validate(hc *mesos.HealthCheck) error {
	if hc == nil {
		return nil
	}
	for name, v := range map[string]*float64{"delay_seconds": hc.DelaySeconds, "interval_seconds": hc.IntervalSeconds,
		"timeout_seconds": hc.TimeoutSeconds, "grace_period_seconds": hc.GracePeriodSeconds} {
		if v != nil && (*v < 0 || *v != *v) {
			return fmt.Errorf("health check %s must be non-negative: %w", name, errdefs.ErrInvalid)
		}
	}
	switch hc.GetType() {
	case mesos.HealthCheck_COMMAND:
		if hc.GetCommand().GetValue() == "" {
			return fmt.Errorf("COMMAND health check needs 'command.value': %w", errdefs.ErrInvalid)
		}
	case mesos.HealthCheck_HTTP:
		if hc.GetHttp().GetPort() == 0 || hc.GetHttp().GetPort() > 65535 {
			return fmt.Errorf("HTTP health check needs a port in 1-65535: %w", errdefs.ErrInvalid)
		}
		if s := hc.GetHttp().GetScheme(); s != "" && s != "http" && s != "https" {
			return fmt.Errorf("HTTP health check scheme %q is not 'http' or 'https': %w", s, errdefs.ErrInvalid)
		}
	case mesos.HealthCheck_TCP:
		if hc.GetTcp().GetPort() == 0 || hc.GetTcp().GetPort() > 65535 {
			return fmt.Errorf("TCP health check needs a port in 1-65535: %w", errdefs.ErrInvalid)
		}
	default:
		return fmt.Errorf("health check type %s is not COMMAND, HTTP or TCP: %w", hc.GetType(), errdefs.ErrInvalid)
	}
	return nil
}

// Run runs hc against the task at target until ctx ends or a report says
// to kill, calling report for each change. started is when the task was
// launched (the grace period counts from it).
func Run(ctx context.Context, hc *mesos.HealthCheck, target Target, started time.Time, report func(Report)) error {
	if err := Validate(hc); err != nil {
		return err
	}
	var p probe
	switch hc.GetType() {
	case mesos.HealthCheck_COMMAND:
		p = commandProbe(target.Command, hc.GetCommand())
	case mesos.HealthCheck_HTTP:
		h := hc.GetHttp()
		p = httpProbe(h.GetScheme(), target.Host, h.GetPort(), h.GetPath())
	case mesos.HealthCheck_TCP:
		p = tcpProbe(target.Host, hc.GetTcp().GetPort())
	}
	grace := seconds(hc.GetGracePeriodSeconds())
	interval := max(seconds(hc.GetIntervalSeconds()), 10*time.Millisecond)
	timeout := seconds(hc.GetTimeoutSeconds())
	limit := int(hc.GetConsecutiveFailures())
	if !sleep(ctx, seconds(hc.GetDelaySeconds())) {
		return nil
	}
	var (
		everHealthy bool
		healthy     bool
		failures    int
	)
	for {
		err := attempt(ctx, p, timeout)
		if ctx.Err() != nil {
			return nil
		}
		switch {
		case err == nil:
			failures = 0
			if !healthy {
				report(Report{Healthy: true})
			}
			everHealthy, healthy = true, true
		case !everHealthy && time.Since(started) < grace:
			// Still starting: not counted, not reported.
		default:
			failures++
			healthy = false
			r := Report{Failures: failures, Message: err.Error(), Kill: limit > 0 && failures >= limit}
			report(r)
			if r.Kill {
				return nil
			}
		}
		if !sleep(ctx, interval) {
			return nil
		}
	}
}

// RunCheck runs a general check (TaskInfo.check) until ctx ends, calling
// report with its result each time the result changes. A check's result is
// data for the scheduler, never a reason to kill.
func RunCheck(ctx context.Context, ci *mesos.CheckInfo, target Target, report func(*mesos.CheckStatusInfo)) error {
	if err := ValidateCheck(ci); err != nil {
		return err
	}
	interval := max(seconds(ci.GetIntervalSeconds()), 10*time.Millisecond)
	timeout := seconds(ci.GetTimeoutSeconds())
	if !sleep(ctx, seconds(ci.GetDelaySeconds())) {
		return nil
	}
	var last *mesos.CheckStatusInfo
	for {
		st := &mesos.CheckStatusInfo{Type: ci.GetType().Enum()}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		switch ci.GetType() {
		case mesos.CheckInfo_COMMAND:
			code, err := runCommand(pctx, target.Command, ci.GetCommand().GetCommand())
			st.Command = &mesos.CheckStatusInfo_Command{}
			if err == nil {
				st.Command.ExitCode = &code
			}
		case mesos.CheckInfo_HTTP:
			code, err := httpGet(pctx, "http", target.Host, ci.GetHttp().GetPort(), ci.GetHttp().GetPath())
			st.Http = &mesos.CheckStatusInfo_Http{}
			if err == nil {
				st.Http.StatusCode = &code
			}
		case mesos.CheckInfo_TCP:
			ok := tcpProbe(target.Host, ci.GetTcp().GetPort())(pctx) == nil
			st.Tcp = &mesos.CheckStatusInfo_Tcp{Succeeded: &ok}
		}
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if last == nil || !sameCheck(last, st) {
			report(st)
			last = st
		}
		if !sleep(ctx, interval) {
			return nil
		}
	}
}

// ValidateCheck says whether ci can be run.
func ValidateCheck(ci *mesos.CheckInfo) error {
	if ci == nil {
		return nil
	}
	switch ci.GetType() {
	case mesos.CheckInfo_COMMAND:
		if ci.GetCommand().GetCommand().GetValue() == "" {
			return fmt.Errorf("COMMAND check needs 'command.command.value': %w", errdefs.ErrInvalid)
		}
	case mesos.CheckInfo_HTTP:
		if p := ci.GetHttp().GetPort(); p == 0 || p > 65535 {
			return fmt.Errorf("HTTP check needs a port in 1-65535: %w", errdefs.ErrInvalid)
		}
	case mesos.CheckInfo_TCP:
		if p := ci.GetTcp().GetPort(); p == 0 || p > 65535 {
			return fmt.Errorf("TCP check needs a port in 1-65535: %w", errdefs.ErrInvalid)
		}
	default:
		return fmt.Errorf("check type %s is not COMMAND, HTTP or TCP: %w", ci.GetType(), errdefs.ErrInvalid)
	}
	return nil
}

func sameCheck(a, b *mesos.CheckStatusInfo) bool {
	switch {
	case a.Command != nil && b.Command != nil:
		return (a.Command.ExitCode == nil) == (b.Command.ExitCode == nil) && a.Command.GetExitCode() == b.Command.GetExitCode()
	case a.Http != nil && b.Http != nil:
		return (a.Http.StatusCode == nil) == (b.Http.StatusCode == nil) && a.Http.GetStatusCode() == b.Http.GetStatusCode()
	case a.Tcp != nil && b.Tcp != nil:
		return a.Tcp.GetSucceeded() == b.Tcp.GetSucceeded()
	}
	return false
}

func attempt(ctx context.Context, p probe, timeout time.Duration) error {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := p(pctx)
	if err != nil && errors.Is(pctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
		return fmt.Errorf("check timed out after %s", timeout)
	}
	return err
}

func commandProbe(mk CommandFunc, ci *mesos.CommandInfo) probe {
	return func(ctx context.Context) error {
		code, err := runCommand(ctx, mk, ci)
		if err != nil {
			return err
		}
		if code != 0 {
			return fmt.Errorf("command health check exited with status %d", code)
		}
		return nil
	}
}

// runCommand runs a check command and returns its exit status.
func runCommand(ctx context.Context, run CommandFunc, ci *mesos.CommandInfo) (int32, error) {
	if run == nil {
		return 0, errors.New("this executor cannot run COMMAND checks")
	}
	code, err := run(ctx, ci)
	if ctx.Err() != nil {
		return 0, ctx.Err()
	}
	return code, err
}

// ExecCommand runs a check command as a process of this executor (which
// shares the task's namespaces), in dir with env, in its own process group
// that a timeout kills whole.
func ExecCommand(dir string, env []string) CommandFunc {
	return ExecCommandAs(dir, env, nil)
}

// ExecCommandAs is ExecCommand as the task's user, cred (nil: the
// executor's), for an executor that runs tasks of another user than its
// own: a check runs as its task does.
func ExecCommandAs(dir string, env []string, cred *syscall.Credential) CommandFunc {
	return func(ctx context.Context, c *mesos.CommandInfo) (int32, error) {
		var cmd *exec.Cmd
		if c.Shell == nil || c.GetShell() {
			cmd = exec.CommandContext(ctx, "/bin/sh", "-c", c.GetValue())
		} else {
			cmd = exec.CommandContext(ctx, c.GetValue())
			if len(c.GetArguments()) > 0 {
				cmd.Args = c.GetArguments()
			}
		}
		cmd.Dir, cmd.Env = dir, append([]string(nil), env...)
		for _, v := range c.GetEnvironment().GetVariables() {
			cmd.Env = append(cmd.Env, v.GetName()+"="+v.GetValue())
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = time.Second
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0, nil
		case errors.As(err, &ee):
			return int32(ee.ExitCode()), nil
		default:
			return 0, fmt.Errorf("run check command: %w", err)
		}
	}
}

func httpProbe(scheme, host string, port uint32, path string) probe {
	return func(ctx context.Context) error {
		code, err := httpGet(ctx, scheme, host, port, path)
		if err != nil {
			return err
		}
		if code < 200 || code > 399 {
			return fmt.Errorf("HTTP health check answered %d", code)
		}
		return nil
	}
}

// checkClient does not follow redirects (a 3xx is a success already) and
// accepts the task's own certificate, which no CA vouches for: the check
// asks whether the task answers, not who it is.
var checkClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport: &http.Transport{
		Proxy:                  nil,
		TLSClientConfig:        insecureTLS(),
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	},
}

func httpGet(ctx context.Context, scheme, host string, port uint32, path string) (uint32, error) {
	if scheme == "" {
		scheme = "http"
	}
	if path == "" || path[0] != '/' {
		path = "/" + path
	}
	url := scheme + "://" + net.JoinHostPort(host, strconv.Itoa(int(port))) + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	resp, err := checkClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return uint32(resp.StatusCode), nil
}

func tcpProbe(host string, port uint32) probe {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
		if err != nil {
			return err
		}
		return c.Close()
	}
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// insecureTLS is for https checks: the task's certificate names whatever
// the task is (not 127.0.0.1) and is often self-signed; nothing is sent
// but a GET, and nothing read but the status.
func insecureTLS() *tls.Config {
	return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} // #nosec G402 -- see above
}

// Hooks connect a task's checks to its executor.
type Hooks struct {
	// Send sends a status update of the task (TASK_RUNNING with healthy,
	// check_status and the reason filled in).
	Send func(st *mesos.TaskStatus)
	// Kill kills the task: its health check ran out of failures.
	Kill func(r Report)
	// Ended says the task is being killed or has ended: results are
	// no longer reported.
	Ended func() bool
	// Log receives what could not be run.
	Log *slog.Logger
}

// Start runs task's health check and check (when it has them) against
// target until the returned stop is called or ctx ends. Each change goes
// out through hooks.Send as Mesos's executors send it: health changes with
// healthy and REASON_TASK_HEALTH_CHECK_STATUS_UPDATED, check results in
// check_status with REASON_TASK_CHECK_STATUS_UPDATED and the last known
// health.
func Start(ctx context.Context, task *mesos.TaskInfo, target Target, started time.Time, hooks Hooks) (stop func()) {
	hc, ci := task.GetHealthCheck(), task.GetCheck()
	if hc == nil && ci == nil {
		return func() {}
	}
	if hooks.Log == nil {
		hooks.Log = slog.Default()
	}
	ctx, cancel := context.WithCancel(ctx)
	id := task.GetTaskId()
	var mu sync.Mutex
	var healthy *bool
	running := func() *mesos.TaskStatus {
		return &mesos.TaskStatus{TaskId: id, State: mesos.TaskState_TASK_RUNNING.Enum()}
	}
	if hc != nil {
		go func() {
			err := Run(ctx, hc, target, started, func(r Report) {
				if hooks.Ended() {
					return
				}
				mu.Lock()
				healthy = &r.Healthy
				mu.Unlock()
				st := running()
				st.Healthy = &r.Healthy
				st.Reason = mesos.TaskStatus_REASON_TASK_HEALTH_CHECK_STATUS_UPDATED.Enum()
				if !r.Healthy {
					st.Message = &r.Message
				}
				hooks.Send(st)
				if r.Kill {
					hooks.Log.Warn("task failed its health check; killing it", "task_id", id.GetValue(), "failures", r.Failures, "last", r.Message)
					hooks.Kill(r)
				}
			})
			if err != nil {
				hooks.Log.Warn("health check not run", "task_id", id.GetValue(), "error", err)
			}
		}()
	}
	if ci != nil {
		go func() {
			err := RunCheck(ctx, ci, target, func(cs *mesos.CheckStatusInfo) {
				if hooks.Ended() {
					return
				}
				st := running()
				mu.Lock()
				st.Healthy = healthy
				mu.Unlock()
				st.CheckStatus = cs
				st.Reason = mesos.TaskStatus_REASON_TASK_CHECK_STATUS_UPDATED.Enum()
				hooks.Send(st)
			})
			if err != nil {
				hooks.Log.Warn("check not run", "task_id", id.GetValue(), "error", err)
			}
		}()
	}
	return cancel
}
