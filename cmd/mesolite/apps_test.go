package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
	"github.com/mesolite/mesolite/internal/tlsconfig/tlstest"
)

// Marathon's --leader_proxy_* flags are taken in its unit (milliseconds)
// and must be positive.
func TestAppsLeaderProxyFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--master=127.0.0.1:5050", "--leader_proxy_connection_timeout=0"},
		{"--master=127.0.0.1:5050", "--leader_proxy_read_timeout=-5"},
	} {
		var stdout, stderr bytes.Buffer
		if code := appsMain(context.Background(), args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), "--leader_proxy_* must be positive") {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr.String())
		}
	}
}

// A Marathon command line starts `mesolite apps` unchanged, in its
// `--flag value` form and with its `--[disable_]switch` booleans: the
// flags that apply take effect, those of Marathon's integrations mesolite
// has no counterpart of are accepted and named in the log; a Java
// keystore is refused with what to give instead, and what would weaken
// security or bad values with what is wrong.
func TestAppsMarathonCommandLine(t *testing.T) {
	port := testutil.FreePort(t)
	args := []string{"--master", "127.0.0.1:1", "--http_port", strconv.Itoa(port), "--work_dir", t.TempDir(),
		"--checkpoint", "--ha", "--zk_timeout", "10000", "--framework_name", "marathon-prod",
		"--webui_url", "https://marathon.example", "--http_realm", "Mesosphere", "--http_credentials", "ops:s3cret",
		"--reconciliation_interval", "600000", "--reconciliation_initial_delay", "15000", "--min_revive_offers_interval", "5000",
		"--decline_offer_duration", "120000", "--zk_max_versions", "25", "--kill_retry_timeout", "10000",
		"--mesos_leader_ui_url", "https://mesos.example/", "--env_vars_prefix", "ACME_", "--access_control_allow_origin", "http://localhost:8888, http://domain.com", "--max_instances_per_offer", "5", "--disable_revive_offers_for_new_apps",
		"--artifact_store", "hdfs://nn:54310/store", "--event_subscriber", "http_callback", "--http_endpoints", "http://hooks.example/x",
		"--enable_features", "vips,task_killing", "--tracing", "--disable_metrics", "--https_port", "8443",
		"--task_launch_confirm_timeout", "300000", "--logging_level", "warn"}
	// Marathon's environment form: MARATHON_<FLAG>, a switch on when empty.
	t.Setenv("MARATHON_DISABLE_CHECKPOINT", "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testutil.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- appsMain(ctx, args, &stdout, &stderr) }()
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	var resp *http.Response
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		var err error
		resp, err = http.Get(base + "/v2/info")
		return err == nil
	}, "apps serving:\n%s", &stderr)
	resp.Body.Close()
	if got := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || got != `Basic realm="Mesosphere"` {
		t.Errorf("without credentials: %d %q, want 401 in the realm of --http_realm", resp.StatusCode, got)
	}
	req, _ := http.NewRequest("GET", base+"/v2/info", nil)
	req.SetBasicAuth("ops", "s3cret")
	req.Header.Set("Origin", "http://domain.com")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Config map[string]any `json:"marathon_config"`
	}
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://domain.com" {
		t.Errorf("Access-Control-Allow-Origin %q for a listed origin", got)
	}
	if c := info.Config; c["webui_url"] != "https://marathon.example" || c["mesos_leader_ui_url"] != "https://mesos.example/" || c["framework_name"] != "marathon-prod" {
		t.Errorf("/v2/info: %v", c)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d\n%s", code, &stderr)
	}
	want := `msg="Marathon flags that have no effect here are ignored" flags="[--artifact_store --event_subscriber --http_endpoints --enable_features --tracing --disable_checkpoint --https_port]"`
	if l := stderr.String(); !strings.Contains(l, want) {
		t.Errorf("the ignored flags are not named in the log (want %s):\n%s", want, l)
	}

	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"--ssl_keystore_path", "/etc/marathon/keystore.jks", "--ssl_keystore_password", "x"}, "--ssl_cert_file and --ssl_key_file"},
		{[]string{"--disable_http"}, "--disable_http: without https"},
		{[]string{"--mesos_authentication"}, "needs --mesos_authentication_principal"},
		{[]string{"--mesos_authentication_secret_file", "/etc/marathon/secret"}, "needs --mesos_authentication_principal"},
		{[]string{"--reconciliation_interval", "0"}, "must be positive"},
		{[]string{"--decline_offer_duration", "0"}, "must be positive"},
		{[]string{"--reconciliation_interval", "99999999999999"}, "at most a year"},
		{[]string{"--tracing", "true", "--http_credentials", "ops:s3cret"}, `unexpected argument "true"`},
		{[]string{"--artifact_store", "--http_credentials=ops:s3cret"}, "takes a value, not the flag"},
		{[]string{"--env_vars_prefix", "1X_"}, "not starting with a digit"},
		{[]string{"--http_realm", "caf\u00e9"}, "--http_realm"},
		{[]string{"--zk_max_versions", "0"}, "--zk_max_versions must be positive"},
		{[]string{"--scale_apps_interval", "-5"}, "--scale_apps_interval"},
		{[]string{"--webui_url", "javascript:alert(1)"}, "http:// or https://"},
		{[]string{"--http_realm", `a"b`}, "--http_realm"},
		{[]string{"--env_vars_prefix", "A-B"}, "--env_vars_prefix"},
		{[]string{"--access_control_allow_origin", "domain.com"}, "--access_control_allow_origin"},
		{[]string{"--disable_ha=maybe"}, `invalid boolean value "maybe" for flag --disable_ha`},
	} {
		var out, errOut bytes.Buffer
		args := append([]string{"--master=127.0.0.1:1", "--work_dir=" + t.TempDir(), "--http_port=" + strconv.Itoa(testutil.FreePort(t))}, c.args...)
		code := appsMain(context.Background(), args, &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), c.says) {
			t.Errorf("%v: exit %d, want 2 saying %q:\n%s", c.args, code, c.says, &errOut)
		}
	}
	// MARATHON_DISABLE_HTTP= (empty) is --disable_http, as Marathon reads
	// its switches: without a certificate, refused for what it asks.
	t.Setenv("MARATHON_DISABLE_HTTP", "")
	{
		var out, errOut bytes.Buffer
		args := []string{"--master=127.0.0.1:1", "--work_dir=" + t.TempDir(), "--http_port=" + strconv.Itoa(testutil.FreePort(t))}
		code := appsMain(context.Background(), args, &out, &errOut)
		if code != 2 || !strings.Contains(errOut.String(), "--disable_http: without https") {
			t.Errorf("MARATHON_DISABLE_HTTP=: exit %d, want 2 refusing --disable_http without a certificate:\n%s", code, &errOut)
		}
	}
}

// With a certificate, Marathon's --https_port and --https_address say
// where the API is served (https only, which --disable_http asks for).
func TestAppsHTTPSPort(t *testing.T) {
	pki := tlstest.NewPKI(t)
	cert, key := pki.Cert, pki.Key
	port := testutil.FreePort(t)
	args := []string{"--master", "127.0.0.1:1", "--work_dir", t.TempDir(), "--http_port", strconv.Itoa(testutil.FreePort(t)),
		"--ssl_cert_file", cert, "--ssl_key_file", key, "--disable_http", "--https_port", strconv.Itoa(port), "--https_address", "127.0.0.1"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testutil.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- appsMain(ctx, args, &stdout, &stderr) }()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.Pool}}}
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		resp, err := client.Get("https://127.0.0.1:" + strconv.Itoa(port) + "/ping")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "https on --https_port:\n%s", &stderr)
	if !strings.Contains(stdout.String(), "https://127.0.0.1:"+strconv.Itoa(port)+"/v2/apps") {
		t.Errorf("the API's URL: %s", &stdout)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d\n%s", code, &stderr)
	}
}
