#!/usr/bin/env bash
# The main job on a fresh Debian machine: install what is needed, build,
# start `mesolite local` (a master, an agent, the apps service and the jobs service
# in one process on 127.0.0.1:5050, :5051, :8080 and :4400), run a task, show its
# sandbox and stdout, keep an app running through the apps service and run a job
# once through the jobs service.
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
echo
echo "== an app kept running by the apps service (Marathon's API on :8080)"
curl -fsS -X PUT -H 'Content-Type: application/json' http://127.0.0.1:8080/v2/apps/demo-sleeper \
  -d '{"cmd":"sleep 3600","cpus":0.1,"mem":32,"instances":1}' >/dev/null
for i in $(seq 1 100); do
  curl -fsS http://127.0.0.1:8080/v2/apps/demo-sleeper | grep -q '"tasksRunning":1' && break
  sleep 0.2
done
curl -fsS 'http://127.0.0.1:8080/v2/apps/demo-sleeper?embed=apps.tasks' | grep -o '"tasksRunning":[0-9]*\|"tasks":\[{"id":"[^"]*"' 
echo
echo
echo "== a job run once by the jobs service (Chronos's API on :4400)"
curl -fsS -X POST -H 'Content-Type: application/json' http://127.0.0.1:4400/scheduler/iso8601 \
  -d '{"name":"demo-job","command":"echo hello from a job","schedule":"R1//PT1H","cpus":0.1,"mem":32}' >/dev/null
for i in $(seq 1 150); do
  curl -fsS http://127.0.0.1:4400/scheduler/jobs/summary | grep -q '"name":"demo-job","status":"success"' && break
  sleep 0.2
done
curl -fsS http://127.0.0.1:4400/scheduler/jobs/summary
echo
echo "Web UI: http://127.0.0.1:5050/   (stop with: pkill -f 'mesolite local')"
