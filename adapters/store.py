"""Turn a ``--store`` URL into an eventsourcing (9.5) environment.

Two stores are supported:

``sqlite:///relative/path.db`` / ``sqlite:////absolute/path.db``
    ``eventsourcing.sqlite``.  The path is made absolute (so a long-running
    ``reflow serve`` is immune to ``chdir``) and its parent directory created
    (unless ``create=False``: commands that never create a store).

    Durability: eventsourcing 9.5 itself switches every file database to
    ``journal_mode=WAL`` on first connect and exposes no setting for
    ``PRAGMA synchronous``; it is left at SQLite's compiled default, which for
    the Python build here is ``FULL`` for WAL too (``DEFAULT_WAL_SYNCHRONOUS=2``).
    WAL + ``synchronous=FULL`` fsyncs the WAL on every commit, so a committed
    event survives power loss, not just a process crash.  (``NORMAL`` would be
    faster but can lose the last commits on power loss; the event store is the
    system of record, so we keep ``FULL``.)  ``SQLITE_LOCK_TIMEOUT`` (seconds)
    is raised to 10 so that a projection process and the router sharing the
    file wait for the write lock instead of failing with "database is locked".

``postgresql://user:pass@host:port/dbname?schema=xyz`` (or ``postgres://``)
    ``eventsourcing.postgres``.  Empty password allowed (trust auth).  Query
    parameters understood: ``schema`` (→ ``POSTGRES_SCHEMA``; the schema must
    exist — see :func:`ensure_store`), ``host`` (a socket directory when the
    URL has no host), ``connect_timeout``, ``pool_size``, ``max_overflow``.

Note that eventsourcing's ``Application`` merges ``os.environ`` *under* the env
dict passed to it, and that ``<APPNAME>_KEY`` variables in ``os.environ`` beat
plain ``KEY`` ones; the dicts returned here use plain keys.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import getpass
import logging
import os
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from uuid import UUID

log = logging.getLogger("reflow.store")

DEFAULT_DATA_DIR = "reflow-data"

_PG_QUERY_KEYS = {
    "schema": "POSTGRES_SCHEMA",
    "connect_timeout": "POSTGRES_CONNECT_TIMEOUT",
    "pool_size": "POSTGRES_POOL_SIZE",
    "max_overflow": "POSTGRES_MAX_OVERFLOW",
}


def default_store_url(data_dir: str | Path = DEFAULT_DATA_DIR) -> str:
    return f"sqlite:///{Path(data_dir) / 'events.db'}"


def store_env(
    url: str | None, data_dir: str | Path = DEFAULT_DATA_DIR, *, create: bool = True
) -> dict[str, str]:
    """Return the eventsourcing environment for a ``--store`` URL (None → default).

    ``create=False`` leaves the file system alone (no SQLite parent directory is made)."""
    if url is None or url == "":
        url = default_store_url(data_dir)
    scheme, sep, _ = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError(
            f"--store: unsupported URL {url!r} "
            "(use sqlite:///path or postgresql://...)"
        )
    if scheme == "sqlite":
        return _sqlite_env(url, create)
    if scheme in ("postgresql", "postgres"):
        return _postgres_env(url)
    raise ValueError(
        f"--store: unsupported URL scheme {scheme!r} "
        "(use sqlite:///path or postgresql://...)"
    )


def _sqlite_env(url: str, create: bool = True) -> dict[str, str]:
    rest = url[len("sqlite://") :]
    # sqlite:///rel/path → "/rel/path"[1:]; sqlite:////abs → "//abs"[1:] = "/abs"
    if not rest.startswith("/") or len(rest) < 2:
        raise ValueError(
            f"--store: bad SQLite URL {url!r} "
            "(use sqlite:///relative/path.db or sqlite:////absolute/path.db)"
        )
    raw = unquote(rest[1:])
    if raw == ":memory:":
        dbname = raw
    else:
        path = Path(raw).expanduser().absolute()
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        dbname = str(path)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.sqlite",
        "SQLITE_DBNAME": dbname,
        "SQLITE_LOCK_TIMEOUT": "10",
        "CREATE_TABLE": "y",
    }


def _postgres_env(url: str) -> dict[str, str]:
    parts = urlsplit(url)
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    unknown = set(query) - set(_PG_QUERY_KEYS) - {"host"}
    if unknown:
        raise ValueError(
            f"--store: unsupported PostgreSQL URL parameter(s) {sorted(unknown)} "
            f"(known: {sorted(set(_PG_QUERY_KEYS) | {'host'})})"
        )
    dbname = unquote(parts.path.lstrip("/"))
    if not dbname:
        raise ValueError(f"--store: PostgreSQL URL has no database name: {url!r}")
    try:
        port = parts.port
    except ValueError as e:
        raise ValueError(f"--store: bad port in PostgreSQL URL {url!r}") from e
    host = unquote(parts.hostname or "") or query.get("host") or "localhost"
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": dbname,
        "POSTGRES_HOST": host,
        "POSTGRES_PORT": str(port or 5432),
        "POSTGRES_USER": unquote(parts.username or "") or getpass.getuser(),
        "POSTGRES_PASSWORD": unquote(parts.password or ""),
        "POSTGRES_CONNECT_TIMEOUT": "10",
        "POSTGRES_POOL_SIZE": "5",
        "POSTGRES_MAX_OVERFLOW": "10",
        # Check pooled connections before use: survives a PostgreSQL restart.
        "POSTGRES_PRE_PING": "y",
        "CREATE_TABLE": "y",
    }
    for key, env_key in _PG_QUERY_KEYS.items():
        value = query.get(key, "").strip()
        if value:
            env[env_key] = value
    return env


def pg_connect(env: dict[str, str], **options: Any) -> Any:
    """An autocommit connection of its own to the PostgreSQL store ``env`` names."""
    import psycopg

    return psycopg.connect(dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
                           user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"],
                           connect_timeout=int(env.get("POSTGRES_CONNECT_TIMEOUT", "10")), autocommit=True, **options)


@contextlib.contextmanager
def creating(env: dict[str, str]) -> Iterator[None]:
    """Around eventsourcing's ``CREATE ... IF NOT EXISTS`` of a PostgreSQL store: one process at a
    time (a transaction-free advisory lock), so routers started together do not fail on
    PostgreSQL's "tuple concurrently updated" when they create the same tables and functions."""
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        yield
        return

    with pg_connect(env) as conn:
        key = f"reflow store {env.get('POSTGRES_SCHEMA') or 'public'}"
        conn.execute("SELECT pg_advisory_lock(hashtext(%s))", [key])
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", [key])


class WriteLock:
    """The PostgreSQL store's write lock (``Reflow.exclusive`` and ``Reflow.sharing``): a session-level
    advisory lock on a connection of its own. A write that retries after losing to another
    router's computes and commits holding it alone; every other write holds it shared while it
    commits (a few milliseconds), so none can commit under the retry and make it lose again.
    Every process writing the same schema takes the same lock. Reconnects when the connection
    was lost (PostgreSQL restarted)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.key = f"reflow write {env.get('POSTGRES_SCHEMA') or 'public'}"
        self.conn: Any = None

    WAIT = "10s"
    """The longest a write waits for the lock. The lock buys fairness, not correctness (writes are
    version-checked whatever happens), so a writer that waited this long (the holder stalled, or
    its host is gone and PostgreSQL has not noticed yet) writes without it."""

    def _connect(self) -> Any:
        conn = pg_connect(self.env, keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)
        # the server drops a dead holder's session (and its lock) within about 25 s, not hours
        conn.execute(f"SET lock_timeout = '{self.WAIT}'")
        for name, value in (("tcp_keepalives_idle", 10), ("tcp_keepalives_interval", 5), ("tcp_keepalives_count", 3)):
            conn.execute(f"SET {name} = {value}")
        return conn

    def __call__(self) -> contextlib.AbstractContextManager[None]:
        """The lock alone: no other writer commits meanwhile."""
        return self._held("")

    def shared(self) -> contextlib.AbstractContextManager[None]:
        """The lock shared with other ordinary writes; it waits for a writer holding it alone."""
        return self._held("_shared")

    @contextlib.contextmanager
    def _held(self, mode: str) -> Iterator[None]:
        import psycopg

        if self.conn is None or self.conn.closed or self.conn.broken:
            self.conn = self._connect()
        try:
            self.conn.execute(f"SELECT pg_advisory_lock{mode}(hashtext(%s))", [self.key])
        except psycopg.errors.LockNotAvailable:
            log.warning("store write lock not had in %s (its holder stalled?); writing without it", self.WAIT)
            yield
            return
        except Exception:
            self.close()
            raise
        try:
            yield
        finally:
            try:
                self.conn.execute(f"SELECT pg_advisory_unlock{mode}(hashtext(%s))", [self.key])
            except Exception:  # noqa: BLE001 - the session is gone, and its lock with it
                self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self.conn is not None:
                self.conn.close()
        self.conn = None


def ensure_store(env: dict[str, str]) -> None:
    """Create what the store needs beyond what eventsourcing creates itself.

    For PostgreSQL with ``POSTGRES_SCHEMA``: ``CREATE SCHEMA IF NOT EXISTS``
    (eventsourcing creates its tables *in* the schema, not the schema).
    For SQLite: the parent directory (also made by :func:`store_env` unless ``create=False``).
    """
    if env.get("PERSISTENCE_MODULE") == "eventsourcing.sqlite" and env.get("SQLITE_DBNAME", ":memory:") != ":memory:":
        Path(env["SQLITE_DBNAME"]).parent.mkdir(parents=True, exist_ok=True)
    if env.get("PERSISTENCE_MODULE") != "eventsourcing.postgres":
        return
    schema = env.get("POSTGRES_SCHEMA")
    if not schema:
        return
    from psycopg import sql

    with pg_connect(env) as conn:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
        )


# --------------------------------------------------------------------------- cipher

CIPHER_KEY_ENV = "REFLOW_CIPHER_KEY"
CIPHER_KEY_FILE = "cipher.key"


def check_key(key: str, source: str) -> str:
    key = key.strip()
    try:
        n = len(base64.b64decode(key, validate=True))
    except (binascii.Error, ValueError):
        n = -1
    if n not in (16, 24, 32):
        raise ValueError(
            f"cipher key from {source} is not a base64 AES key of 16, 24 or 32 bytes"
        )
    return key


def load_cipher_key(data_dir: str | Path = DEFAULT_DATA_DIR) -> str:
    """The AES key: ``$REFLOW_CIPHER_KEY`` if set, else ``{data_dir}/cipher.key``,
    created (mode 0600, 32 bytes, base64) the first time.  Creation is atomic
    (write a temp file, then ``link`` it into place) so two processes starting
    together agree on one key."""
    env_key = os.environ.get(CIPHER_KEY_ENV, "").strip()
    if env_key:
        return check_key(env_key, f"${CIPHER_KEY_ENV}")
    return key_file(Path(data_dir) / CIPHER_KEY_FILE)


def key_file(path: Path) -> str:
    """The key in the file at ``path``, created (mode 0600, 32 bytes, base64) if missing."""
    if not path.exists():
        from eventsourcing.cipher import AESCipher

        path.parent.mkdir(parents=True, exist_ok=True)
        key = AESCipher.create_key(num_bytes=32)
        tmp = path.with_name(f".{CIPHER_KEY_FILE}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(key + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass  # another process won the race; use its key
        finally:
            tmp.unlink(missing_ok=True)
    return check_key(path.read_text(), str(path))


def cipher_env(data_dir: str | Path = DEFAULT_DATA_DIR) -> dict[str, str]:
    """``{"CIPHER_KEY": key}`` (see :func:`load_cipher_key`); CIPHER_TOPIC unset.

    Caution: in eventsourcing 9.5, ``InfrastructureFactory.cipher()`` turns on
    ``eventsourcing.cipher:AESCipher`` for *every stored event* whenever
    ``CIPHER_KEY`` is in the application's env, even with ``CIPHER_TOPIC``
    unset.  Merge this dict into an ``Application`` env only if whole-record
    encryption is wanted; for field-level encryption only, build an
    ``AESCipher(Environment(env=cipher_env(...)))`` yourself, or pass the key
    from :func:`load_cipher_key` under another name.
    """
    return {"CIPHER_KEY": load_cipher_key(data_dir)}


def stored_ids(app: Any, candidates: Collection[UUID]) -> set[UUID]:
    """Which of ``candidates`` already have events in the application's store: one query for a
    whole batch, instead of one lookup per new order."""
    if not candidates:
        return set()
    recorder = app.recorder
    table = recorder.events_table_name
    found: set[UUID] = set()
    if hasattr(recorder.datastore, "schema"):  # PostgreSQL
        from psycopg.sql import SQL, Identifier

        query = SQL("SELECT DISTINCT originator_id FROM {}.{} WHERE originator_id = ANY(%s)").format(
            Identifier(recorder.datastore.schema), Identifier(table))
        with recorder.datastore.transaction(commit=False) as curs:
            curs.execute(query, [list(candidates)])
            for row in curs.fetchall():
                value = row["originator_id"]
                found.add(value if isinstance(value, UUID) else UUID(str(value)))
        return found
    ids = [c.hex for c in candidates]
    with recorder.datastore.transaction(commit=False) as c:
        for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
            chunk = ids[start:start + 500]
            c.execute(f"SELECT DISTINCT originator_id FROM {table} WHERE originator_id IN "  # noqa: S608
                      f"({','.join('?' * len(chunk))})", chunk)
            found.update(UUID(row[0]) for row in c.fetchall())
    return found
