package apps

import (
	"encoding/json"
	"time"
)

// App is an app definition in Marathon's JSON form (docs/docs/rest-api,
// types/app.raml). Fields mesolite does not act on yet (readiness checks,
// dependencies, ipAddress, secrets, residency, unreachableStrategy) are
// kept as given, so a definition read with GET and sent back with PUT is
// unchanged.
type App struct {
	ID                    string            `json:"id"`
	Cmd                   string            `json:"cmd,omitempty"`
	Args                  []string          `json:"args,omitempty"`
	User                  string            `json:"user,omitempty"`
	Env                   map[string]string `json:"env"`
	Instances             int               `json:"instances"`
	Cpus                  float64           `json:"cpus"`
	Mem                   float64           `json:"mem"`
	Disk                  float64           `json:"disk"`
	Gpus                  int               `json:"gpus"`
	Executor              string            `json:"executor"`
	Constraints           [][]string        `json:"constraints"`
	Fetch                 []Fetch           `json:"fetch"`
	StoreUrls             []string          `json:"storeUrls"`
	BackoffSeconds        float64           `json:"backoffSeconds"`
	BackoffFactor         float64           `json:"backoffFactor"`
	MaxLaunchDelaySeconds float64           `json:"maxLaunchDelaySeconds"`
	Container             *Container        `json:"container,omitempty"`
	HealthChecks          []HealthCheck     `json:"healthChecks"`
	ReadinessChecks       []ReadinessCheck  `json:"readinessChecks"`
	Dependencies          []string          `json:"dependencies"`
	UpgradeStrategy       UpgradeStrategy   `json:"upgradeStrategy"`
	Labels                map[string]string `json:"labels"`
	AcceptedResourceRoles []string          `json:"acceptedResourceRoles,omitempty"`
	// Ports is the deprecated form of PortDefinitions: on input it stands
	// for port definitions of these numbers; on output it repeats
	// PortDefinitions' numbers, as Marathon writes it.
	Ports           []int            `json:"ports"`
	PortDefinitions []PortDefinition `json:"portDefinitions"`
	RequirePorts    bool             `json:"requirePorts"`
	Networks        []Network        `json:"networks,omitempty"`
	// URIs is the deprecated form of Fetch, read on input only.
	URIs                       []string        `json:"uris,omitempty"`
	Version                    string          `json:"version,omitempty"`
	VersionInfo                *VersionInfo    `json:"versionInfo,omitempty"`
	TaskKillGracePeriodSeconds *int            `json:"taskKillGracePeriodSeconds,omitempty"`
	KillSelection              string          `json:"killSelection"`
	UnreachableStrategy        json.RawMessage `json:"unreachableStrategy,omitempty"`
	IPAddress                  json.RawMessage `json:"ipAddress,omitempty"`
	Residency                  json.RawMessage `json:"residency,omitempty"`
	Secrets                    json.RawMessage `json:"secrets,omitempty"`
}

// unreachable is an app's unreachableStrategy, read: Marathon's default
// ({0, 0}: replaced and expunged at once) when absent; disabled: an
// unreachable instance is waited for, never replaced.
type unreachable struct {
	disabled          bool
	inactive, expunge time.Duration
}

// unreachableSpec is the object form of unreachableStrategy.
type unreachableSpec struct {
	InactiveAfterSeconds *float64 `json:"inactiveAfterSeconds"`
	ExpungeAfterSeconds  *float64 `json:"expungeAfterSeconds"`
}

// unreachable reads the strategy; ok is false when it is neither
// "disabled" nor an object of non-negative seconds, expunge not before
// inactive.
func (a *App) unreachable() (u unreachable, ok bool) {
	raw := a.UnreachableStrategy
	if len(raw) == 0 || string(raw) == "null" {
		return unreachable{}, true
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return unreachable{disabled: true}, s == "disabled"
	}
	var spec unreachableSpec
	if json.Unmarshal(raw, &spec) != nil {
		return unreachable{}, false
	}
	in, ex := 0.0, 0.0
	if spec.InactiveAfterSeconds != nil {
		in = *spec.InactiveAfterSeconds
	}
	if spec.ExpungeAfterSeconds != nil {
		ex = *spec.ExpungeAfterSeconds
	}
	if in < 0 || ex < in || ex > 1e9 {
		return unreachable{}, false
	}
	return unreachable{inactive: time.Duration(in * float64(time.Second)), expunge: time.Duration(ex * float64(time.Second))}, true
}

// Kill selections: which instances go first when an app has too many.
const (
	YoungestFirst = "YOUNGEST_FIRST"
	OldestFirst   = "OLDEST_FIRST"
)

// Container is an app's container: DOCKER, run by the Docker
// containerizer, or MESOS (the agent's own containers, with or without an
// image).
type Container struct {
	Type    string   `json:"type"`
	Docker  *Docker  `json:"docker,omitempty"`
	Volumes []Volume `json:"volumes"`
	// PortMappings is Marathon 1.5's place for them (with networks); the
	// older one is Docker.PortMappings.
	PortMappings []PortMapping `json:"portMappings,omitempty"`
}

// Container types.
const (
	ContainerDocker = "DOCKER"
	ContainerMesos  = "MESOS"
)

// Docker is the DOCKER (or MESOS with an image) container's image and
// settings.
type Docker struct {
	Image          string        `json:"image"`
	Network        string        `json:"network,omitempty"`
	PortMappings   []PortMapping `json:"portMappings,omitempty"`
	Privileged     bool          `json:"privileged"`
	Parameters     []Parameter   `json:"parameters"`
	ForcePullImage bool          `json:"forcePullImage"`
}

// Docker networks of Marathon's legacy form; Network.Mode is the newer.
const (
	NetworkHost   = "HOST"
	NetworkBridge = "BRIDGE"
	NetworkUser   = "USER"
	NetworkNone   = "NONE"

	ModeHost      = "host"
	ModeBridge    = "container/bridge"
	ModeContainer = "container"
)

// Parameter is a docker run option, --key=value.
type Parameter struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Volume is a host path mounted in the container.
type Volume struct {
	ContainerPath string `json:"containerPath"`
	HostPath      string `json:"hostPath,omitempty"`
	Mode          string `json:"mode"`
}

// Network is one of an app's networks (Marathon 1.5+): mode host,
// container/bridge, or container with a name.
type Network struct {
	Mode   string            `json:"mode"`
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// PortMapping maps a container port to a host port (0: one from the
// offer) in a bridged container.
type PortMapping struct {
	ContainerPort int               `json:"containerPort"`
	HostPort      int               `json:"hostPort"`
	ServicePort   int               `json:"servicePort"`
	Protocol      string            `json:"protocol"`
	Name          string            `json:"name,omitempty"`
	Labels        map[string]string `json:"labels,omitempty"`
}

// UnmarshalJSON fills Marathon's defaults for what is left out.
func (p *PortMapping) UnmarshalJSON(b []byte) error {
	type plain PortMapping
	v := plain{Protocol: "tcp"}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = PortMapping(v)
	return nil
}

// PortDefinition is a port of an app on the host network: Port is its
// service port (0: Marathon assigns one), or the host port itself with
// requirePorts.
type PortDefinition struct {
	Port     int               `json:"port"`
	Protocol string            `json:"protocol"`
	Name     string            `json:"name,omitempty"`
	Labels   map[string]string `json:"labels,omitempty"`
}

// UnmarshalJSON fills Marathon's defaults for what is left out.
func (p *PortDefinition) UnmarshalJSON(b []byte) error {
	type plain PortDefinition
	v := plain{Protocol: "tcp"}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*p = PortDefinition(v)
	return nil
}

// Fetch is a URI the fetcher puts into the sandbox before the task starts.
type Fetch struct {
	URI        string `json:"uri"`
	Executable bool   `json:"executable"`
	Extract    bool   `json:"extract"`
	Cache      bool   `json:"cache"`
	DestPath   string `json:"destPath,omitempty"`
}

// UnmarshalJSON fills Marathon's defaults for what is left out.
func (f *Fetch) UnmarshalJSON(b []byte) error {
	type plain Fetch
	v := plain{Extract: true}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Fetch(v)
	return nil
}

// HealthCheck is an app's health check. MESOS_HTTP(S), MESOS_TCP and
// COMMAND are run by the agent's executor (TaskInfo.health_check, one per
// task); HTTP(S) and TCP by the apps service itself (probe.go), as
// Marathon runs them.
type HealthCheck struct {
	Protocol               string         `json:"protocol"`
	Path                   string         `json:"path,omitempty"`
	PortIndex              *int           `json:"portIndex,omitempty"`
	Port                   *int           `json:"port,omitempty"`
	Command                *HealthCommand `json:"command,omitempty"`
	GracePeriodSeconds     int            `json:"gracePeriodSeconds"`
	IntervalSeconds        int            `json:"intervalSeconds"`
	TimeoutSeconds         int            `json:"timeoutSeconds"`
	MaxConsecutiveFailures int            `json:"maxConsecutiveFailures"`
	DelaySeconds           int            `json:"delaySeconds"`
	IgnoreHTTP1xx          bool           `json:"ignoreHttp1xx,omitempty"`
	IPProtocol             string         `json:"ipProtocol,omitempty"`
}

// mesos says whether the agent's executor runs the check (MESOS_HTTP,
// MESOS_HTTPS, MESOS_TCP, COMMAND); the apps service runs the others
// (HTTP, HTTPS, TCP) itself, as Marathon does.
func (h HealthCheck) mesos() bool {
	switch h.Protocol {
	case ProtoHTTP, ProtoHTTPS, ProtoTCP:
		return false
	}
	return true
}

// mesosCheck is the app's Mesos-native health check, the one a TaskInfo
// carries; nil when it has none.
func (a *App) mesosCheck() *HealthCheck {
	for k := range a.HealthChecks {
		if a.HealthChecks[k].mesos() {
			return &a.HealthChecks[k]
		}
	}
	return nil
}

// ReadinessCheck is an app's readiness check (types/readinessCheck.raml):
// during a deployment, a new instance counts as started only once an
// HTTP GET of Path on its port PortName answers one of
// HTTPStatusCodesForReady. The apps service probes it itself.
type ReadinessCheck struct {
	Name                    string `json:"name"`
	Protocol                string `json:"protocol"`
	Path                    string `json:"path"`
	PortName                string `json:"portName"`
	IntervalSeconds         int    `json:"intervalSeconds"`
	TimeoutSeconds          int    `json:"timeoutSeconds"`
	HTTPStatusCodesForReady []int  `json:"httpStatusCodesForReady"`
	PreserveLastResponse    bool   `json:"preserveLastResponse"`
}

// UnmarshalJSON fills Marathon's defaults for what is left out.
func (r *ReadinessCheck) UnmarshalJSON(b []byte) error {
	type plain ReadinessCheck
	v := plain{Name: "readinessCheck", Protocol: ProtoHTTP, Path: "/", PortName: "http", IntervalSeconds: 30, TimeoutSeconds: 10,
		HTTPStatusCodesForReady: []int{200}}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*r = ReadinessCheck(v)
	return nil
}

// HealthCommand is a COMMAND check's command line, run by /bin/sh -c.
type HealthCommand struct {
	Value string `json:"value"`
}

// Health check protocols.
const (
	ProtoHTTP       = "HTTP"
	ProtoHTTPS      = "HTTPS"
	ProtoTCP        = "TCP"
	ProtoCommand    = "COMMAND"
	ProtoMesosHTTP  = "MESOS_HTTP"
	ProtoMesosHTTPS = "MESOS_HTTPS"
	ProtoMesosTCP   = "MESOS_TCP"
)

// UnmarshalJSON fills Marathon's defaults for what is left out.
func (h *HealthCheck) UnmarshalJSON(b []byte) error {
	type plain HealthCheck
	v := plain{Protocol: ProtoHTTP, GracePeriodSeconds: 300, IntervalSeconds: 60, TimeoutSeconds: 20,
		MaxConsecutiveFailures: 3, DelaySeconds: 15}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*h = HealthCheck(v)
	return nil
}

// UpgradeStrategy bounds a rolling restart: at least
// MinimumHealthCapacity x instances stay healthy, at most
// (1+MaximumOverCapacity) x instances run.
type UpgradeStrategy struct {
	MinimumHealthCapacity float64 `json:"minimumHealthCapacity"`
	MaximumOverCapacity   float64 `json:"maximumOverCapacity"`
}

// VersionInfo says when an app last changed: scaled, or changed in a way
// that restarts its instances.
type VersionInfo struct {
	LastScalingAt      string `json:"lastScalingAt"`
	LastConfigChangeAt string `json:"lastConfigChangeAt"`
}

// defaultApp is a definition with Marathon's defaults; decoding a request
// into it keeps them where the request says nothing.
func defaultApp() App {
	return App{
		Instances:             1,
		Cpus:                  1,
		Mem:                   128,
		BackoffSeconds:        1,
		BackoffFactor:         1.15,
		MaxLaunchDelaySeconds: 3600,
		UpgradeStrategy:       UpgradeStrategy{MinimumHealthCapacity: 1, MaximumOverCapacity: 1},
		KillSelection:         YoungestFirst,
	}
}

// timeFormat is how Marathon writes times and versions:
// 2015-09-30T09:09:17.614Z.
const timeFormat = "2006-01-02T15:04:05.000Z"

// FormatTime writes t as Marathon does.
func FormatTime(t time.Time) string { return t.UTC().Format(timeFormat) }

// ParseTime reads a time FormatTime wrote (or any RFC 3339 time).
func ParseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

// clone is a deep copy of a, through its JSON form (definitions are small
// and copied only when they change).
func (a *App) clone() *App {
	b, err := json.Marshal(a)
	if err != nil {
		panic("apps: an App that does not encode: " + err.Error())
	}
	c := new(App)
	if err := json.Unmarshal(b, c); err != nil {
		panic("apps: an App that does not decode: " + err.Error())
	}
	return c
}
