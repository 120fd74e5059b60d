package driver

import (
	"strings"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	base := map[string]string{
		"MESOS_AGENT_ENDPOINT": "127.0.0.1:5051", "MESOS_FRAMEWORK_ID": "fw", "MESOS_EXECUTOR_ID": "ex",
		"MESOS_DIRECTORY": "/sandbox", "MESOS_CHECKPOINT": "1",
	}
	tests := []struct {
		name    string
		set     map[string]string
		unset   []string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			if !c.Checkpoint || c.Sandbox != "/sandbox" || c.RecoveryTimeout != 15*time.Minute || c.ShutdownGracePeriod != 5*time.Second {
				t.Errorf("%+v", c)
			}
		}},
		{name: "mesos durations", set: map[string]string{"MESOS_RECOVERY_TIMEOUT": "2mins", "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": "10secs", "MESOS_SUBSCRIPTION_BACKOFF_MAX": "500ms"},
			check: func(t *testing.T, c Config) {
				if c.RecoveryTimeout != 2*time.Minute || c.ShutdownGracePeriod != 10*time.Second || c.SubscriptionBackoffMax != 500*time.Millisecond {
					t.Errorf("%+v", c)
				}
			}},
		{name: "missing ids", unset: []string{"MESOS_FRAMEWORK_ID", "MESOS_AGENT_ENDPOINT"}, wantErr: "MESOS_AGENT_ENDPOINT, MESOS_FRAMEWORK_ID"},
		{name: "bad duration", set: map[string]string{"MESOS_RECOVERY_TIMEOUT": "soon"}, wantErr: "MESOS_RECOVERY_TIMEOUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range base {
				env[k] = v
			}
			for k, v := range tt.set {
				env[k] = v
			}
			for _, k := range tt.unset {
				delete(env, k)
			}
			c, err := ConfigFromEnv(func(k string) string { return env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}
