#!/usr/bin/env bash
# Run the whole test suite: creates .venv and installs the project with the local model and dev tools if needed.
# Needs PostgreSQL, Redis and RabbitMQ on 127.0.0.1 (tests of the scale path use them for real) and
# Debian's chromium for the browser tests. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import optimizer, governance, llama_cpp, dspy, playwright, schemathesis, gunicorn, pytest_timeout, drf_spectacular_sidecar, matplotlib, standardwebhooks, mozilla_django_oidc, oauth2_provider, aiosmtpd, whitenoise, django_prometheus, pythonjsonlogger" 2>/dev/null; then
  .venv/bin/pip install --quiet --upgrade pip
  .venv/bin/pip install --quiet -e ".[local,dev]"
fi
# axe-core for the browser tests' accessibility scan, from the npm registry (pinned in tests/e2e/axe/package-lock.json)
if [ ! -f tests/e2e/axe/node_modules/axe-core/axe.min.js ] && command -v npm >/dev/null; then
  npm ci --prefix tests/e2e/axe --no-audit --no-fund --silent
fi
exec .venv/bin/python -m pytest "$@"
