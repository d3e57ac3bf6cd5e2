"""Regressions found by review of the engine: each would cost a merchant money."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.order_events import OrderShipped
from tests.world import (
    EARLIER,
    OTHER_BUYER,
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
    supplier,
)


@pytest.fixture
def world(memory_app):
    app = memory_app  # in memory: these narratives are about the domain, not the store
    supplier(app, "S1")
    supplier(app, "S2")
    offer(app, "S1", "O1", {"a": 10}, price="10.00")
    offer(app, "S2", "O2", {"a": 10}, price="20.00")
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    link(app, "P2", sku("K1", alt(comp("S2", "O2", "a"))))
    return app


def live(app, order_id, supplier_id):
    return next(a for a in allocations(app, order_id) if a.supplier_id == supplier_id and a.status == "active")


def test_t2_order_ships_once_the_other_line_is_refunded(world):
    place(world, "X1", line("L1", "P1"), line("L2", "P2"))
    world.upload_tracking("S1", live(world, "X1", "S1").allocation_id, "SF", "SF0000000001", at=T0 + timedelta(hours=1))
    world.open_aftersale(*SHOP, "X1", "AS-2", "refund", line_id="L2", at=T0 + timedelta(hours=2))
    assert order(world, "X1").status != "shipped"
    world.close_aftersale(*SHOP, "X1", "AS-2", "refunded", at=T0 + timedelta(hours=3))
    assert order(world, "X1").status == "shipped"


def test_t2_line_under_open_aftersale_is_not_lost_when_the_rest_ships(world):
    """A refunded-before-tracking line does not hold back the rest (issue 19, item 2); if the
    refund is rejected after all, the line is routed and confirmed in a shipment of its own."""
    place(world, "X1", line("L1", "P1"), line("L2", "P2"))
    world.open_aftersale(*SHOP, "X1", "AS-2", "refund", line_id="L2", at=T0 + timedelta(minutes=5))
    a1 = live(world, "X1", "S1")
    world.upload_tracking("S1", a1.allocation_id, "SF", "SF0000000001", at=T0 + timedelta(hours=1))
    assert order(world, "X1").status == "shipped"
    world.close_aftersale(*SHOP, "X1", "AS-2", "rejected", at=T0 + timedelta(hours=2))
    a2 = live(world, "X1", "S2")  # L2 may still need shipping: it is not lost
    assert a2.line_ids == ("L2",)
    assert world.upload_tracking("S2", a2.allocation_id, "JD", "JD0000000002", at=T0 + timedelta(hours=3)) == "shipped"
    shipments = [e.packages for e in world.events.get(order(world, "X1").id) if isinstance(e, OrderShipped)]
    assert [[p.allocation_id for p in ps] for ps in shipments] == [[a1.allocation_id], [a2.allocation_id]]


def test_t2_line_refunded_before_tracking_does_not_hold_back_the_rest(world):
    """Issue 19, item 2 (demo order 6965647453470794768): line 1 tracked, line 2 under a refund
    opened before tracking: the order is confirmed to the shop with line 1's package."""
    place(world, "X1", line("L1", "P1"), line("L2", "P2"))
    world.open_aftersale(*SHOP, "X1", "AS-2", "refund", line_id="L2", at=T0 + timedelta(minutes=5))
    assert world.upload_tracking("S1", live(world, "X1", "S1").allocation_id, "STO", "STO000000001",
                                 at=T0 + timedelta(hours=1)) == "shipped"
    assert order(world, "X1").status == "shipped"
    world.close_aftersale(*SHOP, "X1", "AS-2", "refunded", at=T0 + timedelta(hours=2))
    assert [a for a in allocations(world, "X1") if a.status == "active"] == []


def test_t2_exchange_before_tracking_still_holds_back_the_shipment(world):
    place(world, "X1", line("L1", "P1"), line("L2", "P2"))
    world.open_aftersale(*SHOP, "X1", "AS-2", "exchange", line_id="L2", at=T0 + timedelta(minutes=5))
    world.upload_tracking("S1", live(world, "X1", "S1").allocation_id, "SF", "SF0000000001", at=T0 + timedelta(hours=1))
    assert order(world, "X1").status != "shipped"  # the consumer still wants something for L2


def test_i5_lines_cancelled_by_hand_are_not_rerouted_by_other_events(world):
    place(world, "X1", line("L1", "P1"), line("L2", "P2"))
    world.cancel_allocation(live(world, "X1", "S1").allocation_id, at=T0 + timedelta(minutes=5))
    world.open_aftersale(*SHOP, "X1", "AS-2", "refund", line_id="L2", at=T0 + timedelta(minutes=10))
    assert [a.status for a in allocations(world, "X1") if a.supplier_id == "S1"] == ["cancelled"]
    world.release_order(*SHOP, "X1", at=T0 + timedelta(hours=1))
    assert live(world, "X1", "S1").line_ids == ("L1",)


def test_i8_too_late_parcel_is_not_allocated_again_and_leaves_stock(world):
    place(world, "X1", line("L1", "P1"))
    first = live(world, "X1", "S1")
    world.change_address(*SHOP, "X1", OTHER_BUYER, at=T0 + timedelta(minutes=5))  # re-released
    replacement = live(world, "X1", "S1")
    world.answer_intercept("S1", first.allocation_id, "too_late", "SF", "SF0000000009", at=T0 + timedelta(minutes=9))
    assert world.allocation(replacement.allocation_id).status == "intercepted"  # no second parcel
    assert order(world, "X1").status == "shipped"
    o = world.offer("S1", "O1")
    assert (o.stock["a"], o.available("a")) == (9, 9)


def test_rt7_stale_stock_report_or_repeated_offer_does_not_restore_sold_units(world):
    world.report_stock("S1", "O1", "a", 1, at=T0)
    world.report_stock("S1", "O1", "a", 0, at=T0 + timedelta(minutes=2))
    world.report_stock("S1", "O1", "a", 1, at=T0 + timedelta(minutes=1))  # older, arriving late
    assert world.offer("S1", "O1").stock["a"] == 0
    offer(world, "S2", "O2", {"a": 10}, price=None)  # the same publish again
    place(world, "X1", line("L1", "P2"))
    world.upload_tracking("S2", live(world, "X1", "S2").allocation_id, "SF", "SF0000000001", at=T0 + timedelta(hours=1))
    offer(world, "S2", "O2", {"a": 10}, price=None, at=EARLIER)
    assert world.offer("S2", "O2").stock["a"] == 9
