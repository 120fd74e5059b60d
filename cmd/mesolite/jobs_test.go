package main

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mesolite/mesolite/internal/testutil"
)

// A Chronos command line starts `mesolite jobs` unchanged, in its
// `--flag value` form: the flags that apply take effect, those of
// Chronos's integrations mesolite has no counterpart of are accepted and
// named in the log; a Java keystore is refused with what to give instead,
// and bad values with what is wrong.
func TestJobsChronosCommandLine(t *testing.T) {
	port := testutil.FreePort(t)
	args := []string{"--master", "127.0.0.1:1", "--http_port", strconv.Itoa(port), "--work_dir", t.TempDir(),
		"--schedule_horizon", "60", "--task_epsilon", "30", "--failure_retry", "60000", "--mesos_task_cpu", "0.5",
		"--mesos_task_mem", "64", "--mesos_task_disk", "0", "--mesos_checkpoint", "--cluster_name", "prod-eu",
		"--decline_offer_duration", "5000", "--min_revive_offers_interval", "5000", "--reconciliation_interval", "600",
		"--cassandra_contact_points", "cass1,cass2", "--cassandra_port", "9042", "--graphite_host_port", "graphite:2003",
		"--revive_offers_for_new_jobs", "--job_history_limit", "5", "--leader_max_idle_time", "5000", "--http_realm", "Mesosphere"}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr testutil.SyncBuffer
	done := make(chan int, 1)
	go func() { done <- jobsMain(ctx, args, &stdout, &stderr) }()
	testutil.Eventually(t, 10*time.Second, 10*time.Millisecond, func() bool {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "jobs serving:\n%s", &stderr)
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d\n%s", code, &stderr)
	}
	if l := stderr.String(); !strings.Contains(l, `msg="Chronos flags that have no effect here are ignored" flags="[--cassandra_contact_points --cassandra_port --graphite_host_port]"`) {
		t.Errorf("the ignored flags are not named in the log:\n%s", l)
	}

	for _, c := range []struct {
		args []string
		says string
	}{
		{[]string{"--ssl_keystore_path", "/etc/chronos/keystore.jks", "--ssl_keystore_password", "x"}, "--ssl_cert_file and --ssl_key_file"},
		{[]string{"--task_epsilon", "-1"}, "not negative"},
		{[]string{"--mesos_task_mem", "0"}, "must be positive"},
		{[]string{"--failure_retry", "0"}, "must be positive"},
		{[]string{"--http_notification_credentials", "nopassword"}, "user:password"},
		{[]string{"--http_realm", `chronos", evil="1`}, "--http_realm"},
		{[]string{"--cluster_name", "a\nb"}, "--cluster_name"},
		{[]string{"--slack_url", "ftp://hooks.example/x"}, "--slack_url must be an http:// or https:// URL"},
		// A switch's value as a word would end the flags: what follows
		// (credentials here) would be dropped without a word.
		{[]string{"--mesos_checkpoint", "true", "--http_credentials", "ops:s3cret"}, `unexpected argument "true"`},
	} {
		var out, errOut bytes.Buffer
		args := append([]string{"--master=127.0.0.1:1", "--work_dir=" + t.TempDir(), "--http_port=" + strconv.Itoa(testutil.FreePort(t))}, c.args...)
		code := jobsMain(context.Background(), args, &out, &errOut)
		if code == 0 || !strings.Contains(errOut.String(), c.says) {
			t.Errorf("%v: exit %d, want a failure saying %q:\n%s", c.args, code, c.says, &errOut)
		}
	}
}
