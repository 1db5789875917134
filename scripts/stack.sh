#!/usr/bin/env bash
# Start or stop the API (ATTRIB_API_WORKERS uvicorn processes, default 2) and the workers on the embedded
# defaults (SQLite + local files in var/): an embedding worker beside ATTRIB_ATTRIBUTION_WORKERS (default 1)
# dedicated attribution workers, or with 0 one worker serving both queues, attribution first (one model
# less in memory, ~1 GB; a large import then runs slower while attributions are served: README, Scaling).
set -euo pipefail
cd "$(dirname "$0")/.."
run=var/run
port=${ATTRIB_PORT:-8000}
mkdir -p "$run"

stop_one() {
  local pidfile="$run/$1.pid"
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    kill "$(cat "$pidfile")"
    for _ in $(seq 1 40); do kill -0 "$(cat "$pidfile")" 2>/dev/null || break; sleep 0.25; done
  fi
  rm -f "$pidfile"
}

start_worker() {
  local name=$1; shift
  nohup .venv/bin/python -m worker "$@" >"$run/$name.log" 2>&1 &
  echo $! >"$run/$name.pid"
}

start() {
  stop
  .venv/bin/alembic upgrade head
  # An admin key for the demo, created once with the database it belongs to (both live in var/).
  if [ ! -s "$run/admin.key" ]; then
    (umask 077; .venv/bin/python -m common.apikeys create --name local-admin --scope admin --quiet >"$run/admin.key")
  fi
  nohup .venv/bin/uvicorn app.main:app --host 127.0.0.1 --port "$port" --workers "${ATTRIB_API_WORKERS:-2}" \
    >"$run/api.log" 2>&1 &
  echo $! >"$run/api.pid"
  local attribution_workers=${ATTRIB_ATTRIBUTION_WORKERS:-1}
  if [ "$attribution_workers" -gt 0 ]; then
    start_worker worker --queues embed
    for i in $(seq 1 "$attribution_workers"); do start_worker "attribution-worker-$i" --queues attribute; done
  else
    start_worker worker
  fi
  for _ in $(seq 1 240); do
    if .venv/bin/python -c "import httpx,sys; sys.exit(httpx.get('http://127.0.0.1:$port/readyz').status_code != 200)" 2>/dev/null; then
      echo "stack ready: API http://127.0.0.1:$port (logs in $run/)"; return 0
    fi
    sleep 0.5
  done
  echo "stack did not become ready; see the logs in $run/" >&2
  tail -n 20 "$run"/*.log >&2
  return 1
}

stop() {
  stop_one api
  local pidfile
  for pidfile in "$run"/worker.pid "$run"/attribution-worker-*.pid; do
    [ -e "$pidfile" ] && stop_one "$(basename "$pidfile" .pid)"
  done
  return 0
}

case "${1:-}" in
  start) start ;;
  stop) stop; echo "stack stopped" ;;
  *) echo "usage: scripts/stack.sh {start|stop}" >&2; exit 2 ;;
esac
