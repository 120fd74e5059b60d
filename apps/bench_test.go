package apps

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mesolite/mesolite/frameworks"
)

// BenchmarkListAppsWithTasks is GET /v2/apps?embed=apps.tasks with 1,000
// apps of 5 running instances each (the target: under 100 ms).
//
//	go test -run '^$' -bench ListApps ./apps/
func BenchmarkListAppsWithTasks(b *testing.B) {
	e := newEngine(engineConfig{Logger: slog.New(slog.DiscardHandler), ServicePortMin: 10000, ServicePortMax: 20000}, nil, newEventBus(1))
	now := time.Now()
	yes := true
	for n := range 1000 {
		a, err := checked(fmt.Sprintf(`{"id":"/group-%d/app-%d","cmd":"serve $PORT0","cpus":0.1,"mem":64,"instances":5,
			"labels":{"team":"t%d"},"healthChecks":[{"protocol":"MESOS_HTTP","portIndex":0,"intervalSeconds":10,"timeoutSeconds":5}]}`, n%50, n, n%7))
		if err != nil {
			b.Fatal(err)
		}
		if err := e.assignServicePorts(a); err != nil {
			b.Fatal(err)
		}
		a.Version = FormatTime(now)
		a.VersionInfo = &VersionInfo{LastScalingAt: a.Version, LastConfigChangeAt: a.Version}
		st := &appState{app: a, instances: map[string]*Instance{}}
		for range 5 {
			id := NewTaskID(PathID(a.ID))
			st.instances[id] = &Instance{TaskID: id, AppID: PathID(a.ID), AgentID: "agent-1", Version: a.Version, ConfigVersion: a.Version,
				Placement: frameworks.Placement{Hostname: "node-1"}, Ports: []uint64{31000}, Condition: Running, MesosState: "TASK_RUNNING",
				Healthy: &yes, LaunchedAt: now, StagedAt: now, StartedAt: now, HealthSince: now}
		}
		e.apps[PathID(a.ID)] = st
	}
	s := &Service{cfg: Config{FrameworkName: "marathon"}, eng: e, bus: e.bus}
	h := s.routes()
	req := httptest.NewRequest(http.MethodGet, "/v2/apps?embed=apps.tasks", nil)
	size := 0
	for b.Loop() {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != 200 {
			b.Fatal(w.Code)
		}
		size = w.Body.Len()
	}
	b.ReportMetric(float64(size)/(1<<20), "MiB-body")
}
