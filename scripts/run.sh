#!/usr/bin/env bash
# Start the whole product for DEVELOPMENT on embedded defaults (SQLite, in-memory locks).
#   scripts/run.sh              demo shop + action server + Rasa server (honcho; Ctrl-C stops all)
#   scripts/run.sh shell [...]  action server + Rasa server in the background, then the terminal
#                               chat (python -m bot.shell [...]); both stop when the chat ends
# Development secrets are generated into var/ (mode 600) and read from there by the processes
# themselves: no secret is ever put on a command line. Production does not use this script:
# see deploy/Procfile.production and docs/deployment.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f .env ] && set -a && . ./.env && set +a
if [ "${SUPPORT_ENV:-development}" = "production" ]; then
  echo "scripts/run.sh (make run, make shell) is the development launcher: it generates secrets," >&2
  echo "starts the demo shop and seeds demo agents. With SUPPORT_ENV=production start" >&2
  echo "deploy/Procfile.production instead (docs/deployment.md)." >&2
  exit 2
fi
VAR_DIR="${SUPPORT_VAR_DIR:-var}"
mkdir -p "$VAR_DIR"
export RASA_PORT="${RASA_PORT:-5005}" ACTIONS_PORT="${ACTIONS_PORT:-5055}"

# generate NAME FILE: unless NAME or NAME_FILE is set, make sure $VAR_DIR/FILE holds a random
# secret (bot/settings.py reads it from there). The value goes from Python's stdout straight
# into the file, created with mode 600.
generate() {
  local name="$1" file="$VAR_DIR/$2" file_var="${1}_FILE"
  if [ -n "${!name:-}" ] || [ -n "${!file_var:-}" ]; then return 0; fi
  if [ ! -s "$file" ]; then
    (umask 077 && .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))' > "$file")
  fi
  chmod 600 "$file"
}
# Rasa's HTTP API is never open without a token (CVE-2024-49375).
generate RASA_TOKEN rasa_token
# The secret the Rasa server sends to the action server (Authorization: Bearer ...).
generate ACTION_SERVER_TOKEN action_server_token
# The bearer token of the server-to-server API channel (/webhooks/api/webhook, make shell).
generate SUPPORT_API_TOKEN api_token
# The widget channel verifies customer tokens signed by the shop's backend (here: the demo
# shop app) with this shared secret.
if [ -z "${WIDGET_JWT_PUBLIC_KEY:-}" ]; then
  generate WIDGET_JWT_SECRET widget_jwt_secret
fi
# Web Push to agents (bot/push): the VAPID key pair that signs pushes (the console subscribes
# with its public half): $VAR_DIR/vapid_private_key (mode 600) and vapid_public_key.
if [ -z "${VAPID_PRIVATE_KEY:-}" ] && [ -z "${VAPID_PRIVATE_KEY_FILE:-}" ]; then
  .venv/bin/python -m bot.push.keys generate --dir "$VAR_DIR"
fi
export DEMO_PORT="${DEMO_PORT:-8080}"
export WIDGET_PUBLIC_URL="${WIDGET_PUBLIC_URL:-http://localhost:$RASA_PORT}"
ENDPOINTS="${RASA_ENDPOINTS:-endpoints.yml}"

if [ "${1:-}" = "shell" ]; then
  shift
  .venv/bin/python -m bot.action_server --port "$ACTIONS_PORT" > "$VAR_DIR/actions.log" 2>&1 &
  actions_pid=$!
  .venv/bin/python -m bot.serve --model models/support.tar.gz --credentials credentials.yml \
    --endpoints "$ENDPOINTS" --port "$RASA_PORT" > "$VAR_DIR/rasa.log" 2>&1 &
  rasa_pid=$!
  stop_servers() {
    kill "$rasa_pid" "$actions_pid" 2>/dev/null || true
    wait "$rasa_pid" "$actions_pid" 2>/dev/null || true
  }
  trap stop_servers EXIT
  echo "Starting the action server and the Rasa server (logs: $VAR_DIR/actions.log, $VAR_DIR/rasa.log) ..."
  status=0
  .venv/bin/python -m bot.shell --url "http://127.0.0.1:$RASA_PORT" --wait 300 \
    --server-pid "$rasa_pid" --server-pid "$actions_pid" "$@" || status=$?
  exit $status
fi

# Demo accounts for the agent console (created once; passwords in $VAR_DIR/agent_passwords.txt).
.venv/bin/python scripts/seed_agents.py

cat <<MSG

  Northwind support assistant (development)
  -----------------------------------------
  Demo shop app:        http://localhost:$DEMO_PORT/  (log in as a demo customer, tap the chat button)
  Widget channel:       $WIDGET_PUBLIC_URL/webhooks/widget/  (docs/widget-protocol.md)
  Agent console:        http://localhost:$RASA_PORT/webhooks/agent/  (demo-agent / demo-admin, passwords in $VAR_DIR/agent_passwords.txt)
  Chat from a script:   curl -s localhost:$RASA_PORT/webhooks/api/webhook -H "Authorization: Bearer \$(cat $VAR_DIR/api_token)" -d '{"sender":"me","message":"hi"}'
  Rasa HTTP API:        http://localhost:$RASA_PORT/  (?token=\$(cat $VAR_DIR/rasa_token))
  Action server:        http://localhost:$ACTIONS_PORT/health  (everything else needs $VAR_DIR/action_server_token)
  Terminal chat:        make shell
  Data:                 $VAR_DIR/ (support.db, orders.db, rasa_tracker.db)

MSG
exec .venv/bin/honcho start -f Procfile
