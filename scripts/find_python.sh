#!/usr/bin/env bash
# Print the path of a Python 3.10 interpreter, or explain what to install and exit 1.
# Looks at $PYTHON, then python3.10 on PATH, then pyenv's 3.10.x versions.
set -u
is310() { [ -n "$1" ] && [ -x "$(command -v "$1" 2>/dev/null)" ] && \
  "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' 2>/dev/null; }
candidates=()
[ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
candidates+=("python3.10")
for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.10.*; do
  [ -x "$dir/bin/python3.10" ] && candidates+=("$dir/bin/python3.10")
done
for c in "${candidates[@]}"; do
  if is310 "$c"; then command -v "$c"; exit 0; fi
done
if [ -n "${PYTHON:-}" ]; then
  echo "error: PYTHON=$PYTHON is not a Python 3.10 interpreter." >&2
fi
cat >&2 <<'MSG'
error: Python 3.10 was not found.
  Rasa Open Source 3.6 (the last open-source release) needs Python 3.10; it does not install on 3.11+.
  Install one of:
    - pyenv:   pyenv install 3.10.13        (found automatically under ~/.pyenv/versions/3.10.*)
    - Debian/Ubuntu: apt-get install python3.10 python3.10-venv
  or point to an existing interpreter:  make setup PYTHON=/path/to/python3.10
MSG
exit 1
