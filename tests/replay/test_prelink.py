"""Rule L10 (pull pre-link orders) and A1 (its dry run), seed 000's two scenarios."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest

from replay.prelink import pull
from replay.verify import verify
from tests.replay.test_verify import fresh
from tests.world import (
    SHOP,
    T0,
    allocations,
    alt,
    comp,
    line,
    link,
    offer,
    order,
    place,
    sku,
    stored,
    supplier,
)

H = timedelta(hours=1)
D = timedelta(days=1)
LINKED_AT = T0 + H
PULL_AT = T0 + 2 * H


@pytest.fixture
def world(app):
    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 1000}, price="6.80")
    return app


def link_p1(app, at=LINKED_AT):
    return link(app, "P1", sku("K1", alt(comp("S1", "O1", "a", qty=2))), at=at)


def live(app, order_id):
    return [a for a in allocations(app, order_id) if a.status in ("active", "tracked", "shipped")]


def test_L9_seed_000_new_listing_routes_and_ships_every_new_order_with_nothing_to_pull(world):
    """Scenario 1: the product is listed with its link in place."""
    link_p1(world, at=T0 - D)
    assert place(world, "N1", line("L1", "P1")) == "allocated"
    [a] = live(world, "N1")
    assert a.lines[0].qty == 2  # reflow quantity 2, the consumer bought 1 (L3)
    assert world.upload_tracking("S1", a.allocation_id, "ZTO", "ZT0000000001", at=T0 + H) == "shipped"
    report = pull(world, *SHOP, "P1", at=PULL_AT)
    assert (report.candidates, report.rows) == (0, [])


def test_L10_seed_000_existing_orders_then_link_then_pull_routes_them(world):
    """Scenario 2: the shop had orders before the product was linked."""
    for n in range(3):
        place(world, f"E{n}", line("L1", "P1"), at=T0 - n * D)
    assert [order(world, f"E{n}").unroutable for n in range(3)] == [{"L1": "no_link"}] * 3
    link_p1(world)
    assert all(order(world, f"E{n}").status == "unrouted" for n in range(3))  # waiting for the pull
    report = pull(world, *SHOP, "P1", at=PULL_AT)
    assert report.candidates == 3 and report.allocated == 3
    assert [r["order_id"] for r in report.rows] == ["E2", "E1", "E0"]  # oldest first
    assert report.cost == Decimal("40.80")
    for n in range(3):
        assert order(world, f"E{n}").status == "allocated"
        [a] = live(world, f"E{n}")
        assert world.decisions(*SHOP, f"E{n}")[-1].trigger == "prelink"
        assert world.upload_tracking("S1", a.allocation_id, "YTO", f"YT00000000{n}", at=PULL_AT + H) == "shipped"


def test_L10_a_second_pull_routes_nothing_twice_and_stores_nothing(world):
    for n in range(4):
        place(world, f"E{n}", line("L1", "P1"), at=T0 - n * H)
    link_p1(world)
    assert pull(world, *SHOP, "P1", at=PULL_AT).allocated == 4
    before = stored(world)
    again = pull(world, *SHOP, "P1", at=PULL_AT + H)
    assert (again.candidates, again.rows) == (0, [])
    assert stored(world) == before
    assert all(len(allocations(world, f"E{n}")) == 1 for n in range(4))


def test_L10_window_defaults_to_30_days_and_can_be_widened(world):
    place(world, "D29", line("L1", "P1"), at=PULL_AT - 29 * D)
    place(world, "D30", line("L1", "P1"), at=PULL_AT - 30 * D)  # on the edge: inside
    place(world, "D31", line("L1", "P1"), at=PULL_AT - 31 * D)
    link_p1(world)
    report = pull(world, *SHOP, "P1", at=PULL_AT)
    assert sorted(r["order_id"] for r in report.routed) == ["D29", "D30"]
    assert report.outside_window == 1
    assert order(world, "D31").status == "unrouted"
    wider = pull(world, *SHOP, "P1", window_days=45, at=PULL_AT)
    assert [r["order_id"] for r in wider.routed] == ["D31"]


def test_L10_excludes_cancelled_shipped_elsewhere_open_aftersale_and_held_orders(world):
    for oid in ("OK", "CANCELLED", "SHIPPED", "AFTERSALE", "HELD", "CLOSED"):
        place(world, oid, line("L1", "P1"), at=T0 - D)
    world.cancel_order(*SHOP, "CANCELLED", at=T0 - 20 * H)
    world.ship_elsewhere(*SHOP, "SHIPPED", carrier="SF", tracking_no="SF0000000001", at=T0 - 20 * H)
    world.open_aftersale(*SHOP, "AFTERSALE", "AS-1", "refund", at=T0 - 20 * H)
    world.open_aftersale(*SHOP, "CLOSED", "AS-2", "refund", at=T0 - 20 * H)
    world.close_aftersale(*SHOP, "CLOSED", "AS-2", "withdrawn", at=T0 - 19 * H)
    world.set_review(*SHOP, "HELD", True, "risk check", at=T0 - 20 * H)
    link_p1(world)
    report = pull(world, *SHOP, "P1", at=PULL_AT)
    assert sorted(r["order_id"] for r in report.routed) == ["CLOSED", "OK"]
    # a cancelled or shipped order leaves the backlog at once; the others wait there
    assert report.candidates == 4
    assert report.skipped == {"aftersale_open": 1, "held": 1}
    for oid in ("CANCELLED", "SHIPPED", "AFTERSALE", "HELD"):
        assert allocations(world, oid) == [], oid
    assert order(world, "SHIPPED").status == "shipped"
    assert sorted(pull(world, *SHOP, "P1", at=PULL_AT).skipped) == ["aftersale_open", "held"]
    world.set_review(*SHOP, "HELD", False, at=PULL_AT + H)  # clearing the review routes it (RT4)
    assert order(world, "HELD").status == "allocated"


def test_L10_pull_needs_a_link_and_a_sane_window(world):
    from engine.errors import InvalidCommand, NotFound

    place(world, "E1", line("L1", "P1"), at=T0)
    with pytest.raises(NotFound, match="product"):
        pull(world, *SHOP, "P1", at=PULL_AT)
    link_p1(world)
    with pytest.raises(InvalidCommand, match="window-days"):
        pull(world, *SHOP, "P1", window_days=0, at=PULL_AT)


def test_A1_dry_run_stores_nothing_and_shows_what_the_pull_will_do(world):
    world.report_stock("S1", "O1", "a", 5, at=T0 - 12 * H)  # room for two orders of 2 units
    for n in range(3):
        place(world, f"E{n}", line("L1", "P1", price="29.90"), at=T0 - (3 - n) * H)
    link_p1(world)
    before = stored(world)
    dry = pull(world, *SHOP, "P1", at=PULL_AT, dry_run=True)
    assert stored(world) == before
    assert all(order(world, f"E{n}").status == "unrouted" for n in range(3))
    assert [(r["order_id"], r["status"]) for r in dry.rows] == [
        ("E0", "allocated"), ("E1", "allocated"), ("E2", "unrouted")]  # the third finds no stock left
    assert dry.rows[2]["unroutable"] == {"L1": "out_of_stock"}
    assert [a["cost"] for r in dry.rows for a in r["allocations"]] == [Decimal("13.60")] * 2
    real = pull(world, *SHOP, "P1", at=PULL_AT)
    assert [r["allocations"] for r in real.rows] == [r["allocations"] for r in dry.rows]


def test_L10_pull_racing_live_traffic_and_another_pull_routes_each_order_once(world):
    """A pull, a second pull from another process, live orders and cancellations, all at once."""
    world.report_stock("S1", "O1", "a", 2 * 150, at=T0 - 12 * H)  # fewer units than orders
    prelink = [f"E{n}" for n in range(100)]
    for n, oid in enumerate(prelink):
        place(world, oid, line("L1", "P1"), at=T0 - D + n * timedelta(seconds=30))
    link_p1(world)
    other, live_app = fresh(world), fresh(world)
    errors: list[BaseException] = []

    def guard(fn):
        def run():
            try:
                fn()
            except BaseException as e:  # noqa: BLE001
                errors.append(e)
        return threading.Thread(target=run)

    def traffic():
        for n in range(60):
            live_app.place_order(*SHOP, f"LIVE{n}", PULL_AT + n * timedelta(seconds=1), _buyer(),
                                 [line("L1", "P1")])
            if n % 6 == 0:
                live_app.cancel_order(*SHOP, prelink[n], at=PULL_AT + n * timedelta(seconds=1))

    threads = [guard(lambda: pull(world, *SHOP, "P1", at=PULL_AT, chunk=8)),
               guard(lambda: pull(other, *SHOP, "P1", at=PULL_AT, chunk=5)), guard(traffic)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    check = fresh(world)
    reserved = 0
    for oid in prelink + [f"LIVE{n}" for n in range(60)]:
        o = check.order(*SHOP, oid)
        alive = [a for a in check.allocations_of(*SHOP, oid) if a.status in ("active", "tracked")]
        assert len(alive) <= 1, oid
        if o.cancelled:
            assert alive == [], oid
        else:
            assert len(check.allocations_of(*SHOP, oid)) <= 1, oid  # never allocated twice
        reserved += sum(x.qty for a in alive for x in a.lines)
    offer_now = check.offer("S1", "O1")
    assert reserved == 300 - offer_now.available("a") and offer_now.available("a") >= 0
    assert pull(check, *SHOP, "P1", at=PULL_AT + H).routed == []  # nothing left
    result = verify(check, anchor=False)
    assert result.ok, result.problem.line()


def _buyer():
    from tests.world import BUYER

    return BUYER


def test_L10_order_shipped_message_marks_an_order_shipped_by_other_means(world):
    """`reflow.in.order.shipped` (addition): the merchant sent the order himself before the link."""
    import msgspec

    from adapters.examples import EXAMPLES
    from adapters.inbound import apply
    from adapters.messages import decode

    place(world, "E1", line("L1", "P1"), at=T0 - D)
    place(world, "E2", line("L1", "P1"), at=T0 - D)
    body = {**EXAMPLES["reflow.in.order.shipped"], "platform": SHOP[0], "shop_id": SHOP[1], "order_id": "E1"}
    message = decode("reflow.in.order.shipped", msgspec.json.encode(body))
    assert apply(world, message, T0) == "shipped"
    assert apply(world, message, T0) == "shipped"  # the same fact twice changes nothing
    link_p1(world)
    assert [r["order_id"] for r in pull(world, *SHOP, "P1", at=PULL_AT).routed] == ["E2"]
    assert allocations(world, "E1") == []


def test_L10_shipped_by_other_means_after_allocation_intercepts_the_supplier(world):
    link_p1(world, at=T0 - D)
    place(world, "N1", line("L1", "P1"))
    [a] = live(world, "N1")
    assert world.ship_elsewhere(*SHOP, "N1", at=T0 + H) == "shipped"
    assert world.allocation(a.allocation_id).status == "intercepted"
    assert world.offer("S1", "O1").available("a") == 1000
