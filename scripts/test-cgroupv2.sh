#!/bin/sh
# Runs the isolation tests on a real cgroup v2 (unified) hierarchy on a host
# whose own cgroups are v1 or hybrid: it boots a User-mode Linux kernel
# (Debian's user-mode-linux package) over the host's root filesystem,
# mounts cgroup2 at /sys/fs/cgroup there and runs static test binaries of
# the isolation package and of the isolation end-to-end tests inside it.
#
# On a host that already has cgroup v2 the plain `go test` run covers v2 and
# this script is not needed; it still works there.
#
# Usage: sudo scripts/test-cgroupv2.sh         (exit status: the tests')
#        sudo scripts/test-cgroupv2.sh bench   (the isolation benchmarks instead)
set -eu
mode=${1:-test}

repo=$(cd "$(dirname "$0")/.." && pwd)
command -v linux.uml >/dev/null 2>&1 || {
	echo "test-cgroupv2: linux.uml not found: install Debian's user-mode-linux package (scripts/setup-deps.sh does)" >&2
	exit 1
}
[ "$(id -u)" = 0 ] || { echo "test-cgroupv2: needs root (the tests create cgroups and namespaces)" >&2; exit 1; }

work=$(mktemp -d /tmp/mesolite-cgv2.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "test-cgroupv2: building static test binaries into $work"
cd "$repo"
CGO_ENABLED=0 go test -c -o "$work/isolation.test" ./isolation
if [ "$mode" != bench ]; then
	CGO_ENABLED=0 go test -c -o "$work/e2e.test" ./e2e
	CGO_ENABLED=0 go test -c -o "$work/mesoscz.test" ./containerizer/mesos
	CGO_ENABLED=0 go build -o "$work/mesolite" ./cmd/mesolite
	# Beside it, as make build leaves them: the agent runs its inits and
	# built-in executors from the helper.
	CGO_ENABLED=0 go build -o "$work/mesolite-executor" ./cmd/mesolite-executor
fi

# The guest's init: a private /proc, /sys and cgroup2 mount, loopback up,
# a tmpfs for the tests' temporary files, then the tests; their exit status
# is written where the host reads it, and the kernel halts.
cat >"$work/init" <<EOF
#!/bin/sh
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root CI=${CI:-} TMPDIR=/run/tmp
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /run
mkdir -p /run/tmp /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
ip link set lo up
echo "guest: kernel \$(uname -r), cgroup2 controllers: \$(cat /sys/fs/cgroup/cgroup.controllers)"
exec >>"$work/out" 2>&1
rc=0
if [ "$mode" = bench ]; then
	cd "$repo/isolation" && "$work/isolation.test" -test.run '^\$' -test.bench . -test.count=6 -test.benchtime=50x || rc=1
else
	# The hybrid-layout test needs a v1 host's v2 mount; it ran in make test.
	cd "$repo/isolation" && "$work/isolation.test" -test.v -test.count=1 -test.timeout=15m -test.skip 'TestCgroupV2TrackingOnHybridHost' || rc=1
	# The containerizer conformance suite, with the test binary and with
	# mesolite-executor as the init.
	cd "$repo/containerizer/mesos" && MESOLITE_EXECUTOR_BINARY="$work/mesolite-executor" "$work/mesoscz.test" -test.v -test.count=1 -test.timeout=10m -test.run 'Conformance|Recover' || rc=1
	cd "$repo/e2e" && MESOLITE_E2E_BINARY="$work/mesolite" "$work/e2e.test" -test.v -test.count=1 -test.timeout=15m -test.run 'Isolated' || rc=1
fi
echo \$rc >"$work/rc"
halt -f
EOF
chmod +x "$work/init"
echo 1 >"$work/rc"

# UML keeps guest memory in a file under TMPDIR; the tests need about 1 GB.
# The guest's kernel log goes to console.log, the tests' output to out,
# which is shown as it grows.
echo "test-cgroupv2: booting User-mode Linux with cgroup v2"
: >"$work/out"
tail -n +1 -f "$work/out" &
tailpid=$!
timeout 1800 linux.uml mem=2G rootfstype=hostfs rootflags=/ rw \
	init="$work/init" con0=fd:0,fd:1 con=null </dev/null >"$work/console.log" 2>&1 || true
sleep 1
kill "$tailpid" 2>/dev/null || true
rc=$(cat "$work/rc")
if [ "$rc" != 0 ]; then
	echo "test-cgroupv2: FAILED on cgroup v2; the guest kernel's last words:" >&2
	tail -n 40 "$work/console.log" >&2
	exit 1
fi
echo "test-cgroupv2: ok on cgroup v2"
