"""The order lifecycle after allocation: holds, interceptions, tracking, shipping (seed 003)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.allocations import InterceptRequested
from engine.errors import InvalidCommand, NotFound, TrackingRefused, UnknownAllocation
from tests.world import (
    BUYER,
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
    stored,
    supplier,
)


@pytest.fixture
def world(memory_app):
    app = memory_app  # in memory: these narratives are about the domain, not the store
    supplier(app, "S1")
    supplier(app, "S2", hours=24)
    offer(app, "S1", "O1", {"a": 10, "b": 10}, price="10.00")
    offer(app, "S2", "O2", {"a": 10}, price="20.00")
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    link(app, "P2", sku("K1", alt(comp("S2", "O2", "a"))))
    link(app, "P3", sku("K1", alt(comp("S1", "O1", "b"))))
    return app


def only(app, order_id):
    [a] = [a for a in allocations(app, order_id) if a.status in ("active", "tracked", "shipped")]
    return a


def test_seed_003_flow_bind_allocate_batch_cancel_aftersale_track_and_ship(world):
    """Seed 003 (拼多多代发管理): bind a factory, allocate orders, cancel allocation in a batch,
    after-sale intercepts an unshipped order, factory uploads tracking, one-click ship."""
    for n in range(4):
        place(world, f"D{n}", line("L1", "P1"), at=T0 + timedelta(minutes=n))
    assert all(order(world, f"D{n}").status == "allocated" for n in range(4))
    assert world.offer("S1", "O1").available("a") == 6
    # the merchant cancels two allocations in one go (取消分配, batch)
    assert world.cancel_allocations(*SHOP, ["D0", "D1"], at=T0 + timedelta(hours=1)) == 2
    assert [a.status for a in allocations(world, "D0")] == ["cancelled"]
    assert world.offer("S1", "O1").available("a") == 8
    # a refund opened before tracking stops the factory
    world.open_aftersale(*SHOP, "D2", "AS-1", "refund", at=T0 + timedelta(hours=2))
    assert [a.status for a in allocations(world, "D2")] == ["intercepted"]
    # the factory ships D3 and uploads tracking: reflow confirms shipment to the shop at once
    a3 = only(world, "D3")
    assert world.upload_tracking("S1", a3.allocation_id, "ZTO", "ZT1234567890", at=T0 + timedelta(hours=3)) == "shipped"
    assert order(world, "D3").status == "shipped"
    assert world.allocation(a3.allocation_id).status == "shipped"


def test_rt4_order_under_review_is_not_allocated_until_cleared(world):
    world.set_review(*SHOP, "X1", True, "risk check", at=T0 - timedelta(minutes=1))  # review before the order
    assert place(world, "X1", line("L1", "P1")) == "held"
    assert allocations(world, "X1") == []
    assert world.set_review(*SHOP, "X1", False, at=T0 + timedelta(minutes=5)) == "allocated"


def test_rt4_open_aftersale_blocks_allocation_until_closed(world):
    world.open_aftersale(*SHOP, "X1", "AS-1", "return", at=T0 - timedelta(minutes=1))  # before the order
    place(world, "X1", line("L1", "P1"))
    assert allocations(world, "X1") == []
    assert world.close_aftersale(*SHOP, "X1", "AS-1", "rejected", at=T0 + timedelta(hours=1)) == "allocated"


def test_i1_aftersale_before_tracking_intercepts_and_releases_stock(world):
    place(world, "X1", line("L1", "P1", qty=2), line("L2", "P2"))
    world.open_aftersale(*SHOP, "X1", "AS-1", "refund", at=T0 + timedelta(hours=1))
    assert sorted(a.status for a in allocations(world, "X1")) == ["intercepted", "intercepted"]
    assert world.offer("S1", "O1").available("a") == 10
    assert world.offer("S2", "O2").available("a") == 10
    ev = [e for a in allocations(world, "X1") for e in world.events.get(a.id) if isinstance(e, InterceptRequested)]
    assert {e.reason for e in ev} == {"aftersale AS-1 (refund)"}


def test_i1_aftersale_naming_a_line_intercepts_only_that_lines_allocation(world):
    place(world, "X1", line("L1", "P1"), line("L2", "P2"))
    world.open_aftersale(*SHOP, "X1", "AS-1", "refund", line_id="L2", at=T0 + timedelta(hours=1))
    statuses = {a.supplier_id: a.status for a in allocations(world, "X1")}
    assert statuses == {"S1": "active", "S2": "intercepted"}


def test_i1_line_aftersale_reroutes_the_other_lines_of_the_stopped_allocation(world):
    place(world, "X1", line("L1", "P1"), line("L2", "P3"))  # both S1: one allocation
    world.open_aftersale(*SHOP, "X1", "AS-1", "refund", line_id="L2", at=T0 + timedelta(hours=1))
    a = only(world, "X1")
    assert a.line_ids == ("L1",)
    assert world.offer("S1", "O1").available("b") == 10


def test_i2_aftersale_after_tracking_is_recorded_not_intercepted(world):
    place(world, "X1", line("L1", "P1"))
    a = only(world, "X1")
    world.upload_tracking("S1", a.allocation_id, "SF", "SF1234567890", at=T0 + timedelta(hours=2))
    world.open_aftersale(*SHOP, "X1", "AS-9", "return", at=T0 + timedelta(days=2))
    o = order(world, "X1")
    assert o.aftersales["AS-9"].post_shipment is True
    assert world.allocation(a.allocation_id).status == "shipped"


def test_i3_review_cancels_existing_allocations(world):
    place(world, "X1", line("L1", "P1"))
    world.set_review(*SHOP, "X1", True, "platform review", at=T0 + timedelta(minutes=10))
    assert [a.status for a in allocations(world, "X1")] == ["cancelled"]
    assert order(world, "X1").status == "held"
    assert world.offer("S1", "O1").available("a") == 10


def test_i4_address_change_blocks_and_rereleases_with_new_address(world):
    place(world, "X1", line("L1", "P1"))
    old = only(world, "X1")
    world.change_address(*SHOP, "X1", OTHER_BUYER, at=T0 + timedelta(minutes=30))
    assert world.allocation(old.allocation_id).status == "intercepted"
    new = only(world, "X1")
    assert new.allocation_id != old.allocation_id
    from engine.allocations import Allocated

    [created] = [e for e in world.events.get(new.id) if isinstance(e, Allocated)]
    assert (created.recipient.name, created.recipient.province) == ("李*", "广东省")
    assert world.offer("S1", "O1").available("a") == 9  # released once, reserved once


def test_i4_address_change_after_tracking_intercepts_nothing(world):
    place(world, "X1", line("L1", "P1"))
    a = only(world, "X1")
    world.upload_tracking("S1", a.allocation_id, "SF", "SF1234567890", at=T0 + timedelta(hours=1))
    world.change_address(*SHOP, "X1", OTHER_BUYER, at=T0 + timedelta(hours=2))
    assert [x.status for x in allocations(world, "X1")] == ["shipped"]


def test_i5_merchant_cancels_one_allocation_by_hand(world):
    place(world, "X1", line("L1", "P1"))
    a = only(world, "X1")
    world.cancel_allocation(a.allocation_id, "wrong factory", at=T0 + timedelta(minutes=5))
    assert world.allocation(a.allocation_id).status == "cancelled"
    assert order(world, "X1").status == "unrouted"
    world.upload_tracking("S1", a.allocation_id, "SF", "SF1234567890", at=T0 + timedelta(hours=1))
    assert world.allocation(a.allocation_id).status == "cancelled"


def test_i6_interception_rules_hold_orders_until_released_by_hand(world):
    world.set_merchant_settings("default", hold_amount_over="100.00", hold_remark_words=["加急"],
                                at=EARLIER)
    assert place(world, "X1", line("L1", "P1", qty=4, price="30.00")) == "held"  # 120 > 100
    assert place(world, "X2", line("L1", "P1"), remark="请加急发货") == "held"
    assert place(world, "X3", line("L1", "P1")) == "allocated"
    assert allocations(world, "X1") == []
    assert world.release_order(*SHOP, "X1", at=T0 + timedelta(hours=1)) == "allocated"


def test_i6_hold_when_a_line_is_out_of_stock(world):
    world.set_merchant_settings("default", hold_out_of_stock=True, at=EARLIER)
    world.report_stock("S2", "O2", "a", 0, at=EARLIER)
    assert place(world, "X1", line("L1", "P1"), line("L2", "P2")) == "held"
    assert allocations(world, "X1") == []  # not even the line that had stock
    world.report_stock("S2", "O2", "a", 5, at=T0 + timedelta(minutes=1))
    assert order(world, "X1").status == "held"  # a hold is released by hand only
    assert world.release_order(*SHOP, "X1", at=T0 + timedelta(hours=1)) == "allocated"


def test_i7_tracking_for_intercepted_allocation_is_refused_and_recorded_as_loss_risk(world):
    place(world, "X1", line("L1", "P1"))
    a = only(world, "X1")
    world.cancel_order(*SHOP, "X1", at=T0 + timedelta(minutes=5))
    assert world.upload_tracking("S1", a.allocation_id, "YTO", "YT9876543210", at=T0 + timedelta(hours=1)) == "loss_risk"
    alloc = world.allocation(a.allocation_id)
    assert (alloc.status, alloc.loss_risks, alloc.tracking_no) == ("intercepted", 1, None)
    assert order(world, "X1").status == "cancelled"


def test_i8_too_late_answer_turns_intercept_into_shipment_with_post_shipment_aftersale(world):
    place(world, "X1", line("L1", "P1"))
    a = only(world, "X1")
    world.open_aftersale(*SHOP, "X1", "AS-1", "refund", at=T0 + timedelta(minutes=5))
    world.answer_intercept("S1", a.allocation_id, "too_late", "YTO", "YT5555555555", at=T0 + timedelta(minutes=20))
    alloc = world.allocation(a.allocation_id)
    assert (alloc.status, alloc.tracking_no) == ("shipped", "YT5555555555")
    post = [x for x in order(world, "X1").aftersales.values() if x.post_shipment]
    assert len(post) == 1


def test_i8_stopped_answer_keeps_the_allocation_intercepted(world):
    place(world, "X1", line("L1", "P1"))
    a = only(world, "X1")
    world.open_aftersale(*SHOP, "X1", "AS-1", "refund", at=T0 + timedelta(minutes=5))
    world.answer_intercept("S1", a.allocation_id, "stopped", at=T0 + timedelta(minutes=20))
    assert world.allocation(a.allocation_id).status == "intercepted"
    with pytest.raises(TrackingRefused, match="I8"):
        world.answer_intercept("S2", a.allocation_id, "stopped")


def test_t1_tracking_only_from_the_owning_supplier_with_a_plausible_number(world):
    place(world, "X1", line("L1", "P1"))
    a = only(world, "X1")
    before = stored(world)
    with pytest.raises(TrackingRefused, match="T1.*supplier_id"):
        world.upload_tracking("S2", a.allocation_id, "SF", "SF1234567890")
    with pytest.raises(TrackingRefused, match="T1.*tracking_no"):
        world.upload_tracking("S1", a.allocation_id, "SF", "")
    with pytest.raises(TrackingRefused, match="T1.*tracking_no"):
        world.upload_tracking("S1", a.allocation_id, "SF", "12 34")
    with pytest.raises(UnknownAllocation, match="allocation_id"):
        world.upload_tracking("S1", "A-NOPE", "SF", "SF1234567890")
    assert stored(world) == before
    assert world.upload_tracking("S1", a.allocation_id, "SF", "SF1234567890", at=T0 + timedelta(hours=1)) == "shipped"
    assert world.upload_tracking("S1", a.allocation_id, "SF", "SF1234567890", at=T0 + timedelta(hours=2)) == "duplicate"


def test_t2_shipment_confirmed_when_every_allocation_has_tracking_one_package_each(world):
    place(world, "X1", line("L1", "P1"), line("L2", "P2"))
    a1, a2 = sorted(allocations(world, "X1"), key=lambda a: a.supplier_id)
    assert world.upload_tracking("S1", a1.allocation_id, "SF", "SF0000000001", at=T0 + timedelta(hours=1)) == "tracked"
    assert order(world, "X1").status == "allocated"
    assert world.upload_tracking("S2", a2.allocation_id, "JD", "JD0000000002", at=T0 + timedelta(hours=2)) == "shipped"
    from engine.order_events import OrderShipped

    [shipped] = [e for e in world.events.get(order(world, "X1").id) if isinstance(e, OrderShipped)]
    assert [(p.carrier, p.tracking_no, p.line_ids) for p in shipped.packages] == [
        ("SF", "SF0000000001", ("L1",)), ("JD", "JD0000000002", ("L2",))]


def test_t3_ship_by_same_day_before_1600_else_48h_or_24h(world):
    place(world, "X1", line("L1", "P1"), at=T0)  # 09:00 local, S1 48 h -> same day 23:59:59
    place(world, "X2", line("L1", "P1"), at=T0.replace(hour=17))  # 17:00 -> +48 h
    place(world, "X3", line("L1", "P2"), at=T0.replace(hour=17))  # S2 enrolled with 24 h
    a1, a2, a3 = only(world, "X1"), only(world, "X2"), only(world, "X3")
    assert a1.ship_by == T0.replace(hour=23, minute=59, second=59)
    assert a2.ship_by == T0.replace(hour=17) + timedelta(hours=48)
    assert a3.ship_by == T0.replace(hour=17) + timedelta(hours=24)
    from engine.allocations import TrackingUploaded

    world.upload_tracking("S1", a1.allocation_id, "SF", "SF0000000003", at=T0 + timedelta(days=1))
    [ev] = [e for e in world.events.get(a1.id) if isinstance(e, TrackingUploaded)]
    assert ev.late is True


def test_s1_s2_s3_stock_published_per_shop_sku_once_per_change(world):
    from engine.linking import StockPublished

    offer(world, "S2", "O9", {"x": 9, "y": 40}, price="1.00")
    link(world, "P9", sku("K1", alt(comp("S2", "O9", "x", qty=2), comp("S2", "O9", "y", qty=5))))
    world.set_stock_rule(*SHOP, "P9", "K1", "0.5", 3, at=EARLIER)

    def published():
        return [e.stock for e in world.events.get(world.link(*SHOP, "P9").id) if isinstance(e, StockPublished)]

    # bundle: min(9//2, 40//5) = 4 sellable; ratio 0.5 -> 2
    assert published() == [4, 2]  # first without the rule (default 100 %), then with it
    world.report_stock("S2", "O9", "x", 8, at=T0)  # min(4, 8) = 4 -> still 2: nothing published
    assert published() == [4, 2]
    world.report_stock("S2", "O9", "y", 10, at=T0)  # min(4, 2) = 2 < min_stock 3 -> 0, not 1
    assert published() == [4, 2, 0]


def test_m1_private_micro_supply_offer_refuses_other_merchants(world):
    from engine.errors import LinkRefused

    offer(world, "S1", "W1", {"w": 10}, private_to=["merchant-A"])
    world.register_shop("weigong", "wg-1", "merchant-A", at=EARLIER)
    link(world, "PW", sku("K1", alt(comp("S1", "W1", "w"))), shop=("weigong", "wg-1"))
    with pytest.raises(LinkRefused, match="M1"):
        link(world, "PW", sku("K1", alt(comp("S1", "W1", "w"))))  # the default merchant's shop


def test_m2_micro_supply_offer_expires_after_30_days_unless_renewed(world):
    offer(world, "S1", "W1", {"w": 10}, private_to=["default"], at=T0 - timedelta(days=31))
    link(world, "PW", sku("K1", alt(comp("S1", "W1", "w"))))
    place(world, "X1", line("L1", "PW"))
    assert order(world, "X1").unroutable == {"L1": "sku_off_shelf"}
    world.renew_offer("S1", "W1", at=T0 + timedelta(minutes=1))
    assert order(world, "X1").status == "allocated"  # renewal is an offer change: re-routed (RT3)


def test_m3_orders_carry_their_channel(world):
    place(world, "X1", line("L1", "P1"))
    place(world, "X2", line("L1", "P1"), shop=("weigong", "wg-9"))
    assert order(world, "X1").channel == "douyin"
    assert order(world, "X2", shop=("weigong", "wg-9")).channel == "micro_supply"


def test_out_of_order_cancel_before_the_order_means_it_is_never_allocated(world):
    world.cancel_order(*SHOP, "X1", at=T0)
    place(world, "X1", line("L1", "P1"), at=T0 - timedelta(minutes=1))
    assert order(world, "X1").status == "cancelled"
    assert allocations(world, "X1") == []


def test_out_of_order_address_change_before_the_order_wins_when_newer(world):
    world.change_address(*SHOP, "X1", OTHER_BUYER, at=T0 + timedelta(minutes=1))
    place(world, "X1", line("L1", "P1"), at=T0)
    assert world.buyer(*SHOP, "X1") == OTHER_BUYER


def test_same_facts_twice_change_nothing(world):
    place(world, "X1", line("L1", "P1"))
    n = stored(world)
    place(world, "X1", line("L1", "P1"))
    world.set_review(*SHOP, "X1", False)
    world.change_address(*SHOP, "X1", BUYER)
    world.open_aftersale(*SHOP, "X1", "AS-1", "refund", at=T0 + timedelta(hours=1))
    m = stored(world)
    world.open_aftersale(*SHOP, "X1", "AS-1", "refund", at=T0 + timedelta(hours=1))
    world.cancel_order(*SHOP, "X1", at=T0 + timedelta(hours=2))
    k = stored(world)
    world.cancel_order(*SHOP, "X1", at=T0 + timedelta(hours=2))
    assert m > n and stored(world) == k


def test_bad_lifecycle_commands_name_the_problem_and_store_nothing(world):
    place(world, "X1", line("L1", "P1"))
    before = stored(world)
    with pytest.raises(UnknownAllocation):
        world.upload_tracking("S1", "A404", "SF", "SF1234567890")
    with pytest.raises(TrackingRefused, match="tracking_no"):
        world.upload_tracking("S1", only(world, "X1").allocation_id, "SF", "")
    with pytest.raises(NotFound, match="aftersale_id.*never opened"):
        world.close_aftersale(*SHOP, "X1", "AS-404", "refunded")
    with pytest.raises(InvalidCommand, match="ratio"):
        world.set_stock_rule(*SHOP, "P1", "K1", "1.5", 0)
    with pytest.raises(InvalidCommand, match="stock"):
        world.report_stock("S1", "O1", "a", -1)
    with pytest.raises(InvalidCommand, match="price"):
        world.set_price("S1", "a", "ten yuan", effective_from=T0)
    assert stored(world) == before
