package agent_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/agent"
	"github.com/mesolite/mesolite/api/v1/mesos"
	"github.com/mesolite/mesolite/internal/testutil"
)

// masterAgents is the master's view of its agents in /master/state.
type masterAgents struct {
	Slaves []struct {
		ID                string             `json:"id"`
		PID               string             `json:"pid"`
		Hostname          string             `json:"hostname"`
		Port              int                `json:"port"`
		ReservedResources map[string]any     `json:"reserved_resources"`
		UnreservedRes     map[string]float64 `json:"unreserved_resources"`
	} `json:"slaves"`
}

func (c *cluster) masterAgents(t *testing.T) masterAgents {
	t.Helper()
	resp, err := http.Get("http://" + c.addr + "/master/state")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st masterAgents
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

// The agent flags that shape how the master sees it: --advertise_port (a
// NAT or a port mapping in front of the agent), --hostname_lookup=false
// (known by its IP) and --default_role (resources given without a role,
// and detected ones, statically reserved for it).
func TestAdvertisePortHostnameLookupAndDefaultRole(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, func(cfg *agent.Config) {
		cfg.AdvertisePort = 45123
		cfg.NoHostnameLookup = true
		cfg.DefaultRole = "ops"
	})
	if !strings.HasSuffix(a.Endpoint(), ":45123") {
		t.Errorf("agent endpoint %s, want the advertised port 45123", a.Endpoint())
	}
	st := c.masterAgents(t)
	if len(st.Slaves) != 1 {
		t.Fatalf("master has %d agents, want 1", len(st.Slaves))
	}
	s := st.Slaves[0]
	if s.Port != 45123 || !strings.HasSuffix(s.PID, "@127.0.0.1:45123") {
		t.Errorf("master sees the agent at port %d, pid %s; want 45123", s.Port, s.PID)
	}
	if s.Hostname != "127.0.0.1" {
		t.Errorf("hostname %q, want the IP with --hostname_lookup=false", s.Hostname)
	}
	ops, ok := s.ReservedResources["ops"].(map[string]any)
	if !ok || ops["cpus"] == nil || ops["mem"] == nil {
		t.Errorf("reserved resources %v, want cpus and mem reserved for ops", s.ReservedResources)
	}
	if s.UnreservedRes["cpus"] != 0 || s.UnreservedRes["mem"] != 0 {
		t.Errorf("unreserved resources %v, want none left unreserved", s.UnreservedRes)
	}
}

func TestDefaultRoleMustBeARole(t *testing.T) {
	_, err := agent.New(agent.Config{WorkDir: t.TempDir(), IP: "127.0.0.1", DefaultRole: "../x"}, nil)
	if err == nil || !strings.Contains(err.Error(), "--default_role") {
		t.Fatalf("err %v, want --default_role refused", err)
	}
}

// --executor_environment_variables is the executors' (and so the tasks')
// base environment: its variables reach the task, its PATH replaces the
// agent's, and the agent's MESOS_* stand.
func TestExecutorEnvironmentVariables(t *testing.T) {
	c := newCluster(t, nil)
	a := c.startAgent(t, t.TempDir(), 0, func(cfg *agent.Config) {
		cfg.ExecutorEnvironment = map[string]string{"GREETING": "hello from the flag", "PATH": "/usr/bin:/bin"}
	})
	fw := c.subscribe(t, testFramework("env"))
	fw.launch(a, commandTask("env", `echo "greeting=$GREETING path=$PATH fw=$MESOS_FRAMEWORK_ID"`))
	fw.waitState("env", mesos.TaskState_TASK_FINISHED, 10*time.Second)
	var out string
	testutil.Eventually(t, 5*time.Second, 20*time.Millisecond, func() bool {
		out = a.sandboxFile(t, fw.ID(), "env", "stdout")
		return strings.Contains(out, "greeting=")
	}, "task output")
	for _, want := range []string{"greeting=hello from the flag", "path=/usr/bin:/bin", "fw=" + fw.ID()} {
		if !strings.Contains(out, want) {
			t.Errorf("task stdout %q, want %q", out, want)
		}
	}
}
