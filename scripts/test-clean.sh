#!/usr/bin/env bash
# Removes what a test run may have left on the host: Docker containers of
# test agents (their owner label is a test's temporary work dir), the test
# images (mesolite-test/*, built by the tests from busybox-static), and
# empty test cgroups (mesolite-test-*, mesolite-e2e-*, mesolite-bench).
# Nothing of a real agent is touched: its owner is its --work_dir, not a
# test's directory under the temporary directory. `make test` runs it after
# the tests, passed or failed.
set -u
tmp="${TMPDIR:-/tmp}"
if command -v docker >/dev/null 2>&1 && docker version >/dev/null 2>&1; then
  docker ps -a --filter label=org.mesolite.owner --format '{{.ID}} {{.Label "org.mesolite.owner"}}' |
    while read -r id owner; do
      case "$owner" in
        "$tmp"/Test*|"$tmp"/Benchmark*|"$tmp"/mesolite-*) docker rm -f -v "$id" >/dev/null 2>&1 || true ;;
      esac
    done
  docker images --format '{{.Repository}}:{{.Tag}}' | grep '^mesolite-test/' | xargs -r docker rmi -f >/dev/null 2>&1 || true
fi
if [ -d /sys/fs/cgroup ]; then
  # Deepest first; rmdir refuses a cgroup that still holds processes.
  find /sys/fs/cgroup -depth -type d \( -path '*/mesolite-test-*' -o -path '*/mesolite-e2e-*' -o -path '*/mesolite-bench*' \) \
    -exec rmdir {} \; 2>/dev/null || true
  left=$(find /sys/fs/cgroup -maxdepth 3 -type d \( -name 'mesolite-test-*' -o -name 'mesolite-e2e-*' -o -name 'mesolite-bench*' \) 2>/dev/null)
  if [ -n "$left" ]; then
    echo "test-clean: cgroups still holding processes:" >&2
    echo "$left" >&2
  fi
fi
exit 0
