"""Routers that scale out (issue 18): a partitioned REFLOW_IN, lanes held under leases, fencing by
the lane's epoch, and the shop form of the contract's subjects (adapters/partitions.py)."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.batches import Fenced, applied_through, apply_batch, take_lane
from adapters.bootstrap import Settings, open_app
from adapters.serve import ServeError
from tests.adapters.natsworld import (
    OFFER,
    SHOP,
    SSKU,
    SUPPLIER,
    catalog,
    client,
    example,
    order_body,
    run,
    running,
    single_link,
)

pytestmark = [pytest.mark.nats, pytest.mark.timeout(180)]

SHOPS = [("douyin", f"dy-{n}") for n in range(6)]


def settings(nats_server, store: str, tmp_path: Path) -> Settings:
    return Settings(store=store, nats_url=nats_server.url, data_dir=tmp_path / "data")


def shop_order(shop: tuple[str, str], order_id: str) -> dict:
    return {**order_body(order_id), "platform": shop[0], "shop_id": shop[1]}


def shop_link(shop: tuple[str, str]) -> dict:
    return {**single_link(), "platform": shop[0], "shop_id": shop[1]}


async def settled(c, consumers: list[str], timeout: float = 60.0) -> None:
    """Until every lane's consumer acknowledged all it has."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        done = True
        for name in consumers:
            info = await c.js.consumer_info("REFLOW_IN", name)
            done = done and not info.num_pending and not info.num_ack_pending
        if done:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the routers did not consume REFLOW_IN in time")
        await asyncio.sleep(0.1)


def test_partitioned_routers_apply_each_shop_in_one_lane_and_hand_lanes_over_when_one_stops(
        nats_server, pg_store, tmp_path):
    """Two routers on one PostgreSQL store: each takes its own lane, one takes the general lane; the
    shop form puts every message of a shop in one partition; when a router stops, the other takes
    its lane and what comes after is applied too."""
    s = settings(nats_server, pg_store, tmp_path)
    lanes = ["reflow-general", "reflow-p0", "reflow-p1"]

    async def story():
        async with running(s, partitions=2, prefer=["p0", "general"]) as a, client(nats_server.url) as c:
            async with running(s, partitions=2, prefer=["p1"]) as b:
                for subject, body in catalog(stock=10_000):
                    if subject != "link.set":
                        await c.send(subject, body)
                await settled(c, lanes)  # the supplier and offer before the shops' links
                for shop in SHOPS:
                    await c.send(f"link.set.{shop[0]}.{shop[1]}", shop_link(shop))
                    for n in range(3):
                        await c.send(f"order.placed.{shop[0]}.{shop[1]}", shop_order(shop, f"{shop[1]}-{n}"))
                await settled(c, lanes)
                assert "lane.p0" in a.taken and "lane.general" in a.taken
                assert b.taken[0] == "lane.p1"
                stored = await c.messages("REFLOW_IN", "reflow.in.order.placed.>", at_least=18)
                partition_of = {}
                for m in stored:  # one partition per shop, whatever order they came in
                    *_, platform, shop_id, k = m.subject.split(".")
                    assert partition_of.setdefault((platform, shop_id), k) == k
                assert set(partition_of.values()) == {"0", "1"}  # six shops use both partitions
            # b stopped: its lane is free at once (released), and a takes it after the grace
            for _ in range(100):
                if "lane.p1" in a.taken:
                    break
                await asyncio.sleep(0.1)
            assert "lane.p1" in a.taken
            for shop in SHOPS:
                await c.send(f"order.placed.{shop[0]}.{shop[1]}", shop_order(shop, f"{shop[1]}-late"))
            await settled(c, lanes)

    run(story, timeout=150)
    app = open_app(s)
    try:
        for shop in SHOPS:
            for n in [0, 1, 2, "late"]:
                order = app.order(shop[0], shop[1], f"{shop[1]}-{n}")
                assert order is not None and order.status == "allocated", (shop, n)
                assert len(app.allocations_of(shop[0], shop[1], f"{shop[1]}-{n}")) == 1
    finally:
        app.close()


def test_a_router_that_lost_its_lane_cannot_write_to_it(app):
    """Fencing: the router that takes a lane stores its next epoch; a batch of the previous holder
    (stalled past its lease) is refused by the store, and nothing of it is written."""
    source = "REFLOW_IN@test#p0"
    old = take_lane(app, source)
    at = datetime.now(UTC)
    link = ("reflow.in.link.set", _json(single_link()), at, 1)
    assert apply_batch(app, [link], source=source, epoch=old)[1] is None
    new = take_lane(app, source)
    assert new == old + 1 and applied_through(app, source) == 1
    order = ("reflow.in.order.placed", _json(order_body("F-1")), at, 2)
    outcomes, failure = apply_batch(app, [order], source=source, epoch=old)
    assert isinstance(failure, Fenced) and outcomes == []
    assert app.order(*SHOP, "F-1") is None and applied_through(app, source) == 1
    outcomes, failure = apply_batch(app, [order], source=source, epoch=new)
    assert failure is None and app.order(*SHOP, "F-1") is not None and applied_through(app, source) == 2


def test_the_shop_form_must_name_the_messages_own_shop_and_only_a_shops_messages_take_it(app):
    """A message whose subject names another shop than its body would be applied in that shop's
    order, by that shop's router: it goes to the dead letters, as does a supplier's message in the
    shop form. The contract's subject and the matching shop form are applied."""
    at = datetime.now(UTC)
    body = _json(order_body("S-1"))
    outcomes, failure = apply_batch(app, [
        ("reflow.in.order.placed.douyin.someone-else.1", body, at),
        ("reflow.in.supplier.stock.douyin.dy-880123.0", _json(example("supplier.stock")), at),
        (f"reflow.in.order.placed.{SHOP[0]}.{SHOP[1]}.1", body, at),
    ])
    assert failure is None
    assert "names shop douyin.someone-else" in outcomes[0].error and "dy-880123" in outcomes[0].error
    assert "not a shop's message" in outcomes[1].error
    assert not outcomes[2].dead and app.order(*SHOP, "S-1") is not None


def test_a_serve_of_the_whole_stream_refuses_a_partitioned_one_and_routers_agree_on_n(
        nats_server, sqlite_store, tmp_path):
    s = settings(nats_server, sqlite_store, tmp_path)

    async def story():
        async with running(s, partitions=3):
            pass
        with pytest.raises(ServeError, match="partitioned into 3.*--partitions 3"):
            async with running(s):
                pass
        with pytest.raises(ServeError, match="--partitions: REFLOW_IN was made with 3 partitions"):
            async with running(s, partitions=2):
                pass

    run(story)


def _json(body: dict) -> bytes:
    import json

    return json.dumps(body, ensure_ascii=False).encode()


def test_rt7_a_batch_that_lost_to_another_router_runs_again_alone_under_the_store_lock(nats_server, pg_store, tmp_path):
    """Two routers on one PostgreSQL store selling one offer: a batch whose write lost to the other
    router's runs again holding the store's write lock (every writer of the schema takes the same
    one), and so do this router's next batches while it sees contention: the two take turns
    instead of undoing each other's work until the retries run out. Neither oversells (RT7)."""
    import psycopg

    from adapters.inbound import command
    from adapters.messages import decode

    s = settings(nats_server, pg_store, tmp_path)
    a, b = open_app(s), open_app(s)
    try:
        at = datetime.now(UTC)
        for subject, body in catalog(stock=5):
            assert apply_batch(a, [(f"reflow.in.{subject}", _json(body), at)])[1] is None
        lock = a.exclusive
        held: list[bool] = []

        @contextlib.contextmanager
        def watched():
            with lock():
                with psycopg.connect(pg_store.split("?")[0], autocommit=True) as other:
                    free = other.execute("SELECT pg_try_advisory_lock(hashtext(%s))", [lock.key]).fetchone()[0]
                    held.append(not free)
                yield

        a.exclusive = watched

        def placed(order_id: str):
            return command(decode("reflow.in.order.placed", _json(order_body(order_id))), at)

        attempts = []

        def meanwhile(results):  # between A's decision and its write, B sells a unit of the same offer
            attempts.append(len(attempts))
            if len(attempts) == 1:
                assert apply_batch(b, [("reflow.in.order.placed", _json(order_body("B-1")), at)])[1] is None

        a.run_batch([placed("A-1")], before_store=meanwhile)
        assert attempts == [0, 1] and held == [True]  # lost once, then ran again holding the lock
        a.run_batch([placed("A-2")])
        assert held == [True, True]  # still contended: the next batch takes its turn too
        assert a.offer(SUPPLIER, OFFER).available(SSKU) == 2
        for order_id in ("A-1", "A-2", "B-1"):
            assert a.order(*SHOP, order_id).status == "allocated"
    finally:
        a.close()
        b.close()


def test_operator_commands_beside_routers_publish_a_shops_message_in_its_lane_and_wait_for_it(
        nats_server, pg_store, tmp_path):
    """reflow publish / link set / release / cancel beside partitioned routers: a shop's message goes
    in the shop form (in order with the shop's others), the command waits until that lane stored it,
    and a refusal is found on the dead letters under the subject as stored."""
    from adapters.operator_publish import send

    s = settings(nats_server, pg_store, tmp_path)
    app = open_app(s)

    async def story():
        async with running(s, partitions=2), client(nats_server.url) as c:
            for subject, body in catalog():
                await c.send(subject, body)
            await settled(c, ["reflow-general", "reflow-p0", "reflow-p1"])
            good = _json(order_body("OP-1"))
            bad = _json({**order_body("OP-2"), "lines": [{**order_body("OP-2")["lines"][0], "qty": 0}]})
            sent = await asyncio.to_thread(
                send, nats_server.url, [("reflow.in.order.placed", good), ("reflow.in.order.placed", bad)],
                wait=20, applied=lambda source, seq: applied_through(app, source) >= seq)
            return sent

    try:
        sent = run(story)
        shop_form = f"reflow.in.order.placed.{SHOP[0]}.{SHOP[1]}"
        assert [x.subject for x in sent] == [shop_form, shop_form]
        assert all(x.stored.startswith(shop_form + ".") and x.lane == "p" + x.stored.rsplit(".", 1)[1] for x in sent)
        assert all(x.applied for x in sent)
        assert sent[0].error is None and app.order(*SHOP, "OP-1").status == "allocated"
        assert sent[1].error is not None and "qty" in sent[1].error
    finally:
        app.close()


def test_partitioning_a_stream_a_serve_consumed_whole_does_not_apply_its_history_again(
        nats_server, pg_store, tmp_path):
    """The README's way from one serve to routers: stop serve, delete its consumer, start routers.
    The general lane starts where that serve stopped (its stored position), so nothing it applied
    is applied again; what comes after is."""
    s = settings(nats_server, pg_store, tmp_path)

    async def story():
        async with client(nats_server.url) as c:
            async with running(s) as one:
                for subject, body in catalog():
                    await c.send(subject, body)
                await c.send("order.placed", order_body("H-1"))
                await c.settled()
            assert one.applied == 5
            await c.js.delete_consumer("REFLOW_IN", "reflow")
            async with running(s, partitions=2) as router:
                await c.send("order.placed", order_body("H-2"))
                await settled(c, ["reflow-general", "reflow-p0", "reflow-p1"])
            return router

    router = run(story)
    assert (router.applied, router.repeated) == (1, 5)  # the new order; the history acknowledged only
    app = open_app(s)
    try:
        assert [e.originator_version for e in app.decisions(*SHOP, "H-1")] == [2]  # routed once
        assert app.order(*SHOP, "H-2").status == "allocated"
    finally:
        app.close()


def test_time_passes_no_further_than_the_oldest_message_a_lane_has_not_applied(nats_server, pg_store, tmp_path):
    """A lane behind (catching up, or its router dead and not yet replaced) holds the clock back:
    a deadline must not pass before a shop's earlier order.shipped or cancelled is applied."""
    from adapters.broker import connect
    from adapters.routers import Router

    s = settings(nats_server, pg_store, tmp_path)

    async def story():
        async with running(s, partitions=2):
            pass  # the partitioned stream and its lanes, then no router at all
        async with client(nats_server.url) as c:
            await c.send(f"order.placed.{SHOP[0]}.{SHOP[1]}", order_body("L-1"))
            stored = (await c.js.get_msg("REFLOW_IN", seq=(await c.js.stream_info("REFLOW_IN")).state.last_seq)).time
        app = open_app(s)
        nc = await connect(nats_server.url)
        try:
            router = Router(app, nc, partitions=2)
            lagging = await router._lagging()
            router.engine.shutdown()
            router.reader.shutdown()
            return stored, lagging
        finally:
            await nc.close()
            app.close()

    stored, lagging = run(story)
    assert lagging == stored


def test_routers_of_one_stream_must_agree_on_batch_and_ack_wait(nats_server, pg_store, tmp_path):
    """A takeover waits for the lane consumer's ack wait: a router started with another --ack-wait
    or --batch than the lanes were made with is refused in one line, naming both options."""
    s = settings(nats_server, pg_store, tmp_path)

    async def story():
        async with running(s, partitions=2, batch=64):
            pass
        with pytest.raises(ServeError, match=r"--batch/--ack-wait: the lanes were made with --batch 64 --ack-wait 10"):
            async with running(s, partitions=2, batch=128):
                pass

    run(story)


def test_reflow_publish_takes_the_shop_form_typed_by_hand_and_refuses_another_shops_body(
        nats_server, pg_store, tmp_path):
    """What the README tells producers to use, typed into `reflow publish`: published as typed and
    applied by its lane; a body of another shop is refused before anything is published."""
    import subprocess
    import sys

    s = settings(nats_server, pg_store, tmp_path)
    options = ["--store", pg_store, "--nats", nats_server.url, "--data-dir", str(s.data_dir)]

    def publish(subject: str, body: dict) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "adapters.cli", "publish", subject, *options],
                              input=_json(body), capture_output=True, timeout=60)

    async def story():
        async with running(s, partitions=2), client(nats_server.url) as c:
            for subject, body in catalog():
                await c.send(subject, body)
            await settled(c, ["reflow-general", "reflow-p0", "reflow-p1"])
            ok = await asyncio.to_thread(publish, f"order.placed.{SHOP[0]}.{SHOP[1]}", order_body("PUB-1"))
            wrong = await asyncio.to_thread(publish, "reflow.in.order.placed.douyin.elsewhere", order_body("PUB-2"))
            stored = (await c.js.stream_info("REFLOW_IN")).state.last_seq
            return ok, wrong, stored

    ok, wrong, stored = run(story)
    assert ok.returncode == 0, ok.stderr
    assert f"published reflow.in.order.placed.{SHOP[0]}.{SHOP[1]} (REFLOW_IN seq {stored}" in ok.stdout.decode()
    assert wrong.returncode == 1
    assert wrong.stderr.decode().strip().splitlines() == [
        "reflow: reflow.in.order.placed: the subject names shop douyin.elsewhere, the message's platform and "
        f"shop_id are {SHOP[0]}.{SHOP[1]}; nothing published"]
    app = open_app(s)
    try:
        assert app.order(*SHOP, "PUB-1").status == "allocated" and app.order(*SHOP, "PUB-2") is None
    finally:
        app.close()


def test_rt7_routers_of_different_lanes_selling_the_last_units_of_one_offer_never_oversell(
        nats_server, pg_store, tmp_path):
    """Two routers, each with its own lanes, and shops in both lanes selling the last 20 units of one
    offer: exactly 20 orders are allocated, the offer holds 20 reserved and none left (RT7)."""
    s = settings(nats_server, pg_store, tmp_path)
    shops = [("douyin", f"dy-rt7-{n}") for n in range(6)]
    lanes = ["reflow-general", "reflow-p0", "reflow-p1"]

    async def story():
        async with running(s, partitions=2, prefer=["p0", "general"]), running(s, partitions=2, prefer=["p1"]):
            async with client(nats_server.url) as c:
                for subject, body in catalog(stock=20):
                    if subject != "link.set":
                        await c.send(subject, body)
                await settled(c, lanes)
                for shop in shops:
                    await c.send(f"link.set.{shop[0]}.{shop[1]}", shop_link(shop))
                await settled(c, lanes)
                await c.send_many([(f"order.placed.{shop[0]}.{shop[1]}", shop_order(shop, f"{shop[1]}-{n}"))
                                   for n in range(10) for shop in shops])
                await settled(c, lanes)
                stored = await c.messages("REFLOW_IN", "reflow.in.order.placed.>", at_least=60)
                return {m.subject.rsplit(".", 1)[1] for m in stored}

    partitions = run(story)
    assert partitions == {"0", "1"}  # the shops' orders went to both routers
    app = open_app(s)
    try:
        allocated = [(shop, n) for shop in shops for n in range(10)
                     if app.order(*shop, f"{shop[1]}-{n}").status == "allocated"]
        assert len(allocated) == 20
        offer = app.offer(SUPPLIER, OFFER)
        assert (offer.reserved[SSKU], offer.available(SSKU)) == (20, 0)
    finally:
        app.close()


def test_a_lane_stuck_in_a_batch_is_let_go_and_taken_by_another_router(nats_server, pg_store, tmp_path, monkeypatch):
    """A router whose lane hangs in a batch (nothing in reflow should) stops renewing that lane's
    lease after STUCK_SECONDS: the other router takes the lane and applies what is waiting; the
    stuck router, if it ever wakes, is fenced."""
    from adapters.routers import Router

    monkeypatch.setattr(Router, "STUCK_SECONDS", 2.0)
    s = settings(nats_server, pg_store, tmp_path)
    hang = asyncio.Event()
    original = Router._process

    async def process(self, msgs, source=None, epoch=0, shard=0):  # noqa: ANN001, ANN202
        if getattr(self, "hangs", False) and source and source.endswith("#p0"):
            await hang.wait()  # stuck for good (released at the end of the test)
        return await original(self, msgs, source, epoch, shard)

    monkeypatch.setattr(Router, "_process", process)

    async def story():
        async with running(s, partitions=1, prefer=["p0", "general"], ack_wait=2) as stuck, client(nats_server.url) as c:
            for subject, body in catalog():
                await c.send(subject, body)
            await settled(c, ["reflow-general", "reflow-p0"])
            stuck.hangs = True
            await c.send(f"order.placed.{SHOP[0]}.{SHOP[1]}", order_body("STUCK-1"))
            async with running(s, partitions=1, ack_wait=2) as other:
                await settled(c, ["reflow-p0"], timeout=60)
                hang.set()
                return "lane.p0" in other.taken

    assert run(story, timeout=120)
    app = open_app(s)
    try:
        assert app.order(*SHOP, "STUCK-1").status == "allocated"
        assert len(app.allocations_of(*SHOP, "STUCK-1")) == 1
    finally:
        app.close()
