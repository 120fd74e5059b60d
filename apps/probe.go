package apps

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// The apps service probes instances itself, as Marathon does, for what
// the agent does not: health checks of protocol HTTP, HTTPS and TCP (the
// Mesos-native one, at most one per app, goes into the TaskInfo and the
// executor runs it), and readiness checks during deployments.
//
// A probe goes only to the instance's own agent host and one of the host
// ports its task was given (never a redirect, never a proxy), and reads
// at most maxProbeBody bytes of an answer: the apps service reaches only
// what the app's own tasks listen on.

// CheckResult is the last outcome of a health check the apps service
// runs, per instance (types/healthCheck.raml, Health).
type CheckResult struct {
	// Alive is nil until the first probe that counts.
	Alive               *bool     `json:"alive,omitempty"`
	ConsecutiveFailures int       `json:"consecutiveFailures"`
	FirstSuccess        time.Time `json:"firstSuccess,omitzero"`
	LastSuccess         time.Time `json:"lastSuccess,omitzero"`
	LastFailure         time.Time `json:"lastFailure,omitzero"`
	LastFailureCause    string    `json:"lastFailureCause,omitempty"`
}

// ReadinessResult is an instance's last readiness probe
// (types/readinessCheck.raml, TaskReadinessCheckResult).
type ReadinessResult struct {
	Name         string        `json:"name"`
	TaskID       string        `json:"taskId"`
	Ready        bool          `json:"ready"`
	LastResponse *HTTPResponse `json:"lastResponse,omitempty"`
}

// HTTPResponse is a readiness probe's answer, kept when the check says
// preserveLastResponse (the body cut at maxProbeBody).
type HTTPResponse struct {
	Status      int    `json:"status"`
	ContentType string `json:"contentType"`
	Body        string `json:"body"`
}

// Probe bounds.
const (
	maxProbeBody    = 4 << 10
	maxProbesAtOnce = 32
	probeTick       = 250 * time.Millisecond
)

// probeKind says what a probe is for.
type probeKind int

const (
	probeHealth probeKind = iota
	probeReadiness
)

// probe is one check of one instance, decided under the engine's lock
// and run outside it.
type probe struct {
	kind     probeKind
	taskID   string
	index    int // the check's index in healthChecks or readinessChecks
	protocol string
	host     string
	port     uint64
	path     string
	timeout  time.Duration
	// readiness only
	name     string
	codes    []int
	preserve bool
}

// key identifies the check of an instance the probe is for, for its
// schedule.
func (p *probe) key() string {
	return fmt.Sprintf("%d/%s/%d", p.kind, p.taskID, p.index)
}

// prober runs the probes the engine's state calls for: it wakes every
// probeTick, lists what is due under the read lock, runs those probes
// concurrently (at most maxProbesAtOnce at a time, each within its
// timeout) and hands each result to the engine's loop.
type prober struct {
	eng    *engine
	log    *slog.Logger
	client *http.Client
	dialer *net.Dialer

	mu      sync.Mutex
	next    map[string]time.Time // key -> when it is due again
	running map[string]bool
}

func newProber(eng *engine, log *slog.Logger) *prober {
	tr := &http.Transport{
		// A probe is to the task itself: no proxy from the environment.
		Proxy:                  nil,
		TLSClientConfig:        &tls.Config{InsecureSkipVerify: true}, // as Marathon: tasks' certificates are their own
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 16 << 10,
	}
	return &prober{
		eng: eng, log: log.With("component", "prober"), dialer: &net.Dialer{},
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			// A redirect could point anywhere: its status is the answer.
			return http.ErrUseLastResponse
		}},
		next: map[string]time.Time{}, running: map[string]bool{},
	}
}

func (p *prober) run(ctx context.Context) {
	t := time.NewTicker(probeTick)
	defer t.Stop()
	sem := make(chan struct{}, maxProbesAtOnce)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		for _, pr := range p.due(now) {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				p.runOne(ctx, pr)
			}()
		}
	}
}

// due lists the probes to run now and schedules their next run.
func (p *prober) due(now time.Time) []*probe {
	all := p.eng.probes(now)
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*probe
	live := map[string]bool{}
	for _, pr := range all {
		k := pr.key()
		live[k] = true
		if p.running[k] || now.Before(p.next[k]) {
			continue
		}
		p.running[k] = true
		out = append(out, pr.probe)
		p.next[k] = now.Add(pr.interval)
	}
	for k := range p.next {
		if !live[k] {
			delete(p.next, k)
		}
	}
	return out
}

func (p *prober) runOne(ctx context.Context, pr *probe) {
	defer func() {
		p.mu.Lock()
		delete(p.running, pr.key())
		p.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(ctx, pr.timeout)
	defer cancel()
	addr := net.JoinHostPort(pr.host, strconv.FormatUint(pr.port, 10))
	switch pr.kind {
	case probeHealth:
		err := p.health(ctx, pr, addr)
		p.eng.healthResult(ctx, pr.taskID, pr.index, err)
	case probeReadiness:
		res := p.readiness(ctx, pr, addr)
		p.eng.readinessResult(ctx, pr.taskID, res)
	}
}

// health runs one health probe: nil is healthy.
func (p *prober) health(ctx context.Context, pr *probe, addr string) error {
	if pr.protocol == ProtoTCP {
		c, err := p.dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	resp, err := p.get(ctx, pr, addr)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxProbeBody))
	resp.Body.Close()
	// Marathon's rule: 2xx and 3xx are healthy.
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

func (p *prober) get(ctx context.Context, pr *probe, addr string) (*http.Response, error) {
	scheme := "http"
	if pr.protocol == ProtoHTTPS {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+pr.path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "mesolite-apps")
	return p.client.Do(req)
}

// readiness runs one readiness probe.
func (p *prober) readiness(ctx context.Context, pr *probe, addr string) *ReadinessResult {
	res := &ReadinessResult{Name: pr.name, TaskID: pr.taskID}
	resp, err := p.get(ctx, pr, addr)
	if err != nil {
		if pr.preserve {
			res.LastResponse = &HTTPResponse{Body: err.Error()}
		}
		return res
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	if err != nil && !errors.Is(err, io.EOF) && len(body) == 0 {
		return res
	}
	res.Ready = slices.Contains(pr.codes, resp.StatusCode)
	if pr.preserve {
		res.LastResponse = &HTTPResponse{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Body: string(body)}
	}
	return res
}

// scheduled is a probe with its interval.
type scheduled struct {
	*probe
	interval time.Duration
}

// probes lists, under the read lock, every check to run now: health
// checks the service runs for every running instance, readiness checks
// for the running instances not yet ready of an app in a deployment.
func (e *engine) probes(now time.Time) []scheduled {
	e.mu.RLock()
	defer e.mu.RUnlock()
	var out []scheduled
	for _, st := range e.apps {
		a := st.app
		for _, i := range st.instances {
			if i.Condition != Running || i.Placement.Hostname == "" {
				continue
			}
			for k, h := range a.HealthChecks {
				if h.mesos() {
					continue
				}
				port, ok := a.checkPort(h, i.Ports)
				if !ok || now.Sub(i.StartedAt) < time.Duration(h.DelaySeconds)*time.Second {
					continue
				}
				out = append(out, scheduled{probe: &probe{kind: probeHealth, taskID: i.TaskID, index: k, protocol: h.Protocol,
					host: i.Placement.Hostname, port: port, path: pathOr(h.Path), timeout: secondsOr(h.TimeoutSeconds, max(h.IntervalSeconds, 1))},
					interval: secondsOr(h.IntervalSeconds, 60)})
			}
			if st.deployment == nil || i.Ready || st.deleted {
				continue
			}
			for k, r := range a.ReadinessChecks {
				port, ok := a.namedPort(r.PortName, i.Ports)
				if !ok {
					continue
				}
				out = append(out, scheduled{probe: &probe{kind: probeReadiness, taskID: i.TaskID, index: k, protocol: r.Protocol,
					host: i.Placement.Hostname, port: port, path: pathOr(r.Path), timeout: secondsOr(r.TimeoutSeconds, 10),
					name: r.Name, codes: r.HTTPStatusCodesForReady, preserve: r.PreserveLastResponse},
					interval: secondsOr(r.IntervalSeconds, 30)})
			}
		}
	}
	return out
}

func pathOr(p string) string {
	if p == "" {
		return "/"
	}
	return p
}

func secondsOr(n, def int) time.Duration {
	if n <= 0 {
		n = def
	}
	return time.Duration(n) * time.Second
}

// checkPort is the host port a health check probes: the port given, or
// the host port of the task at portIndex. A port given outright must be
// one of the task's host ports: the service probes nothing else.
func (a *App) checkPort(h HealthCheck, hostPorts []uint64) (uint64, bool) {
	if h.Port != nil {
		p := uint64(*h.Port)
		return p, slices.Contains(hostPorts, p)
	}
	k := 0
	if h.PortIndex != nil {
		k = *h.PortIndex
	}
	if k < 0 || k >= len(hostPorts) {
		return 0, false
	}
	return hostPorts[k], true
}

// namedPort is the task's host port of the app port named name.
func (a *App) namedPort(name string, hostPorts []uint64) (uint64, bool) {
	var names []string
	if a.bridged() {
		for _, m := range a.portMappings() {
			names = append(names, m.Name)
		}
	} else {
		for _, d := range a.PortDefinitions {
			names = append(names, d.Name)
		}
	}
	k := slices.Index(names, name)
	if k < 0 || k >= len(hostPorts) {
		return 0, false
	}
	return hostPorts[k], true
}

// healthResult records a health probe's outcome (nil: healthy) in the
// loop: health_status_changed_event when the instance's health changes,
// and a kill after maxConsecutiveFailures failures past the grace period.
func (e *engine) healthResult(ctx context.Context, taskID string, k int, probeErr error) {
	e.submit(ctx, func(tx *txn) error {
		i := e.byTask[taskID]
		if i == nil || i.Condition != Running {
			return nil
		}
		st := e.apps[i.AppID]
		if st == nil || k >= len(st.app.HealthChecks) {
			return nil
		}
		h := st.app.HealthChecks[k]
		if i.Checks == nil {
			i.Checks = map[int]*CheckResult{}
		}
		c := i.Checks[k]
		if c == nil {
			c = &CheckResult{}
			i.Checks[k] = c
		}
		before := i.health(st.app)
		if probeErr == nil {
			alive := true
			if c.Alive == nil || !*c.Alive || c.ConsecutiveFailures > 0 {
				tx.touch(i)
			}
			c.Alive, c.ConsecutiveFailures, c.LastSuccess = &alive, 0, tx.now
			if c.FirstSuccess.IsZero() {
				c.FirstSuccess = tx.now
			}
		} else {
			c.LastFailure, c.LastFailureCause = tx.now, probeErr.Error()
			inGrace := c.FirstSuccess.IsZero() && tx.now.Sub(i.StartedAt) < time.Duration(h.GracePeriodSeconds)*time.Second
			if inGrace {
				// Failures before the first success within the grace
				// period do not count: the task is still starting.
				return nil
			}
			dead := false
			c.Alive = &dead
			c.ConsecutiveFailures++
			tx.touch(i)
		}
		after := i.health(st.app)
		if (before == nil) != (after == nil) || before != nil && *before != *after {
			alive := after != nil && *after
			i.HealthSince = tx.now
			tx.event(EventHealthChanged, map[string]any{"appId": i.AppID, "taskId": i.TaskID, "instanceId": i.TaskID,
				"version": i.Version, "alive": alive})
		}
		tx.converge[i.AppID] = true
		if probeErr != nil && h.MaxConsecutiveFailures > 0 && c.ConsecutiveFailures >= h.MaxConsecutiveFailures {
			tx.event(EventUnhealthyTaskKill, map[string]any{"appId": i.AppID, "taskId": i.TaskID, "version": i.Version,
				"reason": c.LastFailureCause, "host": i.Placement.Hostname, "slaveId": i.AgentID})
			e.kill(tx, i, fmt.Sprintf("%s health check failed %d times: %s", h.Protocol, c.ConsecutiveFailures, c.LastFailureCause))
		}
		return nil
	}, func(error) {})
}

// readinessResult records a readiness probe's outcome in the loop; an
// instance that passed is ready for good (it is not probed again).
func (e *engine) readinessResult(ctx context.Context, taskID string, res *ReadinessResult) {
	e.submit(ctx, func(tx *txn) error {
		i := e.byTask[taskID]
		if i == nil || i.Condition != Running || i.Ready {
			return nil
		}
		i.Readiness = res
		if res.Ready {
			i.Ready = true
			e.log.Info("instance ready", "task_id", i.TaskID, "app_id", i.AppID, "check", res.Name)
			tx.touch(i)
			tx.converge[i.AppID] = true
		}
		return nil
	}, func(error) {})
}
