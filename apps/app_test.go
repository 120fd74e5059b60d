package apps

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/resources"
	"google.golang.org/protobuf/proto"
)

// checked decodes and checks a definition as POST /v2/apps does.
func checked(body string) (*App, error) {
	a, err := decodeApp([]byte(body), defaultApp())
	if err != nil {
		return nil, err
	}
	return a, a.check()
}

// TestCheckRefuses: each broken definition is refused with the field path
// Marathon gives (422), or as JSON that does not decode (400).
// TestCheckAccepts: definitions Marathon takes that an older check
// refused.
func TestCheckAccepts(t *testing.T) {
	for _, body := range []string{
		// Several checks, one of them Mesos-native.
		`{"id":"/a","cmd":"x","healthChecks":[{"protocol":"TCP"},{"protocol":"MESOS_TCP"},{"protocol":"HTTP"}]}`,
		`{"id":"/a","cmd":"x","portDefinitions":[{"port":0,"name":"http"}],"readinessChecks":[{"path":"/ready","intervalSeconds":2,"timeoutSeconds":1}]}`,
	} {
		if _, err := checked(body); err != nil {
			t.Errorf("%s: %v", body, err)
		}
	}
}

func TestCheckRefuses(t *testing.T) {
	tests := []struct {
		name, body string
		syntax     bool
		path, msg  string
	}{
		{"no id", `{"cmd":"x"}`, false, "/id", "error.path.missing"},
		{"bad id", `{"id":"/Web","cmd":"x"}`, false, "/id", "must fully match"},
		{"root id", `{"id":"/","cmd":"x"}`, false, "/id", "at least one path element"},
		{"cmd and args", `{"id":"/a","cmd":"x","args":["y"]}`, false, "/", "one of 'cmd' or 'args'"},
		{"nothing to run", `{"id":"/a"}`, false, "/", "one of 'cmd' or 'args'"},
		{"health capacity", `{"id":"/a","cmd":"x","upgradeStrategy":{"minimumHealthCapacity":1.5}}`, false, "/upgradeStrategy/minimumHealthCapacity", "is greater than 1"},
		{"over capacity", `{"id":"/a","cmd":"x","upgradeStrategy":{"maximumOverCapacity":-0.1}}`, false, "/upgradeStrategy/maximumOverCapacity", "is less than 0"},
		{"negative instances", `{"id":"/a","cmd":"x","instances":-1}`, false, "/instances", "expected between 0"},
		{"negative cpus", `{"id":"/a","cmd":"x","cpus":-1}`, false, "/cpus", "expected 0 or more"},
		{"backoff factor", `{"id":"/a","cmd":"x","backoffFactor":0.5}`, false, "/backoffFactor", "expected 1 or more"},
		{"port index", `{"id":"/a","cmd":"x","healthChecks":[{"protocol":"MESOS_HTTP","portIndex":3}]}`, false, "/healthChecks(0)/portIndex", "one of the app's 1 ports"},
		{"health protocol", `{"id":"/a","cmd":"x","healthChecks":[{"protocol":"GOPHER"}]}`, false, "/healthChecks(0)/protocol", "must be one of"},
		{"command check", `{"id":"/a","cmd":"x","healthChecks":[{"protocol":"COMMAND"}]}`, false, "/healthChecks(0)/command", "command.value"},
		{"check timeout", `{"id":"/a","cmd":"x","healthChecks":[{"protocol":"TCP","intervalSeconds":5,"timeoutSeconds":5}]}`, false, "/healthChecks(0)/timeoutSeconds", "smaller than intervalSeconds"},
		{"two Mesos checks", `{"id":"/a","cmd":"x","healthChecks":[{"protocol":"COMMAND","command":{"value":"true"}},{"protocol":"MESOS_TCP"}]}`, false, "/healthChecks", "at most one"},
		{"readiness port name", `{"id":"/a","cmd":"x","portDefinitions":[{"port":0,"name":"web"}],"readinessChecks":[{"portName":"http"}]}`, false, "/readinessChecks(0)/portName", "no port named http"},
		{"readiness codes", `{"id":"/a","cmd":"x","portDefinitions":[{"port":0,"name":"http"}],"readinessChecks":[{"httpStatusCodesForReady":[]}]}`, false, "/readinessChecks(0)/httpStatusCodesForReady", "at least one"},
		{"constraint", `{"id":"/a","cmd":"x","constraints":[["hostname","SOMETIMES"]]}`, false, "/constraints(0)", "not one of UNIQUE"},
		{"docker image", `{"id":"/a","container":{"type":"DOCKER","docker":{}}}`, false, "/container/docker/image", "must not be empty"},
		{"container type", `{"id":"/a","cmd":"x","container":{"type":"RKT"}}`, false, "/container/type", "DOCKER or MESOS"},
		{"env name", `{"id":"/a","cmd":"x","env":{"1A":"b"}}`, false, "/env(1A)", "variable name"},
		{"port name twice", `{"id":"/a","cmd":"x","portDefinitions":[{"port":0,"name":"http"},{"port":0,"name":"http"}]}`, false, "/portDefinitions(1)/name", "unique"},
		{"port range", `{"id":"/a","cmd":"x","portDefinitions":[{"port":70000}]}`, false, "/portDefinitions(0)/port", "between 0 and 65535"},
		{"require ports", `{"id":"/a","cmd":"x","requirePorts":true,"portDefinitions":[{"port":0}]}`, false, "/portDefinitions(0)/port", "requirePorts"},
		{"bridge with port definitions", `{"id":"/a","container":{"type":"DOCKER","docker":{"image":"nginx","network":"BRIDGE"}},"portDefinitions":[{"port":0}]}`, false, "/portDefinitions", "bridge"},
		{"mappings without a bridge", `{"id":"/a","container":{"type":"DOCKER","docker":{"image":"nginx","network":"HOST","portMappings":[{"containerPort":80}]}}}`, false, "/container/portMappings", "bridge network"},
		{"user network", `{"id":"/a","container":{"type":"DOCKER","docker":{"image":"nginx","network":"USER"}}}`, false, "/container/docker/network", "not supported"},
		{"ports disagree", `{"id":"/a","cmd":"x","ports":[1],"portDefinitions":[{"port":2}]}`, false, "/ports", "disagrees"},
		{"custom executor", `{"id":"/a","cmd":"x","executor":"/opt/exec"}`, false, "/executor", "not supported"},
		{"kill selection", `{"id":"/a","cmd":"x","killSelection":"RANDOM"}`, false, "/killSelection", "YOUNGEST_FIRST"},
		{"fetch dest", `{"id":"/a","cmd":"x","fetch":[{"uri":"http://x/y","destPath":"../../etc"}]}`, false, "/fetch(0)/destPath", "inside the sandbox"},
		{"id not a string", `{"id":5,"cmd":"x"}`, true, "/id", "error.expected.jsstring"},
		{"cpus not a number", `{"id":"/a","cmd":"x","cpus":"many"}`, true, "/cpus", "error.expected.jsnumber"},
		{"nested type", `{"id":"/a","cmd":"x","upgradeStrategy":{"minimumHealthCapacity":"all"}}`, true, "/upgradeStrategy/minimumHealthCapacity", "error.expected.jsnumber"},
		{"not json", `{"id":`, true, "/", "error.invalid.json"},
		{"trailing data", `{"id":"/a","cmd":"x"} {}`, true, "/", "error.expected.eof"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checked(tt.body)
			var inv *InvalidError
			if !errors.As(err, &inv) {
				t.Fatalf("%v, want an InvalidError", err)
			}
			if inv.Syntax != tt.syntax {
				t.Fatalf("syntax %v, want %v: %v", inv.Syntax, tt.syntax, err)
			}
			for _, v := range inv.Violations {
				if v.Path == tt.path && strings.Contains(strings.Join(v.Errors, "|"), tt.msg) {
					return
				}
			}
			t.Fatalf("violations %+v lack %s: %q", inv.Violations, tt.path, tt.msg)
		})
	}
}

// TestDefaults: what a minimal definition becomes, in Marathon's shape.
func TestDefaults(t *testing.T) {
	a, err := checked(`{"id":"web","cmd":"sleep 100"}`)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(a)
	var m map[string]any
	json.Unmarshal(b, &m)
	for _, key := range []string{"id", "cmd", "instances", "cpus", "mem", "disk", "gpus", "executor", "constraints", "fetch",
		"storeUrls", "backoffSeconds", "backoffFactor", "maxLaunchDelaySeconds", "healthChecks", "dependencies",
		"upgradeStrategy", "labels", "ports", "portDefinitions", "requirePorts", "killSelection", "env"} {
		if _, ok := m[key]; !ok {
			t.Errorf("no %q in %s", key, b)
		}
	}
	want := map[string]any{"id": "/web", "instances": 1.0, "cpus": 1.0, "mem": 128.0, "disk": 0.0, "backoffSeconds": 1.0,
		"backoffFactor": 1.15, "maxLaunchDelaySeconds": 3600.0, "killSelection": "YOUNGEST_FIRST", "requirePorts": false}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if us := m["upgradeStrategy"].(map[string]any); us["minimumHealthCapacity"] != 1.0 || us["maximumOverCapacity"] != 1.0 {
		t.Errorf("upgradeStrategy %v", us)
	}
	if pd := m["portDefinitions"].([]any); len(pd) != 1 || pd[0].(map[string]any)["protocol"] != "tcp" {
		t.Errorf("portDefinitions %v: want one dynamic tcp port", pd)
	}
	if _, ok := m["uris"]; ok {
		t.Error("uris written: only fetch is")
	}
}

// TestMarathonExample: the definition from Marathon's docs (examples/
// app.json), trimmed of what mesolite refuses (host-network port
// definitions beside a bridge), is taken and keeps what it does not act
// on.
func TestMarathonExample(t *testing.T) {
	body := `{
	  "id": "/foo", "instances": 2, "cmd": "sleep 1000", "cpus": 0.1, "disk": 0, "mem": 16,
	  "acceptedResourceRoles": ["mesos_role"], "backoffFactor": 1.15, "backoffSeconds": 1,
	  "constraints": [["hostname", "LIKE", "srv2.*"]],
	  "container": {"docker": {"forcePullImage": false, "image": "mesosphere:marathon/latest", "network": "BRIDGE",
	      "parameters": [{"key": "name", "value": "kdc"}],
	      "portMappings": [{"containerPort": 80, "hostPort": 0, "protocol": "tcp", "servicePort": 10019, "name": "http", "labels": {"vip": "192.168.0.1:80"}}],
	      "privileged": false},
	    "type": "DOCKER",
	    "volumes": [{"containerPath": "/docker_storage", "hostPath": "/hdd/tools/docker/registry", "mode": "RW"}]},
	  "dependencies": ["/prod/group"], "env": {"XPS1": "Test", "XPS2": "Rest"}, "executor": "",
	  "healthChecks": [{"gracePeriodSeconds": 300, "ignoreHttp1xx": false, "intervalSeconds": 20, "maxConsecutiveFailures": 3,
	      "path": "/", "portIndex": 0, "protocol": "HTTP", "timeoutSeconds": 20}],
	  "readinessChecks": [{"name": "myReadyCheck", "protocol": "HTTP", "path": "/v1/plan", "portName": "http"}],
	  "labels": {"owner": "zeus", "note": "Away from olympus"}, "maxLaunchDelaySeconds": 3600,
	  "ipAddress": {"groups": ["dev"]},
	  "requirePorts": false, "upgradeStrategy": {"maximumOverCapacity": 1, "minimumHealthCapacity": 1},
	  "fetch": [{"uri": "https://foo.com/setup.py"}, {"uri": "https://foo.com/archive.zip", "executable": false, "extract": true, "cache": true}],
	  "user": "root"
	}`
	a, err := checked(body)
	var inv *InvalidError
	if errors.As(err, &inv) {
		// timeoutSeconds 20 with intervalSeconds 20: Marathon's own
		// example breaks its rule; everything else must pass.
		if len(inv.Violations) != 1 || inv.Violations[0].Path != "/healthChecks(0)/timeoutSeconds" {
			t.Fatalf("%v", err)
		}
		a, err = checked(strings.Replace(body, `"timeoutSeconds": 20`, `"timeoutSeconds": 10`, 1))
	}
	if err != nil {
		t.Fatal(err)
	}
	if !a.bridged() || len(a.PortDefinitions) != 0 || a.portMappings()[0].ServicePort != 10019 || a.Fetch[0].Extract != true {
		t.Fatalf("%+v", a)
	}
	out, _ := json.Marshal(a)
	for _, kept := range []string{`"readinessChecks":[{"name":"myReadyCheck"`, `"ipAddress":{"groups":["dev"]}`, `"dependencies":["/prod/group"]`} {
		if !strings.Contains(string(out), kept) {
			t.Errorf("%s lost from %s", kept, out)
		}
	}
}

func offerOf(res string) *mesos.Offer {
	rs, err := resources.Parse(res)
	if err != nil {
		panic(err)
	}
	return &mesos.Offer{Id: &mesos.OfferID{Value: proto.String("o1")}, AgentId: &mesos.AgentID{Value: proto.String("a1")},
		Hostname: proto.String("node1"), Resources: rs}
}

func envOf(t *mesos.TaskInfo) map[string]string {
	m := map[string]string{}
	for _, v := range t.GetCommand().GetEnvironment().GetVariables() {
		m[v.GetName()] = v.GetValue()
	}
	return m
}

// TestPlace: the TaskInfo of an instance: resources taken from the offer,
// Marathon's variables, the health check on the right port, the kill
// policy, the name mesos-dns reads.
func TestPlace(t *testing.T) {
	a, err := checked(`{"id":"/prod/api","cmd":"serve","cpus":0.5,"mem":64,"disk":10,"instances":1,
		"portDefinitions":[{"port":0,"name":"http"},{"port":0}],"labels":{"team":"core"},"env":{"X":"1","HOST":"mine"},
		"taskKillGracePeriodSeconds":7,
		"healthChecks":[{"protocol":"MESOS_HTTP","portIndex":1,"path":"/health","intervalSeconds":5,"timeoutSeconds":2}]}`)
	if err != nil {
		t.Fatal(err)
	}
	a.Version = "2024-01-01T00:00:00.000Z"
	p, err := a.place("prod_api.1", offerOf("cpus:4;mem:1024;disk:100;ports:[31000-31010]"), offerOf("cpus:4;mem:1024;disk:100;ports:[31000-31010]").Resources, "", "")
	if err != nil {
		t.Fatal(err)
	}
	task := p.task
	if got := resources.Format(task.GetResources()); got != "cpus:0.5; mem:64; disk:10; ports:[31000-31001]" {
		t.Errorf("resources %s", got)
	}
	if !slices.Equal(p.hostPorts, []uint64{31000, 31001}) {
		t.Errorf("host ports %v", p.hostPorts)
	}
	env := envOf(task)
	want := map[string]string{"PORT0": "31000", "PORT1": "31001", "PORT": "31000", "PORTS": "31000,31001", "PORT_HTTP": "31000",
		"HOST": "mine", "X": "1", "MARATHON_APP_ID": "/prod/api", "MARATHON_APP_VERSION": "2024-01-01T00:00:00.000Z",
		"MESOS_TASK_ID": "prod_api.1", "MARATHON_APP_LABELS": "TEAM", "MARATHON_APP_LABEL_TEAM": "core", "MARATHON_APP_RESOURCE_MEM": "64"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	hc := task.GetHealthCheck()
	if hc.GetType() != mesos.HealthCheck_HTTP || hc.GetHttp().GetPort() != 31001 || hc.GetHttp().GetPath() != "/health" ||
		hc.GetIntervalSeconds() != 5 || hc.GetTimeoutSeconds() != 2 || hc.GetConsecutiveFailures() != 3 || hc.GetGracePeriodSeconds() != 300 {
		t.Errorf("health check %v", hc)
	}
	if task.GetKillPolicy().GetGracePeriod().GetNanoseconds() != 7e9 {
		t.Errorf("kill policy %v", task.GetKillPolicy())
	}
	if task.GetName() != "api.prod" || task.GetDiscovery().GetName() != "api.prod" || task.GetDiscovery().GetPorts().GetPorts()[0].GetName() != "http" {
		t.Errorf("name %s, discovery %v", task.GetName(), task.GetDiscovery())
	}
	if task.GetCommand().GetValue() != "serve" || !task.GetCommand().GetShell() {
		t.Errorf("command %v", task.GetCommand())
	}
	if _, err := a.place("prod_api.2", offerOf("cpus:0.1;mem:1024"), offerOf("cpus:0.1;mem:1024").Resources, "", ""); !errors.Is(err, resources.ErrNoFit) {
		t.Errorf("a small offer: %v", err)
	}
}

// TestPlaceDockerBridge: a bridged container gets its host ports from the
// offer, the mapping's container port in PORT_<n>, and a health check on
// the container port.
func TestPlaceDockerBridge(t *testing.T) {
	a, err := checked(`{"id":"/nginx","cpus":0.1,"mem":32,"args":["-g","daemon off;"],
		"container":{"type":"DOCKER","docker":{"image":"nginx","network":"BRIDGE","forcePullImage":true,
			"portMappings":[{"containerPort":80,"hostPort":0},{"containerPort":443,"hostPort":31005,"protocol":"udp,tcp"}],
			"parameters":[{"key":"label","value":"x=y"}]}},
		"healthChecks":[{"protocol":"MESOS_TCP","portIndex":0}]}`)
	if err != nil {
		t.Fatal(err)
	}
	offer := offerOf("cpus:1;mem:128;ports:[31000-31010]")
	p, err := a.place("nginx.1", offer, offer.Resources, "", "")
	if err != nil {
		t.Fatal(err)
	}
	d := p.task.GetContainer().GetDocker()
	if d.GetNetwork() != mesos.ContainerInfo_DockerInfo_BRIDGE || !d.GetForcePullImage() || d.GetImage() != "nginx" || len(d.GetParameters()) != 1 {
		t.Fatalf("docker %v", d)
	}
	if len(d.GetPortMappings()) != 3 || d.GetPortMappings()[0].GetHostPort() != 31000 || d.GetPortMappings()[1].GetHostPort() != 31005 ||
		d.GetPortMappings()[1].GetProtocol() != "udp" || d.GetPortMappings()[2].GetProtocol() != "tcp" {
		t.Fatalf("port mappings %v", d.GetPortMappings())
	}
	env := envOf(p.task)
	if env["PORT0"] != "31000" || env["PORT_80"] != "31000" || env["PORT_443"] != "31005" || env["MARATHON_APP_DOCKER_IMAGE"] != "nginx" {
		t.Fatalf("env %v", env)
	}
	if hc := p.task.GetHealthCheck(); hc.GetTcp().GetPort() != 80 {
		t.Fatalf("health check %v: want the container port", hc)
	}
	if c := p.task.GetCommand(); c.GetShell() || c.Value != nil || !slices.Equal(c.GetArguments(), []string{"-g", "daemon off;"}) {
		t.Fatalf("command %v: the image's entrypoint with the args", c)
	}
}

// TestMergeApp: a partial update changes only what it names; a new form
// of a deprecated field replaces the old one.
func TestMergeApp(t *testing.T) {
	cur, err := checked(`{"id":"/a","cmd":"x","instances":2,"env":{"A":"1"},"ports":[10001]}`)
	if err != nil {
		t.Fatal(err)
	}
	merged, err := mergeApp(cur, []byte(`{"instances":5,"portDefinitions":[{"port":10002},{"port":10003}]}`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := checked(string(merged))
	if err != nil {
		t.Fatal(err)
	}
	if a.Instances != 5 || a.Cmd != "x" || a.Env["A"] != "1" || !slices.Equal(a.Ports, []int{10002, 10003}) {
		t.Fatalf("merged %+v", a)
	}
	if !sameConfig(cur, mustChecked(t, `{"id":"/a","cmd":"x","instances":9,"env":{"A":"1"},"ports":[10001]}`)) {
		t.Fatal("a new instance count is a config change")
	}
	if sameConfig(cur, mustChecked(t, `{"id":"/a","cmd":"y","instances":2,"env":{"A":"1"},"ports":[10001]}`)) {
		t.Fatal("a new command is not a config change")
	}
}

func mustChecked(t *testing.T, body string) *App {
	t.Helper()
	a, err := checked(body)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestLabelSelector(t *testing.T) {
	labels := map[string]string{"env": "prod", "tier": "front end", "team": "core"}
	tests := []struct {
		q    string
		want bool
	}{
		{"env", true},
		{"missing", false},
		{"env==prod", true},
		{"env==dev", false},
		{"env!=dev", true},
		{`tier==front\ end`, true},
		{"env in (dev, prod)", true},
		{"env notin (dev, prod)", false},
		{"env==prod, team==core", true},
		{"env==prod, team==ops", false},
	}
	for _, tt := range tests {
		sel, err := parseLabelSelector(tt.q)
		if err != nil {
			t.Fatalf("%q: %v", tt.q, err)
		}
		if got := sel.matches(labels); got != tt.want {
			t.Errorf("%q: %v, want %v", tt.q, got, tt.want)
		}
	}
	for _, bad := range []string{"env,", "env in dev)", "env is (a)"} {
		if _, err := parseLabelSelector(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestAppPath: nested ids and the sub-resources after them.
func TestAppPath(t *testing.T) {
	tests := []struct {
		path string
		id   PathID
		sub  string
	}{
		{"/v2/apps/web", "/web", ""},
		{"/v2/apps/prod/db/mysql", "/prod/db/mysql", ""},
		{"/v2/apps/prod/web/restart", "/prod/web", "restart"},
		{"/v2/apps/prod/web/tasks", "/prod/web", "tasks"},
		{"/v2/apps/prod/web/tasks/prod_web.x", "/prod/web", "tasks/prod_web.x"},
		{"/v2/apps/web/versions", "/web", "versions"},
		{"/v2/apps/web/versions/2024-01-01T00:00:00.000Z", "/web", "versions/2024-01-01T00:00:00.000Z"},
	}
	for _, tt := range tests {
		id, sub, err := appPath(tt.path)
		if err != nil || id != tt.id || strings.Join(sub, "/") != tt.sub {
			t.Errorf("%s: %s %v %v", tt.path, id, sub, err)
		}
	}
	for _, bad := range []string{"/v2/apps/", "/v2/apps/Web", "/v2/apps/../etc"} {
		if _, _, err := appPath(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// TestBuildGroup: the group tree GET /v2/groups shows, from the apps' ids.
func TestBuildGroup(t *testing.T) {
	apps := map[PathID]*appState{}
	for _, id := range []string{"/a", "/prod/web", "/prod/db/mysql", "/gone/x"} {
		apps[PathID(id)] = &appState{app: &App{ID: id, Version: "v-" + id}}
	}
	apps["/gone/x"].deleted = true
	root, ok := buildGroup(apps, nil, Root)
	if !ok || len(root.Apps) != 1 || root.Apps[0].ID != "/a" || len(root.Groups) != 1 || root.Groups[0].ID != "/prod" {
		t.Fatalf("root %+v", root)
	}
	prod := root.Groups[0]
	if len(prod.Apps) != 1 || prod.Apps[0].ID != "/prod/web" || len(prod.Groups) != 1 || prod.Groups[0].Apps[0].ID != "/prod/db/mysql" {
		t.Fatalf("/prod %+v", prod)
	}
	if _, ok := buildGroup(apps, nil, "/gone"); ok {
		t.Fatal("a group with only a deleted app")
	}
	if g, ok := buildGroup(apps, nil, "/prod/db"); !ok || g.ID != "/prod/db" || len(g.Apps) != 1 {
		t.Fatalf("/prod/db %+v", g)
	}
}

// --env_vars_prefix goes before HOST and the PORT variables, as Marathon
// puts it; MESOS_TASK_ID, MARATHON_APP_* and the app's own variables keep
// their names.
func TestPlaceEnvVarsPrefix(t *testing.T) {
	a, err := checked(`{"id":"/web","cmd":"serve","cpus":0.1,"mem":16,"instances":1,
		"portDefinitions":[{"port":0,"name":"http"}],"env":{"X":"1","PORT_OWN":"7"}}`)
	if err != nil {
		t.Fatal(err)
	}
	offer := offerOf("cpus:1;mem:128;ports:[31000-31000]")
	p, err := a.place("web.1", offer, offer.Resources, "", "ACME_")
	if err != nil {
		t.Fatal(err)
	}
	env := envOf(p.task)
	for k, v := range map[string]string{"ACME_PORT0": "31000", "ACME_PORT": "31000", "ACME_PORTS": "31000", "ACME_PORT_HTTP": "31000",
		"ACME_HOST": offer.GetHostname(), "MESOS_TASK_ID": "web.1", "MARATHON_APP_ID": "/web", "X": "1", "PORT_OWN": "7"} {
		if env[k] != v {
			t.Errorf("%s=%q, want %q", k, env[k], v)
		}
	}
	for _, k := range []string{"PORT0", "PORT", "PORTS", "HOST", "ACME_MESOS_TASK_ID", "ACME_PORT_OWN"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s set: %v", k, env)
		}
	}
}

// A prefix that makes a renamed variable look like another port's
// (PORT_ before PORT is PORT_PORT, a port named "port"'s own) gives the
// same environment every time: each renamed once, from its own value.
func TestPlaceEnvVarsPrefixCollision(t *testing.T) {
	a, err := checked(`{"id":"/web","cmd":"serve","cpus":0.1,"mem":16,"instances":1,
		"portDefinitions":[{"port":0,"name":"port"},{"port":0,"name":"admin"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	offer := offerOf("cpus:1;mem:128;ports:[31000-31001]")
	for range 20 {
		p, err := a.place("web.1", offer, offer.Resources, "", "PORT_")
		if err != nil {
			t.Fatal(err)
		}
		env := envOf(p.task)
		for k, v := range map[string]string{"PORT_PORT": "31000", "PORT_PORT_PORT": "31000", "PORT_PORT0": "31000", "PORT_PORT1": "31001",
			"PORT_PORT_ADMIN": "31001"} {
			if env[k] != v {
				t.Fatalf("%s=%q, want %q: %v", k, env[k], v, env)
			}
		}
	}
}
