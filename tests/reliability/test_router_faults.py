"""Routers that scale out, under faults (issue 18): three ``reflow serve --partitions 3`` processes
on one PostgreSQL store and a three-node NATS cluster with replicated streams. Mid-run one router
is killed -9 and, later, one NATS node: every order allocated once and ending as its fate says,
each shop's facts applied in the order the shop published them, REFLOW_OUT once per outbound
event (once per allocation), the projections equal to a rebuild, nothing oversold (RT5, RT7)."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict

import pytest

from adapters.bootstrap import Settings, open_app
from adapters.natscluster import NatsCluster
from adapters.partitions import SHOP_SCOPED, shop_subject
from adapters.routerprocs import Routers
from engine import ids
from engine.base import topics_of
from engine.order_events import OrderPlaced
from tests.reliability.harness import (
    Broker,
    Verdict,
    check_orders,
    check_outbound,
    check_projections,
    run,
)
from tests.reliability.workload import Message, Workload

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(1800)]

FATES = ("plain", "post", "refund", "cancel", "address", "review", "bundle")
SHOPS = tuple((platform, f"{platform[:2]}-r{n}") for n in range(4) for platform in ("douyin", "kuaishou"))


def scoped(m: Message) -> bool:
    return f"reflow.in.{m.subject}" in SHOP_SCOPED


def wire(m: Message) -> tuple[str, bytes, str]:
    """A shop's message in the shop form (its partition's lane); the rest as the contract has them."""
    subject = f"reflow.in.{m.subject}"
    if scoped(m):
        subject = shop_subject(subject, m.body["platform"], m.body["shop_id"])
    return subject.removeprefix("reflow.in."), json.dumps(m.body, ensure_ascii=False).encode(), m.msg_id


def phases(wl: Workload) -> list[list[Message]]:
    """The workload in causal phases. A shop's messages and a supplier's about the same order go to
    different lanes, which run side by side: as in the real world, where a supplier uploads
    tracking only after it received the allocation, a message that follows one of the other lane
    is published only once that one was applied. So: the suppliers and offers, the shops' links,
    then each order's messages cut where the lane changes, the k-th pieces of all orders together."""
    catalog = [[m for m in wl.catalog if not scoped(m)], [m for m in wl.catalog if scoped(m)]]
    piece: dict[int, int] = {}
    last: dict[int, bool] = {}
    flow: dict[int, list[Message]] = defaultdict(list)
    for m in wl.flow:
        if m.order in last and last[m.order] != scoped(m):
            piece[m.order] += 1
        piece.setdefault(m.order, 0)
        last[m.order] = scoped(m)
        flow[piece[m.order]].append(m)
    return catalog + [flow[k] for k in sorted(flow)]


def test_routers_lose_nothing_when_a_router_and_a_nats_node_are_killed(tmp_path, pg_store, scale, figures):
    wl = Workload(scale.crash_orders, seed=18, fates=FATES, losses=True, shops=SHOPS)
    cluster = NatsCluster(3, tmp_path / "nats").start()
    settings = Settings(store=pg_store, nats_url=cluster.url, data_dir=tmp_path / "data")
    open_app(settings).close()  # the store and its key, once, before three routers start at once
    routers = Routers(3, settings, tmp_path / "logs", replicas=3, batch=128, ack_wait=3.0)
    v = Verdict(orders=len(wl.orders), inbound=len(wl.messages))
    steps = phases(wl)
    events: list[str] = []

    async def story() -> None:
        async with Broker.connect(cluster.nodes[0].url) as b:
            routers.start()
            await routers.ready(b.js, timeout=90)
            for k, step in enumerate(steps):
                producer = asyncio.create_task(b.publish([wire(m) for m in step], timeout=600))
                if k == 2:  # the orders arrive: kill a router with a third of them applied
                    for _ in range(50):  # router 1 holds its own lane (read again if NATS is slow to answer)
                        if (await routers.holders(b.js)).get("lane.p1") == 1:
                            break
                        await asyncio.sleep(0.2)
                    assert (await routers.holders(b.js)).get("lane.p1") == 1
                    target = len(step) // 3
                    while len(step) - await routers.pending(b.js) < target:
                        await asyncio.sleep(0.02)
                    routers.kill(1)
                    events.append(f"router 1 killed -9 in phase {k} with {await routers.pending(b.js)} "
                                  f"of {len(step)} messages to apply")
                if k == 3:  # and a NATS node while the suppliers' tracking comes in
                    await asyncio.sleep(0.3)
                    cluster.kill(2)
                    events.append(f"NATS node 2 killed -9 in phase {k}")
                await producer
                await routers.settled(b.js, timeout=300)
            held = await routers.holders(b.js)
            assert held.get("lane.p1") in (0, 2), f"router 1's lane not taken over: {held}"
            app = open_app(settings)
            try:
                out = await check_outbound(b, app, wl, v)
                codes = routers.stop()
                assert all(c in (0, None) for c in codes), f"routers exited {codes}; logs in {routers.log_dir}"
                check_orders(app, wl, v)
                check_shop_order(app, wl, v)
                check_projections(app, settings, tmp_path, v)
                dead = await b.read("REFLOW_DLQ")
                if dead:
                    v.problem(f"{len(dead)} dead letters from a valid flow, e.g. {dead[0].headers}")
                allocations = sum(1 for m in out if m.subject.endswith(".allocation"))
                figures(orders=len(wl.orders), inbound=len(wl.messages), outbound=len(out),
                        allocations=allocations, faults=events, problems=len(v.problems))
            finally:
                app.close()

    try:
        run(story(), timeout=1500)
    finally:
        routers.stop(timeout=30)
        cluster.stop()
    v.check()
    assert len(events) == 2, events


def check_shop_order(app, wl: Workload, v: Verdict) -> None:
    """Each shop's orders were placed in the store in the order the shop published them."""
    shop_of = {ids.order_id(*o.shop, o.order_id): (o.shop, o.n) for o in wl.orders}
    seen: dict[tuple[str, str], list[int]] = defaultdict(list)
    position = 0
    while True:
        page = app.recorder.select_notifications(position, 5000, topics=topics_of(OrderPlaced),
                                                 inclusive_of_start=False)
        if not page:
            break
        for note in page:
            shop, n = shop_of[note.originator_id]
            seen[shop].append(n)
        position = page[-1].id
    for shop, ns in seen.items():
        if ns != sorted(ns):
            v.problem(f"shop {shop}: orders placed out of order, e.g. {ns[:10]}")
    if sum(len(ns) for ns in seen.values()) != len(wl.orders):
        v.problem(f"{sum(len(ns) for ns in seen.values())} orders placed for {len(wl.orders)}")
