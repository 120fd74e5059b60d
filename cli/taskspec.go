package cli

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/mesolite/mesolite/api/v1/codec"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

// taskSpec is what the run and example-framework flags say about a task.
type taskSpec struct {
	name            string
	taskID          string // generated when empty
	command         string
	shell           bool
	resources       string // Mesos text form or a JSON array
	env             []string
	uris            []string
	executorCommand string
	dockerImage     string
	network         string // host, bridge, none, user:NAME; empty: host, or bridge with port mappings
	portMappings    []string
	forcePullImage  bool
	privileged      bool
	taskFile        string
}

// taskTemplate is a task ready to be placed on an offer: everything but
// its agent and resources, which come from the offer it is launched on.
type taskTemplate struct {
	task *mesos.TaskInfo
	// want is what the task needs from an offer.
	want []*mesos.Resource
	// pickPorts counts port mappings with host port 0, whose host port is
	// picked from the offer's ports.
	pickPorts int
	// agentID pins the task to one agent (a --task file with agent_id).
	agentID string
}

// executorID is where the task's sandbox lives: its executor's id, which
// for a command task is the task id, as in Mesos.
func (t *taskTemplate) executorID() string {
	if id := t.task.GetExecutor().GetExecutorId().GetValue(); id != "" {
		return id
	}
	return t.task.GetTaskId().GetValue()
}

// buildTask turns a spec into a template. Errors wrap errdefs.ErrInvalid and
// name the flag at fault.
func buildTask(spec taskSpec) (*taskTemplate, error) {
	if spec.taskFile != "" {
		return taskFromFile(spec)
	}
	if spec.name == "" {
		return nil, invalid("--name is required")
	}
	id := spec.taskID
	if id == "" {
		id = newTaskID(spec.name)
	}
	task := &mesos.TaskInfo{
		Name:   mesos.Ptr(spec.name),
		TaskId: &mesos.TaskID{Value: mesos.Ptr(id)},
	}
	want, err := parseResources(spec.resources)
	if err != nil {
		return nil, err
	}
	env, err := parseEnv(spec.env)
	if err != nil {
		return nil, err
	}
	var uris []*mesos.CommandInfo_URI
	for _, u := range spec.uris {
		uri, err := parseURI(u)
		if err != nil {
			return nil, err
		}
		uris = append(uris, uri)
	}
	container, pick, ports, err := dockerContainer(spec)
	if err != nil {
		return nil, err
	}
	if len(ports) > 0 {
		want = addPorts(want, ports)
	}

	if spec.executorCommand != "" {
		// A custom executor: it is what gets fetched and started; the task
		// carries the command in data for the executor to run, since Mesos
		// lets a task have an executor or a command, not both.
		task.Executor = &mesos.ExecutorInfo{
			Type:       mesos.ExecutorInfo_CUSTOM.Enum(),
			ExecutorId: &mesos.ExecutorID{Value: mesos.Ptr(id)},
			Name:       mesos.Ptr(spec.name + " executor"),
			Command: &mesos.CommandInfo{
				Value:       mesos.Ptr(spec.executorCommand),
				Shell:       mesos.Ptr(true),
				Uris:        uris,
				Environment: env,
			},
			Container: container,
		}
		if spec.command != "" {
			task.Data = []byte(spec.command)
		}
	} else {
		cmd, err := commandInfo(spec, container != nil)
		if err != nil {
			return nil, err
		}
		cmd.Uris = uris
		cmd.Environment = env
		task.Command = cmd
		task.Container = container
	}
	return &taskTemplate{task: task, want: want, pickPorts: pick}, nil
}

// commandInfo builds the task's command. shell=true runs `/bin/sh -c
// command`. shell=false splits the command into words: the first is the
// program; for a process it is also argv[0] (Mesos passes arguments as the
// whole argv), for a Docker container the rest go to the image's
// ENTRYPOINT after it. No command in a Docker container runs the image's
// own ENTRYPOINT and CMD.
func commandInfo(spec taskSpec, docker bool) (*mesos.CommandInfo, error) {
	cmd := &mesos.CommandInfo{Shell: mesos.Ptr(spec.shell)}
	if spec.command == "" {
		if !docker {
			return nil, invalid("--command is required (or --docker_image, --executor_command or --task)")
		}
		if spec.shell {
			return nil, invalid("--shell=true needs a --command; use --shell=false to run the image's own entrypoint")
		}
		return cmd, nil
	}
	if spec.shell {
		cmd.Value = mesos.Ptr(spec.command)
		return cmd, nil
	}
	words, err := splitWords(spec.command)
	if err != nil {
		return nil, invalid("--command: %v", err)
	}
	if len(words) == 0 {
		return nil, invalid("--command is empty")
	}
	cmd.Value = mesos.Ptr(words[0])
	if docker {
		cmd.Arguments = words[1:]
	} else {
		cmd.Arguments = words
	}
	return cmd, nil
}

// splitWords splits like a shell does for words and quotes, without
// expansion: `a 'b c' "d\"e"` is a, b c, d"e.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	var quote rune
	escaped := false
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case r == '\\' && quote != '\'':
			escaped, inWord = true, true
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 || escaped {
		return nil, fmt.Errorf("unterminated quote or escape in %q", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}

// dockerContainer builds the DOCKER ContainerInfo of --docker_image and
// returns it with the number of host ports to pick from the offer and the
// fixed host ports the mappings need.
func dockerContainer(spec taskSpec) (*mesos.ContainerInfo, int, []uint64, error) {
	if spec.dockerImage == "" {
		for _, f := range []struct {
			set  bool
			name string
		}{{spec.network != "", "--network"}, {len(spec.portMappings) > 0, "--port_mapping"},
			{spec.forcePullImage, "--force_pull_image"}, {spec.privileged, "--privileged"}} {
			if f.set {
				return nil, 0, nil, invalid("%s needs --docker_image", f.name)
			}
		}
		return nil, 0, nil, nil
	}
	docker := &mesos.ContainerInfo_DockerInfo{Image: mesos.Ptr(spec.dockerImage)}
	if spec.forcePullImage {
		docker.ForcePullImage = mesos.Ptr(true)
	}
	if spec.privileged {
		docker.Privileged = mesos.Ptr(true)
	}
	container := &mesos.ContainerInfo{Type: mesos.ContainerInfo_DOCKER.Enum(), Docker: docker}

	network := spec.network
	if network == "" {
		network = "host"
		if len(spec.portMappings) > 0 {
			network = "bridge"
		}
	}
	mode, user, err := parseNetwork(network)
	if err != nil {
		return nil, 0, nil, err
	}
	docker.Network = mode.Enum()
	if user != "" {
		container.NetworkInfos = []*mesos.NetworkInfo{{Name: mesos.Ptr(user)}}
	}

	var pick int
	var fixed []uint64
	for _, pm := range spec.portMappings {
		m, err := parsePortMapping(pm)
		if err != nil {
			return nil, 0, nil, err
		}
		if mode == mesos.ContainerInfo_DockerInfo_HOST || mode == mesos.ContainerInfo_DockerInfo_NONE {
			return nil, 0, nil, invalid("--port_mapping=%s needs --network=bridge or --network=user:NAME, not %s", pm, network)
		}
		if m.GetHostPort() == 0 {
			pick++
		} else {
			if slices.Contains(fixed, uint64(m.GetHostPort())) {
				return nil, 0, nil, invalid("--port_mapping: host port %d mapped twice", m.GetHostPort())
			}
			fixed = append(fixed, uint64(m.GetHostPort()))
		}
		docker.PortMappings = append(docker.PortMappings, m)
	}
	return container, pick, fixed, nil
}

// parseNetwork reads --network: host, bridge, none or user:NAME.
func parseNetwork(s string) (mesos.ContainerInfo_DockerInfo_Network, string, error) {
	if name, ok := strings.CutPrefix(s, "user:"); ok {
		if name == "" {
			return 0, "", invalid("--network=user:NAME needs a network name")
		}
		return mesos.ContainerInfo_DockerInfo_USER, name, nil
	}
	switch strings.ToLower(s) {
	case "host":
		return mesos.ContainerInfo_DockerInfo_HOST, "", nil
	case "bridge":
		return mesos.ContainerInfo_DockerInfo_BRIDGE, "", nil
	case "none":
		return mesos.ContainerInfo_DockerInfo_NONE, "", nil
	}
	return 0, "", invalid("--network=%s: want host, bridge, none or user:NAME", s)
}

// parsePortMapping reads HOST:CONTAINER[/tcp|/udp]. Host port 0 means
// "any port of the offer".
func parsePortMapping(s string) (*mesos.ContainerInfo_DockerInfo_PortMapping, error) {
	spec, proto, hasProto := strings.Cut(s, "/")
	host, cont, ok := strings.Cut(spec, ":")
	if !ok {
		return nil, invalid("--port_mapping=%s: want HOST:CONTAINER[/tcp|/udp]", s)
	}
	hp, err1 := strconv.ParseUint(strings.TrimSpace(host), 10, 16)
	cp, err2 := strconv.ParseUint(strings.TrimSpace(cont), 10, 16)
	if err1 != nil || err2 != nil || cp == 0 {
		return nil, invalid("--port_mapping=%s: ports must be numbers from 1 to 65535 (host port 0: any offered port)", s)
	}
	m := &mesos.ContainerInfo_DockerInfo_PortMapping{
		HostPort:      mesos.Ptr(uint32(hp)),
		ContainerPort: mesos.Ptr(uint32(cp)),
	}
	if hasProto {
		proto = strings.ToLower(proto)
		if proto != "tcp" && proto != "udp" {
			return nil, invalid("--port_mapping=%s: protocol must be tcp or udp", s)
		}
		m.Protocol = mesos.Ptr(proto)
	}
	return m, nil
}

// parseURI reads URL[,executable][,extract=false][,cache][,output_file=NAME].
// Options are taken from the end, so a URL that itself has commas stays
// whole; a boolean option may also be written name=true or name=false. When
// an option is repeated the last one counts.
func parseURI(s string) (*mesos.CommandInfo_URI, error) {
	parts := strings.Split(s, ",")
	uri := &mesos.CommandInfo_URI{}
	end := len(parts)
	for end > 1 {
		ok, err := uriOption(uri, strings.TrimSpace(parts[end-1]), s)
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		end--
	}
	uri.Value = mesos.Ptr(strings.TrimSpace(strings.Join(parts[:end], ",")))
	if uri.GetValue() == "" {
		return nil, invalid("--uri=%s: no URL", s)
	}
	if uri.GetExecutable() && uri.Extract != nil && uri.GetExtract() {
		return nil, invalid("--uri=%s: an executable is not extracted; drop extract", s)
	}
	return uri, nil
}

// uriOption applies one option of a --uri value, or reports that opt is
// not an option (then it is part of the URL).
func uriOption(uri *mesos.CommandInfo_URI, opt, whole string) (bool, error) {
	key, val, hasVal := strings.Cut(opt, "=")
	var field **bool
	switch key {
	case "executable":
		field = &uri.Executable
	case "extract":
		field = &uri.Extract
	case "cache":
		field = &uri.Cache
	case "output_file":
		if val == "" {
			return false, invalid("--uri=%s: output_file needs a name", whole)
		}
		if strings.HasPrefix(val, "/") {
			return false, invalid("--uri=%s: output_file must be relative to the sandbox", whole)
		}
		if uri.OutputFile == nil {
			uri.OutputFile = mesos.Ptr(val)
		}
		return true, nil
	default:
		return false, nil
	}
	b := true
	if hasVal {
		v, err := strconv.ParseBool(val)
		if err != nil {
			return false, invalid("--uri=%s: %s=%s is not true or false", whole, key, val)
		}
		b = v
	}
	if *field == nil {
		*field = mesos.Ptr(b)
	}
	return true, nil
}

// parseEnv reads --env values: K=V each, or one JSON object {"K": "V", ...}
// as mesos-execute takes it.
func parseEnv(vals []string) (*mesos.Environment, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	env := &mesos.Environment{}
	add := func(k, v string) {
		env.Variables = append(env.Variables, &mesos.Environment_Variable{
			Name: mesos.Ptr(k), Type: mesos.Environment_Variable_VALUE.Enum(), Value: mesos.Ptr(v),
		})
	}
	for _, s := range vals {
		if strings.HasPrefix(strings.TrimSpace(s), "{") {
			var m map[string]string
			if err := json.Unmarshal([]byte(s), &m); err != nil {
				return nil, invalid("--env=%s: not a JSON object of strings: %v", s, err)
			}
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				add(k, m[k])
			}
			continue
		}
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return nil, invalid("--env=%s: want NAME=VALUE", s)
		}
		add(k, v)
	}
	return env, nil
}

// parseResources reads --resources: Mesos's text form
// `cpus:0.1;mem:32;ports:[31000-31001];name(role):value;disks:{a,b}`, a
// JSON array of v1 Resource objects, or file:///path holding either (see
// resources.Parse). A role names the reservation the resource must come
// from.
func parseResources(s string) ([]*mesos.Resource, error) {
	rs, err := resources.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("--resources: %w", err)
	}
	return rs, nil
}

// addPorts adds fixed host ports to the ports a task asks for; a port
// --resources asks for already (--port_mapping=31001:80 with
// ports:[31001-31001]) is asked for once.
func addPorts(want []*mesos.Resource, ports []uint64) []*mesos.Resource {
	var rs []*mesos.Value_Range
	for _, p := range ports {
		if asksPort(want, p) {
			continue
		}
		rs = append(rs, &mesos.Value_Range{Begin: mesos.Ptr(p), End: mesos.Ptr(p)})
	}
	if len(rs) == 0 {
		return want
	}
	return append(want, &mesos.Resource{
		Name:   mesos.Ptr("ports"),
		Type:   mesos.Value_RANGES.Enum(),
		Ranges: &mesos.Value_Ranges{Range: rs},
	})
}

// asksPort reports whether want holds port p among its ports.
func asksPort(want []*mesos.Resource, p uint64) bool {
	for _, r := range want {
		if r.GetName() != "ports" {
			continue
		}
		for _, rg := range r.GetRanges().GetRange() {
			if rg.GetBegin() <= p && p <= rg.GetEnd() {
				return true
			}
		}
	}
	return false
}

// taskFromFile reads a v1 TaskInfo in JSON. A missing task_id is
// generated and a missing name taken from --name (or the task id); a
// missing agent_id is the offer's. A file with resources asks for those,
// else --resources applies. The shorthand flags that shape a task cannot be
// combined with a file.
func taskFromFile(spec taskSpec) (*taskTemplate, error) {
	for _, f := range []struct {
		set  bool
		name string
	}{{spec.command != "", "--command"}, {len(spec.env) > 0, "--env"}, {len(spec.uris) > 0, "--uri"},
		{spec.executorCommand != "", "--executor_command"}, {spec.dockerImage != "", "--docker_image"},
		{spec.network != "", "--network"}, {len(spec.portMappings) > 0, "--port_mapping"},
		{spec.forcePullImage, "--force_pull_image"}, {spec.privileged, "--privileged"}} {
		if f.set {
			return nil, invalid("%s cannot be combined with --task; put it in the TaskInfo", f.name)
		}
	}
	b, err := os.ReadFile(spec.taskFile)
	if err != nil {
		return nil, fmt.Errorf("--task: %w", err)
	}
	// Required fields the file may leave out get placeholders before
	// decoding (the codec insists on required fields); agent_id is then
	// replaced by the offer's.
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, invalid("--task=%s: not a JSON object: %v", spec.taskFile, err)
	}
	tmpl := &taskTemplate{}
	pinned := obj["agent_id"] != nil && string(obj["agent_id"]) != "null"
	if !pinned {
		obj["agent_id"] = json.RawMessage(`{"value":"-"}`)
	}
	if obj["task_id"] == nil || string(obj["task_id"]) == "null" {
		obj["task_id"] = json.RawMessage(`{"value":"-"}`)
	}
	if obj["name"] == nil || string(obj["name"]) == "null" {
		obj["name"] = json.RawMessage(`""`)
	}
	filled, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("--task: %w", err)
	}
	task := &mesos.TaskInfo{}
	if err := codec.JSON.Unmarshal(filled, task); err != nil {
		return nil, fmt.Errorf("--task=%s: %w", spec.taskFile, err)
	}
	if task.GetTaskId().GetValue() == "-" || task.GetTaskId().GetValue() == "" {
		name := task.GetName()
		if name == "" {
			name = spec.name
		}
		if name == "" {
			name = "task"
		}
		id := spec.taskID
		if id == "" {
			id = newTaskID(name)
		}
		task.TaskId = &mesos.TaskID{Value: mesos.Ptr(id)}
	}
	if task.GetName() == "" {
		task.Name = mesos.Ptr(spec.name)
		if spec.name == "" {
			task.Name = mesos.Ptr(task.GetTaskId().GetValue())
		}
	}
	if pinned {
		tmpl.agentID = task.GetAgentId().GetValue()
	}
	task.AgentId = nil
	if (task.Command == nil) == (task.Executor == nil) {
		return nil, invalid("--task=%s: a TaskInfo needs exactly one of command and executor", spec.taskFile)
	}
	if len(task.Resources) > 0 {
		tmpl.want = task.Resources
		task.Resources = nil
		if _, err := resources.FromProto(tmpl.want); err != nil {
			return nil, fmt.Errorf("--task=%s: %w", spec.taskFile, err)
		}
	} else if tmpl.want, err = parseResources(spec.resources); err != nil {
		return nil, err
	}
	tmpl.task = task
	return tmpl, nil
}

// forOffer places the template on an offer: a copy of the task with the
// offer's agent, the resources taken from the offer and the picked host
// ports filled into the port mappings. It fails, saying what is missing,
// when the offer is too small.
func (t *taskTemplate) forOffer(offer *mesos.Offer, frameworkID string) (*mesos.TaskInfo, error) {
	if t.agentID != "" && t.agentID != offer.GetAgentId().GetValue() {
		return nil, fmt.Errorf("the task is pinned to agent %s", t.agentID)
	}
	used, picked, err := allocate(offer.GetResources(), t.want, t.pickPorts)
	if err != nil {
		return nil, err
	}
	task := proto.Clone(t.task).(*mesos.TaskInfo)
	task.AgentId = offer.GetAgentId()
	task.Resources = used
	if ex := task.GetExecutor(); ex != nil && ex.FrameworkId == nil {
		ex.FrameworkId = &mesos.FrameworkID{Value: mesos.Ptr(frameworkID)}
	}
	container := task.GetContainer()
	if container == nil {
		container = task.GetExecutor().GetContainer()
	}
	for _, m := range container.GetDocker().GetPortMappings() {
		if m.GetHostPort() == 0 && len(picked) > 0 {
			m.HostPort = mesos.Ptr(uint32(picked[0]))
			picked = picked[1:]
		}
	}
	return task, nil
}

// newTaskID makes a task id from a name: the name and a random suffix, so
// that runs with the same name stay apart in `mesolite tasks` and `logs`.
func newTaskID(name string) string {
	var b [4]byte
	rand.Read(b[:])
	clean := strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' || r < 0x20 {
			return '-'
		}
		return r
	}, name)
	return clean + "." + hex.EncodeToString(b[:])
}

// usageErr is a mistake in the flags: its text is for the user as is, and
// it is an errdefs.ErrInvalid.
type usageErr struct{ msg string }

func (e *usageErr) Error() string { return e.msg }
func (e *usageErr) Unwrap() error { return errdefs.ErrInvalid }

func invalid(format string, args ...any) error {
	return &usageErr{msg: fmt.Sprintf(format, args...)}
}

// groupTemplate is a task group (`run --task_group`) ready to be placed
// on an offer: its tasks and what each needs, and the default executor
// that runs them with what it needs.
type groupTemplate struct {
	tasks     []*taskTemplate
	executor  *mesos.ExecutorInfo
	executorW []*mesos.Resource // what the executor needs
}

// groupExecutorResources is what mesos-execute gives the default executor
// of a group.
const groupExecutorResources = "cpus:0.1;mem:32;disk:32"

// groupFromFile reads a Mesos v1 TaskGroupInfo in JSON (mesos-execute's
// --task_group): each task is read as a --task file is (ids, names and
// resources filled in the same way) and must have a command; the group
// runs under a default executor of a fresh id.
func groupFromFile(spec taskSpec) (*groupTemplate, error) {
	b, err := os.ReadFile(spec.taskFile)
	if err != nil {
		return nil, fmt.Errorf("--task_group: %w", err)
	}
	var obj struct {
		Tasks []json.RawMessage `json:"tasks"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return nil, invalid("--task_group=%s: not a JSON TaskGroupInfo: %v", spec.taskFile, err)
	}
	if len(obj.Tasks) == 0 {
		return nil, invalid("--task_group=%s: the group has no tasks", spec.taskFile)
	}
	dir, err := os.MkdirTemp("", "mesolite-group")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	g := &groupTemplate{}
	ids := map[string]bool{}
	agent := ""
	for i, raw := range obj.Tasks {
		// Each task goes through the --task reader, from a file of its own.
		f := filepath.Join(dir, strconv.Itoa(i)+".json")
		if err := os.WriteFile(f, raw, 0o600); err != nil {
			return nil, err
		}
		ts := spec
		ts.taskFile, ts.taskID = f, ""
		tmpl, err := taskFromFile(ts)
		if err != nil {
			return nil, fmt.Errorf("--task_group=%s, task %d: %w", spec.taskFile, i, err)
		}
		id := tmpl.task.GetTaskId().GetValue()
		switch {
		case tmpl.task.GetCommand() == nil:
			return nil, invalid("--task_group=%s: task %s has no command (the group's default executor runs commands)", spec.taskFile, id)
		case ids[id]:
			return nil, invalid("--task_group=%s: duplicate task id %s", spec.taskFile, id)
		case tmpl.agentID != "" && agent != "" && tmpl.agentID != agent:
			return nil, invalid("--task_group=%s: the tasks are pinned to different agents", spec.taskFile)
		}
		ids[id] = true
		if tmpl.agentID != "" {
			agent = tmpl.agentID
		}
		g.tasks = append(g.tasks, tmpl)
	}
	for _, t := range g.tasks {
		t.agentID = agent
	}
	if g.executorW, err = parseResources(groupExecutorResources); err != nil {
		return nil, err
	}
	g.executor = &mesos.ExecutorInfo{
		Type:       mesos.ExecutorInfo_DEFAULT.Enum(),
		ExecutorId: &mesos.ExecutorID{Value: mesos.Ptr(newTaskID("default-executor"))},
	}
	return g, nil
}

// forOffer places the group on an offer: the executor's resources first,
// then each task's from what is left. It fails, saying what is missing,
// when the offer is too small for all of them.
func (g *groupTemplate) forOffer(offer *mesos.Offer, frameworkID string) (*mesos.ExecutorInfo, []*mesos.TaskInfo, error) {
	left := offer.GetResources()
	used, _, err := allocate(left, g.executorW, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("the group's executor: %w", err)
	}
	left = resources.Remaining(left, used)
	ex := proto.Clone(g.executor).(*mesos.ExecutorInfo)
	ex.Resources = used
	ex.FrameworkId = &mesos.FrameworkID{Value: mesos.Ptr(frameworkID)}
	var tasks []*mesos.TaskInfo
	for _, t := range g.tasks {
		ti, err := t.forOffer(&mesos.Offer{AgentId: offer.GetAgentId(), Resources: left}, frameworkID)
		if err != nil {
			return nil, nil, fmt.Errorf("task %s: %w", t.task.GetTaskId().GetValue(), err)
		}
		left = resources.Remaining(left, ti.GetResources())
		tasks = append(tasks, ti)
	}
	return ex, tasks, nil
}

// want is everything the group needs, for messages.
func (g *groupTemplate) want() []*mesos.Resource {
	out := append([]*mesos.Resource(nil), g.executorW...)
	for _, t := range g.tasks {
		out = append(out, t.want...)
	}
	return out
}
