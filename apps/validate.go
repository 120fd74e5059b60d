package apps

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mesolite/mesolite/frameworks"
	"github.com/mesolite/mesolite/resources"
)

// Violation is one thing wrong with a definition, as Marathon reports it:
// the JSON path of the field ("/upgradeStrategy/minimumHealthCapacity",
// "/healthChecks(0)/portIndex") and what is wrong with it.
type Violation struct {
	Path   string   `json:"path"`
	Errors []string `json:"errors"`
}

// InvalidError is a definition that breaks the rules: 422 with the
// violations (or 400 "Invalid JSON" when it did not even decode).
type InvalidError struct {
	Message    string
	Violations []Violation
	// Syntax: the body was not the JSON of a definition (400).
	Syntax bool
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	for _, v := range e.Violations {
		fmt.Fprintf(&b, "; %s: %s", v.Path, strings.Join(v.Errors, ", "))
	}
	return b.String()
}

// violations collects Violations, one entry per path.
type violations []Violation

func (vs *violations) add(path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	for i := range *vs {
		if (*vs)[i].Path == path {
			(*vs)[i].Errors = append((*vs)[i].Errors, msg)
			return
		}
	}
	*vs = append(*vs, Violation{Path: path, Errors: []string{msg}})
}

func (vs violations) err() error {
	if len(vs) == 0 {
		return nil
	}
	return &InvalidError{Message: "Object is not valid", Violations: vs}
}

// Bounds on what one definition may hold: it is user input, kept in the
// store and copied into every task.
const (
	maxInstances   = 100000
	maxEnvVars     = 1000
	maxLabels      = 1000
	maxListItems   = 1000
	maxStringBytes = 64 << 10
	maxNameLen     = 255
	maxPorts       = 1000
	maxChecks      = 16
)

var (
	// portNameRE is Marathon's rule for port names.
	portNameRE = regexp.MustCompile(`^[a-z0-9-]+$`)
	// envNameRE: what a shell and every executor pass on.
	envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
)

// decodeApp reads a definition from JSON onto base (defaultApp for a new
// one): fields the JSON leaves out keep base's values. Decoding errors are
// an *InvalidError with Syntax set and Marathon's wording.
func decodeApp(body []byte, base App) (*App, error) {
	a := base
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&a); err != nil {
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, &InvalidError{Message: "Invalid JSON", Syntax: true,
			Violations: []Violation{{Path: "/", Errors: []string{"error.expected.eof"}}}}
	}
	return &a, nil
}

// jsonError turns a decoding error into Marathon's 400 answer.
func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		path := "/" + strings.ReplaceAll(te.Field, ".", "/")
		want := "error.expected.js" + map[string]string{
			"string": "string", "bool": "boolean", "map": "object", "struct": "object", "slice": "array",
		}[te.Type.Kind().String()]
		if strings.HasSuffix(want, ".js") {
			want = "error.expected.jsnumber"
		}
		return &InvalidError{Message: "Invalid JSON", Syntax: true, Violations: []Violation{{Path: path, Errors: []string{want}}}}
	}
	return &InvalidError{Message: "Invalid JSON", Syntax: true,
		Violations: []Violation{{Path: "/", Errors: []string{"error.invalid.json: " + err.Error()}}}}
}

// bridged says whether the app's container is on a bridge network: its
// ports are then port mappings, not port definitions.
func (a *App) bridged() bool {
	if len(a.Networks) > 0 {
		return a.Networks[0].Mode == ModeBridge
	}
	return a.Container != nil && a.Container.Docker != nil && strings.EqualFold(a.Container.Docker.Network, NetworkBridge)
}

// portMappings is the app's port mappings, wherever they were given.
func (a *App) portMappings() []PortMapping {
	if a.Container == nil {
		return nil
	}
	if len(a.Container.PortMappings) > 0 {
		return a.Container.PortMappings
	}
	if a.Container.Docker != nil {
		return a.Container.Docker.PortMappings
	}
	return nil
}

// portCount is how many ports each instance gets.
func (a *App) portCount() int {
	if a.bridged() {
		return len(a.portMappings())
	}
	return len(a.PortDefinitions)
}

// normalize fills what Marathon derives from a definition: port
// definitions from the deprecated ports (or one dynamic port when none is
// said), fetch from the deprecated uris, empty lists rather than nulls,
// the docker network, a health check's port index.
func (a *App) normalize() {
	if len(a.Fetch) == 0 && len(a.URIs) > 0 {
		for _, u := range a.URIs {
			a.Fetch = append(a.Fetch, Fetch{URI: u, Extract: true})
		}
	}
	a.URIs = nil
	if a.Container != nil && a.Container.Docker != nil && a.Container.Docker.Network == "" && len(a.Networks) == 0 &&
		a.Container.Type == ContainerDocker {
		a.Container.Docker.Network = NetworkHost
	}
	if a.Container != nil && a.Container.Docker != nil && a.Container.Docker.Network != "" {
		a.Container.Docker.Network = strings.ToUpper(a.Container.Docker.Network)
	}
	switch {
	case a.bridged():
		a.PortDefinitions = []PortDefinition{}
	case a.PortDefinitions == nil && a.Ports != nil:
		a.PortDefinitions = make([]PortDefinition, len(a.Ports))
		for i, p := range a.Ports {
			a.PortDefinitions[i] = PortDefinition{Port: p, Protocol: "tcp"}
		}
	case a.PortDefinitions == nil:
		a.PortDefinitions = []PortDefinition{{Port: 0, Protocol: "tcp"}}
	}
	a.Ports = make([]int, len(a.PortDefinitions))
	for i, p := range a.PortDefinitions {
		a.Ports[i] = p.Port
	}
	for i := range a.HealthChecks {
		h := &a.HealthChecks[i]
		h.Protocol = strings.ToUpper(h.Protocol)
		if h.Protocol != ProtoCommand && h.Port == nil && h.PortIndex == nil {
			h.PortIndex = new(int)
		}
	}
	if a.Env == nil {
		a.Env = map[string]string{}
	}
	if a.Labels == nil {
		a.Labels = map[string]string{}
	}
	for _, l := range []*[]string{&a.StoreUrls, &a.Dependencies} {
		if *l == nil {
			*l = []string{}
		}
	}
	if a.Constraints == nil {
		a.Constraints = [][]string{}
	}
	if a.Fetch == nil {
		a.Fetch = []Fetch{}
	}
	if a.HealthChecks == nil {
		a.HealthChecks = []HealthCheck{}
	}
	if a.ReadinessChecks == nil {
		a.ReadinessChecks = []ReadinessCheck{}
	}
	for i := range a.ReadinessChecks {
		a.ReadinessChecks[i].Protocol = strings.ToUpper(a.ReadinessChecks[i].Protocol)
	}
	if a.Container != nil {
		if a.Container.Volumes == nil {
			a.Container.Volumes = []Volume{}
		}
		if d := a.Container.Docker; d != nil && d.Parameters == nil {
			d.Parameters = []Parameter{}
		}
	}
	if a.KillSelection == "" {
		a.KillSelection = YoungestFirst
	}
}

// check validates a definition as Marathon does, collecting every
// violation, and normalizes it (its id in canonical form, the derived
// fields filled).
func (a *App) check() error {
	var vs violations
	// What normalize would hide: the deprecated and the new form of a
	// field given both, and differently.
	if a.bridged() && (len(a.PortDefinitions) > 0 || len(a.Ports) > 0) {
		// Marathon writes portDefinitions: [] for a bridged app; a
		// non-empty one is a mistake.
		vs.add("/portDefinitions", "must be empty with a bridge network; use portMappings")
	}
	if a.PortDefinitions != nil && a.Ports != nil {
		same := len(a.Ports) == len(a.PortDefinitions)
		for i := 0; same && i < len(a.Ports); i++ {
			same = a.Ports[i] == a.PortDefinitions[i].Port
		}
		if !same {
			vs.add("/ports", "disagrees with portDefinitions; give one of them")
		}
	}
	if len(a.Ports) > maxPorts {
		vs.add("/ports", "at most %d ports", maxPorts)
	}
	a.normalize()
	id, err := ParsePathID(a.ID, Root)
	switch {
	case a.ID == "":
		vs.add("/id", "error.path.missing")
	case err != nil:
		vs.add("/id", "%s", strings.TrimSuffix(err.Error(), ": invalid argument"))
	case id == Root:
		vs.add("/id", "Path must contain at least one path element")
	default:
		a.ID = string(id)
	}
	checkString := func(path, s string) {
		if len(s) > maxStringBytes || !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			vs.add(path, "must be valid UTF-8 without NUL, at most %d bytes", maxStringBytes)
		}
	}
	hasImage := a.Container != nil && a.Container.Docker != nil && a.Container.Docker.Image != ""
	switch {
	case a.Cmd != "" && len(a.Args) > 0:
		vs.add("/", "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.")
	case a.Cmd == "" && len(a.Args) == 0 && a.Container == nil:
		vs.add("/", "AppDefinition must either contain one of 'cmd' or 'args', and/or a 'container'.")
	case a.Cmd == "" && len(a.Args) == 0 && !hasImage:
		vs.add("/", "AppDefinition must either contain one of 'cmd' or 'args', and/or a container with an image.")
	}
	checkString("/cmd", a.Cmd)
	if len(a.Args) > maxListItems {
		vs.add("/args", "at most %d items", maxListItems)
	}
	for i, s := range a.Args {
		checkString(fmt.Sprintf("/args(%d)", i), s)
	}
	if a.User != "" && (len(a.User) > 64 || strings.ContainsAny(a.User, ":/ \t\n\x00")) {
		vs.add("/user", "must be a user name")
	}
	finite := func(path string, v, lo float64) {
		switch {
		case math.IsNaN(v) || math.IsInf(v, 0):
			vs.add(path, "must be a number")
		case v < lo:
			vs.add(path, "got %v, expected %v or more", v, lo)
		}
	}
	finite("/cpus", a.Cpus, 0)
	finite("/mem", a.Mem, 0)
	finite("/disk", a.Disk, 0)
	if a.Gpus < 0 {
		vs.add("/gpus", "got %d, expected 0 or more", a.Gpus)
	}
	if a.Instances < 0 || a.Instances > maxInstances {
		vs.add("/instances", "got %d, expected between 0 and %d", a.Instances, maxInstances)
	}
	finite("/backoffSeconds", a.BackoffSeconds, 0)
	finite("/backoffFactor", a.BackoffFactor, 1)
	finite("/maxLaunchDelaySeconds", a.MaxLaunchDelaySeconds, 0)
	for name, v := range map[string]float64{"minimumHealthCapacity": a.UpgradeStrategy.MinimumHealthCapacity,
		"maximumOverCapacity": a.UpgradeStrategy.MaximumOverCapacity} {
		switch {
		case math.IsNaN(v):
			vs.add("/upgradeStrategy/"+name, "must be a number")
		case v > 1:
			vs.add("/upgradeStrategy/"+name, "is greater than 1")
		case v < 0:
			vs.add("/upgradeStrategy/"+name, "is less than 0")
		}
	}
	if a.TaskKillGracePeriodSeconds != nil && *a.TaskKillGracePeriodSeconds < 0 {
		vs.add("/taskKillGracePeriodSeconds", "got %d, expected 0 or more", *a.TaskKillGracePeriodSeconds)
	}
	if a.KillSelection != YoungestFirst && a.KillSelection != OldestFirst {
		vs.add("/killSelection", "must be one of YOUNGEST_FIRST, OLDEST_FIRST")
	}
	if a.Executor != "" && a.Executor != "//cmd" {
		vs.add("/executor", "custom executors are not supported yet; use \"\" or \"//cmd\"")
	}
	if len(a.Env) > maxEnvVars {
		vs.add("/env", "at most %d variables", maxEnvVars)
	}
	for k, v := range a.Env {
		if !envNameRE.MatchString(k) || len(k) > maxNameLen {
			vs.add("/env("+k+")", "must be a variable name: letters, digits, '_', '.', '-', not starting with a digit")
		}
		checkString("/env("+k+")", v)
	}
	if len(a.Labels) > maxLabels {
		vs.add("/labels", "at most %d labels", maxLabels)
	}
	for k, v := range a.Labels {
		if k == "" || len(k) > maxNameLen || !utf8.ValidString(k) || strings.ContainsAny(k, "\x00\n") {
			vs.add("/labels", "label keys must be non-empty printable text of at most %d bytes", maxNameLen)
		}
		checkString("/labels("+k+")", v)
	}
	if len(a.Constraints) > maxListItems {
		vs.add("/constraints", "at most %d constraints", maxListItems)
	}
	for i, c := range a.Constraints {
		if _, err := frameworks.ParseConstraint(c); err != nil {
			vs.add(fmt.Sprintf("/constraints(%d)", i), "%s", strings.TrimSuffix(err.Error(), ": invalid argument"))
		}
	}
	for i, r := range a.AcceptedResourceRoles {
		if err := resources.ValidateRole(r); err != nil {
			vs.add(fmt.Sprintf("/acceptedResourceRoles(%d)", i), "%s", strings.TrimSuffix(err.Error(), ": invalid argument"))
		}
	}
	if len(a.Fetch) > maxListItems {
		vs.add("/fetch", "at most %d items", maxListItems)
	}
	for i, f := range a.Fetch {
		if f.URI == "" || strings.ContainsFunc(f.URI, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			vs.add(fmt.Sprintf("/fetch(%d)/uri", i), "must be a URI")
		}
		if f.DestPath != "" && (strings.HasPrefix(f.DestPath, "/") || slices.Contains(strings.Split(f.DestPath, "/"), "..")) {
			vs.add(fmt.Sprintf("/fetch(%d)/destPath", i), "must be a relative path inside the sandbox")
		}
	}
	for i, d := range a.Dependencies {
		if _, err := ParsePathID(d, id.Parent()); err != nil {
			vs.add(fmt.Sprintf("/dependencies(%d)", i), "%s", errPathID)
		}
	}
	if _, ok := a.unreachable(); !ok {
		vs.add("/unreachableStrategy", `must be "disabled" or {"inactiveAfterSeconds": n, "expungeAfterSeconds": m} with 0 <= n <= m`)
	}
	a.validateNetworking(&vs)
	a.validateHealthChecks(&vs)
	if a.Secrets != nil && string(a.Secrets) != "{}" && string(a.Secrets) != "null" {
		vs.add("/secrets", "secrets are not supported yet")
	}
	return vs.err()
}

func validPort(p int) bool { return p >= 0 && p <= 65535 }

func validProtocol(p string) bool {
	switch p {
	case "tcp", "udp", "udp,tcp", "tcp,udp":
		return true
	}
	return false
}

func (a *App) validateNetworking(vs *violations) {
	c := a.Container
	if c != nil {
		switch c.Type {
		case ContainerDocker:
			if c.Docker == nil || c.Docker.Image == "" {
				vs.add("/container/docker/image", "must not be empty")
			}
		case ContainerMesos:
		default:
			vs.add("/container/type", "must be DOCKER or MESOS")
		}
		if d := c.Docker; d != nil {
			switch strings.ToUpper(d.Network) {
			case "", NetworkHost, NetworkBridge:
			default:
				vs.add("/container/docker/network", "%s networks are not supported yet; use HOST or BRIDGE", d.Network)
			}
			if len(d.Parameters) > maxListItems {
				vs.add("/container/docker/parameters", "at most %d parameters", maxListItems)
			}
			for i, p := range d.Parameters {
				if p.Key == "" || strings.ContainsAny(p.Key, "= \n\x00") {
					vs.add(fmt.Sprintf("/container/docker/parameters(%d)/key", i), "must be a docker option name")
				}
			}
			if len(d.PortMappings) > 0 && len(c.PortMappings) > 0 {
				vs.add("/container/portMappings", "give port mappings in container.portMappings or container.docker.portMappings, not both")
			}
		}
		for i, v := range c.Volumes {
			p := fmt.Sprintf("/container/volumes(%d)", i)
			if !strings.HasPrefix(v.ContainerPath, "/") && c.Type == ContainerDocker || v.ContainerPath == "" {
				vs.add(p+"/containerPath", "must be an absolute path")
			}
			if v.HostPath == "" {
				vs.add(p+"/hostPath", "only host volumes are supported yet")
			}
			if v.Mode != "RW" && v.Mode != "RO" {
				vs.add(p+"/mode", "must be RW or RO")
			}
		}
	}
	if len(a.Networks) > 1 {
		vs.add("/networks", "one network per app is supported yet")
	}
	for i, n := range a.Networks {
		switch n.Mode {
		case ModeHost:
		case ModeBridge:
			if c == nil {
				vs.add(fmt.Sprintf("/networks(%d)/mode", i), "container/bridge needs a container")
			}
		case ModeContainer:
			vs.add(fmt.Sprintf("/networks(%d)/mode", i), "container networks are not supported yet")
		default:
			vs.add(fmt.Sprintf("/networks(%d)/mode", i), "must be host, container/bridge or container")
		}
	}
	if len(a.Networks) > 0 && c != nil && c.Docker != nil && c.Docker.Network != "" {
		legacyBridge := strings.EqualFold(c.Docker.Network, NetworkBridge)
		if legacyBridge != (a.Networks[0].Mode == ModeBridge) {
			vs.add("/networks", "disagrees with container.docker.network")
		}
	}
	if !a.bridged() && len(a.portMappings()) > 0 {
		vs.add("/container/portMappings", "port mappings need a bridge network")
	}
	if len(a.PortDefinitions) > maxPorts || len(a.portMappings()) > maxPorts {
		vs.add("/portDefinitions", "at most %d ports", maxPorts)
	}
	names := map[string]bool{}
	seen := map[int]bool{}
	for i, p := range a.PortDefinitions {
		path := fmt.Sprintf("/portDefinitions(%d)", i)
		if !validPort(p.Port) {
			vs.add(path+"/port", "must be between 0 and 65535")
		}
		if !validProtocol(p.Protocol) {
			vs.add(path+"/protocol", "must be tcp, udp or udp,tcp")
		}
		if p.Name != "" && !portNameRE.MatchString(p.Name) {
			vs.add(path+"/name", "must match %s", portNameRE)
		}
		if p.Name != "" && names[p.Name] {
			vs.add(path+"/name", "port names must be unique")
		}
		names[p.Name] = true
		if p.Port != 0 && seen[p.Port] {
			vs.add(path+"/port", "ports must be unique")
		}
		seen[p.Port] = true
		if a.RequirePorts && p.Port == 0 {
			vs.add(path+"/port", "requirePorts needs every port to be given (not 0)")
		}
	}
	for i, m := range a.portMappings() {
		path := fmt.Sprintf("/container/portMappings(%d)", i)
		if !validPort(m.ContainerPort) {
			vs.add(path+"/containerPort", "must be between 0 and 65535")
		}
		if !validPort(m.HostPort) {
			vs.add(path+"/hostPort", "must be between 0 and 65535")
		}
		if !validPort(m.ServicePort) {
			vs.add(path+"/servicePort", "must be between 0 and 65535")
		}
		if !validProtocol(m.Protocol) {
			vs.add(path+"/protocol", "must be tcp, udp or udp,tcp")
		}
		if m.Name != "" && !portNameRE.MatchString(m.Name) {
			vs.add(path+"/name", "must match %s", portNameRE)
		}
		if m.Name != "" && names[m.Name] {
			vs.add(path+"/name", "port names must be unique")
		}
		names[m.Name] = true
	}
}

func (a *App) validateHealthChecks(vs *violations) {
	mesosChecks := 0
	for _, h := range a.HealthChecks {
		if h.mesos() {
			mesosChecks++
		}
	}
	if mesosChecks > 1 {
		// The agent runs one Mesos-native check per task (TaskInfo has one
		// health_check), as Marathon allows one MESOS_* or COMMAND check
		// per app; HTTP, HTTPS and TCP ones the service runs itself.
		vs.add("/healthChecks", "at most one Mesos health check (MESOS_HTTP, MESOS_HTTPS, MESOS_TCP, COMMAND) per app")
	}
	if len(a.HealthChecks) > maxChecks {
		vs.add("/healthChecks", "at most %d health checks", maxChecks)
	}
	if len(a.ReadinessChecks) > maxChecks {
		vs.add("/readinessChecks", "at most %d readiness checks", maxChecks)
	}
	for i, r := range a.ReadinessChecks {
		path := fmt.Sprintf("/readinessChecks(%d)", i)
		if r.Protocol != ProtoHTTP && r.Protocol != ProtoHTTPS {
			vs.add(path+"/protocol", "must be HTTP or HTTPS")
		}
		if !strings.HasPrefix(r.Path, "/") {
			vs.add(path+"/path", "must start with /")
		}
		if _, ok := a.namedPort(r.PortName, make([]uint64, a.portCount())); !ok {
			vs.add(path+"/portName", "the app has no port named %s", r.PortName)
		}
		if r.IntervalSeconds <= 0 {
			vs.add(path+"/intervalSeconds", "must be positive")
		}
		if r.TimeoutSeconds <= 0 || r.TimeoutSeconds >= r.IntervalSeconds {
			vs.add(path+"/timeoutSeconds", "must be positive and smaller than intervalSeconds")
		}
		if len(r.HTTPStatusCodesForReady) == 0 {
			vs.add(path+"/httpStatusCodesForReady", "needs at least one status code")
		}
		if r.Name == "" || len(r.Name) > maxNameLen {
			vs.add(path+"/name", "must be 1 to %d characters", maxNameLen)
		}
	}
	for i, h := range a.HealthChecks {
		path := fmt.Sprintf("/healthChecks(%d)", i)
		switch strings.ToUpper(h.Protocol) {
		case ProtoHTTP, ProtoHTTPS, ProtoMesosHTTP, ProtoMesosHTTPS, ProtoTCP, ProtoMesosTCP:
			if h.PortIndex != nil && (*h.PortIndex < 0 || *h.PortIndex >= a.portCount()) {
				vs.add(path+"/portIndex", "must point to one of the app's %d ports", a.portCount())
			}
			if h.PortIndex == nil && h.Port == nil && a.portCount() == 0 {
				vs.add(path, "needs a port: the app has none, give port")
			}
			if h.Port != nil && !validPort(*h.Port) {
				vs.add(path+"/port", "must be between 0 and 65535")
			}
			if h.Path != "" && !strings.HasPrefix(h.Path, "/") {
				vs.add(path+"/path", "must start with /")
			}
		case ProtoCommand:
			if h.Command == nil || h.Command.Value == "" {
				vs.add(path+"/command", "COMMAND checks need command.value")
			}
		default:
			vs.add(path+"/protocol", "must be one of HTTP, HTTPS, TCP, COMMAND, MESOS_HTTP, MESOS_HTTPS, MESOS_TCP")
		}
		for name, v := range map[string]int{"gracePeriodSeconds": h.GracePeriodSeconds, "intervalSeconds": h.IntervalSeconds,
			"timeoutSeconds": h.TimeoutSeconds, "maxConsecutiveFailures": h.MaxConsecutiveFailures, "delaySeconds": h.DelaySeconds} {
			if v < 0 {
				vs.add(path+"/"+name, "got %d, expected 0 or more", v)
			}
		}
		if h.TimeoutSeconds >= h.IntervalSeconds && h.IntervalSeconds > 0 {
			vs.add(path+"/timeoutSeconds", "must be smaller than intervalSeconds")
		}
	}
}
