GO ?= go
export PATH := /usr/local/go/bin:$(PATH)
PKGS := ./...
# The concurrent packages, once more under the race detector.
RACE_PKGS := ./agent/... ./master/... ./containerizer/... ./sandbox/...

.PHONY: build static test test-cgroupv2 lint unit e2e bench proto demo

# bin/mesolite and its lean helper bin/mesolite-executor (container init,
# command and default executors), which the agent uses when it lies beside
# it: install both in the same directory.
build:
	$(GO) build -o bin/mesolite ./cmd/mesolite
	$(GO) build -o bin/mesolite-executor ./cmd/mesolite-executor

# The binary for images FROM scratch or slim bases (Dockerfile): no libc.
# It reads users from /etc/passwd and /etc/group only (no NSS), which is
# what a container has; on hosts with LDAP users use `build`.
static:
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/mesolite-static ./cmd/mesolite
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/mesolite-executor-static ./cmd/mesolite-executor

# The one test command: formatting, vet, every package's tests (root,
# dockerd, cgroups and ZooKeeper tests included when present), then the
# end-to-end tests against the real binary, then the concurrent packages
# under the race detector; then scripts/test-clean.sh removes what tests
# may have left on the host (test containers, images and cgroups).
test: lint
	@status=0; \
	$(GO) test -count=1 -timeout 40m -p 2 $(PKGS) || status=$$?; \
	if [ $$status -eq 0 ]; then $(GO) test -race -count=1 -timeout 20m -p 2 $(RACE_PKGS) || status=$$?; fi; \
	./scripts/test-clean.sh; \
	exit $$status

# The isolation tests on a cgroup v2 kernel (User-mode Linux) from a v1 or
# hybrid host; needs root and Debian's user-mode-linux.
test-cgroupv2:
	./scripts/test-cgroupv2.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run ./internal/layercheck

e2e: build
	$(GO) test -count=1 -v ./e2e/...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./bench/...

proto:
	./api/v1/gen.sh

demo:
	./scripts/demo.sh
