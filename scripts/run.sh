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
# The widget channel verifies customer tokens signed by the shop's backend (here: the demo
# shop app). Embedded default: a random shared secret in var/widget_jwt_secret.
if [ -z "${WIDGET_JWT_SECRET:-}" ] && [ -z "${WIDGET_JWT_PUBLIC_KEY:-}" ]; then
  [ -s var/widget_jwt_secret ] || .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(48))' > var/widget_jwt_secret
  chmod 600 var/widget_jwt_secret var/rasa_token 2>/dev/null || true
fi
export DEMO_PORT="${DEMO_PORT:-8080}"
export WIDGET_PUBLIC_URL="${WIDGET_PUBLIC_URL:-http://localhost:$RASA_PORT}"

if [ "${1:-}" = "shell" ]; then
  .venv/bin/rasa run actions --actions actions --port "$ACTIONS_PORT" > var/actions.log 2>&1 &
  actions_pid=$!
  trap 'kill $actions_pid 2>/dev/null' EXIT
  exec_status=0
  .venv/bin/rasa shell --model models/support.tar.gz --endpoints "${RASA_ENDPOINTS:-endpoints.yml}" || exec_status=$?
  exit $exec_status
fi

# Demo accounts for the agent console (created once; passwords in var/agent_passwords.txt).
.venv/bin/python scripts/seed_agents.py

cat <<MSG

  Northwind support assistant
  ---------------------------
  Demo shop app:        http://localhost:$DEMO_PORT/  (log in as a demo customer, tap the chat button)
  Widget channel:       $WIDGET_PUBLIC_URL/webhooks/widget/  (docs/widget-protocol.md)
  Agent console:        http://localhost:$RASA_PORT/webhooks/agent/  (demo-agent / demo-admin, passwords in var/agent_passwords.txt)
  Chat (REST channel):  curl -s localhost:$RASA_PORT/webhooks/rest/webhook -d '{"sender":"me","message":"hi"}'
  Rasa HTTP API:        http://localhost:$RASA_PORT/  (token in var/rasa_token or \$RASA_TOKEN)
  Action server:        http://localhost:$ACTIONS_PORT/health
  Terminal chat:        make shell
  Data:                 var/ (support.db, orders.db, rasa_tracker.db)

MSG
exec .venv/bin/honcho start -f Procfile
