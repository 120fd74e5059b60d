// Package driver is a client for the Mesos v1 executor HTTP API: it
// subscribes to the agent named by MESOS_AGENT_ENDPOINT, delivers events to
// a Handler, sends status updates and keeps every update until the agent
// acknowledges it, resubscribing with the unacknowledged ones when the agent
// restarts (when checkpointing is on).
//
// The built-in command and docker executors and the example executor are
// written with it; any executor written in Go can be.
package driver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/executor"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/api/v1/recordio"
	"github.com/mesolite/mesolite/internal/duration"
	"github.com/mesolite/mesolite/internal/tlsconfig"
	"google.golang.org/protobuf/proto"
)

// Config is the executor's view of its environment.
type Config struct {
	AgentEndpoint          string // host:port, no scheme
	FrameworkID            string
	ExecutorID             string
	Directory              string // host path of the sandbox
	Sandbox                string // sandbox path as the executor sees it
	Checkpoint             bool
	RecoveryTimeout        time.Duration
	SubscriptionBackoffMax time.Duration
	ShutdownGracePeriod    time.Duration
	// Protobuf selects application/x-protobuf instead of JSON.
	Protobuf bool
	// Token is MESOS_EXECUTOR_AUTHENTICATION_TOKEN, sent as a Bearer
	// token on every call so the agent knows the call is this executor's.
	Token string
	// TLS, when set, makes the driver reach the agent over https, verified
	// with it: a TLS agent sets LIBPROCESS_SSL_ENABLED=true and
	// LIBPROCESS_SSL_CA_FILE (without it, the system's roots) for its
	// executors. nil: plain http.
	TLS *tls.Config
}

// EnvToken is the variable holding the executor's credential on the
// agent's executor API.
const EnvToken = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN"

// TaskEnviron is the executor's environment without its credential: what
// a task it starts inherits. With the token a task could speak for its
// executor (report itself finished while it runs, message the framework).
func TaskEnviron() []string {
	env := os.Environ()
	return slices.DeleteFunc(env, func(kv string) bool { return strings.HasPrefix(kv, EnvToken+"=") })
}

// ConfigFromEnv reads the variables the agent sets for every executor.
func ConfigFromEnv(getenv func(string) string) (c Config, err error) {
	c = Config{
		AgentEndpoint: getenv("MESOS_AGENT_ENDPOINT"),
		FrameworkID:   getenv("MESOS_FRAMEWORK_ID"),
		ExecutorID:    getenv("MESOS_EXECUTOR_ID"),
		Directory:     getenv("MESOS_DIRECTORY"),
		Sandbox:       getenv("MESOS_SANDBOX"),
		Checkpoint:    getenv("MESOS_CHECKPOINT") == "1",
		Token:         getenv(EnvToken),
	}
	var missing []string
	for _, kv := range [][2]string{{"MESOS_AGENT_ENDPOINT", c.AgentEndpoint}, {"MESOS_FRAMEWORK_ID", c.FrameworkID}, {"MESOS_EXECUTOR_ID", c.ExecutorID}} {
		if kv[1] == "" {
			missing = append(missing, kv[0])
		}
	}
	if len(missing) > 0 {
		return c, fmt.Errorf("executor environment lacks %s: this program is meant to be started by a mesolite or Mesos agent", strings.Join(missing, ", "))
	}
	if c.Sandbox == "" {
		c.Sandbox = c.Directory
	}
	files, on := tlsconfig.FromEnv(getenv)
	if on {
		// A client certificate only when the agent handed one over.
		if c.TLS, err = files.Client(); err != nil {
			return c, fmt.Errorf("%s: %w", tlsconfig.EnvCA, err)
		}
	}
	durations := []struct {
		env string
		dst *time.Duration
		def time.Duration
	}{
		{"MESOS_RECOVERY_TIMEOUT", &c.RecoveryTimeout, 15 * time.Minute},
		{"MESOS_SUBSCRIPTION_BACKOFF_MAX", &c.SubscriptionBackoffMax, 2 * time.Second},
		{"MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD", &c.ShutdownGracePeriod, 5 * time.Second},
	}
	for _, d := range durations {
		*d.dst = d.def
		if v := getenv(d.env); v != "" {
			p, err := duration.Parse(v)
			if err != nil {
				return c, fmt.Errorf("%s=%q: %w", d.env, v, err)
			}
			*d.dst = p
		}
	}
	return c, nil
}

// Handler receives the executor events. Calls are made from one goroutine,
// in order; a Handler must not block for long (start goroutines instead).
type Handler interface {
	Subscribed(ctx context.Context, d *Driver, ev *executor.Event_Subscribed)
	Launch(ctx context.Context, d *Driver, task *mesos.TaskInfo)
	LaunchGroup(ctx context.Context, d *Driver, group *mesos.TaskGroupInfo)
	Kill(ctx context.Context, d *Driver, taskID *mesos.TaskID, policy *mesos.KillPolicy)
	Acknowledged(ctx context.Context, d *Driver, taskID *mesos.TaskID, uuid []byte)
	Message(ctx context.Context, d *Driver, data []byte)
	Shutdown(ctx context.Context, d *Driver)
	Error(ctx context.Context, d *Driver, message string)
}

// ErrAgentGone is returned by Run when the agent cannot be reached again
// within the recovery timeout (or at all, without checkpointing).
var ErrAgentGone = errors.New("agent unreachable")

// Driver runs the executor side of the protocol.
type Driver struct {
	cfg    Config
	h      Handler
	log    *slog.Logger
	client *http.Client
	dialer *spareDialer
	codec  codec.Codec

	mu         sync.Mutex
	tasks      map[string]*mesos.TaskInfo       // launched, not yet terminal-and-acknowledged
	unacked    map[string]*executor.Call_Update // by uuid
	unackOrder []string
	subscribed *executor.Event_Subscribed
	stopped    bool
	// acked is closed (and replaced) whenever an acknowledgement arrives,
	// waking WaitAcknowledged.
	acked chan struct{}
}

// New returns a driver for cfg that delivers events to h.
func New(cfg Config, h Handler, log *slog.Logger) *Driver {
	c := codec.JSON
	if cfg.Protobuf {
		c = codec.Protobuf
	}
	dialer := &spareDialer{Dialer: net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}}
	return &Driver{
		cfg:    cfg,
		h:      h,
		log:    log.With("executor_id", cfg.ExecutorID),
		dialer: dialer,
		client: &http.Client{Transport: tlsconfig.ExplainErrors(&http.Transport{
			DisableCompression: true, MaxIdleConnsPerHost: 4, DialContext: dialer.DialContext, TLSClientConfig: cfg.TLS,
		})},
		codec:   c,
		tasks:   map[string]*mesos.TaskInfo{},
		unacked: map[string]*executor.Call_Update{},
		acked:   make(chan struct{}),
	}
}

// FrameworkInfo returns the framework's info from SUBSCRIBED, or nil before.
func (d *Driver) FrameworkInfo() *mesos.FrameworkInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.subscribed.GetFrameworkInfo()
}

// Stop makes Run return nil after the current event.
func (d *Driver) Stop() {
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
}

func (d *Driver) isStopped() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stopped
}

// Run subscribes and dispatches events until ctx ends, Stop is called, or
// the agent is gone for good.
func (d *Driver) Run(ctx context.Context) error {
	var down time.Time
	backoff := 100 * time.Millisecond
	for {
		err := d.subscribeOnce(ctx)
		if ctx.Err() != nil || d.isStopped() {
			return nil
		}
		if !d.cfg.Checkpoint {
			return fmt.Errorf("%w: %w (checkpointing off, not reconnecting)", ErrAgentGone, err)
		}
		if down.IsZero() {
			down = time.Now()
			d.log.Warn("lost the agent, reconnecting", "error", err, "recovery_timeout", d.cfg.RecoveryTimeout)
		}
		if time.Since(down) > d.cfg.RecoveryTimeout {
			return fmt.Errorf("%w: not back within the recovery timeout %s: %w", ErrAgentGone, d.cfg.RecoveryTimeout, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, max(d.cfg.SubscriptionBackoffMax, 100*time.Millisecond))
		if errors.Is(err, errSubscribedOnce) {
			down, backoff = time.Time{}, 100*time.Millisecond
		}
	}
}

var errSubscribedOnce = errors.New("stream ended after subscribing")

func (d *Driver) endpoint() string {
	return tlsconfig.Scheme(d.cfg.TLS) + "://" + d.cfg.AgentEndpoint + "/api/v1/executor"
}

func (d *Driver) baseCall(t executor.Call_Type) *executor.Call {
	return &executor.Call{
		Type:        t.Enum(),
		FrameworkId: &mesos.FrameworkID{Value: proto.String(d.cfg.FrameworkID)},
		ExecutorId:  &mesos.ExecutorID{Value: proto.String(d.cfg.ExecutorID)},
	}
}

func (d *Driver) subscribeOnce(ctx context.Context) error {
	call := d.baseCall(executor.Call_SUBSCRIBE)
	d.mu.Lock()
	sub := &executor.Call_Subscribe{}
	for _, t := range d.tasks {
		sub.UnacknowledgedTasks = append(sub.UnacknowledgedTasks, t)
	}
	for _, id := range d.unackOrder {
		sub.UnacknowledgedUpdates = append(sub.UnacknowledgedUpdates, d.unacked[id])
	}
	d.mu.Unlock()
	call.Subscribe = sub
	body, err := d.codec.Marshal(call)
	if err != nil {
		return fmt.Errorf("encode SUBSCRIBE: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.endpoint(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", d.codec.MediaType())
	req.Header.Set("Accept", d.codec.MediaType())
	d.authorize(req)
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("subscribe to agent at %s: %w", d.cfg.AgentEndpoint, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("subscribe to agent at %s: %s: %s", d.cfg.AgentEndpoint, resp.Status, strings.TrimSpace(string(msg)))
	}
	// The stream keeps this connection; the next call needs another.
	d.dialer.prime("tcp", d.cfg.AgentEndpoint)
	rd := recordio.NewReader(bufio.NewReader(resp.Body), 64<<20)
	gotEvent := false
	for {
		rec, err := rd.ReadRecord()
		if err != nil {
			if gotEvent {
				return fmt.Errorf("%w: %v", errSubscribedOnce, err)
			}
			return fmt.Errorf("read events: %w", err)
		}
		ev := &executor.Event{}
		if err := d.codec.Unmarshal(rec, ev); err != nil {
			d.log.Error("undecodable event from agent, skipped", "error", err)
			continue
		}
		gotEvent = true
		d.dispatch(ctx, ev)
		if d.isStopped() {
			return nil
		}
	}
}

func (d *Driver) dispatch(ctx context.Context, ev *executor.Event) {
	switch ev.GetType() {
	case executor.Event_SUBSCRIBED:
		d.mu.Lock()
		d.subscribed = ev.GetSubscribed()
		d.mu.Unlock()
		d.log.Info("subscribed to agent", "agent_id", ev.GetSubscribed().GetAgentInfo().GetId().GetValue(), "container_id", ev.GetSubscribed().GetContainerId().GetValue())
		d.h.Subscribed(ctx, d, ev.GetSubscribed())
		// Updates the agent never acknowledged are sent again: the agent
		// drops duplicates by uuid.
		d.mu.Lock()
		pending := make([]*executor.Call_Update, 0, len(d.unackOrder))
		for _, id := range d.unackOrder {
			pending = append(pending, d.unacked[id])
		}
		d.mu.Unlock()
		for _, u := range pending {
			if err := d.post(ctx, &executor.Call{Type: executor.Call_UPDATE.Enum(), FrameworkId: d.baseCall(0).FrameworkId, ExecutorId: d.baseCall(0).ExecutorId, Update: u}); err != nil {
				d.log.Warn("resend update", "error", err)
			}
		}
	case executor.Event_LAUNCH:
		t := ev.GetLaunch().GetTask()
		d.mu.Lock()
		d.tasks[t.GetTaskId().GetValue()] = t
		d.mu.Unlock()
		d.h.Launch(ctx, d, t)
	case executor.Event_LAUNCH_GROUP:
		d.mu.Lock()
		for _, t := range ev.GetLaunchGroup().GetTaskGroup().GetTasks() {
			d.tasks[t.GetTaskId().GetValue()] = t
		}
		d.mu.Unlock()
		d.h.LaunchGroup(ctx, d, ev.GetLaunchGroup().GetTaskGroup())
	case executor.Event_KILL:
		d.h.Kill(ctx, d, ev.GetKill().GetTaskId(), ev.GetKill().GetKillPolicy())
	case executor.Event_ACKNOWLEDGED:
		a := ev.GetAcknowledged()
		d.mu.Lock()
		key := string(a.GetUuid())
		if u, ok := d.unacked[key]; ok {
			delete(d.unacked, key)
			for i, id := range d.unackOrder {
				if id == key {
					d.unackOrder = append(d.unackOrder[:i], d.unackOrder[i+1:]...)
					break
				}
			}
			if mesos.IsTerminal(u.GetStatus().GetState()) {
				delete(d.tasks, a.GetTaskId().GetValue())
			}
			close(d.acked)
			d.acked = make(chan struct{})
		}
		d.mu.Unlock()
		d.h.Acknowledged(ctx, d, a.GetTaskId(), a.GetUuid())
	case executor.Event_MESSAGE:
		d.h.Message(ctx, d, ev.GetMessage().GetData())
	case executor.Event_SHUTDOWN:
		d.h.Shutdown(ctx, d)
	case executor.Event_ERROR:
		d.h.Error(ctx, d, ev.GetError().GetMessage())
	case executor.Event_HEARTBEAT:
	default:
		d.log.Warn("unknown event type, ignored", "type", ev.GetType().String())
	}
}

// SendStatus sends a status update for a task. It fills uuid, timestamp,
// source and executor id, and keeps the update until the agent acknowledges it.
func (d *Driver) SendStatus(ctx context.Context, status *mesos.TaskStatus) error {
	status = proto.Clone(status).(*mesos.TaskStatus)
	uuid := make([]byte, 16)
	_, _ = rand.Read(uuid)
	uuid[6] = (uuid[6] & 0x0f) | 0x40
	uuid[8] = (uuid[8] & 0x3f) | 0x80
	status.Uuid = uuid
	if status.Timestamp == nil {
		status.Timestamp = proto.Float64(float64(time.Now().UnixNano()) / 1e9)
	}
	if status.Source == nil {
		status.Source = mesos.TaskStatus_SOURCE_EXECUTOR.Enum()
	}
	if status.ExecutorId == nil {
		status.ExecutorId = &mesos.ExecutorID{Value: proto.String(d.cfg.ExecutorID)}
	}
	u := &executor.Call_Update{Status: status}
	d.mu.Lock()
	d.unacked[string(uuid)] = u
	d.unackOrder = append(d.unackOrder, string(uuid))
	d.mu.Unlock()
	call := d.baseCall(executor.Call_UPDATE)
	call.Update = u
	return d.post(ctx, call)
}

// Unacknowledged reports how many updates still wait for the agent.
func (d *Driver) Unacknowledged() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.unacked)
}

// WaitAcknowledged blocks until the agent has acknowledged every update
// sent so far, or ctx ends. It reports whether all were acknowledged. An
// executor calls it before leaving, so its last update is not lost.
func (d *Driver) WaitAcknowledged(ctx context.Context) bool {
	for {
		d.mu.Lock()
		n, ch := len(d.unacked), d.acked
		d.mu.Unlock()
		if n == 0 {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// SendMessage sends data to the framework's scheduler.
func (d *Driver) SendMessage(ctx context.Context, data []byte) error {
	call := d.baseCall(executor.Call_MESSAGE)
	call.Message = &executor.Call_Message{Data: data}
	return d.post(ctx, call)
}

func (d *Driver) post(ctx context.Context, call *executor.Call) error {
	body, err := d.codec.Marshal(call)
	if err != nil {
		return fmt.Errorf("encode %s: %w", call.GetType(), err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.endpoint(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", d.codec.MediaType())
	d.authorize(req)
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s to agent: %w", call.GetType(), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s to agent: %s: %s", call.GetType(), resp.Status, strings.TrimSpace(string(msg)))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return nil
}

// authorize adds the executor's token, when the agent gave one.
func (d *Driver) authorize(req *http.Request) {
	if d.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+d.cfg.Token)
	}
}

// Getenv is os.Getenv, named here so callers read ConfigFromEnv(driver.Getenv).
var Getenv = os.Getenv
