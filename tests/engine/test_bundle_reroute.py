"""A bundle from two suppliers (L4) whose parts are stopped one at a time: only what was stopped
is routed again (I1, I4, I5, I8), and the line ships when every part is tracked (T2).

Issue 19, item 1: the tracked half of a cross-supplier bundle was allocated and shipped twice
after an address change or an after-sale naming another line."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.allocations import Allocated
from engine.order_events import OrderShipped
from tests.world import (
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
    supplier(app, "SUP-A")
    supplier(app, "SUP-C")
    offer(app, "SUP-A", "OA", {"cup": 10, "saucer": 10}, price="10.00")
    offer(app, "SUP-C", "OC", {"lid": 10}, price="3.00")
    link(app, "SET", sku("K1", alt(comp("SUP-A", "OA", "cup"), comp("SUP-C", "OC", "lid"))))
    link(app, "MUG", sku("K1", alt(comp("SUP-A", "OA", "saucer"))))
    return app


def live(app, order_id, supplier_id):
    return [a for a in allocations(app, order_id) if a.supplier_id == supplier_id
            and a.status in ("active", "tracked", "shipped")]


def parts(allocation):
    return [(al.line_id, al.offer_id, al.supplier_sku_id, al.qty) for al in allocation.lines]


def track(app, allocation, no, minutes):
    return app.upload_tracking(allocation.supplier_id, allocation.allocation_id, "STO", no,
                               at=T0 + timedelta(minutes=minutes))


def test_i4_l4_address_change_reroutes_only_the_untracked_part_of_a_bundle(world):
    place(world, "B1", line("L1", "SET", qty=2))
    [a], [c] = live(world, "B1", "SUP-A"), live(world, "B1", "SUP-C")
    assert track(world, c, "STO000000001", 10) == "tracked"
    world.change_address(*SHOP, "B1", OTHER_BUYER, at=T0 + timedelta(minutes=15))
    assert world.allocation(a.allocation_id).status == "intercepted"
    [a2] = live(world, "B1", "SUP-A")
    assert parts(a2) == [("L1", "OA", "cup", 2)]
    assert [x.allocation_id for x in live(world, "B1", "SUP-C")] == [c.allocation_id]  # never again
    assert world.offer("SUP-C", "OC").available("lid") == 8  # the tracked part left once
    assert world.offer("SUP-A", "OA").available("cup") == 8  # released once, reserved once
    [made] = [e for e in world.events.get(a2.id) if isinstance(e, Allocated)]
    assert made.recipient.name == "李*"  # the new address
    assert order(world, "B1").status == "allocated"
    assert track(world, a2, "STO000000002", 30) == "shipped"
    [shipped] = [e for e in world.events.get(order(world, "B1").id) if isinstance(e, OrderShipped)]
    assert sorted(p.allocation_id for p in shipped.packages) == sorted([c.allocation_id, a2.allocation_id])


def test_i1_l4_line_aftersale_reroutes_only_the_stopped_part_of_another_bundle_line(world):
    place(world, "B2", line("L1", "SET"), line("L2", "MUG"))
    [a] = live(world, "B2", "SUP-A")  # cup of L1 and saucer of L2: one allocation (RT5)
    [c] = live(world, "B2", "SUP-C")
    track(world, c, "STO000000003", 10)
    world.open_aftersale(*SHOP, "B2", "AS-1", "refund", line_id="L2", at=T0 + timedelta(minutes=20))
    assert world.allocation(a.allocation_id).status == "intercepted"
    [a2] = live(world, "B2", "SUP-A")
    assert parts(a2) == [("L1", "OA", "cup", 1)]
    assert len(live(world, "B2", "SUP-C")) == 1
    assert track(world, a2, "STO000000004", 40) == "shipped"  # L2 is refunded-before-tracking (T2)


def test_t2_l4_bundle_line_waits_for_every_part_before_shipment(world):
    place(world, "B3", line("L1", "SET"))
    [c] = live(world, "B3", "SUP-C")
    track(world, c, "STO000000005", 10)
    world.upsert_supplier("SUP-A", "Supplier SUP-A", False, fulfilment_score=80, ship_within_hours=48,
                          at=T0 + timedelta(minutes=11))
    world.change_address(*SHOP, "B3", OTHER_BUYER, at=T0 + timedelta(minutes=15))
    # the cup cannot be routed now; the tracked lid alone must not confirm the line as shipped
    assert live(world, "B3", "SUP-A") == []
    o = order(world, "B3")
    assert (o.status, o.unroutable) == ("partially_allocated", {"L1": "supplier_inactive"})  # the lid is on its way
    assert len(live(world, "B3", "SUP-C")) == 1
    # the supplier comes back: the waiting part (and only it) is routed again (RT3)
    world.upsert_supplier("SUP-A", "Supplier SUP-A", True, fulfilment_score=80, ship_within_hours=48,
                          at=T0 + timedelta(minutes=20))
    [a2] = live(world, "B3", "SUP-A")
    assert parts(a2) == [("L1", "OA", "cup", 1)]
    assert len(live(world, "B3", "SUP-C")) == 1
    assert track(world, a2, "STO000000006", 40) == "shipped"


def test_i5_l4_merchant_cancels_one_part_and_release_reroutes_only_that_part(world):
    place(world, "B4", line("L1", "SET"))
    [a], [c] = live(world, "B4", "SUP-A"), live(world, "B4", "SUP-C")
    track(world, c, "STO000000007", 5)
    world.cancel_allocation(a.allocation_id, at=T0 + timedelta(minutes=10))
    world.release_order(*SHOP, "B4", at=T0 + timedelta(minutes=20))
    [a2] = live(world, "B4", "SUP-A")
    assert parts(a2) == [("L1", "OA", "cup", 1)]
    assert len(live(world, "B4", "SUP-C")) == 1


def test_i8_l4_too_late_part_supersedes_only_its_own_replacement(world):
    place(world, "B5", line("L1", "SET"))
    [a] = live(world, "B5", "SUP-A")
    world.change_address(*SHOP, "B5", OTHER_BUYER, at=T0 + timedelta(minutes=5))  # both re-released
    [a2], [c2] = live(world, "B5", "SUP-A"), live(world, "B5", "SUP-C")
    world.answer_intercept("SUP-A", a.allocation_id, "too_late", "STO", "STO000000008",
                           at=T0 + timedelta(minutes=9))
    assert world.allocation(a2.allocation_id).status == "intercepted"  # no second cup
    assert world.allocation(c2.allocation_id).status == "active"  # the lid still has to go
    assert order(world, "B5").status == "allocated"
    assert track(world, world.allocation(c2.allocation_id), "STO000000009", 30) == "shipped"
