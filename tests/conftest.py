"""Shared fixtures.

Stores:  ``sqlite_store`` (function), ``pg_url`` (session), ``pg_store`` (function),
``store_url`` (function, parametrized sqlite/postgres; the postgres param carries
``@pytest.mark.postgres`` so ``-m "not postgres"`` deselects it).
Broker:  ``nats_server`` (function) → :class:`adapters.natsserver.NatsServer`.
Engine:  ``app`` (function): :class:`engine.app.Reflow` on ``store_url``, so once on SQLite
and once on PostgreSQL: for tests about the store itself (positions, conflicts, races, what is
at rest). ``memory_app`` (function): ``Reflow`` on eventsourcing's in-memory (POPO) store, once:
for narratives of the domain that do not depend on the store (the fast layer above
``engine.policy``'s unit tests, below the store-backed ones).

PostgreSQL is never skipped: if it is unreachable the fixture fails loudly.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from adapters.natsserver import NatsServer

PG_HOST = os.environ.get("REFLOW_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("REFLOW_TEST_PG_PORT", "5432"))
PG_ADMIN_DB = "test"
PG_USERS = ("postgres", "root")


def _pg_connect(user: str, dbname: str) -> psycopg.Connection:
    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=user, dbname=dbname,
        autocommit=True, connect_timeout=5,
    )  # fmt: skip


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh database ``reflow_t_<pid>_<hex>`` for the session; dropped at the end.

    Yields ``postgresql://<user>@127.0.0.1:5432/<db>`` (trust auth, no password).
    """
    errors = []
    admin = user = None
    for candidate in PG_USERS:
        try:
            admin = _pg_connect(candidate, PG_ADMIN_DB)
            user = candidate
            break
        except psycopg.OperationalError as e:
            errors.append(f"{candidate}: {str(e).strip()}")
    if admin is None:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_HOST}:{PG_PORT} (db {PG_ADMIN_DB!r}, "
            f"users {PG_USERS}); start it with `pg_ctlcluster --skip-systemctl-redirect "
            f"$(ls /etc/postgresql) main start` or run `bash .ci/run`.\n"
            + "\n".join(errors),
            pytrace=False,
        )
    dbname = f"reflow_t_{os.getpid()}_{secrets.token_hex(4)}"
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    try:
        yield f"postgresql://{user}@{PG_HOST}:{PG_PORT}/{dbname}"
    finally:
        with _pg_connect(user, PG_ADMIN_DB) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(dbname)
                )
            )


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[str]:
    """``pg_url + "?schema=t_<hex>"``: an empty schema of its own per test.

    eventsourcing 9.5 honours ``POSTGRES_SCHEMA`` (tables, composite types and
    functions are all created schema-qualified), so one database per session
    with a schema per test is enough isolation, and much faster than a
    database per test.
    """
    schema = f"t_{secrets.token_hex(6)}"
    user, dbname = pg_url.split("://", 1)[1].split("@", 1)[0], pg_url.rsplit("/", 1)[1]
    with _pg_connect(user, dbname) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield f"{pg_url}?schema={schema}"
    finally:
        drop = sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        with _pg_connect(user, dbname) as conn:
            conn.execute("SET lock_timeout = '5s'")
            try:
                conn.execute(drop)
            except psycopg.errors.LockNotAvailable:
                # A pool the test left open holds locks on the schema's
                # tables: end the other sessions in this test database.
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
                conn.execute(drop)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> str:
    """``sqlite:///<tmp_path>/events.db`` (tmp_path is absolute → four slashes)."""
    return f"sqlite:///{tmp_path}/events.db"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def store_url(request: pytest.FixtureRequest) -> str:
    """Each test using it runs once on SQLite and once on PostgreSQL."""
    name = "sqlite_store" if request.param == "sqlite" else "pg_store"
    return request.getfixturevalue(name)


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """A started private ``nats-server -js`` on a free port, store dir ``tmp_path/js``.

    ``.url``, ``.port``, ``.store_dir``, ``.start()``, ``.stop()`` (SIGTERM),
    ``.kill()`` (SIGKILL), ``.restart(hard=False)`` (same port and dir).
    Always killed at teardown.
    """
    server = NatsServer(store_dir=tmp_path / "js", log_file=tmp_path / "nats-server.log")
    try:
        server.start()
        yield server
    finally:
        server.kill()


def _reflow(env: dict[str, str]):
    """``Reflow(env)`` with a fresh cipher key (rule P2 needs one whatever the store)."""
    from eventsourcing.cipher import AESCipher

    from engine.app import Reflow

    return Reflow({**env, "REFLOW_CIPHER_KEY": AESCipher.create_key(32)})


@pytest.fixture
def app(store_url: str, tmp_path: Path):
    """The application service on a fresh store: SQLite and PostgreSQL alike."""
    from adapters.store import ensure_store, store_env

    env = store_env(store_url, tmp_path)
    ensure_store(env)
    application = _reflow(env)
    yield application
    application.close()


@pytest.fixture
def memory_app():
    """The application service on a fresh in-memory store (eventsourcing's POPO recorders).

    Same engine, same process recorder (``max_notification_id``, positions, one atomic
    ``insert_events`` that raises ``IntegrityError`` on a version clash), nothing on disk: for
    tests of the domain rather than of the store. It cannot be shared by a second application
    (no two-router races) and has no bytes at rest (rule P2): those tests take ``app``.
    """
    # Named explicitly, so a PERSISTENCE_MODULE in os.environ (merged under env) cannot win.
    application = _reflow({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield application
    application.close()
