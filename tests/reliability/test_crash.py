"""kill -9 of ``reflow serve`` at random moments during an order flow with interceptions and
tracking: every order allocated exactly once (RT5, RT7), every outbound message exactly once in
REFLOW_OUT, the projections equal a fresh rebuild, and no consumer data in clear (P2)."""

from __future__ import annotations

import asyncio
import random
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
from tests.reliability.workload import Workload

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(3 * 3600)]

# Every fate, reviews and loss-risk tracking included (D1 and D3 are fixed: a redelivered batch
# is recognised by its stored REFLOW_IN sequence, a repeated loss-risk parcel counts once).
FATES = ("plain", "post", "refund", "cancel", "address", "review", "bundle")
LOSSES = True


def test_kill_9_at_random_moments_loses_duplicates_and_leaks_nothing(tmp_path, sqlite_store, scale, figures):
    wl = Workload(scale.crash_orders, seed=8, fates=FATES, losses=LOSSES)
    rng = random.Random(88)
    server = nats_server(tmp_path).start()
    serve = Serve(server.url, sqlite_store, tmp_path / "data")
    v = Verdict(orders=len(wl.orders), inbound=len(wl.messages))
    kills: list[int] = []

    async def story() -> None:
        async with Broker.connect(server.url) as b:
            serve.start()
            await b.wait_for_streams(serve.proc)
            producer = asyncio.create_task(b.publish(wl.messages, timeout=3600))
            total = len(wl.messages)
            for target in sorted(rng.sample(range(total // 20, total * 9 // 10), scale.kills)):
                deadline = time.monotonic() + 120 + total / 100
                while await b.acked() < target:
                    assert serve.proc.poll() is None, f"reflow serve exited early; log {serve.logs[-1]}"
                    assert time.monotonic() < deadline, f"serve stalled before message {target}"
                    await asyncio.sleep(0.05)
                await asyncio.sleep(rng.uniform(0, 0.3))  # somewhere inside a batch, a publish, a projection
                serve.kill9()
                kills.append(await b.acked())
                serve.start()
            await producer
            await b.settled(timeout=120 + total / 50, proc=serve.proc)
            app = open_store(serve.settings)
            try:
                out = await check_outbound(b, app, wl, v)
                assert serve.stop() == 0, f"serve did not exit 0 on SIGTERM; log {serve.logs[-1]}"
                check_orders(app, wl, v)
                check_projections(app, serve.settings, tmp_path, v)
                dead = await b.read("REFLOW_DLQ")
                v.dead_letters = len(dead)
                if dead:
                    v.problem(f"{len(dead)} dead letters from a valid flow, e.g. {dead[0].headers}")
                await check_leaks(b, wl, v, logs=serve.log_text(), out=out, dead=dead,
                                  duckdb_files=[serve.settings.duckdb_path], store=sqlite_store)
            finally:
                app.close()

    try:
        run(story(), timeout=3 * 3600)
    finally:
        serve.close()
        server.close()
    figures(scenario="kill -9 of reflow serve", faults=len(kills), orders=v.orders, messages=v.inbound,
            outbound=v.outbound, losses=v.losses, duplicates=v.duplicates, leaks=v.leaks, killed_at=kills)
    assert len(kills) == scale.kills
    v.check()
    assert (v.losses, v.duplicates, v.leaks) == (0, 0, 0)
