"""Every inbound message delivered twice, and out of order where the contract allows it: the same
end as a clean delivery (CONTRACT section 1: the same message or the same business fact twice
changes nothing; README "Out-of-order facts"; T1: tracking for an unknown allocation is refused
and, re-published from the dead letters once the allocation exists, applied)."""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.harness import (
    Broker,
    Serve,
    Verdict,
    check_leaks,
    check_orders,
    check_outbound,
    nats_server,
    open_store,
    run,
)
from tests.reliability.workload import FATES, Message, Workload

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(1800)]

# Subjects whose body names the fact (an id, or a time of its own): a copy at any later point is the
# same fact. The others (review, catalog) set state: only an immediate redelivery is the same fact.
FACTS = {"order.placed", "tracking.uploaded", "aftersale.opened", "aftersale.closed", "order.cancelled",
         "order.address_changed"}


def wire(m: Message, msg_id: str | None = None) -> tuple[str, bytes, str]:
    return m.subject, json.dumps(m.body, ensure_ascii=False).encode(), msg_id or m.msg_id


@contextlib.asynccontextmanager
async def serving(tmp: Path, store: str, name: str = "run") -> AsyncIterator[tuple[Broker, Serve]]:
    server = nats_server(tmp, f"nats-{name}").start()
    serve = Serve(server.url, store, tmp / f"data-{name}", batch=64)
    try:
        async with Broker.connect(server.url) as b:
            serve.start()
            await b.wait_for_streams(serve.proc)
            yield b, serve
            assert serve.stop() == 0, f"serve did not exit 0; log {serve.logs[-1]}"
    finally:
        serve.close()
        server.close()


def twice(wl: Workload, rng: random.Random) -> list[tuple[str, bytes, str]]:
    """Each message twice: the same Nats-Msg-Id later (a producer's retry: the broker drops it), and
    a new id (the same fact sent again: reflow must drop it), later where the body names the fact."""
    out: list[tuple[int, int, tuple[str, bytes, str]]] = []
    for i, m in enumerate(wl.messages):
        out.append((i, 0, wire(m)))
        out.append((i + rng.randint(1, 200), 1, wire(m)))
        later = rng.randint(1, 200) if m.subject in FACTS else 0
        out.append((i + later, 2, wire(m, f"{m.msg_id}-again")))
    return [w for _, _, w in sorted(out, key=lambda x: (x[0], x[1]))]


def business_state(app: Any, wl: Workload) -> dict[str, Any]:
    """What the merchant, the suppliers and the shops end with, whatever the path: per order its
    status, live allocations (supplier, lines, status, tracking) and address; stock taken per offer."""
    from tests.reliability.workload import offers

    state: dict[str, Any] = {}
    for o in wl.orders:
        order = app.order(*o.shop, o.order_id)
        live = sorted((a.supplier_id, tuple((al.line_id, al.supplier_sku_id) for al in a.lines), a.status, a.tracking_no)
                      for a in app.allocations_of(*o.shop, o.order_id)
                      if a.status in ("active", "tracked", "shipped"))
        buyer = app.buyer(*o.shop, o.order_id)
        state[o.order_id] = (order.status if order else None, live, buyer.address if buyer else None)
    for supplier, offer_id, sku in offers():
        state[f"offer {offer_id}"] = app.offer(supplier, offer_id).available(sku)
    return state


def test_every_message_delivered_twice_changes_nothing(tmp_path, sqlite_store, scale, figures):
    wl = Workload(scale.delivery_orders, seed=21, losses=True)
    schedule = twice(wl, random.Random(22))
    v = Verdict(orders=len(wl.orders), inbound=len(schedule))

    async def story() -> None:
        async with serving(tmp_path, sqlite_store) as (b, serve):
            await b.publish(schedule)
            await b.settled(timeout=300, proc=serve.proc)
            assert await b.count("REFLOW_IN") == 2 * len(wl.messages)  # the broker dropped its repeats
            app = open_store(serve.settings)
            try:
                check_orders(app, wl, v)
                out = await check_outbound(b, app, wl, v)
                dead = await b.read("REFLOW_DLQ")
                v.dead_letters = len(dead)
                if dead:
                    v.problem(f"{len(dead)} dead letters, e.g. {dead[0].headers}")
                await check_leaks(b, wl, v, logs=serve.log_text(), out=out, dead=dead,
                                  duckdb_files=[], store=sqlite_store)
            finally:
                app.close()

    run(story(), timeout=1500)
    figures(scenario="every message twice", faults=len(schedule) - len(wl.messages), orders=v.orders,
            messages=v.inbound, losses=v.losses, duplicates=v.duplicates, leaks=v.leaks)
    v.check()


def shuffled(wl: Workload, rng: random.Random) -> tuple[list[Message], list[Message]]:
    """The flow out of order where the contract allows it, and what waits for the allocations.

    Allowed: a review, an after-sale, a cancellation or an address change before its order; a
    plain order's tracking before its order (refused, T1; re-published from the dead letters
    later). Kept in order: review on before off, after-sale opened before closed, a post-shipment
    after-sale after its tracking. Tracking of re-routed allocations (their ids depend on the
    path) and loss-risk tracking wait: the supplier sends them once it has the allocation."""
    first: list[tuple[float, Message]] = []
    waiting: list[Message] = []
    for o in wl.orders:
        mine = [m for m in wl.flow if m.order == o.n]
        placed = o.n + rng.uniform(-20, 20)
        others = o.n + rng.uniform(-20, 20)  # the order's other facts, as a block, in their order
        for k, m in enumerate(mine):
            if m.kind == "placed":
                first.append((placed, m))
            elif m.kind == "track" and o.fate == "plain":
                first.append((placed + rng.uniform(-20, 20), m))
            elif m.kind in ("track", "loss") or m.kind == "aftersale" and o.fate == "post":
                waiting.append(m)
            else:  # before or after the order, in their own order
                first.append((others + k * 0.01, m))
    first.sort(key=lambda x: x[0])
    return wl.catalog + [m for _, m in first], waiting


def test_out_of_order_where_the_contract_allows_ends_as_clean_delivery(tmp_path, sqlite_store, scale,
                                                                      figures):
    # the bundle fate's end depends on its tracking arriving before the address change (by design)
    wl = Workload(scale.delivery_orders, seed=31, fates=tuple(f for f, _ in FATES if f != "bundle"))
    early, waiting = shuffled(wl, random.Random(32))
    v = Verdict(orders=len(wl.orders), inbound=len(wl.messages))
    states: dict[str, Any] = {}
    moved = sum(1 for a, b in zip(early, wl.catalog + wl.flow) if a is not b)

    async def clean() -> None:
        async with serving(tmp_path, f"sqlite:///{tmp_path}/clean.db", "clean") as (b, serve):
            await b.publish(wl.messages)
            await b.settled(timeout=300, proc=serve.proc)
            app = open_store(serve.settings)
            try:
                check_orders(app, wl, v)  # the clean run is the workload's own oracle
                states["clean"] = business_state(app, wl)
            finally:
                app.close()

    async def disordered() -> None:
        async with serving(tmp_path, sqlite_store, "shuffled") as (b, serve):
            await b.publish(early)
            await b.settled(timeout=300, proc=serve.proc)
            dead = await b.read("REFLOW_DLQ")
            reasons = {m.headers["Reflow-Error"] for m in dead}
            assert all(m.headers["Reflow-Subject"] == "reflow.in.tracking.uploaded" for m in dead), reasons
            assert all("unknown allocation" in r for r in reasons), reasons
            # The operator re-publishes the dead letters (CONTRACT section 3), the suppliers upload
            # tracking for what they were sent.
            again = [(m.headers["Reflow-Subject"].removeprefix("reflow.in."), m.data,
                      f"republished-{m.headers['Nats-Msg-Id']}") for m in dead]
            app = open_store(serve.settings)
            try:
                await b.publish(again + [wire(m) for m in supplier_tracking(app, wl, waiting)])
                await b.settled(timeout=300, proc=serve.proc)
                post = [m for m in waiting if m.kind == "aftersale"]
                await b.publish(post)
                await b.settled(timeout=300, proc=serve.proc)
                states["shuffled"] = business_state(app, wl)
                states["dead"] = len(dead)
                await check_leaks(b, wl, v, logs=serve.log_text(), duckdb_files=[], store=sqlite_store,
                                  dead_bodies=False)
            finally:
                app.close()

    run(clean(), timeout=900)
    run(disordered(), timeout=900)
    diff = [k for k in states["clean"] if states["clean"][k] != states["shuffled"][k]]
    for k in diff[:20]:
        v.problem(f"{k}: clean {states['clean'][k]} / out of order {states['shuffled'][k]}")
    figures(scenario="out of order", faults=moved, dead_lettered_then_republished=states["dead"],
            orders=v.orders, messages=v.inbound, losses=len(diff), duplicates=v.duplicates, leaks=v.leaks)
    assert states["dead"] > 0, "no tracking arrived before its order: the shuffle tested nothing"
    v.check()


def supplier_tracking(app: Any, wl: Workload, waiting: list[Message]) -> list[Message]:
    """The waiting tracking messages, sent for the allocation each supplier actually holds."""
    out = []
    for m in waiting:
        if m.kind == "aftersale":
            continue
        o = wl.orders[m.order]
        allocations = app.allocations_of(*o.shop, o.order_id)
        if m.kind == "loss":
            pick = [a for a in allocations if a.supplier_id == m.body["supplier_id"] and a.stopped]
        else:
            pick = [a for a in allocations if a.supplier_id == m.body["supplier_id"] and a.status == "active"]
        if pick:
            out.append(Message(m.subject, {**m.body, "allocation_id": pick[-1].allocation_id}, m.msg_id,
                               m.order, m.kind))
    return out
