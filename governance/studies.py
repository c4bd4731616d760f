"""Where optimization studies live: optuna's storage, shared by every worker of a run (resume and scale-out).

The app's PostgreSQL database in production; on SQLite a file of its own next to the app's (optuna's writes
would otherwise contend with the app's for SQLite's single write lock).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection, connections, transaction

_STORAGE_LOCK_ID = 4242_0002  # advisory lock naming "create the optuna tables" (see governance.audit for 0001)


def optuna_storage_url() -> str:
    """The study's storage: GOVERNANCE_OPTUNA_STORAGE, else the app's PostgreSQL database, else a SQLite file
    under VAR_DIR (not the app's SQLite file: optuna's writes would contend with the app's for its lock)."""
    configured = getattr(settings, "GOVERNANCE_OPTUNA_STORAGE", "")
    if configured:
        return configured
    db = connections["default"].settings_dict  # during tests this names the test database
    if connection.vendor == "postgresql":
        from sqlalchemy.engine import URL  # start-up cost: only PostgreSQL deployments build this URL

        url = URL.create("postgresql+psycopg", username=db.get("USER") or None, password=db.get("PASSWORD") or None,
                         host=db.get("HOST") or None, port=int(db["PORT"]) if db.get("PORT") else None,
                         database=db["NAME"])
        return url.render_as_string(hide_password=False)
    return f"sqlite:///{Path(settings.VAR_DIR) / 'optuna.sqlite3'}"


_storages_ready: set[str] = set()


def ensure_optuna_storage(url: str) -> None:
    """Create optuna's tables once, under an advisory lock on PostgreSQL: two workers creating them at the same
    moment would otherwise race on the DDL."""
    if url in _storages_ready:
        return
    import optuna  # start-up cost: web processes that never run a study do not load optuna

    if connection.vendor == "postgresql" and url.startswith("postgresql"):
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_STORAGE_LOCK_ID])
            dispose_storage(optuna.storages.RDBStorage(url))
    else:
        dispose_storage(optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 30}}))
    _storages_ready.add(url)


def dispose_storage(storage: Any) -> None:
    """Close a storage's connection pool now, rather than whenever the garbage collector gets to it."""
    backend = getattr(storage, "_backend", storage)  # optuna wraps RDBStorage in a caching layer
    engine = getattr(backend, "engine", None)
    if engine is not None:
        engine.dispose()
