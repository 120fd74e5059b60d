package docker

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/registry"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/errdefs"
	"google.golang.org/protobuf/proto"
)

func testContainerizer(mutate func(*Options)) *Containerizer {
	o := DefaultOptions()
	o.PublishIP = "127.0.0.1"
	if mutate != nil {
		mutate(&o)
	}
	return &Containerizer{opts: o}
}

func res(name string, v float64) *mesos.Resource {
	return &mesos.Resource{Name: proto.String(name), Type: mesos.Value_SCALAR.Enum(), Scalar: &mesos.Value_Scalar{Value: proto.Float64(v)}}
}

func portRes(ranges ...[2]uint64) *mesos.Resource {
	r := &mesos.Resource{Name: proto.String("ports"), Type: mesos.Value_RANGES.Enum(), Ranges: &mesos.Value_Ranges{}}
	for _, x := range ranges {
		r.Ranges.Range = append(r.Ranges.Range, &mesos.Value_Range{Begin: proto.Uint64(x[0]), End: proto.Uint64(x[1])})
	}
	return r
}

func dockerInfo(network mesos.ContainerInfo_DockerInfo_Network) *mesos.ContainerInfo {
	return &mesos.ContainerInfo{
		Type:   mesos.ContainerInfo_DOCKER.Enum(),
		Docker: &mesos.ContainerInfo_DockerInfo{Image: proto.String("img"), Network: network.Enum()},
	}
}

func TestCommandArgs(t *testing.T) {
	tests := []struct {
		name           string
		ci             *mesos.CommandInfo
		wantEntrypoint []string
		wantCmd        []string
		wantErr        bool
	}{
		{"no command", nil, nil, nil, false},
		{"shell=false no value: image defaults", &mesos.CommandInfo{Shell: proto.Bool(false)}, nil, nil, false},
		{"empty default-shell command: image defaults", &mesos.CommandInfo{}, nil, nil, false},
		{"shell", &mesos.CommandInfo{Value: proto.String("echo hi")}, []string{"/bin/sh"}, []string{"-c", "echo hi"}, false},
		{"explicit shell", &mesos.CommandInfo{Shell: proto.Bool(true), Value: proto.String("x")}, []string{"/bin/sh"}, []string{"-c", "x"}, false},
		{"no shell: value and arguments to the entrypoint", &mesos.CommandInfo{Shell: proto.Bool(false), Value: proto.String("a"), Arguments: []string{"b", "c"}}, nil, []string{"a", "b", "c"}, false},
		{"no shell: arguments only", &mesos.CommandInfo{Shell: proto.Bool(false), Arguments: []string{"b"}}, nil, []string{"b"}, false},
		{"shell without value", &mesos.CommandInfo{Shell: proto.Bool(true), Arguments: []string{"b"}}, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ep, cmd, err := commandArgs(tt.ci)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if !slices.Equal(ep, tt.wantEntrypoint) || !slices.Equal(cmd, tt.wantCmd) {
				t.Errorf("entrypoint %q cmd %q, want %q %q", ep, cmd, tt.wantEntrypoint, tt.wantCmd)
			}
		})
	}
}

// params sets DockerInfo.parameters from key, value pairs.
func params(kv ...string) func(*request) {
	return func(r *request) {
		for i := 0; i+1 < len(kv); i += 2 {
			r.info.Docker.Parameters = append(r.info.Docker.Parameters, &mesos.Parameter{Key: proto.String(kv[i]), Value: proto.String(kv[i+1])})
		}
	}
}

// userNetwork asks for USER networking on the docker network name.
func userNetwork(name string) func(*request) {
	return func(r *request) {
		r.info.Docker.Network = mesos.ContainerInfo_DockerInfo_USER.Enum()
		r.info.NetworkInfos = []*mesos.NetworkInfo{{Name: proto.String(name)}}
	}
}

func allow(params ...string) func(*Options) {
	return func(o *Options) { o.Policy.AllowedParameters = params }
}

func TestTranslate(t *testing.T) {
	sandbox := t.TempDir()
	if err := os.WriteFile(filepath.Join(sandbox, "file.conf"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc", filepath.Join(sandbox, "escape")); err != nil {
		t.Fatal(err)
	}
	base := func() request {
		return request{
			name:      "mesolite-c1",
			info:      dockerInfo(mesos.ContainerInfo_DockerInfo_BRIDGE),
			command:   &mesos.CommandInfo{Value: proto.String("true")},
			resources: []*mesos.Resource{res("cpus", 0.5), res("mem", 16), portRes([2]uint64{31000, 31010})},
			env:       []string{"MESOS_TASK_ID=t1", "A=base"},
			sandbox:   sandbox,
			labels:    map[string]string{"org.mesolite.owner": "me"},
		}
	}
	tests := []struct {
		name    string
		opts    func(*Options)
		mutate  func(*request)
		check   func(t *testing.T, d *dockerConfig)
		wantErr error
		errText string
	}{
		{name: "limits: shares, 32 MB floor, swap capped", check: func(t *testing.T, d *dockerConfig) {
			if d.host.CPUShares != 512 || d.host.Memory != 32<<20 || d.host.MemorySwap != 32<<20 || d.host.CPUQuota != 0 {
				t.Errorf("shares %d mem %d swap %d quota %d", d.host.CPUShares, d.host.Memory, d.host.MemorySwap, d.host.CPUQuota)
			}
		}},
		{name: "cfs quota", opts: func(o *Options) { o.EnableCFS = true }, check: func(t *testing.T, d *dockerConfig) {
			if d.host.CPUQuota != 50000 || d.host.CPUPeriod != 100000 {
				t.Errorf("quota %d period %d", d.host.CPUQuota, d.host.CPUPeriod)
			}
		}},
		{name: "sandbox mount and labels", check: func(t *testing.T, d *dockerConfig) {
			if !slices.Contains(d.host.Binds, sandbox+":/mnt/mesos/sandbox") {
				t.Errorf("binds %v lack the sandbox", d.host.Binds)
			}
			if d.config.Labels["org.mesolite.owner"] != "me" || d.host.NetworkMode != "bridge" {
				t.Errorf("labels %v network %q", d.config.Labels, d.host.NetworkMode)
			}
		}},
		{name: "port mapping in range published on the agent ip", mutate: func(r *request) {
			r.info.Docker.PortMappings = []*mesos.ContainerInfo_DockerInfo_PortMapping{{HostPort: proto.Uint32(31005), ContainerPort: proto.Uint32(80), Protocol: proto.String("UDP")}}
		}, check: func(t *testing.T, d *dockerConfig) {
			b := d.host.PortBindings["80/udp"]
			if len(b) != 1 || b[0].HostIP != "127.0.0.1" || b[0].HostPort != "31005" {
				t.Errorf("bindings %v", d.host.PortBindings)
			}
			if _, ok := d.config.ExposedPorts["80/udp"]; !ok {
				t.Errorf("exposed %v", d.config.ExposedPorts)
			}
		}},
		{name: "port mapping out of range", mutate: func(r *request) {
			r.info.Docker.PortMappings = []*mesos.ContainerInfo_DockerInfo_PortMapping{{HostPort: proto.Uint32(8080), ContainerPort: proto.Uint32(80)}}
		}, wantErr: errdefs.ErrInvalid, errText: "host port 8080 is not in the task's ports resource [31000-31010]"},
		{name: "port mapping without ports resource", mutate: func(r *request) {
			r.resources = r.resources[:2]
			r.info.Docker.PortMappings = []*mesos.ContainerInfo_DockerInfo_PortMapping{{HostPort: proto.Uint32(31000), ContainerPort: proto.Uint32(80)}}
		}, wantErr: errdefs.ErrInvalid, errText: "(none)"},
		{name: "bad protocol", mutate: func(r *request) {
			r.info.Docker.PortMappings = []*mesos.ContainerInfo_DockerInfo_PortMapping{{HostPort: proto.Uint32(31000), ContainerPort: proto.Uint32(80), Protocol: proto.String("sctp")}}
		}, wantErr: errdefs.ErrInvalid, errText: "not tcp or udp"},
		{name: "user network", mutate: func(r *request) {
			r.info.Docker.Network = mesos.ContainerInfo_DockerInfo_USER.Enum()
			r.info.NetworkInfos = []*mesos.NetworkInfo{{Name: proto.String("mynet")}}
			r.info.Docker.Parameters = []*mesos.Parameter{{Key: proto.String("network-alias"), Value: proto.String("web")}, {Key: proto.String("ip"), Value: proto.String("10.9.0.5")}}
		}, check: func(t *testing.T, d *dockerConfig) {
			ep := d.network.EndpointsConfig["mynet"]
			if d.host.NetworkMode != "mynet" || ep == nil || !slices.Equal(ep.Aliases, []string{"web"}) || ep.IPAMConfig.IPv4Address != "10.9.0.5" {
				t.Errorf("network %q endpoints %+v", d.host.NetworkMode, d.network.EndpointsConfig)
			}
		}},
		{name: "user network without a name", mutate: func(r *request) {
			r.info.Docker.Network = mesos.ContainerInfo_DockerInfo_USER.Enum()
		}, wantErr: errdefs.ErrInvalid, errText: "network_infos"},
		{name: "hostname with host network", mutate: func(r *request) {
			r.info.Docker.Network = mesos.ContainerInfo_DockerInfo_HOST.Enum()
			r.info.Hostname = proto.String("h")
		}, wantErr: errdefs.ErrInvalid, errText: "HOST networking"},
		{name: "privileged refused", mutate: func(r *request) { r.info.Docker.Privileged = proto.Bool(true) }, wantErr: errdefs.ErrForbidden, errText: "--docker_allow_privileged"},
		{name: "privileged allowed", opts: func(o *Options) { o.AllowPrivileged = true }, mutate: func(r *request) { r.info.Docker.Privileged = proto.Bool(true) }, check: func(t *testing.T, d *dockerConfig) {
			if !d.host.Privileged {
				t.Error("not privileged")
			}
		}},
		{name: "environment: command env over base, env parameter last", mutate: func(r *request) {
			r.command.Environment = &mesos.Environment{Variables: []*mesos.Environment_Variable{{Name: proto.String("A"), Value: proto.String("cmd")}, {Name: proto.String("B"), Value: proto.String("b")}}}
			r.info.Docker.Parameters = []*mesos.Parameter{{Key: proto.String("env"), Value: proto.String("B=param")}}
		}, check: func(t *testing.T, d *dockerConfig) {
			want := []string{"MESOS_TASK_ID=t1", "A=cmd", "B=param"}
			if !slices.Equal(d.config.Env, want) {
				t.Errorf("env %q, want %q", d.config.Env, want)
			}
		}},
		{name: "secret env refused", mutate: func(r *request) {
			r.command.Environment = &mesos.Environment{Variables: []*mesos.Environment_Variable{{Name: proto.String("S"), Type: mesos.Environment_Variable_SECRET.Enum()}}}
		}, wantErr: errdefs.ErrInvalid, errText: "secrets"},
		{name: "parameters", opts: func(o *Options) { o.Policy.AllowedParameters = []string{"cap-add"} }, mutate: func(r *request) {
			for _, kv := range [][2]string{{"memory-swap", "1g"}, {"ulimit", "nofile=1024:2048"}, {"cap-add", "NET_ADMIN"}, {"--cap-drop", "MKNOD"},
				{"add-host", "db:10.0.0.1"}, {"dns", "10.0.0.2"}, {"user", "nobody"}, {"workdir", "/w"}, {"hostname", "h1"},
				{"entrypoint", "/bin/true"}, {"shm-size", "128m"}, {"label", "team=x"}, {"read-only", "true"}, {"tmpfs", "/run:size=1m"}, {"pids-limit", "50"}} {
				r.info.Docker.Parameters = append(r.info.Docker.Parameters, &mesos.Parameter{Key: proto.String(kv[0]), Value: proto.String(kv[1])})
			}
		}, check: func(t *testing.T, d *dockerConfig) {
			h, c := d.host, d.config
			switch {
			case h.MemorySwap != 1<<30 || !d.swapSet:
				t.Errorf("memory-swap %d", h.MemorySwap)
			case len(h.Ulimits) != 1 || h.Ulimits[0].Name != "nofile" || h.Ulimits[0].Soft != 1024 || h.Ulimits[0].Hard != 2048:
				t.Errorf("ulimits %v", h.Ulimits)
			case !slices.Equal(h.CapAdd, []string{"NET_ADMIN"}) || !slices.Equal(h.CapDrop, []string{"MKNOD"}):
				t.Errorf("caps %v %v", h.CapAdd, h.CapDrop)
			case !slices.Equal(h.ExtraHosts, []string{"db:10.0.0.1"}) || !slices.Equal(h.DNS, []string{"10.0.0.2"}):
				t.Errorf("hosts %v dns %v", h.ExtraHosts, h.DNS)
			case c.User != "nobody" || c.WorkingDir != "/w" || c.Hostname != "h1" || !slices.Equal(c.Entrypoint, []string{"/bin/true"}):
				t.Errorf("config %+v", c)
			case h.ShmSize != 128<<20 || c.Labels["team"] != "x" || !h.ReadonlyRootfs || h.Tmpfs["/run"] != "size=1m" || *h.PidsLimit != 50:
				t.Errorf("host %+v", h)
			}
		}},
		{name: "unknown parameter", mutate: func(r *request) {
			r.info.Docker.Parameters = []*mesos.Parameter{{Key: proto.String("frob"), Value: proto.String("1")}}
		}, wantErr: errdefs.ErrInvalid, errText: `docker parameter "frob" is not supported (supported: add-host, `},
		{name: "parameter owned by a field", mutate: func(r *request) {
			r.info.Docker.Parameters = []*mesos.Parameter{{Key: proto.String("publish"), Value: proto.String("80:80")}}
		}, wantErr: errdefs.ErrInvalid, errText: "set container.docker.port_mappings instead"},
		{name: "label may not forge ownership", mutate: func(r *request) {
			r.info.Docker.Parameters = []*mesos.Parameter{{Key: proto.String("label"), Value: proto.String("org.mesolite.owner=other")}}
		}, wantErr: errdefs.ErrInvalid, errText: "agent's"},
		{name: "volumes", opts: func(o *Options) {
			o.Policy.VolumeAllowedPaths = []string{"/srv"}
			o.Policy.AllowedParameters = []string{"named-volume"}
		}, mutate: func(r *request) {
			r.info.Volumes = []*mesos.Volume{
				{ContainerPath: proto.String("/data"), HostPath: proto.String("data/sub"), Mode: mesos.Volume_RW.Enum()},
				{ContainerPath: proto.String("conf"), HostPath: proto.String("file.conf"), Mode: mesos.Volume_RO.Enum()},
				{ContainerPath: proto.String("/host"), HostPath: proto.String("/srv"), Mode: mesos.Volume_RO.Enum()},
				{ContainerPath: proto.String("/scratch"), Mode: mesos.Volume_RW.Enum()},
				{ContainerPath: proto.String("/named"), Mode: mesos.Volume_RW.Enum(), Source: &mesos.Volume_Source{Type: mesos.Volume_Source_DOCKER_VOLUME.Enum(), DockerVolume: &mesos.Volume_Source_DockerVolume{Name: proto.String("v1")}}},
				{ContainerPath: proto.String("/sp"), Mode: mesos.Volume_RO.Enum(), Source: &mesos.Volume_Source{Type: mesos.Volume_Source_SANDBOX_PATH.Enum(), SandboxPath: &mesos.Volume_Source_SandboxPath{Type: mesos.Volume_Source_SandboxPath_SELF.Enum(), Path: proto.String("sp")}}},
			}
		}, check: func(t *testing.T, d *dockerConfig) {
			want := []string{
				sandbox + ":/mnt/mesos/sandbox",
				filepath.Join(sandbox, "data/sub") + ":/data:rw",
				filepath.Join(sandbox, "file.conf") + ":/mnt/mesos/sandbox/conf:ro",
				"/srv:/host:ro",
				filepath.Join(sandbox, "sp") + ":/sp:ro",
			}
			if !slices.Equal(d.host.Binds, want) {
				t.Errorf("binds %q\nwant %q", d.host.Binds, want)
			}
			if len(d.host.Mounts) != 2 || d.host.Mounts[0].Target != "/scratch" || d.host.Mounts[1].Source != "v1" {
				t.Errorf("mounts %+v", d.host.Mounts)
			}
			if fi, err := os.Stat(filepath.Join(sandbox, "data/sub")); err != nil || !fi.IsDir() {
				t.Errorf("relative host path not created in the sandbox: %v", err)
			}
		}},
		{name: "volume escaping by ..", mutate: func(r *request) {
			r.info.Volumes = []*mesos.Volume{{ContainerPath: proto.String("/x"), HostPath: proto.String("../x"), Mode: mesos.Volume_RW.Enum()}}
		}, wantErr: errdefs.ErrInvalid, errText: "inside the sandbox"},
		{name: "volume escaping by symlink", mutate: func(r *request) {
			r.info.Volumes = []*mesos.Volume{{ContainerPath: proto.String("/x"), HostPath: proto.String("escape/sub"), Mode: mesos.Volume_RW.Enum()}}
		}, wantErr: errdefs.ErrInvalid, errText: "inside the sandbox"},
		// What a framework asked of dockerd to escape its container, each
		// refused unless the agent's operator allowed it.
		{name: "host root as a volume", mutate: func(r *request) {
			r.info.Volumes = []*mesos.Volume{{ContainerPath: proto.String("/host"), HostPath: proto.String("/"), Mode: mesos.Volume_RW.Enum()}}
		}, wantErr: errdefs.ErrForbidden, errText: "--docker_volume_allowed_paths"},
		{name: "host path outside the allowed ones", opts: func(o *Options) { o.Policy.VolumeAllowedPaths = []string{"/srv"} }, mutate: func(r *request) {
			r.info.Volumes = []*mesos.Volume{{ContainerPath: proto.String("/etc2"), HostPath: proto.String("/srv/../etc"), Mode: mesos.Volume_RW.Enum()}}
		}, wantErr: errdefs.ErrForbidden, errText: "/etc"},
		{name: "HOST_PATH source", mutate: func(r *request) {
			r.info.Volumes = []*mesos.Volume{{ContainerPath: proto.String("/h"), Mode: mesos.Volume_RW.Enum(),
				Source: &mesos.Volume_Source{Type: mesos.Volume_Source_HOST_PATH.Enum(), HostPath: &mesos.Volume_Source_HostPath{Path: proto.String("/var/run/docker.sock")}}}}
		}, wantErr: errdefs.ErrForbidden, errText: "docker.sock"},
		{name: "volume parameter", mutate: func(r *request) {
			r.info.Docker.Parameters = []*mesos.Parameter{{Key: proto.String("volume"), Value: proto.String("/:/host")}}
		}, wantErr: errdefs.ErrForbidden, errText: "--docker_volume_allowed_paths"},
		{name: "local volume bound to a host path", mutate: func(r *request) {
			r.info.Volumes = []*mesos.Volume{{ContainerPath: proto.String("/v"), Mode: mesos.Volume_RW.Enum(),
				Source: &mesos.Volume_Source{Type: mesos.Volume_Source_DOCKER_VOLUME.Enum(), DockerVolume: &mesos.Volume_Source_DockerVolume{
					Name: proto.String("v"), Driver: proto.String("local"), DriverOptions: &mesos.Parameters{Parameter: []*mesos.Parameter{
						{Key: proto.String("o"), Value: proto.String("bind")}, {Key: proto.String("device"), Value: proto.String("/")}}}}}}}
		}, wantErr: errdefs.ErrForbidden, errText: "volume-driver"},
		{name: "device parameter", mutate: func(r *request) {
			r.info.Docker.Parameters = []*mesos.Parameter{{Key: proto.String("device"), Value: proto.String("/dev/sda")}}
		}, wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=device"},
		{name: "pid=host parameter", mutate: func(r *request) {
			r.info.Docker.Parameters = []*mesos.Parameter{{Key: proto.String("pid"), Value: proto.String("host")}}
		}, wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=pid"},
		{name: "cap-add parameter", mutate: func(r *request) {
			r.info.Docker.Parameters = []*mesos.Parameter{{Key: proto.String("cap-add"), Value: proto.String("SYS_ADMIN")}}
		}, wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=cap-add"},
		{name: "unconfined seccomp", mutate: func(r *request) {
			r.info.Docker.Parameters = []*mesos.Parameter{{Key: proto.String("security-opt"), Value: proto.String("seccomp=unconfined")}}
		}, wantErr: errdefs.ErrForbidden, errText: "security-opt"},
		{name: "another container's network through USER", mutate: userNetwork("container:db"),
			wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=network-container"},
		{name: "another container's network allowed", opts: allow("network-container"), mutate: userNetwork("container:db"), check: func(t *testing.T, d *dockerConfig) {
			if d.host.NetworkMode != "container:db" || len(d.network.EndpointsConfig) != 0 {
				t.Errorf("network %q endpoints %v", d.host.NetworkMode, d.network.EndpointsConfig)
			}
		}},
		{name: "another container's network with ports", opts: allow("network-container"), mutate: func(r *request) {
			userNetwork("container:db")(r)
			r.info.Docker.PortMappings = []*mesos.ContainerInfo_DockerInfo_PortMapping{{HostPort: proto.Uint32(31000), ContainerPort: proto.Uint32(80)}}
		}, wantErr: errdefs.ErrInvalid, errText: "another container's network"},
		{name: "another container's network with a hostname", opts: allow("network-container"), mutate: func(r *request) {
			userNetwork("container:db")(r)
			r.info.Hostname = proto.String("h")
		}, wantErr: errdefs.ErrInvalid, errText: "another container's network"},
		{name: "USER network named host", mutate: func(r *request) {
			userNetwork("host")(r)
			r.info.Docker.PortMappings = []*mesos.ContainerInfo_DockerInfo_PortMapping{{HostPort: proto.Uint32(31000), ContainerPort: proto.Uint32(80)}}
		}, wantErr: errdefs.ErrInvalid, errText: "set container.docker.network to HOST"},
		{name: "USER network named none", mutate: userNetwork("none"), wantErr: errdefs.ErrInvalid, errText: "set container.docker.network to NONE"},
		{name: "env parameter copying the agent's variable", mutate: params("env", "HOME"),
			wantErr: errdefs.ErrInvalid, errText: "env parameter needs NAME=VALUE"},
		{name: "env parameter with an empty value", mutate: params("env", "EMPTY="), check: func(t *testing.T, d *dockerConfig) {
			if !slices.Contains(d.config.Env, "EMPTY=") {
				t.Errorf("env %q lacks EMPTY=", d.config.Env)
			}
		}},
		{name: "log driver", mutate: params("log-driver", "awslogs"), wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=log-driver"},
		{name: "log option to dockerd's default driver", mutate: params("log-opt", "syslog-address=tcp://evil:514"),
			wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=log-driver"},
		{name: "json-file log driver", mutate: params("log-driver", "json-file"), check: func(t *testing.T, d *dockerConfig) {
			if d.host.LogConfig.Type != "json-file" {
				t.Errorf("log config %+v", d.host.LogConfig)
			}
		}},
		{name: "log driver allowed", opts: allow("log-driver"), mutate: params("log-driver", "syslog", "log-opt", "tag=x"), check: func(t *testing.T, d *dockerConfig) {
			if d.host.LogConfig.Type != "syslog" || d.host.LogConfig.Config["tag"] != "x" {
				t.Errorf("log config %+v", d.host.LogConfig)
			}
		}},
		{name: "rtprio ulimit parameter", mutate: params("ulimit", "rtprio=99"), wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=ulimit-priority"},
		{name: "nice rlimit", mutate: func(r *request) {
			r.info.RlimitInfo = &mesos.RLimitInfo{Rlimits: []*mesos.RLimitInfo_RLimit{{Type: mesos.RLimitInfo_RLimit_RLMT_NICE.Enum(), Soft: proto.Uint64(40), Hard: proto.Uint64(40)}}}
		}, wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=ulimit-priority"},
		{name: "unlimited rtprio rlimit", mutate: func(r *request) {
			r.info.RlimitInfo = &mesos.RLimitInfo{Rlimits: []*mesos.RLimitInfo_RLimit{{Type: mesos.RLimitInfo_RLimit_RLMT_RTPRIO.Enum()}}}
		}, wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=ulimit-priority"},
		{name: "zero rtprio grants nothing", mutate: params("ulimit", "rtprio=0:0"), check: func(t *testing.T, d *dockerConfig) {
			if len(d.host.Ulimits) != 1 || d.host.Ulimits[0].Name != "rtprio" {
				t.Errorf("ulimits %+v", d.host.Ulimits)
			}
		}},
		{name: "rtprio allowed", opts: allow("ulimit-priority"), mutate: params("ulimit", "rtprio=99"), check: func(t *testing.T, d *dockerConfig) {
			if len(d.host.Ulimits) != 1 || d.host.Ulimits[0].Soft != 99 {
				t.Errorf("ulimits %+v", d.host.Ulimits)
			}
		}},
		{name: "named volume parameter", mutate: params("volume", "otherframework-data:/data"),
			wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=named-volume"},
		{name: "named DOCKER_VOLUME source", mutate: func(r *request) {
			r.info.Volumes = []*mesos.Volume{{ContainerPath: proto.String("/data"), Mode: mesos.Volume_RW.Enum(),
				Source: &mesos.Volume_Source{Type: mesos.Volume_Source_DOCKER_VOLUME.Enum(), DockerVolume: &mesos.Volume_Source_DockerVolume{Name: proto.String("otherframework-data")}}}}
		}, wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=named-volume"},
		{name: "relative bind source", mutate: params("volume", "./data:/data"),
			wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=named-volume"},
		{name: "anonymous volumes", mutate: func(r *request) {
			params("volume", "/cache")(r)
			r.info.Volumes = []*mesos.Volume{{ContainerPath: proto.String("/scratch"), Mode: mesos.Volume_RW.Enum(),
				Source: &mesos.Volume_Source{Type: mesos.Volume_Source_DOCKER_VOLUME.Enum(), DockerVolume: &mesos.Volume_Source_DockerVolume{}}}}
		}, check: func(t *testing.T, d *dockerConfig) {
			if !slices.Contains(d.host.Binds, "/cache") || len(d.host.Mounts) != 1 || d.host.Mounts[0].Source != "" {
				t.Errorf("binds %q mounts %+v", d.host.Binds, d.host.Mounts)
			}
		}},
		{name: "negative oom-score-adj", mutate: params("oom-score-adj", "-1000"), wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=resource-overrides"},
		{name: "positive oom-score-adj", mutate: params("oom-score-adj", "500"), check: func(t *testing.T, d *dockerConfig) {
			if d.host.OomScoreAdj != 500 {
				t.Errorf("oom-score-adj %d", d.host.OomScoreAdj)
			}
		}},
		{name: "unlimited cpu-quota", mutate: params("cpu-quota", "-1"), wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=resource-overrides"},
		{name: "cpu-quota 0 drops the cfs quota", opts: func(o *Options) { o.EnableCFS = true }, mutate: params("cpu-quota", "0"),
			wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=resource-overrides"},
		{name: "shorter cpu-period raises the cfs quota", opts: func(o *Options) { o.EnableCFS = true }, mutate: params("cpu-period", "10000"),
			wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=resource-overrides"},
		{name: "lower cfs quota", opts: func(o *Options) { o.EnableCFS = true }, mutate: params("cpu-quota", "20000"), check: func(t *testing.T, d *dockerConfig) {
			if d.host.CPUQuota != 20000 {
				t.Errorf("quota %d", d.host.CPUQuota)
			}
		}},
		{name: "unlimited memory-swap", mutate: params("memory-swap", "-1"), wantErr: errdefs.ErrForbidden, errText: "--docker_allowed_parameters=resource-overrides"},
		{name: "resource overrides allowed", opts: func(o *Options) {
			o.EnableCFS = true
			o.Policy.AllowedParameters = []string{"resource-overrides"}
		}, mutate: params("memory-swap", "-1", "cpu-quota", "-1", "oom-score-adj", "-500"), check: func(t *testing.T, d *dockerConfig) {
			if d.host.MemorySwap != -1 || d.host.CPUQuota != -1 || d.host.OomScoreAdj != -500 {
				t.Errorf("swap %d quota %d oom-score-adj %d", d.host.MemorySwap, d.host.CPUQuota, d.host.OomScoreAdj)
			}
		}},
		{name: "privileged parameter-free", mutate: func(r *request) { r.info.Docker.Privileged = proto.Bool(true) }, wantErr: errdefs.ErrForbidden, errText: "--docker_allow_privileged"},
		{name: "no image", mutate: func(r *request) { r.info.Docker.Image = proto.String("") }, wantErr: errdefs.ErrInvalid, errText: "image"},
		{name: "tty and rlimits", mutate: func(r *request) {
			r.info.TtyInfo = &mesos.TTYInfo{}
			r.info.RlimitInfo = &mesos.RLimitInfo{Rlimits: []*mesos.RLimitInfo_RLimit{{Type: mesos.RLimitInfo_RLimit_RLMT_NOFILE.Enum(), Soft: proto.Uint64(10), Hard: proto.Uint64(20)}}}
		}, check: func(t *testing.T, d *dockerConfig) {
			if !d.config.Tty || len(d.host.Ulimits) != 1 || d.host.Ulimits[0].Name != "nofile" || d.host.Ulimits[0].Hard != 20 {
				t.Errorf("tty %v ulimits %+v", d.config.Tty, d.host.Ulimits)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testContainerizer(tt.opts)
			r := base()
			if tt.mutate != nil {
				tt.mutate(&r)
			}
			d, err := c.translate(r)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.errText) {
					t.Fatalf("err %v, want %v containing %q", err, tt.wantErr, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, d)
		})
	}
}

func TestRegistryAuth(t *testing.T) {
	enc := func(u, p string) string { return base64.StdEncoding.EncodeToString([]byte(u + ":" + p)) }
	sandbox := t.TempDir()
	if err := os.MkdirAll(filepath.Join(sandbox, ".docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := `{"auths":{"registry.example.com:5000":{"auth":"` + enc("task", "secret") + `"}}}`
	if err := os.WriteFile(filepath.Join(sandbox, ".docker", "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	agentCfg := `{"auths":{"https://index.docker.io/v1/":{"auth":"` + enc("agent", "pw") + `"}}}`
	tests := []struct {
		image, wantUser string
	}{
		{"registry.example.com:5000/team/app:1", "task"},
		{"busybox", "agent"},
		{"other.example.com/x", ""},
	}
	for _, tt := range tests {
		t.Run(tt.image, func(t *testing.T) {
			got, err := registryAuth(tt.image, sandbox, agentCfg)
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantUser == "" {
				if got != "" {
					t.Errorf("auth %q, want none", got)
				}
				return
			}
			b, err := base64.URLEncoding.DecodeString(got)
			if err != nil {
				t.Fatal(err)
			}
			var ac registry.AuthConfig
			if err := json.Unmarshal(b, &ac); err != nil {
				t.Fatal(err)
			}
			if ac.Username != tt.wantUser || ac.Password == "" {
				t.Errorf("auth %+v, want user %s", ac, tt.wantUser)
			}
		})
	}
}

// The sandbox is the task's: a docker config there that is a link out of
// it (to another task's credentials or the agent's), a FIFO (which would
// hang a blocking open) or an oversized file is refused, never followed or
// read by the root agent.
func TestAttackRegistryAuthFromSandbox(t *testing.T) {
	secret := t.TempDir()
	stolen := `{"auths":{"registry.example.com":{"username":"victim","password":"pw"}}}`
	if err := os.WriteFile(filepath.Join(secret, "config.json"), []byte(stolen), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		plant func(t *testing.T, sandbox string)
	}{
		{"symlink out of the sandbox", func(t *testing.T, sandbox string) {
			if err := os.Symlink(filepath.Join(secret, "config.json"), filepath.Join(sandbox, ".dockercfg")); err != nil {
				t.Fatal(err)
			}
		}},
		{"directory link out of the sandbox", func(t *testing.T, sandbox string) {
			if err := os.Symlink(secret, filepath.Join(sandbox, ".docker")); err != nil {
				t.Fatal(err)
			}
		}},
		{"fifo", func(t *testing.T, sandbox string) {
			if err := syscall.Mkfifo(filepath.Join(sandbox, ".dockercfg"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{"oversized", func(t *testing.T, sandbox string) {
			big := `{"registry.example.com":{"username":"x","password":"` + strings.Repeat("a", maxDockerConfig) + `"}}`
			if err := os.WriteFile(filepath.Join(sandbox, ".dockercfg"), []byte(big), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sandbox := t.TempDir()
			tt.plant(t, sandbox)
			done := make(chan struct{})
			var got string
			var err error
			go func() {
				defer close(done)
				got, err = registryAuth("registry.example.com/app", sandbox, "")
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("registryAuth hung on the planted file")
			}
			if err == nil || got != "" {
				t.Fatalf("auth %q, err %v: want the planted config refused", got, err)
			}
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("err %v, want an invalid-argument error", err)
			}
		})
	}
}
