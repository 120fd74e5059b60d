package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
