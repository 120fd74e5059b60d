package cli

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

func TestParseURI(t *testing.T) {
	type want struct {
		value                      string
		executable, extract, cache *bool
		outputFile                 *string
	}
	yes, no := mesos.Ptr(true), mesos.Ptr(false)
	tests := []struct {
		in      string
		want    want
		wantErr string
	}{
		{"http://h:8000/exec", want{value: "http://h:8000/exec"}, ""},
		{"http://h:8000/exec,executable", want{value: "http://h:8000/exec", executable: yes}, ""},
		{"http://h/a.tgz,extract=false", want{value: "http://h/a.tgz", extract: no}, ""},
		{"http://h/a.tgz,cache,output_file=lib/a.tgz", want{value: "http://h/a.tgz", cache: yes, outputFile: mesos.Ptr("lib/a.tgz")}, ""},
		{"http://h/x,executable,cache,extract=false,output_file=run.sh",
			want{value: "http://h/x", executable: yes, extract: no, cache: yes, outputFile: mesos.Ptr("run.sh")}, ""},
		{"http://h/x,executable=false", want{value: "http://h/x", executable: no}, ""},
		{"hdfs://nn:8020/a,b.tgz,extract", want{value: "hdfs://nn:8020/a,b.tgz", extract: yes}, ""},
		{"http://h/q?a=1,b=2", want{value: "http://h/q?a=1,b=2"}, ""},
		{"/local/file,cache", want{value: "/local/file", cache: yes}, ""},
		{",executable", want{}, "no URL"},
		{"http://h/x,output_file=/etc/passwd", want{}, "relative"},
		{"http://h/x,output_file=", want{}, "needs a name"},
		{"http://h/x,extract=maybe", want{}, "not true or false"},
		{"http://h/x,executable,extract", want{}, "not extracted"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseURI(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.Is(err, errdefs.ErrInvalid) {
					t.Fatalf("parseURI(%q) error %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := &mesos.CommandInfo_URI{Value: mesos.Ptr(tt.want.value), Executable: tt.want.executable,
				Extract: tt.want.extract, Cache: tt.want.cache, OutputFile: tt.want.outputFile}
			if !proto.Equal(got, w) {
				t.Fatalf("parseURI(%q) = %v, want %v", tt.in, got, w)
			}
		})
	}
}

func TestParsePortMapping(t *testing.T) {
	tests := []struct {
		in         string
		host, cont uint32
		protocol   string
		wantErr    bool
	}{
		{"31001:8080", 31001, 8080, "", false},
		{"31001:8080/tcp", 31001, 8080, "tcp", false},
		{"31002:53/UDP", 31002, 53, "udp", false},
		{"0:80", 0, 80, "", false},
		{"8080", 0, 0, "", true},
		{"a:80", 0, 0, "", true},
		{"80:0", 0, 0, "", true},
		{"70000:80", 0, 0, "", true},
		{"80:80/sctp", 0, 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			m, err := parsePortMapping(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if m.GetHostPort() != tt.host || m.GetContainerPort() != tt.cont || m.GetProtocol() != tt.protocol {
				t.Fatalf("got %v", m)
			}
		})
	}
}

// TestParseResources checks what the cli adds to resources.Parse, whose
// own tests cover the forms: the flag in errors, and "nothing" for none.
func TestParseResources(t *testing.T) {
	tests := []struct {
		in      string
		want    string // describeResources of the result
		wantErr string
	}{
		{"cpus:0.1;mem:32", "cpus:0.1; mem:32", ""},
		{"cpus(web):2;mem(*):64;ports:[31000-31001,31005]", "cpus(web):2; mem:64; ports:[31000-31001, 31005-31005]", ""},
		{`[{"name":"cpus","type":"SCALAR","scalar":{"value":0.5}}]`, "cpus:0.5", ""},
		{"", "nothing", ""},
		{"cpus", "", `--resources: resource "cpus": want name:value`},
		{"cpus:-1", "", "--resources: resource \"cpus:-1\": scalar value -1 is not a finite non-negative number"},
		{`[{"name":"x","type":"TEXT","text":{"value":"a"}}]`, "", "--resources: JSON resource 0 (x): type TEXT is not a resource type"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseResources(tt.in)
			if tt.wantErr != "" {
				if !errors.Is(err, errdefs.ErrInvalid) || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want ErrInvalid starting %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if describeResources(got) != tt.want {
				t.Fatalf("got %s, want %s", describeResources(got), tt.want)
			}
		})
	}
}

func TestParseEnv(t *testing.T) {
	tests := []struct {
		in      []string
		want    []string // NAME=VALUE
		wantErr bool
	}{
		{nil, nil, false},
		{[]string{"A=1", "B=x=y", "EMPTY="}, []string{"A=1", "B=x=y", "EMPTY="}, false},
		{[]string{`{"Z":"1","A":"two words"}`}, []string{"A=two words", "Z=1"}, false},
		{[]string{"NOVALUE"}, nil, true},
		{[]string{"=v"}, nil, true},
		{[]string{`{"A":1}`}, nil, true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.in, " "), func(t *testing.T) {
			env, err := parseEnv(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			var got []string
			for _, v := range env.GetVariables() {
				if v.GetType() != mesos.Environment_Variable_VALUE {
					t.Fatalf("variable %s has type %s", v.GetName(), v.GetType())
				}
				got = append(got, v.GetName()+"="+v.GetValue())
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"echo hi", []string{"echo", "hi"}},
		{`sh -c 'echo "a b"'`, []string{"sh", "-c", `echo "a b"`}},
		{`a\ b "c\"d" ''`, []string{"a b", `c"d`, ""}},
		{"  spaced\tout\n", []string{"spaced", "out"}},
	}
	for _, tt := range tests {
		got, err := splitWords(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	if _, err := splitWords(`echo "open`); err == nil {
		t.Error("unterminated quote accepted")
	}
}

func TestBuildTask(t *testing.T) {
	base := taskSpec{name: "web", taskID: "web-1", shell: true, resources: "cpus:0.1;mem:32"}
	with := func(f func(*taskSpec)) taskSpec {
		s := base
		f(&s)
		return s
	}
	tests := []struct {
		name    string
		spec    taskSpec
		check   func(*testing.T, *taskTemplate)
		wantErr string
	}{
		{"shell command", with(func(s *taskSpec) {
			s.command = "echo hi"
			s.env = []string{"A=1"}
			s.uris = []string{"http://h/x,executable"}
		}), func(t *testing.T, tt *taskTemplate) {
			cmd := tt.task.GetCommand()
			if cmd.GetValue() != "echo hi" || !cmd.GetShell() || len(cmd.GetArguments()) != 0 {
				t.Fatalf("command %v", cmd)
			}
			if cmd.GetEnvironment().GetVariables()[0].GetName() != "A" || !cmd.GetUris()[0].GetExecutable() {
				t.Fatalf("env/uris %v", cmd)
			}
			if tt.task.Container != nil || tt.task.Executor != nil || tt.executorID() != "web-1" {
				t.Fatalf("task %v", tt.task)
			}
		}, ""},
		{"no shell: value is argv[0] and arguments the whole argv", with(func(s *taskSpec) {
			s.command = "/bin/echo 'a b' c"
			s.shell = false
		}), func(t *testing.T, tt *taskTemplate) {
			cmd := tt.task.GetCommand()
			if cmd.GetShell() || cmd.GetValue() != "/bin/echo" || !slices.Equal(cmd.GetArguments(), []string{"/bin/echo", "a b", "c"}) {
				t.Fatalf("command %v", cmd)
			}
		}, ""},
		{"docker, default network host", with(func(s *taskSpec) {
			s.command = "echo hi"
			s.dockerImage = "busybox"
			s.forcePullImage = true
			s.privileged = true
		}), func(t *testing.T, tt *taskTemplate) {
			c := tt.task.GetContainer()
			d := c.GetDocker()
			if c.GetType() != mesos.ContainerInfo_DOCKER || d.GetImage() != "busybox" || d.GetNetwork() != mesos.ContainerInfo_DockerInfo_HOST ||
				!d.GetForcePullImage() || !d.GetPrivileged() {
				t.Fatalf("container %v", c)
			}
		}, ""},
		{"docker, port mappings imply bridge and ask for the host ports", with(func(s *taskSpec) {
			s.dockerImage = "img"
			s.shell = false
			s.portMappings = []string{"31001:8080", "0:9090/udp"}
		}), func(t *testing.T, tt *taskTemplate) {
			d := tt.task.GetContainer().GetDocker()
			if d.GetNetwork() != mesos.ContainerInfo_DockerInfo_BRIDGE || len(d.GetPortMappings()) != 2 {
				t.Fatalf("docker %v", d)
			}
			if tt.task.GetCommand().Value != nil || tt.task.GetCommand().GetShell() {
				t.Fatalf("no command with shell=false must run the image's entrypoint: %v", tt.task.GetCommand())
			}
			if got := describeResources(tt.want); got != "cpus:0.1; mem:32; ports:[31001-31001]" || tt.pickPorts != 1 {
				t.Fatalf("want %s, pick %d", got, tt.pickPorts)
			}
		}, ""},
		{"docker, shell=false splits for the entrypoint", with(func(s *taskSpec) {
			s.dockerImage = "img"
			s.shell = false
			s.command = "serve --port 80"
		}), func(t *testing.T, tt *taskTemplate) {
			cmd := tt.task.GetCommand()
			if cmd.GetValue() != "serve" || !slices.Equal(cmd.GetArguments(), []string{"--port", "80"}) {
				t.Fatalf("command %v", cmd)
			}
		}, ""},
		{"docker user network", with(func(s *taskSpec) {
			s.command = "true"
			s.dockerImage = "img"
			s.network = "user:backend"
		}), func(t *testing.T, tt *taskTemplate) {
			c := tt.task.GetContainer()
			if c.GetDocker().GetNetwork() != mesos.ContainerInfo_DockerInfo_USER || c.GetNetworkInfos()[0].GetName() != "backend" {
				t.Fatalf("container %v", c)
			}
		}, ""},
		{"custom executor gets the URIs, the task the command as data", with(func(s *taskSpec) {
			s.command = "echo hi"
			s.executorCommand = "./my-executor"
			s.uris = []string{"http://127.0.0.1:8000/my-executor,executable"}
		}), func(t *testing.T, tt *taskTemplate) {
			ex := tt.task.GetExecutor()
			if tt.task.Command != nil || string(tt.task.GetData()) != "echo hi" {
				t.Fatalf("task %v", tt.task)
			}
			if ex.GetExecutorId().GetValue() != "web-1" || ex.GetType() != mesos.ExecutorInfo_CUSTOM ||
				ex.GetCommand().GetValue() != "./my-executor" || len(ex.GetCommand().GetUris()) != 1 {
				t.Fatalf("executor %v", ex)
			}
		}, ""},
		{"generated task id", with(func(s *taskSpec) { s.taskID = ""; s.command = "true" }),
			func(t *testing.T, tt *taskTemplate) {
				if id := tt.task.GetTaskId().GetValue(); !strings.HasPrefix(id, "web.") || len(id) != len("web.")+8 {
					t.Fatalf("task id %q", id)
				}
			}, ""},
		{"no command", base, nil, "--command is required"},
		{"no name", with(func(s *taskSpec) { s.name = ""; s.command = "true" }), nil, "--name is required"},
		{"docker shell without command", with(func(s *taskSpec) { s.dockerImage = "img" }), nil, "--shell=false"},
		{"port mapping on host network", with(func(s *taskSpec) {
			s.dockerImage = "img"
			s.command = "x"
			s.network = "host"
			s.portMappings = []string{"1:2"}
		}), nil, "needs --network=bridge"},
		{"network without image", with(func(s *taskSpec) { s.command = "x"; s.network = "bridge" }), nil, "needs --docker_image"},
		{"bad network", with(func(s *taskSpec) { s.command = "x"; s.dockerImage = "i"; s.network = "overlay" }), nil, "want host, bridge"},
		{"same host port twice", with(func(s *taskSpec) {
			s.dockerImage = "img"
			s.shell = false
			s.portMappings = []string{"31001:80", "31001:81"}
		}), nil, "mapped twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := buildTask(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, got)
		})
	}
}

func writeTaskFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "task.json")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTaskFile(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		spec    taskSpec
		check   func(*testing.T, *taskTemplate)
		wantErr string
	}{
		{"ids filled in, --resources used", `{"name":"from-file","command":{"value":"echo hi"}}`,
			taskSpec{resources: "cpus:0.2;mem:64"},
			func(t *testing.T, tt *taskTemplate) {
				if id := tt.task.GetTaskId().GetValue(); !strings.HasPrefix(id, "from-file.") {
					t.Fatalf("task id %q", id)
				}
				if tt.task.AgentId != nil || tt.agentID != "" {
					t.Fatalf("agent %v pinned %q", tt.task.AgentId, tt.agentID)
				}
				if describeResources(tt.want) != "cpus:0.2; mem:64" || tt.task.GetCommand().GetValue() != "echo hi" {
					t.Fatalf("template %v want %s", tt.task, describeResources(tt.want))
				}
			}, ""},
		{"name from --name, given ids kept, agent pinned, file resources win",
			`{"task_id":{"value":"mine"},"agent_id":{"value":"agent-7"},
			  "resources":[{"name":"mem","type":"SCALAR","scalar":{"value":16}}],
			  "container":{"type":"DOCKER","docker":{"image":"busybox","network":"BRIDGE",
			    "port_mappings":[{"host_port":31000,"container_port":80}]}},
			  "command":{"shell":false}}`,
			taskSpec{name: "flagname", resources: "cpus:1"},
			func(t *testing.T, tt *taskTemplate) {
				if tt.task.GetTaskId().GetValue() != "mine" || tt.task.GetName() != "flagname" || tt.agentID != "agent-7" {
					t.Fatalf("task %v pinned %q", tt.task, tt.agentID)
				}
				if describeResources(tt.want) != "mem:16" || tt.task.GetContainer().GetDocker().GetImage() != "busybox" {
					t.Fatalf("template %v", tt.task)
				}
			}, ""},
		{"missing everything but the command", `{"command":{"value":"true"}}`, taskSpec{},
			func(t *testing.T, tt *taskTemplate) {
				if tt.task.GetName() != tt.task.GetTaskId().GetValue() || !strings.HasPrefix(tt.task.GetName(), "task.") {
					t.Fatalf("task %v", tt.task)
				}
			}, ""},
		{"both command and executor",
			`{"command":{"value":"x"},"executor":{"executor_id":{"value":"e"},"command":{"value":"y"}}}`, taskSpec{}, nil,
			"exactly one of command and executor"},
		{"nested required field missing", `{"command":{"value":"x","uris":[{"executable":true}]}}`, taskSpec{}, nil,
			"uris"},
		{"not JSON", `name: x`, taskSpec{}, nil, "not a JSON object"},
		{"bad resources in the file", `{"command":{"value":"x"},"resources":[{"name":"cpus","type":"SCALAR","scalar":{"value":-1}}]}`,
			taskSpec{}, nil, "resource 0 (cpus): scalar value -1 is not a finite non-negative number"},
		{"combined with --command", `{"command":{"value":"x"}}`, taskSpec{command: "y"}, nil, "--command cannot be combined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.taskFile = writeTaskFile(t, tt.body)
			got, err := buildTask(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, got)
		})
	}
	if _, err := buildTask(taskSpec{taskFile: filepath.Join(t.TempDir(), "absent.json")}); err == nil {
		t.Fatal("missing --task file accepted")
	}
}
