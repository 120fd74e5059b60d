package e2e

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"github.com/mesolite/mesolite/internal/tlsconfig/tlstest"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/internal/testutil/browsertest"
)

// testPKI is a CA and a server certificate it signed for 127.0.0.1, as an
// operator would issue them.
type testPKI struct{ tlstest.PKI }

func newTestPKI(t *testing.T) testPKI { return testPKI{tlstest.NewPKI(t)} }

// client verifies the cluster's servers with the CA.
func (p testPKI) client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.Pool}}}
}

func (p testPKI) getJSON(url string, v any) error {
	resp, err := p.client().Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// startTLSCluster starts a master (with masterFlags) and an agent serving
// TLS with pki's certificate, the agent verifying the master with its CA,
// and returns their addresses once the agent registered.
func startTLSCluster(t *testing.T, pki testPKI, masterFlags ...string) (masterAddr, agentAddr string) {
	t.Helper()
	ssl := []string{"--ssl_cert_file=" + pki.Cert, "--ssl_key_file=" + pki.Key}
	masterPort := strconv.Itoa(testutil.FreePort(t))
	masterAddr = "127.0.0.1:" + masterPort
	master := start(t, "master", append(append([]string{"master", "--ip=127.0.0.1", "--port=" + masterPort, "--work_dir=" + t.TempDir()}, ssl...), masterFlags...)...)
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		resp, err := pki.client().Get("https://" + masterAddr + "/master/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "master healthy over https:\n%s", master.out)

	agentPort := strconv.Itoa(testutil.FreePort(t))
	agentAddr = "127.0.0.1:" + agentPort
	start(t, "agent", append([]string{"agent", "--master=" + masterAddr, "--ip=127.0.0.1", "--port=" + agentPort,
		"--work_dir=" + t.TempDir(), "--resources=cpus:2;mem:1024;disk:1024;ports:[31000-31100]", "--registration_backoff_factor=100ms",
		"--ssl_ca_file=" + pki.CA}, ssl...)...)
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
		var st struct {
			Slaves []struct {
				Active bool `json:"active"`
			} `json:"slaves"`
		}
		return pki.getJSON("https://"+masterAddr+"/master/state", &st) == nil && len(st.Slaves) == 1 && st.Slaves[0].Active
	}, "the agent registered over https")
	return masterAddr, agentAddr
}

// TestClusterOverTLS runs a whole cluster over TLS: master, agent and
// artifact server with the operator's certificates; a task whose
// executable comes from the TLS artifact server runs through an executor
// that reaches the agent over https; the commands verify every server with
// the CA; plain and unverified clients are refused with errors naming the
// fix.
func TestClusterOverTLS(t *testing.T) {
	pki := newTestPKI(t)
	ssl := []string{"--ssl_cert_file=" + pki.Cert, "--ssl_key_file=" + pki.Key}

	artDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(artDir, "hello.sh"), []byte("#!/bin/sh\necho hello over tls from $LIBPROCESS_SSL_ENABLED\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	artPort := strconv.Itoa(testutil.FreePort(t))
	art := start(t, "artifacts", append([]string{"artifacts", "serve", "--dir=" + artDir, "--ip=127.0.0.1", "--port=" + artPort}, ssl...)...)
	artBase := "https://127.0.0.1:" + artPort
	testutil.Eventually(t, 20*time.Second, 50*time.Millisecond, func() bool {
		resp, err := pki.client().Get(artBase + "/hello.sh")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "artifact server up over https:\n%s", art.out)

	masterAddr, agentAddr := startTLSCluster(t, pki)

	// The executable comes from the TLS artifact server (the fetcher trusts
	// the agent's CA), the command executor reaches the agent over https.
	out, code := mesolite(t, 90*time.Second, "run", "--master="+masterAddr, "--ssl_ca_file="+pki.CA, "--name=tls", "--id=tls-1",
		"--uri="+artBase+"/hello.sh,executable", "--command=./hello.sh")
	if code != 0 || !strings.Contains(out, "TASK_FINISHED") {
		t.Fatalf("run over TLS: exit %d\n%s", code, out)
	}
	if want := "stdout: https://" + agentAddr + "/files/read"; !strings.Contains(out, want) {
		t.Errorf("run output lacks %q:\n%s", want, out)
	}
	logs, code := mesolite(t, 30*time.Second, "logs", "--master="+masterAddr, "--ssl_ca_file="+pki.CA, "tls-1")
	if code != 0 || strings.TrimSpace(logs) != "hello over tls from true" {
		t.Fatalf("logs over TLS: exit %d, %q", code, logs)
	}
	// The agent's files API, read directly with the CA.
	if err := pki.getJSON("https://"+agentAddr+"/files/debug", &map[string]any{}); err != nil {
		t.Errorf("agent files API over https: %v", err)
	}

	refusals := []struct {
		name string
		args []string
		want string
	}{
		{"plain command", []string{"tasks", "--master=" + masterAddr}, "speaks TLS only"},
		{"https without the CA", []string{"tasks", "--master=https://" + masterAddr}, "is not trusted"},
		{"plain logs", []string{"logs", "--master=" + masterAddr, "tls-1"}, "speaks TLS only"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			out, code := mesolite(t, 30*time.Second, tt.args...)
			if code == 0 || !strings.Contains(out, tt.want) {
				t.Fatalf("exit %d, want a failure naming %q:\n%s", code, tt.want, out)
			}
			t.Log(strings.TrimSpace(out))
		})
	}
	// Plain-http clients of every server are answered with a 400, never
	// served.
	for _, url := range []string{"http://" + masterAddr + "/master/state", "http://" + agentAddr + "/state", "http://127.0.0.1:" + artPort + "/hello.sh"} {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("plain GET %s: %s, want 400", url, resp.Status)
			}
		}
	}
}

// TestBrowserOverTLS: the master's UI served over https links to the
// agent's pages over https (the page's own scheme: the master's state
// carries none), and the agent's log viewer follows a task's stdout live
// over https.
func TestBrowserOverTLS(t *testing.T) {
	testutil.Require(t, browsertest.Path() != "", "test needs Chromium (Debian package chromium)")
	pki := newTestPKI(t)
	masterAddr, agentAddr := startTLSCluster(t, pki)
	start(t, "run", "run", "--master="+masterAddr, "--ssl_ca_file="+pki.CA, "--name=ticker", "--id=ticker-tls",
		"--command=i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done")
	testutil.Eventually(t, 30*time.Second, 100*time.Millisecond, func() bool {
		var st struct {
			Frameworks []struct {
				Tasks []struct {
					ID    string `json:"id"`
					State string `json:"state"`
				} `json:"tasks"`
			} `json:"frameworks"`
		}
		if pki.getJSON("https://"+masterAddr+"/master/state", &st) != nil {
			return false
		}
		for _, f := range st.Frameworks {
			for _, tk := range f.Tasks {
				if tk.ID == "ticker-tls" && tk.State == "TASK_RUNNING" {
					return true
				}
			}
		}
		return false
	}, "ticker-tls running")

	b := browsertest.New(t, browsertest.IgnoreCertificateErrors())
	defer b.CheckErrors()
	b.Open("https://" + masterAddr + "/#/frameworks")
	b.Wait(`!!document.querySelector('#active-frameworks a[data-testid="framework-link"]')`, "the framework listed")
	b.Click(`#active-frameworks a[data-testid="framework-link"]`)
	b.Wait(`!!document.querySelector('#framework-active-tasks tr[data-task-id="ticker-tls"] a[data-testid="task-link"]')`, "the task listed")
	b.Click(`#framework-active-tasks tr[data-task-id="ticker-tls"] a[data-testid="task-link"]`)
	b.Wait(`!!document.getElementById('stdout-link')`, "task page with its stdout link")
	if href := browsertest.Eval[string](b, `document.getElementById('stdout-link').href`); !strings.HasPrefix(href, "https://"+agentAddr+"/") {
		t.Fatalf("stdout link %q, want https://%s/...", href, agentAddr)
	}
	b.Click("#stdout-link")
	b.Wait(fmt.Sprintf(`location.protocol === 'https:' && location.host === %q && document.querySelector('#log-viewer')?.dataset.state === 'live'`, agentAddr),
		"the live log viewer on the agent over https")
	b.Wait(`/line \d+\n/.test(document.getElementById('log-viewer').textContent)`, "the task's lines in the viewer")
}
