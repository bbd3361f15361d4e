#!/usr/bin/env bash
# Run a command with the settings of ./.env (if there is one) in its environment, parsed by
# the shell exactly as scripts/run.sh does: `scripts/with_env.sh .venv/bin/python ...`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .env ]; then set -a; . ./.env; set +a; fi
exec "$@"
