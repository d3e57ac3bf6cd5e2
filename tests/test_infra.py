"""The test infrastructure itself: private nats-server with JetStream, PG isolation."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from adapters.natsserver import NatsServer
from adapters.store import ensure_store, store_env


async def _publish(url: str) -> None:
    import nats

    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        await js.add_stream(name="INFRA", subjects=["infra.>"])  # file storage default
        ack = await js.publish("infra.hello", b"payload-1")
        assert ack.stream == "INFRA" and ack.seq == 1
    finally:
        await nc.close()


async def _consume(url: str) -> bytes:
    import nats

    nc = await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0)
    try:
        js = nc.jetstream()
        info = await js.stream_info("INFRA")
        assert info.state.messages == 1
        sub = await js.pull_subscribe("infra.>", durable="c1", stream="INFRA")
        (msg,) = await sub.fetch(1, timeout=5)
        await msg.ack()
        return msg.data
    finally:
        await nc.close()


@pytest.mark.nats
def test_jetstream_survives_kill_9(nats_server: NatsServer) -> None:
    assert nats_server.running
    asyncio.run(_publish(nats_server.url))
    port, store_dir = nats_server.port, nats_server.store_dir
    nats_server.kill()
    assert not nats_server.running
    nats_server.start()
    assert (nats_server.port, nats_server.store_dir) == (port, store_dir)
    assert asyncio.run(_consume(nats_server.url)) == b"payload-1"


@pytest.mark.nats
def test_nats_graceful_restart(nats_server: NatsServer) -> None:
    asyncio.run(_publish(nats_server.url))
    nats_server.restart()
    assert nats_server.running
    assert asyncio.run(_consume(nats_server.url)) == b"payload-1"


def _pg_conn(url: str) -> psycopg.Connection:
    env = store_env(url)
    conn = psycopg.connect(
        dbname=env["POSTGRES_DBNAME"], host=env["POSTGRES_HOST"],
        port=env["POSTGRES_PORT"], user=env["POSTGRES_USER"], autocommit=True,
    )  # fmt: skip
    conn.execute(f'SET search_path TO "{env["POSTGRES_SCHEMA"]}"')
    return conn


_seen_schemas: list[str] = []


@pytest.mark.postgres
@pytest.mark.parametrize("attempt", [1, 2])
def test_pg_store_is_empty_and_isolated(pg_store: str, attempt: int) -> None:
    schema = store_env(pg_store)["POSTGRES_SCHEMA"]
    assert schema not in _seen_schemas
    with _pg_conn(pg_store) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (schema,),
        ).fetchall()
        assert tables == []
        conn.execute("CREATE TABLE marker (x int)")  # lands in this test's schema
        for old in _seen_schemas:  # earlier tests' schemas were dropped
            n = conn.execute(
                "SELECT count(*) FROM information_schema.schemata WHERE schema_name = %s",
                (old,),
            ).fetchone()[0]
            assert n == 0
    _seen_schemas.append(schema)


@pytest.mark.postgres
def test_eventsourcing_app_in_pg_schema(pg_store: str) -> None:
    from eventsourcing.application import Application
    from eventsourcing.domain import Aggregate

    env = store_env(pg_store)
    ensure_store(env)  # schema already exists: IF NOT EXISTS is a no-op
    app = Application(env=env)
    try:
        agg = Aggregate()
        app.save(agg)
        assert app.repository.get(agg.id).id == agg.id
    finally:
        app.close()
    with _pg_conn(pg_store) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                (env["POSTGRES_SCHEMA"],),
            )
        }
        public = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()[0]
    assert tables  # eventsourcing created its tables in the test's schema ...
    assert public == 0  # ... and nothing in public


def test_store_url_fixture(store_url: str) -> None:
    env = store_env(store_url)
    assert env["PERSISTENCE_MODULE"] in ("eventsourcing.sqlite", "eventsourcing.postgres")
