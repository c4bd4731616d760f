#!/usr/bin/env bash
# The production topology on one machine: gunicorn (web), a Celery worker and Celery beat, against PostgreSQL and
# Redis (or RabbitMQ), with production settings (DEBUG off, hashed static files served by WhiteNoise, JSON logs,
# Prometheus metrics summed over the gunicorn workers). The same commands, split over machines, are the deployment
# of docs/operations.md "Production topology".
#
#   scripts/topology.sh start    # create the database if missing, migrate, collectstatic, start, wait for /readyz
#   scripts/topology.sh stop
#   scripts/topology.sh status
#   scripts/topology.sh run .venv/bin/python manage.py createsuperuser   # any command, with the topology's settings
#
# Settings (environment): TOPOLOGY_DIR (keys, logs, pid files; default var/topology), DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/governance_topology), CELERY_BROKER_URL (default redis://127.0.0.1:6379/3),
# WEB_PORT (default 8001), WEB_WORKERS (default 2), SECRET_KEY (default: one generated into TOPOLOGY_DIR).
# Any other setting of docs/operations.md passes through (GOVERNANCE_HTTPS=1 behind a TLS proxy, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-$ROOT/.venv/bin/python}
BIN=$(dirname "$PY")
DIR=${TOPOLOGY_DIR:-$ROOT/var/topology}
mkdir -p "$DIR/var" "$DIR/run" "$DIR/log"
DIR=$(cd "$DIR" && pwd)

export LITELLM_LOCAL_MODEL_COST_MAP=True
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/governance_topology}
export CELERY_BROKER_URL=${CELERY_BROKER_URL:-redis://127.0.0.1:6379/3}
export WEB_PORT=${WEB_PORT:-8001}
export WEB_BIND=127.0.0.1:$WEB_PORT WEB_WORKERS=${WEB_WORKERS:-2}
export DEBUG=0 LOG_FORMAT=${LOG_FORMAT:-json} GOVERNANCE_STATIC_MANIFEST=1
export GOVERNANCE_VAR_DIR=$DIR/var STATIC_ROOT=$DIR/static
export GOVERNANCE_SIGNING_KEY_PATH=$DIR/signing_key.pem GOVERNANCE_AUDIT_KEY_PATH=$DIR/audit_key
export GOVERNANCE_AUDIT_ANCHOR_PATH=$DIR/audit_anchor.jsonl
export ALLOWED_HOSTS=${ALLOWED_HOSTS:-127.0.0.1,localhost}
export CSRF_TRUSTED_ORIGINS=${CSRF_TRUSTED_ORIGINS:-http://127.0.0.1:$WEB_PORT,http://localhost:$WEB_PORT}
export PROMETHEUS_MULTIPROC_DIR=$DIR/prometheus
export OPTIMIZER_LOCAL_THREADS=${OPTIMIZER_LOCAL_THREADS:-1}
if [ -z "${SECRET_KEY:-}" ]; then
  [ -s "$DIR/secret_key" ] || (umask 077 && "$PY" -c "import secrets; print(secrets.token_urlsafe(50))" > "$DIR/secret_key")
  SECRET_KEY=$(cat "$DIR/secret_key")
fi
export SECRET_KEY

manage() { "$PY" manage.py "$@"; }

running() {  # name
  local pidfile=$DIR/run/$1.pid
  [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

create_database() {
  "$PY" - <<'EOF'
import os

import dj_database_url
import psycopg

url = dj_database_url.parse(os.environ["DATABASE_URL"])
if url["ENGINE"].endswith("postgresql"):
    admin = dict(host=url["HOST"] or "127.0.0.1", port=url["PORT"] or 5432, user=url["USER"],
                 password=url["PASSWORD"] or None, dbname="postgres", autocommit=True)
    with psycopg.connect(**admin) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [url["NAME"]]).fetchone():
            connection.execute(f'CREATE DATABASE "{url["NAME"]}"')
            print(f"topology: created database {url['NAME']}")
EOF
}

launch() {  # name command...: in the background, its pid in run/NAME.pid, its output in log/NAME.log
  local name=$1; shift
  nohup "$@" >"$DIR/log/$name.log" 2>&1 &
  echo $! >"$DIR/run/$name.pid"
}

wait_ready() {
  for _ in $(seq 1 90); do
    if "$PY" -c "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://$WEB_BIND/readyz', timeout=3).status != 200)" 2>/dev/null; then
      echo "topology: ready on http://$WEB_BIND (logs in $DIR/log)"
      return 0
    fi
    for name in web worker beat; do
      running "$name" || { echo "topology: $name exited; its log:" >&2; tail -n 30 "$DIR/log/$name.log" >&2; exit 1; }
    done
    sleep 1
  done
  echo "topology: /readyz did not answer 200 within 90 s:" >&2
  curl -s "http://$WEB_BIND/readyz" >&2 || true
  exit 1
}

start() {
  for name in web worker beat; do
    if running "$name"; then echo "topology: $name is already running (scripts/topology.sh stop)" >&2; exit 1; fi
  done
  create_database
  [ -s "$GOVERNANCE_SIGNING_KEY_PATH" ] || manage generate_signing_key
  [ -s "$GOVERNANCE_AUDIT_KEY_PATH" ] || manage generate_audit_key
  manage migrate --noinput >"$DIR/log/migrate.log"
  manage setup_roles >/dev/null
  manage collectstatic --noinput >"$DIR/log/collectstatic.log"
  rm -rf "$PROMETHEUS_MULTIPROC_DIR" && mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
  launch web "$BIN/gunicorn" governance.wsgi -c deploy/gunicorn.conf.py
  launch worker "$BIN/celery" -A governance worker --pool=prefork -c "${WORKER_CONCURRENCY:-2}" -n "topology@%h"
  launch beat "$BIN/celery" -A governance beat -s "$DIR/var/beat-schedule" --pidfile=
  wait_ready
}

stop() {
  for name in beat worker web; do
    local pidfile=$DIR/run/$name.pid
    if running "$name"; then
      kill -TERM "$(cat "$pidfile")"
      for _ in $(seq 1 30); do running "$name" || break; sleep 1; done
      running "$name" && kill -KILL "$(cat "$pidfile")"
    fi
    rm -f "$pidfile"
  done
  echo "topology: stopped"
}

status() {
  for name in web worker beat; do
    if running "$name"; then echo "$name: running (pid $(cat "$DIR/run/$name.pid"))"; else echo "$name: stopped"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  run) shift; exec "$@" ;;
  *) echo "usage: scripts/topology.sh start|stop|status|run COMMAND..." >&2; exit 2 ;;
esac
