#!/bin/sh
# Container entrypoint.
#   serve (default)  migrate, then serve on 0.0.0.0:$PORT with Daphne (scripts/serve.sh, as `make run`)
#   local-model      serve the bundled SmolLM2 model on 0.0.0.0:$LOCAL_MODEL_PORT for the app containers
#   anything else    run as given, e.g. `python manage.py createsuperuser`
set -eu
cd "$(dirname "$0")/.."
case "${1:-serve}" in
  serve) HOST=0.0.0.0 PY=python exec scripts/serve.sh ;;
  local-model) exec python -m conversations.providers.localmodel --host 0.0.0.0 --port "${LOCAL_MODEL_PORT:-8001}" ;;
  *) exec "$@" ;;
esac
