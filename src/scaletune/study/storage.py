"""Open an Optuna storage from a URL, turning every way it can fail into one clear `ScaletuneError`.

- ``sqlite:///PATH``: embedded, nothing to start; fine for one machine and a few workers.
- ``postgresql://USER:PASSWORD@HOST:PORT/DB``: many workers or machines (needs psycopg2).
- ``journal:///PATH``: Optuna's journal file storage, for a shared file system without a database.

Any of them can be browsed with optuna-dashboard (``optuna-dashboard sqlite:///study.db``).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from scaletune.errors import ScaletuneError


def mask_url(url: str) -> str:
    """The URL with its password replaced by ***, for messages."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def _postgres_driver() -> str:
    """SQLAlchemy >= 2.1 defaults postgresql:// to psycopg 3; fall back to psycopg2 when only it is installed."""
    import importlib.util

    return "psycopg" if importlib.util.find_spec("psycopg") or not importlib.util.find_spec("psycopg2") else "psycopg2"


def _serialise_sqlite(engine) -> None:
    """Make every SQLite transaction take the write lock at BEGIN.

    pysqlite starts a transaction only at the first write, so two workers can both read a trial as
    WAITING and both claim it. BEGIN IMMEDIATE serialises read-then-write transactions (the SQLAlchemy
    recipe for SQLite), which makes claiming a trial atomic, as it is on PostgreSQL with SELECT ... FOR UPDATE.
    """
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # let the BEGIN below be the only transaction control
        # WAL + synchronous=NORMAL: a commit no longer waits for fsync (a trial makes ~15 commits); still
        # safe against killed processes, which is what resume needs (only a power cut can lose the last commits).
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    @event.listens_for(engine, "begin")
    def _begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened by Optuna's schema check predate the listeners


def open_storage(url: str, must_exist: bool = False):
    """An Optuna storage for ``url`` (already resolved, see `resolve_storage_url`), checked to be reachable.

    ``must_exist``: a sqlite / journal file must already exist (reading a study never creates a storage).
    """
    scheme, _, rest = url.partition("://")
    shown = mask_url(url)
    if scheme in ("sqlite", "journal"):
        folder = Path(rest[1:]).parent
        if not folder.is_dir():
            raise ScaletuneError(f"storage {shown}: folder {folder} does not exist")
        if must_exist and not Path(rest[1:]).is_file():
            raise ScaletuneError(f"storage {shown}: no such file")
    if scheme in ("postgresql", "postgres"):
        url = f"postgresql+{_postgres_driver()}://{rest}"
    for attempt in range(5):
        try:
            return _open(scheme, rest, url)
        except ScaletuneError as exc:
            # Two sweeps starting together on a new database both create its tables; the loser retries.
            racing = ("already exists", "locked", "UNIQUE constraint", "duplicate key")
            if not any(r in str(exc) for r in racing) or attempt == 4:
                raise ScaletuneError(f"storage {shown}: {exc}", hint=exc.hint) from None
            time.sleep(0.5 + attempt)


def require_shared(url: str, backend: str, address: str | None = None) -> None:
    """Refuse SQLite when workers run on other machines (Slurm jobs, a Ray cluster at a remote address):
    SQLite's locking needs every writer on one machine's local file system."""
    if not url.startswith("sqlite"):
        return
    host = re.sub(r"^\w+://", "", address or "").rpartition(":")[0] or (address or "")
    remote = backend == "slurm" or (backend == "ray" and address not in (None, "", "local") and host not in ("localhost", "127.0.0.1"))
    if remote:
        where = f"backend {backend}" + (f" at {address}" if address else "")
        raise ScaletuneError(
            f"storage {mask_url(url)}: SQLite works only with workers on this machine, and {where} "
            f"can run them on other nodes; use postgresql://USER@HOST/DB or journal:///PATH.log "
            f"on a file system the nodes share"
        )


def check_storage(url: str) -> None:
    """Check that a storage can be used without creating anything (a dry run): a database must answer,
    a sqlite / journal file must exist or its folder must."""
    scheme, _, rest = url.partition("://")
    if scheme in ("sqlite", "journal") and not Path(rest[1:]).exists():
        folder = Path(rest[1:]).parent
        if not folder.is_dir():
            raise ScaletuneError(f"storage {mask_url(url)}: folder {folder} does not exist")
        return
    open_storage(url)


def _open(scheme: str, rest: str, url: str):
    import optuna
    from optuna.storages import RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    try:
        if scheme == "journal":
            return JournalStorage(JournalFileBackend(rest[1:]))
        # SQLite serialises writers: wait for the lock instead of failing when workers write at once.
        engine_kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if scheme == "sqlite" else {"pool_pre_ping": True}
        if scheme.startswith("postgres"):
            engine_kwargs["connect_args"] = {"connect_timeout": 10}
        rdb = RDBStorage(url, engine_kwargs=engine_kwargs)
        if scheme == "sqlite":
            _serialise_sqlite(rdb.engine)
        return optuna.storages.get_storage(rdb)
    except ModuleNotFoundError as exc:
        raise ScaletuneError(f"missing database driver ({exc}); install scaletune[postgres] for PostgreSQL") from None
    except Exception as exc:  # sqlalchemy raises many types (OperationalError, ArgumentError, ...)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        message = re.sub(r"^\([^)]*\)\s*", "", message)  # drop sqlalchemy's "(psycopg2.OperationalError)"
        raise ScaletuneError(f"cannot open ({mask_url(message)})") from None
