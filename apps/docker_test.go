package apps_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mesolite/mesolite/containerizer/docker/dockertest"
	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/internal/testutil"
)

// TestDockerBridgeApp: a Docker app on a bridge network gets a host port
// from the offer for its container port (hostPort 0), serves there, and is
// health-checked on the container's port by the docker executor.
func TestDockerBridgeApp(t *testing.T) {
	dockertest.Images(t)
	c := clustertest.New(t)
	c.AddAgent(t, clustertest.AgentOptions{Hostname: "127.0.0.1", Docker: true})
	s := startApps(t, c.Addr, t.TempDir())
	s.mustCall(t, http.StatusCreated, "POST", "/v2/apps", `{"id":"/docker/httpd","cpus":0.1,"mem":32,"instances":2,
		"container":{"type":"DOCKER","docker":{"image":"`+dockertest.HTTPImage+`","network":"BRIDGE",
			"portMappings":[{"containerPort":8080,"hostPort":0,"name":"http"}]}},
		"healthChecks":[{"protocol":"MESOS_HTTP","portIndex":0,"path":"/","gracePeriodSeconds":30,"intervalSeconds":2,
			"timeoutSeconds":1,"delaySeconds":0}]}`, nil)
	a := s.waitSettled(t, "/docker/httpd", 2, true)
	for _, task := range a.Tasks {
		if len(task.Ports) != 1 || task.Ports[0] < 31000 {
			t.Fatalf("task %+v: want a host port from the offer", task)
		}
		url := fmt.Sprintf("http://127.0.0.1:%d/", task.Ports[0])
		if code, body := get(t, url); code != 200 || body+"\n" != dockertest.HTTPBody {
			t.Fatalf("GET %s: %d %q", url, code, body)
		}
	}
	var list struct {
		Apps []struct {
			Container struct {
				Docker struct {
					PortMappings []struct{ ContainerPort, HostPort, ServicePort int }
				}
			}
		}
	}
	s.mustCall(t, http.StatusOK, "GET", "/v2/apps", "", &list)
	if pm := list.Apps[0].Container.Docker.PortMappings; len(pm) != 1 || pm[0].ContainerPort != 8080 || pm[0].HostPort != 0 || pm[0].ServicePort != 10000 {
		t.Fatalf("port mappings as stored: %+v", pm)
	}
	s.mustCall(t, http.StatusOK, "DELETE", "/v2/apps/docker/httpd", "", nil)
	testutil.Eventually(t, 60*time.Second, 100*time.Millisecond, func() bool {
		var deps []any
		s.mustCall(t, http.StatusOK, "GET", "/v2/deployments", "", &deps)
		return len(deps) == 0 && len(c.RunningTasks(t, s.svc.FrameworkID())) == 0
	}, "the containers stopped")
}
