#!/usr/bin/env bash
# Installs the Debian packages mesolite's tests and demo use. Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo -E"; fi
# user-mode-linux: a kernel with cgroup v2 for scripts/test-cgroupv2.sh on v1 hosts.
# zsh: the test of `mesolite completion zsh`; systemd: systemd-analyze for the units' test.
pkgs=(docker.io busybox-static zookeeper chromium nginx iproute2 procps curl git make ca-certificates user-mode-linux bzip2 xz-utils nodejs zsh systemd)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
  echo "Go 1.26 is required (expected at /usr/local/go); install it from https://go.dev/dl/" >&2
  exit 1
fi
