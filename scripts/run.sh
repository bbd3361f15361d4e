#!/usr/bin/env bash
# Start the whole product on embedded defaults (SQLite, in-memory locks).
#   scripts/run.sh         action server + Rasa server (honcho; Ctrl-C stops both)
#   scripts/run.sh shell   action server in the background + `rasa shell`
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p var
[ -f .env ] && set -a && . ./.env && set +a
export RASA_PORT="${RASA_PORT:-5005}" ACTIONS_PORT="${ACTIONS_PORT:-5055}"
# Rasa's HTTP API is never open without a token (CVE-2024-49375): make one if none is set.
if [ -z "${RASA_TOKEN:-}" ]; then
  [ -s var/rasa_token ] || .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))' > var/rasa_token
  RASA_TOKEN="$(cat var/rasa_token)"
fi
export RASA_TOKEN

if [ "${1:-}" = "shell" ]; then
  .venv/bin/rasa run actions --actions actions --port "$ACTIONS_PORT" > var/actions.log 2>&1 &
  actions_pid=$!
  trap 'kill $actions_pid 2>/dev/null' EXIT
  exec_status=0
  .venv/bin/rasa shell --model models/support.tar.gz --endpoints "${RASA_ENDPOINTS:-endpoints.yml}" || exec_status=$?
  exit $exec_status
fi

cat <<MSG

  Northwind support assistant
  ---------------------------
  Chat (REST channel):  curl -s localhost:$RASA_PORT/webhooks/rest/webhook -d '{"sender":"me","message":"hi"}'
  Rasa HTTP API:        http://localhost:$RASA_PORT/  (token in var/rasa_token or \$RASA_TOKEN)
  Action server:        http://localhost:$ACTIONS_PORT/health
  Terminal chat:        make shell
  Data:                 var/ (support.db, orders.db, rasa_tracker.db)

MSG
exec .venv/bin/honcho start -f Procfile
