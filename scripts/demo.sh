#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what is needed, build,
# start `mesolite local` (a master and an agent in one process on
# 127.0.0.1:5050 and :5051), run a task, and show its sandbox and stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

scripts/setup-deps.sh
make build
BIN=$PWD/bin/mesolite
WORK=${MESOLITE_DEMO_DIR:-/tmp/mesolite-demo}
mkdir -p "$WORK"

if ! curl -fsS http://127.0.0.1:5050/master/health >/dev/null 2>&1; then
  nohup "$BIN" local --work_dir="$WORK" >"$WORK/local.log" 2>&1 &
  echo "started mesolite local (pid $!), log in $WORK/local.log"
fi
for i in $(seq 1 100); do
  n=$(curl -fsS http://127.0.0.1:5050/master/state 2>/dev/null | grep -o '"active":true' | wc -l || true)
  [ "${n:-0}" -ge 1 ] && break
  sleep 0.2
done

TASK=demo-$(date +%s)
"$BIN" run --master=127.0.0.1:5050 --name="$TASK" --id="$TASK" \
  --command='echo "hello from mesolite: $(hostname) $(date)"; ls -la' | tee "$WORK/run.out"
echo
echo "== tasks"
"$BIN" tasks --master=127.0.0.1:5050
echo
echo "== stdout of $TASK, read back through the agent's files API"
"$BIN" logs --master=127.0.0.1:5050 "$TASK"
echo
echo "Web UI: http://127.0.0.1:5050/   (stop with: pkill -f 'mesolite local')"
