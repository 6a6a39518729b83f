#!/usr/bin/env bash
# Prepare the database and serve chatweb with Daphne, with the local model server beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
LOCAL_MODEL_PORT=${LOCAL_MODEL_PORT:-8001}

mkdir -p "${CHATWEB_DATA_DIR:-data}"
"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput -v 0
"$PY" manage.py recover_streams
"$PY" manage.py sync_providers

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

case "${LOCAL_MODEL:-1}" in 0|false|no|off) ;; *)
  echo "Starting the local model (SmolLM2 135M) on 127.0.0.1:$LOCAL_MODEL_PORT"
  "$PY" -m conversations.localmodel --port "$LOCAL_MODEL_PORT" >"${CHATWEB_DATA_DIR:-data}/local-model.log" 2>&1 &
  pids+=($!)
esac

echo "chatweb on http://$HOST:$PORT (Ctrl+C stops it)"
"$PY" -m daphne -b "$HOST" -p "$PORT" chatweb.asgi:application &
pids+=($!)
wait -n "${pids[@]}"
