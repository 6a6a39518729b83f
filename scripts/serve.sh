#!/usr/bin/env bash
# Prepare the database and serve chatweb with Daphne. `make run` and the container both start here.
#   PY (python), HOST/PORT (where Daphne listens), MIGRATE=0 skips migrations (when a separate step
#   runs them), LOCAL_MODEL=0 skips the bundled model, which is started here only when
#   LOCAL_MODEL_HOST is this machine's loopback; BEHIND_PROXY=1 trusts X-Forwarded-* for client addresses;
#   RECOVER_ON_START=0 leaves replies of other running workers alone (their watchdogs handle orphans).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
LOCAL_MODEL_HOST=${LOCAL_MODEL_HOST:-127.0.0.1}
LOCAL_MODEL_PORT=${LOCAL_MODEL_PORT:-8001}
DATA_DIR=${CHATWEB_DATA_DIR:-data}

mkdir -p "$DATA_DIR"
if [ "${MIGRATE:-1}" = 1 ]; then "$PY" manage.py migrate --noinput; fi
"$PY" manage.py collectstatic --noinput -v 0
if [ "${RECOVER_ON_START:-1}" = 1 ]; then "$PY" manage.py recover_streams; fi
"$PY" manage.py sync_providers

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# The local model runs under its own supervisor, which restarts it when it dies: the site
# serves on without it meanwhile, so only Daphne's end ends this script.
case "${LOCAL_MODEL:-1}:$LOCAL_MODEL_HOST" in 0:*|false:*|no:*|off:*) ;; *:127.0.0.1|*:localhost)
  echo "Starting the local model (SmolLM2 135M) on $LOCAL_MODEL_HOST:$LOCAL_MODEL_PORT (its output: $DATA_DIR/local-model.log)"
  "$PY" -m conversations.providers.localmodel --port "$LOCAL_MODEL_PORT" --log-file "$DATA_DIR/local-model.log" &
  pids+=($!)
esac

proxy=()
case "${BEHIND_PROXY:-${HTTPS:-0}}" in 1|true|yes|on) proxy=(--proxy-headers) ;; esac
echo "chatweb on http://$HOST:$PORT (Ctrl+C stops it)"
# Daphne on uvloop (chatweb/serve.py). No Daphne access log: it prints query strings (a key put in ?api_key= with them); chatweb.requests
# logs every request's path without its query.
"$PY" -m chatweb.serve -b "$HOST" -p "$PORT" "${proxy[@]}" --access-log /dev/null chatweb.asgi:application &
pids+=($!)
wait "$!"
