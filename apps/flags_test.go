package apps_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/apps"
	"github.com/mesolite/mesolite/frameworks/clustertest"
	"github.com/mesolite/mesolite/httpauth"
	"github.com/mesolite/mesolite/internal/testutil"
)

// Marathon's flags that apps wires (see cmd/mesolite's appsMain): the
// framework's web UI link in the master (--webui_url) and in /v2/info,
// the master's UI /v2/info names (--mesos_leader_ui_url), the realm of
// the credentials (--http_realm) and the versions kept per app
// (--zk_max_versions).
func TestMarathonFlagsConfig(t *testing.T) {
	c := fakeCluster(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := apps.New(ctx, apps.Config{Master: c.Addr, Hostname: "127.0.0.1", HTTPPort: ln.Addr().(*net.TCPAddr).Port, WorkDir: t.TempDir(),
		Logger: clustertest.Logger(), Credentials: []httpauth.Credential{{Principal: "ops", Secret: "s3cret"}},
		WebUIURL: "https://marathon.example/ui", MesosLeaderUIURL: "https://mesos.example/", Realm: "Mesosphere", MaxVersions: 2,
		ReconcileInterval: time.Minute, DeclineIdle: time.Second, MinReviveInterval: 50 * time.Millisecond, KillRetry: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx, ln) }()
	defer func() { cancel(); <-done }()
	testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool { return svc.FrameworkID() != "" }, "apps subscribed")
	base := "http://" + ln.Addr().String()
	call := func(method, path, body string, out any) int {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.SetBasicAuth("ops", "s3cret")
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if out != nil {
			json.NewDecoder(resp.Body).Decode(out)
		}
		return resp.StatusCode
	}

	resp, err := http.Get(base + "/v2/apps")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || got != `Basic realm="Mesosphere"` {
		t.Errorf("without credentials: %d, WWW-Authenticate %q; want 401 with the realm of --http_realm", resp.StatusCode, got)
	}

	var info struct {
		Config map[string]any `json:"marathon_config"`
	}
	if code := call("GET", "/v2/info", "", &info); code != 200 || info.Config["webui_url"] != "https://marathon.example/ui" ||
		info.Config["mesos_leader_ui_url"] != "https://mesos.example/" {
		t.Errorf("/v2/info: %d %v", code, info.Config)
	}
	if fw := c.Framework(t, svc.FrameworkID()); fw == nil || fw.WebUIURL != "https://marathon.example/ui" {
		t.Errorf("the master's framework: %+v, want webui_url https://marathon.example/ui", fw)
	}

	if code := call("POST", "/v2/apps", `{"id":"/v","cmd":"sleep 1","cpus":0.1,"mem":16,"instances":0}`, nil); code != 201 {
		t.Fatalf("POST: %d", code)
	}
	for i := 2; i <= 5; i++ {
		testutil.Eventually(t, 10*time.Second, 20*time.Millisecond, func() bool {
			return call("PUT", "/v2/apps/v", `{"cmd":"sleep `+strconv.Itoa(i)+`"}`, nil) == 200
		}, "PUT %d", i)
	}
	var versions struct{ Versions []string }
	if code := call("GET", "/v2/apps/v/versions", "", &versions); code != 200 || len(versions.Versions) != 2 {
		t.Errorf("versions: %d %v, want the last 2 (MaxVersions)", code, versions.Versions)
	}
}
