"""The broker and the database go away mid-run: reflow reconnects and finishes with nothing lost,
nothing duplicated (NATS stopped and restarted, NATS killed -9 with fsync-per-write JetStream;
a private PostgreSQL cluster crashed and restarted under the PostgreSQL store)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.reliability.harness import (
    Broker,
    Serve,
    Verdict,
    check_leaks,
    check_orders,
    check_outbound,
    check_projections,
    nats_server,
    open_store,
    run,
)
from tests.reliability.pgcluster import PrivateCluster
from tests.reliability.workload import Workload

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(3600)]
# Every fate, reviews and loss-risk tracking included (D1, D3 fixed; see test_defects.py).
FATES = ("plain", "post", "refund", "cancel", "address", "review", "bundle")


async def until_acked(b: Broker, serve: Serve, target: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while await b.acked() < target:
        assert serve.proc.poll() is None, f"serve exited; log {serve.logs[-1]}"
        assert time.monotonic() < deadline, f"serve did not reach message {target} in {timeout}s"
        await asyncio.sleep(0.05)


async def finish(b: Broker, serve: Serve, wl: Workload, v: Verdict, tmp_path, store: str) -> None:
    await b.settled(timeout=300 + len(wl.messages) / 20, proc=serve.proc)
    app = open_store(serve.settings)
    try:
        out = await check_outbound(b, app, wl, v)
        assert serve.stop() == 0, f"serve did not exit 0; log {serve.logs[-1]}"
        check_orders(app, wl, v)
        check_projections(app, serve.settings, tmp_path, v)
        dead = await b.read("REFLOW_DLQ")
        if dead:
            v.problem(f"{len(dead)} dead letters from a valid flow, e.g. {dead[0].headers}")
        await check_leaks(b, wl, v, logs=serve.log_text(), out=out, dead=dead,
                          duckdb_files=[serve.settings.duckdb_path], store=store)
    finally:
        app.close()


def test_nats_stopped_and_killed_mid_run_loses_and_duplicates_nothing(tmp_path, sqlite_store, scale, figures):
    wl = Workload(scale.restart_orders, seed=41, fates=FATES, losses=True)
    server = nats_server(tmp_path).start()
    serve = Serve(server.url, sqlite_store, tmp_path / "data")
    v = Verdict(orders=len(wl.orders), inbound=len(wl.messages))
    faults = []

    async def story() -> None:
        async with Broker.connect(server.url) as b:
            serve.start()
            await b.wait_for_streams(serve.proc)
            producer = asyncio.create_task(b.publish(wl.messages, window=100, timeout=1800))
            total = len(wl.messages)
            for share, hard in ((3, False), (6, True)):
                await until_acked(b, serve, total * share // 10, timeout=300)
                await asyncio.to_thread(server.restart, hard=hard)  # SIGTERM, or kill -9 (fsync each write)
                faults.append("nats kill -9" if hard else "nats stop/start")
            await producer
            await finish(b, serve, wl, v, tmp_path, sqlite_store)

    try:
        run(story(), timeout=3000)
    finally:
        serve.close()
        server.close()
    figures(scenario="NATS restarts", faults=len(faults), orders=v.orders, messages=v.inbound,
            outbound=v.outbound, losses=v.losses, duplicates=v.duplicates, leaks=v.leaks)
    v.check()


@pytest.mark.postgres
def test_postgresql_crashed_and_restarted_mid_run_loses_and_duplicates_nothing(tmp_path, scale, figures):
    wl = Workload(scale.restart_orders, seed=51, fates=FATES, losses=True)
    cluster = PrivateCluster().start()
    server = nats_server(tmp_path).start()
    store = cluster.create_database("reflow")
    serve = Serve(server.url, store, tmp_path / "data")
    v = Verdict(orders=len(wl.orders), inbound=len(wl.messages))
    faults = []

    async def story() -> None:
        async with Broker.connect(server.url) as b:
            serve.start()
            await b.wait_for_streams(serve.proc)
            producer = asyncio.create_task(b.publish(wl.messages, timeout=1800))
            total = len(wl.messages)
            for share, mode in ((3, "immediate"), (6, "fast")):
                await until_acked(b, serve, total * share // 10, timeout=300)
                await asyncio.to_thread(cluster.stop, mode)  # immediate = a crash, recovery on start
                await asyncio.sleep(3)  # serve meets a dead database for a while
                await asyncio.to_thread(cluster.start)
                faults.append(f"postgres stop -m {mode}")
            await producer
            await finish(b, serve, wl, v, tmp_path, store)

    try:
        run(story(), timeout=3000)
    finally:
        serve.close()
        server.close()
        cluster.close()
    figures(scenario="PostgreSQL restarts", faults=len(faults), orders=v.orders, messages=v.inbound,
            outbound=v.outbound, losses=v.losses, duplicates=v.duplicates, leaks=v.leaks)
    v.check()
