package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
)

// TestJobsOverTLSWithAuthentication runs `mesolite jobs` against a master
// that speaks TLS only and requires frameworks to authenticate, as Chronos
// runs with --mesos_authentication_principal and
// --mesos_authentication_secret_file in a TLS cluster: jobs reaches the
// master over https with the cluster's CA, subscribes as its principal,
// serves its own API over https (webui_url says so) and runs a job there;
// an instance with a wrong secret is refused by the master and exits
// saying so, and plain http to the API gets 400.
func TestJobsOverTLSWithAuthentication(t *testing.T) {
	pki := newTestPKI(t)
	dir := t.TempDir()
	creds, secret, wrong := filepath.Join(dir, "credentials"), filepath.Join(dir, "secret"), filepath.Join(dir, "wrong")
	for f, body := range map[string]string{creds: "chronos s3cret\n", secret: "s3cret\n", wrong: "guessed\n"} {
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	masterAddr, _ := startTLSCluster(t, pki, "--authenticate_frameworks", "--credentials="+creds)

	jobsFlags := func(port, secretFile string) []string {
		return []string{"jobs", "--master=" + masterAddr, "--http_address=127.0.0.1", "--http_port=" + port, "--hostname=127.0.0.1",
			"--work_dir=" + t.TempDir(), "--ssl_cert_file=" + pki.Cert, "--ssl_key_file=" + pki.Key, "--ssl_ca_file=" + pki.CA,
			"--mesos_authentication_principal=chronos", "--mesos_authentication_secret_file=" + secretFile}
	}
	port := strconv.Itoa(testutil.FreePort(t))
	api := "https://127.0.0.1:" + port
	jobsProc := start(t, "jobs", jobsFlags(port, secret)...)

	type framework struct {
		Name      string `json:"name"`
		Principal string `json:"principal"`
		WebuiURL  string `json:"webui_url"`
		Active    bool   `json:"active"`
	}
	var fw framework
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
		var st struct {
			Frameworks []framework `json:"frameworks"`
		}
		if pki.getJSON("https://"+masterAddr+"/master/state", &st) != nil {
			return false
		}
		for _, f := range st.Frameworks {
			if f.Name == "chronos" && f.Active {
				fw = f
				return true
			}
		}
		return false
	}, "jobs subscribed to the TLS master:\n%s", jobsProc.out)
	if fw.Principal != "chronos" || fw.WebuiURL != api {
		t.Errorf("the framework in the master's state: %+v, want principal chronos and webui_url %s", fw, api)
	}

	// A job over https, run now.
	client := pki.client()
	do := func(method, path, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, api+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := do("POST", "/scheduler/iso8601", `{"name":"over-tls","command":"echo run over tls","schedule":"R/2030-01-01T00:00:00Z/P1D","owner":"ops@example.com"}`); code != http.StatusNoContent && code != http.StatusOK {
		t.Fatalf("POST /scheduler/iso8601 over https: %d %s", code, body)
	}
	if code, body := do("PUT", "/scheduler/job/over-tls", ""); code/100 != 2 {
		t.Fatalf("PUT /scheduler/job/over-tls: %d %s", code, body)
	}
	testutil.Eventually(t, 60*time.Second, 200*time.Millisecond, func() bool {
		_, body := do("GET", "/scheduler/jobs", "")
		var list []struct {
			Name         string `json:"name"`
			SuccessCount int    `json:"successCount"`
		}
		if json.Unmarshal([]byte(body), &list) != nil {
			return false
		}
		return len(list) == 1 && list[0].SuccessCount == 1
	}, "the job ran once to success:\n%s", jobsProc.out)

	// Plain http to the API: 400, nothing served.
	if resp, err := http.Get("http://127.0.0.1:" + port + "/scheduler/jobs"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain GET of the jobs API: %s, want 400", resp.Status)
		}
	}

	// A second instance with a wrong secret: refused by the master, it
	// exits with an error that says so (a service manager restarts it),
	// never subscribed.
	wrongPort := strconv.Itoa(testutil.FreePort(t))
	impostor := start(t, "jobs-wrong-secret", jobsFlags(wrongPort, wrong)...)
	select {
	case <-impostor.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("jobs with a wrong secret still runs:\n%s", impostor.out)
	}
	if code := impostor.cmd.ProcessState.ExitCode(); code == 0 || !strings.Contains(impostor.out.String(), "401 Unauthorized") {
		t.Errorf("jobs with a wrong secret: exit %d, want a failure naming 401 Unauthorized:\n%s", code, impostor.out)
	}
	var st struct {
		Frameworks []framework `json:"frameworks"`
	}
	if err := pki.getJSON("https://"+masterAddr+"/master/state", &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Frameworks) != 1 {
		t.Errorf("frameworks in the master's state with the impostor running: %+v, want only the first", st.Frameworks)
	}
}

// TestJobsCAAloneKeepsAPlainMaster: --ssl_ca_file, which jobs also takes
// for its mail server and webhooks, does not by itself switch the master
// to https: jobs with a CA subscribes to a plain-http cluster.
func TestJobsCAAloneKeepsAPlainMaster(t *testing.T) {
	pki := newTestPKI(t)
	c := startCluster(t)
	port := strconv.Itoa(testutil.FreePort(t))
	jobsProc := start(t, "jobs", "jobs", "--master="+c.masterAddr, "--http_port="+port, "--hostname=127.0.0.1",
		"--work_dir="+t.TempDir(), "--ssl_ca_file="+pki.CA)
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
		var st struct {
			Frameworks []struct {
				Name   string `json:"name"`
				Active bool   `json:"active"`
			} `json:"frameworks"`
		}
		if getJSONAccept("http://"+c.masterAddr+"/master/state", &st) != nil {
			return false
		}
		for _, f := range st.Frameworks {
			if f.Name == "chronos" && f.Active {
				return true
			}
		}
		return false
	}, "jobs with only a CA subscribed to the plain master:\n%s", jobsProc.out)
}
