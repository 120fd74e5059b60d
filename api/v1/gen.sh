#!/bin/sh
# Regenerates the Go code for every .proto under api/v1/proto.
#
# Run from anywhere; it works from the repository root. Needs protoc (3.21 or
# later) and protoc-gen-go on PATH. The generated files are committed, so
# building mesolite never needs protoc.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"

module=github.com/mesolite/mesolite
protos=$(find api/v1/proto -name '*.proto' | LC_ALL=C sort)
if [ -z "$protos" ]; then
	echo "gen.sh: no .proto files under api/v1/proto" >&2
	exit 1
fi

# One protoc run for all files, so imports between them resolve once and
# every go_package lands under its module path.
# shellcheck disable=SC2086 # word splitting of $protos is intended
protoc -I api/v1/proto --go_out=. --go_opt=module="$module" $protos

echo "gen.sh: generated Go for:" $protos
