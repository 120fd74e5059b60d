//go:build tools

// Package deps pins the modules the project builds on before any code imports them.
package deps

import (
	_ "github.com/chromedp/chromedp"
	_ "github.com/containerd/cgroups/v3"
	_ "github.com/docker/docker/client"
	_ "github.com/hashicorp/go-getter/v2"
	_ "github.com/opencontainers/runtime-spec/specs-go"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/sys/unix"
	_ "google.golang.org/protobuf/proto"
)
