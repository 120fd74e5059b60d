package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
)

// --authenticate_http_readonly protects state, metrics, UI and files on
// master and agent; the scheduler and executor APIs keep working.
func TestReadOnlyEndpointsNeedCredentials(t *testing.T) {
	creds := filepath.Join(t.TempDir(), "credentials.json")
	if err := os.WriteFile(creds, []byte(`{"credentials":[{"principal":"ops","secret":"s3cret"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	auth := []string{"--authenticate_http_readonly", "--http_credentials=" + creds}
	port := testutil.FreePort(t)
	c := &cluster{masterAddr: "127.0.0.1:" + strconv.Itoa(port), agentAddr: "127.0.0.1:" + strconv.Itoa(testutil.FreePort(t)), agentDir: t.TempDir(), agentArgs: auth}
	c.master = start(t, "master", append([]string{"master", "--ip=127.0.0.1", "--port=" + strconv.Itoa(port), "--work_dir=" + t.TempDir()}, auth...)...)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		resp, err := http.Get("http://" + c.masterAddr + "/master/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "master healthy")
	agentPort, _ := strconv.Atoi(c.agentAddr[len("127.0.0.1:"):])
	c.agent = start(t, "agent", append([]string{"agent", "--master=" + c.masterAddr, "--ip=127.0.0.1", "--port=" + strconv.Itoa(agentPort),
		"--work_dir=" + c.agentDir, "--registration_backoff_factor=100ms"}, auth...)...)
	status := func(url, user, pass string) int {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// The files endpoints answer 503 until the agent has an id, so wait for
	// registration rather than just for the listener.
	testutil.Eventually(t, 20*time.Second, 100*time.Millisecond, func() bool {
		return status("http://"+c.agentAddr+"/state", "ops", "s3cret") == http.StatusOK &&
			status("http://"+c.agentAddr+"/files/debug", "ops", "s3cret") != http.StatusServiceUnavailable
	}, "agent registered")
	tests := []struct {
		url, user, pass string
		want            int
	}{
		{"http://" + c.masterAddr + "/master/state", "", "", http.StatusUnauthorized},
		{"http://" + c.masterAddr + "/master/state", "ops", "wrong", http.StatusUnauthorized},
		{"http://" + c.masterAddr + "/master/state", "ops", "s3cret", http.StatusOK},
		{"http://" + c.masterAddr + "/", "", "", http.StatusUnauthorized},
		{"http://" + c.masterAddr + "/master/health", "", "", http.StatusOK},
		{"http://" + c.agentAddr + "/state", "", "", http.StatusUnauthorized},
		{"http://" + c.agentAddr + "/files/debug", "", "", http.StatusUnauthorized},
		{"http://" + c.agentAddr + "/files/debug", "ops", "s3cret", http.StatusOK},
		{"http://" + c.agentAddr + "/health", "", "", http.StatusOK},
	}
	for _, tt := range tests {
		if got := status(tt.url, tt.user, tt.pass); got != tt.want {
			t.Errorf("GET %s as %q: %d, want %d", tt.url, tt.user, got, tt.want)
		}
	}
	// Frameworks and executors are not read-only clients: a task still runs.
	if out, code := mesolite(t, 60*time.Second, "run", "--master="+c.masterAddr, "--name=authed", "--command=true"); code != 0 {
		t.Fatalf("run under auth: %d\n%s", code, out)
	}
}
