"""Which store, and which key: an existing store is required unless the caller may create one, and
the store knows its cipher key by a fingerprint (CONTRACT section 6, issue 14).

- **Who creates.** Only ``reflow serve`` and ``reflow demo`` (``Settings.create_store``) create a
  store, its key and its directory. Every other entry point needs an existing reflow store (its
  events table is there) and refuses otherwise in one line, having created nothing: no directory,
  no SQLite file, no key, no PostgreSQL schema.
- **Where the key is.** ``REFLOW_CIPHER_KEY`` if set; else for a SQLite store the ``cipher.key``
  beside the store's file (so ``--store`` alone is enough from any directory); for PostgreSQL (and
  ``:memory:``) ``<--data-dir>/cipher.key``.
- **The store knows its key.** When a store is created (or, for a store written before this, on
  its first use by ``serve``/``demo``), a fingerprint of the key goes into the one-row table
  ``reflow_store_key``: HMAC-SHA256 keyed by the key over a fixed label, never the key. Every entry
  point refuses a key whose fingerprint differs, naming where the key came from.
- **PostgreSQL out of reach** is one line naming ``--store`` and host:port, after a connect timeout
  of a few seconds (``?connect_timeout=`` in the URL sets it).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from adapters.store import CIPHER_KEY_ENV, CIPHER_KEY_FILE, check_key, default_store_url, key_file

KEY_TABLE = "reflow_store_key"
SQLITE_EVENTS = "stored_events"  # eventsourcing's SQLite recorder
PG_EVENTS = "reflow_events"  # eventsourcing's PostgreSQL recorder: <application name>_events
PROBE_TIMEOUT = 5  # seconds to reach PostgreSQL, unless the URL says connect_timeout
_LABEL = b"reflow store cipher key fingerprint v1"


class StoreError(ValueError):
    """The store or its key cannot be used as asked: one line naming the option or the key's source."""


def fingerprint(key: str) -> str:
    """What the store keeps to recognise its key (an HMAC of a fixed label: it reveals nothing of the key)."""
    return "hmac-sha256:" + hmac.new(base64.b64decode(key), _LABEL, hashlib.sha256).hexdigest()


def shown(url: str) -> str:
    """The URL with its password masked, for messages."""
    parts = urlsplit(url)
    if parts.password:
        host = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    return url


@dataclass(frozen=True)
class State:
    exists: bool  # the events table is there
    fingerprint: str | None
    has_events: bool
    why: str = ""  # why it does not exist
    whole: bool = False  # recorded with the fingerprint: every event encrypted whole (a store from before)
    first: bytes | None = None  # the first stored event's bytes


def encrypted_whole(state: State, key: str) -> bool:
    """Was every event stored encrypted whole? Recorded with the fingerprint; for a store from before
    fingerprints, whether its first event decrypts with the key (``REFLOW_CIPHER_KEY`` in the
    environment used to turn that on by accident)."""
    if state.fingerprint is not None or state.first is None:
        return state.whole
    from eventsourcing.cipher import AESCipher
    from eventsourcing.utils import Environment

    try:
        AESCipher(Environment(env={"CIPHER_KEY": key})).decrypt(state.first)
    except Exception:  # noqa: BLE001 - not encrypted whole (or another key: decoding will say so)
        return False
    return True


def label(url: str | None, data_dir: str | Path) -> str:
    return f"--store {shown(url or default_store_url(data_dir))}"


def probe(env: dict[str, str], where: str, url: str | None) -> State:
    """What is at the store, changing nothing."""
    if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
        return _pg(env, where, url or "", lambda conn, schema: _pg_state(conn, schema))
    name = env["SQLITE_DBNAME"]
    if name == ":memory:":
        return State(False, None, False, "an in-memory store is new each time")
    path = Path(name)
    if not path.is_file():
        return State(False, None, False, f"{path} does not exist" if not path.exists() else f"{path} is not a file")
    try:
        con = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, timeout=10)
        try:
            tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            found = con.execute(f"SELECT fingerprint, whole_record FROM {KEY_TABLE} WHERE id = 1").fetchone() \
                if KEY_TABLE in tables else None
            first = con.execute(f"SELECT state FROM {SQLITE_EVENTS} ORDER BY rowid LIMIT 1").fetchone() \
                if SQLITE_EVENTS in tables else None
        finally:
            con.close()
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{where}: no reflow store there ({path}: {e})") from None
    return State(SQLITE_EVENTS in tables, found[0] if found else None, first is not None,
                 "" if SQLITE_EVENTS in tables else f"{path} holds no reflow events table",
                 bool(found and found[1]), bytes(first[0]) if first else None)


def record(env: dict[str, str], where: str, url: str | None, fp: str, whole: bool) -> str:
    """Keep ``fp`` (and whether events are encrypted whole) as the store's key fingerprint unless it
    has one; return the one it has."""
    if env["PERSISTENCE_MODULE"] == "eventsourcing.postgres":
        return _pg(env, where, url or "", lambda conn, schema: _pg_record(conn, schema, fp, whole))
    if env["SQLITE_DBNAME"] == ":memory:":
        return fp
    con = sqlite3.connect(env["SQLITE_DBNAME"], timeout=10)
    try:
        with con:
            con.execute(f"CREATE TABLE IF NOT EXISTS {KEY_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), "
                        "fingerprint TEXT NOT NULL, whole_record INTEGER NOT NULL DEFAULT 0, "
                        "recorded_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
            con.execute(f"INSERT OR IGNORE INTO {KEY_TABLE} (id, fingerprint, whole_record) VALUES (1, ?, ?)",
                        (fp, int(whole)))
        return con.execute(f"SELECT fingerprint FROM {KEY_TABLE} WHERE id = 1").fetchone()[0]  # noqa: S608
    finally:
        con.close()


def _pg(env: dict[str, str], where: str, url: str, work):
    import psycopg

    timeout = int(env.get("POSTGRES_CONNECT_TIMEOUT", "10")) if "connect_timeout=" in url else PROBE_TIMEOUT
    at = f"{env['POSTGRES_HOST']}:{env['POSTGRES_PORT']}"
    try:
        conn = psycopg.connect(dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"], port=env["POSTGRES_PORT"],
                               user=env["POSTGRES_USER"], password=env["POSTGRES_PASSWORD"],
                               connect_timeout=timeout, autocommit=True)
    except psycopg.OperationalError as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise StoreError(f"{where}: cannot connect to PostgreSQL at {at} ({reason})") from None
    try:
        return work(conn, env.get("POSTGRES_SCHEMA") or "public")
    finally:
        conn.close()


def _pg_state(conn, schema: str) -> State:
    from psycopg import sql

    if conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone() is None:
        return State(False, None, False, f"schema {schema!r} does not exist")
    tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])}
    found = first = None
    if KEY_TABLE in tables:
        found = conn.execute(sql.SQL("SELECT fingerprint, whole_record FROM {}.{} WHERE id = 1").format(
            sql.Identifier(schema), sql.Identifier(KEY_TABLE))).fetchone()
    if PG_EVENTS in tables:
        first = conn.execute(sql.SQL("SELECT state FROM {}.{} ORDER BY notification_id LIMIT 1").format(
            sql.Identifier(schema), sql.Identifier(PG_EVENTS))).fetchone()
    return State(PG_EVENTS in tables, found[0] if found else None, first is not None,
                 "" if PG_EVENTS in tables else f"schema {schema!r} holds no reflow events table",
                 bool(found and found[1]), bytes(first[0]) if first else None)


def _pg_record(conn, schema: str, fp: str, whole: bool) -> str:
    import psycopg
    from psycopg import sql

    table = sql.SQL("{}.{}").format(sql.Identifier(schema), sql.Identifier(KEY_TABLE))
    for attempt in range(3):  # two processes creating the table at once: one of them retries
        try:
            conn.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id INTEGER PRIMARY KEY CHECK (id = 1), "
                                 "fingerprint TEXT NOT NULL, whole_record BOOLEAN NOT NULL DEFAULT false, "
                                 "recorded_at TIMESTAMPTZ NOT NULL DEFAULT now())"
                                 ).format(table))
            break
        except psycopg.errors.UniqueViolation:
            if attempt == 2:
                raise
    conn.execute(sql.SQL("INSERT INTO {} (id, fingerprint, whole_record) VALUES (1, %s, %s) "
                         "ON CONFLICT (id) DO NOTHING").format(table), [fp, whole])
    return conn.execute(sql.SQL("SELECT fingerprint FROM {} WHERE id = 1").format(table)).fetchone()[0]


def find_key(env: dict[str, str], data_dir: str | Path, where: str, *, create: bool) -> tuple[str, str]:
    """The key and where it came from: ``REFLOW_CIPHER_KEY``, else the store's key file (created
    only when ``create``)."""
    given = os.environ.get(CIPHER_KEY_ENV, "").strip()
    if given:
        return check_key(given, CIPHER_KEY_ENV), CIPHER_KEY_ENV
    path = key_path(env, data_dir)
    if not create and not path.exists():
        beside = "beside the store's file" if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite" else "in --data-dir"
        raise StoreError(f"{where}: no cipher key for this store: {path} does not exist ({beside}) and "
                         f"{CIPHER_KEY_ENV} is not set")
    return key_file(path), str(path)


def key_path(env: dict[str, str], data_dir: str | Path) -> Path:
    """Where the store's key file is: beside a SQLite store's file, else in the data directory."""
    name = env.get("SQLITE_DBNAME")
    if env["PERSISTENCE_MODULE"] == "eventsourcing.sqlite" and name and name != ":memory:":
        return Path(name).parent / CIPHER_KEY_FILE
    return Path(data_dir).absolute() / CIPHER_KEY_FILE


def mismatch(source: str, where: str) -> StoreError:
    return StoreError(f"cipher key from {source} is not the key of {where} (the store holds the fingerprint of "
                      "another key); give the key the store was created with")
