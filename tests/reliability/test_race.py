"""RT7 across processes: two ``reflow serve`` processes on one PostgreSQL store, each consuming its
own REFLOW_IN (one serve per stream, as the README requires), race for the last stock units of one
offer: never oversold, no order allocated twice, every order either allocated or waiting out of
stock, none lost to a dead letter."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import pytest
from eventsourcing.cipher import AESCipher

from tests.adapters.natsworld import OFFER, SHOP, SSKU, SUPPLIER, catalog, order_body
from tests.reliability.harness import Broker, Serve, Verdict, nats_server, open_store, run

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(3600)]


def test_rt7_two_serve_processes_on_one_postgresql_store_never_oversell(tmp_path, pg_store, scale, figures,
                                                                        monkeypatch):
    units, n = scale.race_units, scale.race_orders
    servers = [nats_server(tmp_path, f"nats-{side}").start() for side in "ab"]
    key = {"REFLOW_CIPHER_KEY": AESCipher.create_key(32)}  # one store, one key; a data dir (DuckDB) each
    serves = [Serve(s.url, pg_store, tmp_path / f"data-{side}", batch=32, env=key)
              for s, side in zip(servers, "ab")]
    monkeypatch.setenv("REFLOW_CIPHER_KEY", key["REFLOW_CIPHER_KEY"])  # and this process reads with it
    v = Verdict(orders=n, inbound=n + len(catalog()))
    counts: dict[str, int] = {}

    async def story() -> None:
        async with Broker.connect(servers[0].url) as a, Broker.connect(servers[1].url) as b:
            serves[0].start()
            await a.wait_for_streams(serves[0].proc)
            await a.publish([(s, json.dumps(body).encode(), f"cat-{s}") for s, body in catalog(stock=units)])
            await a.settled(timeout=60, proc=serves[0].proc)
            serves[1].start()
            await b.wait_for_streams(serves[1].proc)
            sides = [[], []]
            for k in range(n):
                sides[k % 2].append(("order.placed", json.dumps(order_body(f"RACE-{k}")).encode(), f"race-{k}"))
            await asyncio.gather(a.publish(sides[0]), b.publish(sides[1]))
            await asyncio.gather(a.settled(timeout=120 + n / 5, proc=serves[0].proc),
                                 b.settled(timeout=120 + n / 5, proc=serves[1].proc))
            for s in serves:
                assert s.stop() == 0, f"serve did not exit 0; log {s.logs[-1]}"
            dead = (await a.read("REFLOW_DLQ")) + (await b.read("REFLOW_DLQ"))
            counts["dead"] = len(dead)
            for m in dead[:5]:
                v.problem(f"dead letter: {m.headers.get('Reflow-Error')}")
            v.losses += len(dead)
            out = await a.read("REFLOW_OUT", "reflow.out.supplier.*.allocation")
            per_allocation = Counter(json.loads(m.data)["allocation_id"] for m in out)
            counts["published"] = len(per_allocation)

            app = open_store(serves[0].settings)
            try:
                allocated = 0
                for k in range(n):
                    allocs = app.allocations_of(*SHOP, f"RACE-{k}")
                    if len(allocs) > 1:
                        v.duplicates += 1
                        v.problem(f"RACE-{k} allocated {len(allocs)} times")
                    allocated += bool(allocs)
                    status = app.order(*SHOP, f"RACE-{k}").status
                    if status not in ("allocated", "unrouted"):
                        v.problem(f"RACE-{k}: {status}")
                offer = app.offer(SUPPLIER, OFFER)
                counts["allocated"] = allocated
                counts["available"] = offer.available(SSKU)
            finally:
                app.close()
            if counts["published"] != allocated:
                v.problem(f"{counts['published']} allocations published for {allocated} allocated")

    try:
        run(story(), timeout=3000)
    finally:
        for s in serves:
            s.close()
        for s in servers:
            s.close()
    figures(scenario="two serve processes, one PostgreSQL store", orders=n, units=units,
            allocated=counts.get("allocated"), oversold=max(0, counts.get("allocated", 0) - units),
            losses=v.losses, duplicates=v.duplicates)
    v.check()
    assert counts["allocated"] == units, f"{counts} (RT7: exactly the stock, no more, no less)"
    assert counts["available"] == 0
