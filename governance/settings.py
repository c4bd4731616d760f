"""Settings, all overridable from environment variables.

Embedded default: SQLite under var/, jobs in-process, the local model. Production: DATABASE_URL (PostgreSQL),
CELERY_BROKER_URL (Redis or RabbitMQ), SECRET_KEY, ALLOWED_HOSTS, GOVERNANCE_SIGNING_KEY_PATH.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dj_database_url
from celery.schedules import crontab  # beat schedule below

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("GOVERNANCE_VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# The public development key signs sessions and CSRF tokens of the demo and the tests only: a server process (WSGI,
# Celery) refuses to start with it unless DEBUG or GOVERNANCE_ALLOW_DEV_SECRET_KEY=1 (governance/startup.py).
DEV_SECRET_KEY = "dev-only-insecure-key-change-me-in-production-0123456789"
SECRET_KEY = os.environ.get("SECRET_KEY", DEV_SECRET_KEY)
GOVERNANCE_ALLOW_DEV_SECRET_KEY = os.environ.get("GOVERNANCE_ALLOW_DEV_SECRET_KEY") == "1"
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "http://127.0.0.1:8000,http://localhost:8000")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally (no CDN)
    "simple_history",
    "django_prometheus",
    "governance",
]

MIDDLEWARE = [
    "django_prometheus.middleware.PrometheusBeforeMiddleware",  # times the whole request, refusals included
    "governance.middleware.HostileInputMiddleware",  # request id, body size and NUL checks
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files from the app server (hashed names in production)
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "governance.portal_pages.MethodNotAllowedPageMiddleware",  # a page, not a bare 405, for GET on a form address
    "governance.session_policy.SessionPolicyMiddleware",  # after auth: idle and absolute timeouts, logout everywhere
    "governance.portal_accounts.MustChangePasswordMiddleware",  # after auth: a password set by an admin
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "governance.middleware.RequestContextMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "governance.urls"
WSGI_APPLICATION = "governance.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'governance.sqlite3'}"),
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # SQLite serializes writers; a busy timeout lets concurrent workers wait instead of failing.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 30
    # BEGIN IMMEDIATE: a transaction takes the write lock when it starts, so a concurrent writer waits (busy
    # timeout) instead of failing "database is locked" when a read lock cannot be upgraded.
    DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
    # WAL: readers go on while one writer writes; busy_timeout also covers connections opened by raw sqlite3.
    DATABASES["default"]["OPTIONS"]["init_command"] = "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=30000;"
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = ["governance.api.authentication.AccountBackend",  # ModelBackend + AccountState
                           "governance.oidc.backend.OIDCBackend"]  # answers only an OIDC callback, when configured

# Single sign-on (governance/oidc, docs/operations.md "Single sign-on"): on when an issuer and a client are set;
# the endpoints come from the issuer's discovery document. Local passwords stay on unless GOVERNANCE_LOCAL_LOGIN=0.
GOVERNANCE_OIDC_ISSUER = os.environ.get("GOVERNANCE_OIDC_ISSUER", "").rstrip("/")
GOVERNANCE_OIDC_CLIENT_ID = os.environ.get("GOVERNANCE_OIDC_CLIENT_ID", "")
GOVERNANCE_OIDC_CLIENT_SECRET = os.environ.get("GOVERNANCE_OIDC_CLIENT_SECRET", "")
GOVERNANCE_OIDC_SCOPES = os.environ.get("GOVERNANCE_OIDC_SCOPES", "openid email profile offline_access")
GOVERNANCE_OIDC_GROUPS_CLAIM = os.environ.get("GOVERNANCE_OIDC_GROUPS_CLAIM", "groups")
GOVERNANCE_OIDC_PROVIDER_NAME = os.environ.get("GOVERNANCE_OIDC_PROVIDER_NAME", "your organization")
GOVERNANCE_OIDC_SIGN_ALGO = os.environ.get("GOVERNANCE_OIDC_SIGN_ALGO", "RS256")
GOVERNANCE_OIDC_TIMEOUT = float(os.environ.get("GOVERNANCE_OIDC_TIMEOUT", "10"))
# Group claim -> {program slug: [roles]}, JSON: '{"ml-authors": {"support-tickets": ["author"]}}'.
GOVERNANCE_OIDC_GROUP_ROLES = json.loads(os.environ.get("GOVERNANCE_OIDC_GROUP_ROLES") or "{}")
# A signature's re-authentication at the provider: its auth_time may be this many seconds old at most, and a
# decision waits this long for the provider's answer.
GOVERNANCE_OIDC_SIGN_MAX_AGE = int(os.environ.get("GOVERNANCE_OIDC_SIGN_MAX_AGE", "120"))
GOVERNANCE_OIDC_SIGN_CHALLENGE_SECONDS = int(os.environ.get("GOVERNANCE_OIDC_SIGN_CHALLENGE_SECONDS", "600"))
# How often the provider check refreshes each SSO user's grant (a disabled user is locked out within this).
GOVERNANCE_OIDC_CHECK_SECONDS = float(os.environ.get("GOVERNANCE_OIDC_CHECK_SECONDS", "300"))
GOVERNANCE_LOCAL_LOGIN = env_bool("GOVERNANCE_LOCAL_LOGIN", True)
# Portal sessions (governance/session_policy.py): ended after this long without a request, and this long after
# login whatever the activity.
GOVERNANCE_SESSION_IDLE_SECONDS = int(os.environ.get("GOVERNANCE_SESSION_IDLE_SECONDS", "1800"))
GOVERNANCE_SESSION_MAX_SECONDS = int(os.environ.get("GOVERNANCE_SESSION_MAX_SECONDS", "43200"))
SESSION_COOKIE_AGE = GOVERNANCE_SESSION_MAX_SECONDS

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise looks there first, even when it serves from the apps
# Production (GOVERNANCE_STATIC_MANIFEST=1, after `manage.py collectstatic`): WhiteNoise serves compressed files
# under content-hashed names with far-future caching. Otherwise it serves the apps' files as they are, so the
# demo and the tests need no collectstatic.
GOVERNANCE_STATIC_MANIFEST = env_bool("GOVERNANCE_STATIC_MANIFEST", False)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
                    if GOVERNANCE_STATIC_MANIFEST else "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = not GOVERNANCE_STATIC_MANIFEST

# Served over HTTPS (GOVERNANCE_HTTPS=1, docs/operations.md): cookies only over TLS, HSTS, http redirected. Behind
# a TLS-terminating proxy, GOVERNANCE_TLS_PROXY_HEADER=1 believes its X-Forwarded-Proto (set it only when the proxy
# overwrites that header).
GOVERNANCE_HTTPS = env_bool("GOVERNANCE_HTTPS", False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = GOVERNANCE_HTTPS
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", GOVERNANCE_HTTPS)
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600 if GOVERNANCE_HTTPS else 0)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", GOVERNANCE_HTTPS)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
if env_bool("GOVERNANCE_TLS_PROXY_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # probes speak plain http inside the network
# /metrics: with a token, scrapes must send `Authorization: Bearer <token>` (governance/metrics.py).
GOVERNANCE_METRICS_TOKEN = os.environ.get("GOVERNANCE_METRICS_TOKEN", "")
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

CACHES = {
    "default": {
        "BACKEND": os.environ.get("CACHE_BACKEND", "django.core.cache.backends.locmem.LocMemCache"),
        "LOCATION": os.environ.get("CACHE_LOCATION", "governance"),
    }
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "governance.api.authentication.KeyAuthentication",  # TokenAuthentication with 401 for a bad key
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated",
                                   "governance.api.authentication.KeyScope"],  # a key's programs/bundle scope
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "governance.api.schema.GovernanceAutoSchema",
    "EXCEPTION_HANDLER": "governance.api.errors.exception_handler",
    "DEFAULT_PARSER_CLASSES": [  # JSON bounded in depth and Unicode-safe (governance/api/parsers.py)
        "governance.api.parsers.BoundedJSONParser",
        "governance.api.parsers.CheckedFormParser",
        "governance.api.parsers.CheckedMultiPartParser",
    ],
}
REST_FRAMEWORK["DEFAULT_PAGINATION_CLASS"] = "governance.api.filtersets.BoundedLimitOffsetPagination"

# Hostile input and proxies (governance/middleware.py, docs/operations.md "Production-safe settings").
# Bodies above this many bytes get 413 before anything reads them.
GOVERNANCE_MAX_BODY_BYTES = int(os.environ.get("GOVERNANCE_MAX_BODY_BYTES", str(8 * 1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = GOVERNANCE_MAX_BODY_BYTES
# CIDRs of the reverse proxies whose X-Forwarded-For is believed; empty: the header is ignored.
GOVERNANCE_TRUSTED_PROXIES = env_list("GOVERNANCE_TRUSTED_PROXIES", "")
# Webhook destinations: loopback, private, link-local and metadata addresses are refused (subscription and
# delivery) unless allowed here; plain http only with DEBUG or when allowed.
GOVERNANCE_WEBHOOK_ALLOW_PRIVATE = env_bool("GOVERNANCE_WEBHOOK_ALLOW_PRIVATE", False)
GOVERNANCE_WEBHOOK_ALLOW_HTTP = env_bool("GOVERNANCE_WEBHOOK_ALLOW_HTTP", DEBUG)

SPECTACULAR_SETTINGS = {
    "TITLE": "Prompt governance API",
    "DESCRIPTION": "Programs, datasets, optimization runs, reviews, releases and signed exports.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "VersionStatusEnum": "governance.models.choices.VersionStatus",
        "RunStatusEnum": "governance.models.choices.RunStatus",
        "ChangeRequestStatusEnum": "governance.models.choices.ChangeRequestStatus",
        "WebhookEventEnum": "governance.models.choices.WebhookEvent",
        "RoleEnum": "governance.models.choices.Role",
        "ProgramRoleEnum": "governance.models.memberships.PROGRAM_ROLES",
        "MembershipSourceEnum": "governance.models.memberships.MembershipSource",
    },
}

# Production fetch of release bundles (GET /api/v1/programs/<slug>/releases/<label>/bundle): the signed bundle
# is built once per label state and kept in the cache for this long (the key names the served version, so a
# release, rollback or kill switch never serves a stale bundle).
GOVERNANCE_BUNDLE_CACHE_SECONDS = int(os.environ.get("GOVERNANCE_BUNDLE_CACHE_SECONDS", "86400"))
# How long a server process may reuse what it read for a fetch (the token's rights and what the label serves)
# before reading it again; changes made through the same process apply at once. 0 reads on every fetch.
GOVERNANCE_BUNDLE_STATE_TTL = float(os.environ.get("GOVERNANCE_BUNDLE_STATE_TTL", "2"))
# Credentials (docs/operations.md). API keys: default and longest lifetime in days (0 = none), how often the
# last-use time is written; legacy tokens = keys of DRF's authtoken table (plain text at rest): turn off once
# every client uses an API key. A client sending more than GOVERNANCE_API_AUTH_MAX_FAILURES bad keys within the
# window gets 429. Portal logins: GOVERNANCE_LOGIN_MAX_FAILURES failures within the window lock the username out
# for GOVERNANCE_LOGIN_LOCKOUT_SECONDS, doubled per repeated lockout up to the maximum (0 failures = off).
GOVERNANCE_API_KEY_DEFAULT_DAYS = int(os.environ.get("GOVERNANCE_API_KEY_DEFAULT_DAYS", "90"))
GOVERNANCE_API_KEY_MAX_DAYS = int(os.environ.get("GOVERNANCE_API_KEY_MAX_DAYS", "365"))
GOVERNANCE_API_KEY_LAST_USED_RESOLUTION = float(os.environ.get("GOVERNANCE_API_KEY_LAST_USED_RESOLUTION", "60"))
GOVERNANCE_LEGACY_TOKENS = env_bool("GOVERNANCE_LEGACY_TOKENS", True)
GOVERNANCE_API_AUTH_MAX_FAILURES = int(os.environ.get("GOVERNANCE_API_AUTH_MAX_FAILURES", "20"))
GOVERNANCE_API_AUTH_FAILURE_WINDOW = int(os.environ.get("GOVERNANCE_API_AUTH_FAILURE_WINDOW", "300"))
GOVERNANCE_LOGIN_MAX_FAILURES = int(os.environ.get("GOVERNANCE_LOGIN_MAX_FAILURES", "5"))
GOVERNANCE_LOGIN_FAILURE_WINDOW = float(os.environ.get("GOVERNANCE_LOGIN_FAILURE_WINDOW", "900"))
GOVERNANCE_LOGIN_LOCKOUT_SECONDS = float(os.environ.get("GOVERNANCE_LOGIN_LOCKOUT_SECONDS", "60"))
GOVERNANCE_LOGIN_LOCKOUT_MAX_SECONDS = float(os.environ.get("GOVERNANCE_LOGIN_LOCKOUT_MAX_SECONDS", "3600"))
# /bench/static-json: the ceiling view of bench/load_bundle.py, only when GOVERNANCE_BENCH_VIEWS=1.
GOVERNANCE_BENCH_VIEWS = env_bool("GOVERNANCE_BENCH_VIEWS", False)

# Celery: with no broker configured, tasks run in-process (the embedded default needs no services).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND", None)
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_REJECT_ON_WORKER_LOST = True

# Optimization runs (governance/runner.py, docs/operations.md) and the jobs `celery -A governance beat` starts.
GOVERNANCE_OPTUNA_STORAGE = os.environ.get("GOVERNANCE_OPTUNA_STORAGE", "")  # default: the app's PostgreSQL DB
GOVERNANCE_LOCAL_RUN_WORKERS = int(os.environ.get("GOVERNANCE_LOCAL_RUN_WORKERS", "2"))  # no-broker thread pool
GOVERNANCE_RUN_HEARTBEAT_SECONDS = float(os.environ.get("GOVERNANCE_RUN_HEARTBEAT_SECONDS", "10"))
GOVERNANCE_RUN_STALE_SECONDS = float(os.environ.get("GOVERNANCE_RUN_STALE_SECONDS", "120"))
# A run queued this long with no executor has its task sent again (a lost broker message).
GOVERNANCE_RUN_REDISPATCH_SECONDS = float(os.environ.get("GOVERNANCE_RUN_REDISPATCH_SECONDS", "900"))
GOVERNANCE_RUN_MAX_ATTEMPTS = int(os.environ.get("GOVERNANCE_RUN_MAX_ATTEMPTS", "3"))
# Early stop of a run's search after this many costly trials without improvement; empty: the preset's; 0: never.
GOVERNANCE_RUN_PATIENCE = int(os.environ["GOVERNANCE_RUN_PATIENCE"]) if os.environ.get("GOVERNANCE_RUN_PATIENCE") else None
# Playground (governance/playground.py): models offered besides a version's own and the local model (comma-separated
# litellm model strings), and the seconds one call may take (it runs in the web request, without retries).
GOVERNANCE_PLAYGROUND_MODELS = env_list("GOVERNANCE_PLAYGROUND_MODELS", "")
GOVERNANCE_PLAYGROUND_TIMEOUT = float(os.environ.get("GOVERNANCE_PLAYGROUND_TIMEOUT", "30"))
CELERY_BEAT_SCHEDULE = {
    "reoptimize-due-programs": {"task": "governance.tasks.reoptimize_due_programs",
                                "schedule": crontab(hour=2, minute=0)},
    "drift-check": {"task": "governance.tasks.drift_check", "schedule": crontab(hour=3, minute=30)},
    "recover-stale-runs": {"task": "governance.tasks.recover_stale_runs", "schedule": 60.0},
    "deliver-due-webhooks": {"task": "governance.deliver_due_webhooks", "schedule": 30.0},
    "send-due-notification-emails": {"task": "governance.tasks.send_due_notification_emails", "schedule": 60.0},
    "audit-checkpoint": {"task": "governance.tasks.audit_checkpoint",
                         "schedule": float(os.environ.get("GOVERNANCE_AUDIT_CHECKPOINT_SECONDS", "600"))},
    "verify-audit-trail": {"task": "governance.tasks.verify_audit_trail", "schedule": crontab(hour=4, minute=0)},
    "check-identities": {"task": "governance.tasks.check_identities", "schedule": GOVERNANCE_OIDC_CHECK_SECONDS},
}

# Export signing (Ed25519). Generated by `manage.py generate_signing_key`.
GOVERNANCE_SIGNING_KEY_PATH = Path(os.environ.get("GOVERNANCE_SIGNING_KEY_PATH", VAR_DIR / "signing_key.pem"))
GOVERNANCE_SIGNING_KEY_PEM = os.environ.get("GOVERNANCE_SIGNING_KEY_PEM", "")

# Audit trail seals and checkpoints (governance/audit.py, docs/operations.md). The audit key (hex, >= 32 bytes;
# `manage.py generate_audit_key`) seals every event; without one audited changes are refused, unless
# GOVERNANCE_AUDIT_KEY_AUTOCREATE (default: DEBUG) lets the first write create it. Checkpoints are signed with
# the export signing key, stored in the database and appended to the anchor file ("" disables the file) and
# POSTed to GOVERNANCE_AUDIT_ANCHOR_URL when set; also written after commit every N events (0: never).
GOVERNANCE_AUDIT_KEY = os.environ.get("GOVERNANCE_AUDIT_KEY", "")
GOVERNANCE_AUDIT_KEY_PATH = Path(os.environ.get("GOVERNANCE_AUDIT_KEY_PATH", VAR_DIR / "audit_key"))
GOVERNANCE_AUDIT_RETIRED_KEY_PATHS = env_list("GOVERNANCE_AUDIT_RETIRED_KEY_PATHS", "")
GOVERNANCE_AUDIT_KEY_AUTOCREATE = env_bool("GOVERNANCE_AUDIT_KEY_AUTOCREATE", DEBUG)
GOVERNANCE_AUDIT_ANCHOR_PATH = os.environ.get("GOVERNANCE_AUDIT_ANCHOR_PATH", str(VAR_DIR / "audit_anchor.jsonl"))
GOVERNANCE_AUDIT_ANCHOR_URL = os.environ.get("GOVERNANCE_AUDIT_ANCHOR_URL", "")
GOVERNANCE_AUDIT_ANCHOR_TIMEOUT = float(os.environ.get("GOVERNANCE_AUDIT_ANCHOR_TIMEOUT", "5"))
GOVERNANCE_AUDIT_CHECKPOINT_EVERY = int(os.environ.get("GOVERNANCE_AUDIT_CHECKPOINT_EVERY", "100"))

# Optimizer defaults for runs started from governance.
GOVERNANCE_LM_CACHE_PATH = os.environ.get("GOVERNANCE_LM_CACHE_PATH", str(VAR_DIR / "lm_cache.sqlite3"))
GOVERNANCE_DEFAULT_MODEL = os.environ.get("GOVERNANCE_DEFAULT_MODEL", "local/gemma-3-270m")
GOVERNANCE_DEFAULT_REQUIRED_APPROVALS = int(os.environ.get("GOVERNANCE_DEFAULT_REQUIRED_APPROVALS", "2"))

# Notification emails (governance/notify.py, docs/operations.md) go through Django's email framework. With EMAIL_HOST
# set they go to that SMTP server (EMAIL_PORT, EMAIL_HOST_USER, EMAIL_HOST_PASSWORD, EMAIL_USE_TLS/SSL); without,
# to files under var/mail (the demo). EMAIL_BACKEND overrides both (e.g. the console backend). Links in them start
# with GOVERNANCE_PORTAL_URL. GOVERNANCE_NOTIFY_DISPATCH: "" (Celery with a broker, else a thread), or "inline".
EMAIL_HOST = os.environ.get("EMAIL_HOST", "")
EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND") or ("django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST
                                                   else "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = os.environ.get("EMAIL_FILE_PATH", str(VAR_DIR / "mail"))
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "25"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = float(os.environ.get("EMAIL_TIMEOUT", "10"))
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "prompt-governance@localhost")
GOVERNANCE_EMAIL_SUBJECT_PREFIX = os.environ.get("GOVERNANCE_EMAIL_SUBJECT_PREFIX", "Prompt governance")
GOVERNANCE_PORTAL_URL = os.environ.get("GOVERNANCE_PORTAL_URL", "http://127.0.0.1:8000")
GOVERNANCE_NOTIFY_DISPATCH = os.environ.get("GOVERNANCE_NOTIFY_DISPATCH", "")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "governance.middleware.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"},
        # LOG_FORMAT=json: one JSON object per line (time, level, logger, request id, message, exception).
        "json": {"()": "pythonjsonlogger.json.JsonFormatter",
                 "fmt": "%(asctime)s %(levelname)s %(name)s %(request_id)s %(process)d %(message)s",
                 "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["request_id"],
                             "formatter": "json" if os.environ.get("LOG_FORMAT") == "json" else "plain"}},
    "loggers": {
        # Django's record of every unhandled exception on portal pages, traceback included.
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
        "governance": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
        "governance.access": {"handlers": ["console"], "propagate": False,
                              "level": "INFO" if os.environ.get("LOG_FORMAT") == "json" else "WARNING"},
        "optimizer": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    },
}
