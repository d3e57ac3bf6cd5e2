"""When the supplier says no (issue 15): rejections (RT11), split lines (RT12), daily capacity
(RT13) and link health (L11), beside reservations (RT7), fewer splits (RT10), interceptions (I1)
and the recorded decision (RT6)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine import ids
from engine.catalog import Supplier
from engine.errors import DomainError, NotFound
from engine.linking import LinkHealthChanged
from engine.policy import decide
from tests.world import (
    OTHER_BUYER,
    SHOP,
    T0,
    alt,
    comp,
    events,
    line,
    link,
    live,
    offer,
    order,
    place,
    sku,
    stored,
    supplier,
    two_sources,
)


def last_decision(app, order_id):
    return app.decisions(*SHOP, order_id)[-1]


@pytest.fixture
def two(memory_app):
    """A cheap supplier SUP-A and a dearer SUP-B for the same shop SKU."""
    return two_sources(memory_app)


# -- RT11 rejection ----------------------------------------------------------------------------


def test_rt11_rejection_releases_stock_and_reroutes_never_back_to_that_supplier(two):
    place(two, "O1", line("L1", "P1", qty=2))
    [a] = live(two, "O1")
    assert a.supplier_id == "SUP-A" and two.offer("SUP-A", "OA").available("a1") == 8
    assert two.reject_allocation("SUP-A", a.allocation_id, "cannot_ship_to", at=T0 + timedelta(minutes=5)) == "rejected"
    assert two.allocation(a.allocation_id).status == "rejected"
    assert two.offer("SUP-A", "OA").available("a1") == 10  # RT7: the reservation is released
    [b] = live(two, "O1")
    assert b.supplier_id == "SUP-B"
    verdicts = {v.index: v for v in last_decision(two, "O1").decision.lines[0].candidates}
    assert verdicts[0].reason == "rejected"  # RT6: why the supplier lost
    two.report_stock("SUP-A", "OA", "a1", 50, at=T0 + timedelta(minutes=10))
    two.reject_allocation("SUP-B", b.allocation_id, "other", at=T0 + timedelta(minutes=20))
    assert live(two, "O1") == []  # never again to SUP-A for this order, however much stock
    assert order(two, "O1").unroutable == {"L1": "rejected"}


def test_rt11_out_of_stock_sets_the_sku_to_zero_until_the_next_report(two):
    place(two, "O1", line("L1", "P1"))
    [a] = live(two, "O1")
    two.reject_allocation("SUP-A", a.allocation_id, "out_of_stock", at=T0 + timedelta(minutes=5))
    assert two.offer("SUP-A", "OA").stock["a1"] == 0
    place(two, "O2", line("L1", "P1"), at=T0 + timedelta(minutes=6))
    assert [x.supplier_id for x in live(two, "O2")] == ["SUP-B"]
    two.report_stock("SUP-A", "OA", "a1", 7, at=T0 + timedelta(minutes=1))  # older than the rejection
    assert two.offer("SUP-A", "OA").stock["a1"] == 0
    two.report_stock("SUP-A", "OA", "a1", 7, at=T0 + timedelta(minutes=30))
    place(two, "O3", line("L1", "P1"), at=T0 + timedelta(minutes=31))
    assert [x.supplier_id for x in live(two, "O3")] == ["SUP-A"]


def test_rt11_sku_changed_takes_the_sku_off_shelf_and_breaks_the_link_l11(two):
    place(two, "O1", line("L1", "P1"))
    [a] = live(two, "O1")
    two.reject_allocation("SUP-A", a.allocation_id, "sku_changed", at=T0 + timedelta(minutes=5))
    [broken] = events(two, LinkHealthChanged)
    assert (broken.status, broken.sku_id, [(m.supplier_sku_id, m.why) for m in broken.missing]) == (
        "broken", "K1", [("a1", "sku_changed")])
    place(two, "O2", line("L1", "P1"), at=T0 + timedelta(minutes=6))
    assert [x.supplier_id for x in live(two, "O2")] == ["SUP-B"]
    offer(two, "SUP-A", "OA", {"a1": 10}, price=None, at=T0 + timedelta(hours=1))  # the supplier publishes again
    assert [e.status for e in events(two, LinkHealthChanged)] == ["broken", "healthy"]


def test_rt11_refusals_change_nothing(two):
    place(two, "O1", line("L1", "P1"))
    [a] = live(two, "O1")
    before = stored(two)
    with pytest.raises(DomainError, match="rule RT11: supplier_id"):
        two.reject_allocation("SUP-B", a.allocation_id, "other", at=T0 + timedelta(minutes=5))
    with pytest.raises(NotFound, match="rule RT11: allocation_id: unknown allocation"):
        two.reject_allocation("SUP-A", "ANOSUCH", "other", at=T0 + timedelta(minutes=5))
    with pytest.raises(DomainError, match="rule RT11: reason"):
        two.reject_allocation("SUP-A", a.allocation_id, "bored", at=T0 + timedelta(minutes=5))
    assert stored(two) == before
    two.upload_tracking("SUP-A", a.allocation_id, "STO", "STO1234567", at=T0 + timedelta(hours=1))
    before = stored(two)
    with pytest.raises(DomainError, match="rule RT11: allocation_id.*already has tracking"):
        two.reject_allocation("SUP-A", a.allocation_id, "out_of_stock", at=T0 + timedelta(hours=2))
    assert stored(two) == before
    assert two.allocation(a.allocation_id).status in ("tracked", "shipped")


def test_rt11_a_repeated_rejection_changes_nothing(two):
    place(two, "O1", line("L1", "P1"))
    [a] = live(two, "O1")
    two.reject_allocation("SUP-A", a.allocation_id, "other", at=T0 + timedelta(minutes=5))
    before = stored(two)
    assert two.reject_allocation("SUP-A", a.allocation_id, "other", at=T0 + timedelta(minutes=6)) == "duplicate"
    assert stored(two) == before


def test_rt11_after_an_intercept_i1_the_rejection_is_refused_and_tracking_after_it_is_a_loss_risk_i7(two):
    place(two, "O1", line("L1", "P1"))
    [a] = live(two, "O1")
    two.open_aftersale(*SHOP, "O1", "AS1", "refund", at=T0 + timedelta(minutes=5))
    with pytest.raises(DomainError, match="rule RT11: allocation_id.*intercepted"):
        two.reject_allocation("SUP-A", a.allocation_id, "other", at=T0 + timedelta(minutes=6))
    place(two, "O2", line("L1", "P1"), at=T0 + timedelta(minutes=7))
    [b] = live(two, "O2")
    two.reject_allocation(b.supplier_id, b.allocation_id, "other", at=T0 + timedelta(minutes=8))
    assert two.upload_tracking(b.supplier_id, b.allocation_id, "STO", "STO7654321",
                               at=T0 + timedelta(minutes=9)) == "loss_risk"


def test_rt11_the_recorded_decision_re_runs_to_the_same_result_rt6(two):
    place(two, "O1", line("L1", "P1"))
    [a] = live(two, "O1")
    two.reject_allocation("SUP-A", a.allocation_id, "other", at=T0 + timedelta(minutes=5))
    for routed in two.decisions(*SHOP, "O1"):
        assert decide(routed.input) == routed.decision


# -- RT12 split lines --------------------------------------------------------------------------


@pytest.fixture
def three(memory_app):
    """Three sources of one shop SKU, cheapest first: A has 1, B has 3, C has 2."""
    app = memory_app
    for s, o, k, stock, price in (("SUP-A", "OA", "a1", 1, "10.00"), ("SUP-B", "OB", "b1", 3, "11.00"),
                                  ("SUP-C", "OC", "c1", 2, "12.00")):
        supplier(app, s)
        offer(app, s, o, {k: stock}, price=price)
    link(app, "P1", sku("K1", alt(comp("SUP-A", "OA", "a1")), alt(comp("SUP-B", "OB", "b1")),
                        alt(comp("SUP-C", "OC", "c1"))))
    return app


def test_rt12_split_lines_are_off_by_default(three):
    place(three, "O1", line("L1", "P1", qty=5))
    assert live(three, "O1") == [] and order(three, "O1").unroutable == {"L1": "out_of_stock"}


def test_rt12_a_line_no_single_source_covers_is_split_with_the_fewest_parts(three):
    three.set_merchant_settings("default", split_lines=True, at=T0 - timedelta(hours=1))
    place(three, "O1", line("L1", "P1", qty=5))
    got = sorted((a.supplier_id, [(al.line_id, al.qty) for al in a.lines]) for a in live(three, "O1"))
    assert got == [("SUP-B", [("L1", 3)]), ("SUP-C", [("L1", 2)])]  # 2 parts, not A+B+C
    d = last_decision(three, "O1").decision.lines[0]
    assert [(p.index, p.units) for p in d.parts] == [(1, 3), (2, 2)]
    assert decide(last_decision(three, "O1").input) == last_decision(three, "O1").decision  # RT6
    assert order(three, "O1").status == "allocated"
    for a in live(three, "O1"):
        three.upload_tracking(a.supplier_id, a.allocation_id, "STO", f"STO{a.supplier_id[-1]}00001",
                              at=T0 + timedelta(hours=1))
    assert order(three, "O1").shipped  # T2: every part tracked


def test_rt12_all_or_nothing_per_line(three):
    three.set_merchant_settings("default", split_lines=True, at=T0 - timedelta(hours=1))
    place(three, "O1", line("L1", "P1", qty=7))
    assert live(three, "O1") == [] and order(three, "O1").unroutable == {"L1": "out_of_stock"}
    assert [three.offer(s, o).available(k) for s, o, k in (("SUP-A", "OA", "a1"), ("SUP-B", "OB", "b1"),
                                                           ("SUP-C", "OC", "c1"))] == [1, 3, 2]


def test_rt12_a_bundle_splits_only_in_whole_bundles(memory_app):
    app = memory_app
    supplier(app, "SUP-A")
    supplier(app, "SUP-B")
    offer(app, "SUP-A", "OA", {"cup": 3, "lid": 10})
    offer(app, "SUP-B", "OB", {"cup": 4, "lid": 2})
    link(app, "SET", sku("K1", alt(comp("SUP-A", "OA", "cup", 2), comp("SUP-A", "OA", "lid")),
                         alt(comp("SUP-B", "OB", "cup", 2), comp("SUP-B", "OB", "lid"))))
    app.set_merchant_settings("default", split_lines=True, at=T0 - timedelta(hours=1))
    place(app, "O1", line("L1", "SET", qty=3))  # A makes 1 set (3 cups), B makes 2 (4 cups)
    got = sorted((a.supplier_id, sorted((al.supplier_sku_id, al.qty) for al in a.lines)) for a in live(app, "O1"))
    assert got == [("SUP-A", [("cup", 2), ("lid", 1)]), ("SUP-B", [("cup", 4), ("lid", 2)])]


def test_rt12_with_rt10_a_split_order_is_not_consolidated_and_s1_counts_every_part(three):
    three.set_merchant_settings("default", split_lines=True, split_tolerance="1", at=T0 - timedelta(hours=1))
    three.report_stock("SUP-C", "OC", "c1", 3, at=T0 - timedelta(minutes=30))  # published at the next change
    assert three.link(*SHOP, "P1").published["K1"] == 7  # S1 with split lines: 1 + 3 + 3
    place(three, "O1", line("L1", "P1", qty=4), line("L2", "P1", qty=1))
    # L1: A+B is the first pair in RT2 order that covers 4; L2 then goes to C (A and B are used).
    # RT10 would put the whole order on one supplier within the 100% tolerance, but a split line stays split.
    assert sorted(a.supplier_id for a in live(three, "O1")) == ["SUP-A", "SUP-B", "SUP-C"]
    assert last_decision(three, "O1").decision.consolidated_to is None


def test_rt12_rt11_a_rejected_part_of_a_split_line_is_split_again_over_the_other_sources(three):
    three.set_merchant_settings("default", split_lines=True, at=T0 - timedelta(hours=1))
    place(three, "O1", line("L1", "P1", qty=5))  # B 3 + C 2
    c = next(a for a in live(three, "O1") if a.supplier_id == "SUP-C")
    three.report_stock("SUP-A", "OA", "a1", 50, at=T0 + timedelta(minutes=1))
    three.reject_allocation("SUP-C", c.allocation_id, "other", at=T0 + timedelta(minutes=5))
    got = sorted((a.supplier_id, a.lines[0].qty) for a in live(three, "O1"))
    assert got == [("SUP-A", 2), ("SUP-B", 3)]  # the 2 units left, from A (never C again)
    assert last_decision(three, "O1").input.lines[0].matched_by == "remaining_units"
    for a in live(three, "O1"):
        three.upload_tracking(a.supplier_id, a.allocation_id, "STO", f"STO{a.supplier_id[-1]}12345",
                              at=T0 + timedelta(hours=1))
    assert order(three, "O1").shipped  # T2: every unit tracked
    for routed in three.decisions(*SHOP, "O1"):
        assert decide(routed.input) == routed.decision  # RT6


# -- RT13 daily capacity -----------------------------------------------------------------------


def test_rt13_capacity_reached_goes_to_the_next_source_then_waits_for_the_next_day(two):
    supplier(two, "SUP-A", daily_capacity=3)
    supplier(two, "SUP-B", daily_capacity=2)
    place(two, "O1", line("L1", "P1", qty=2))
    place(two, "O2", line("L1", "P1", qty=2), at=T0 + timedelta(minutes=1))
    place(two, "O3", line("L1", "P1", qty=1), at=T0 + timedelta(minutes=2))
    assert [a.supplier_id for o in ("O1", "O2", "O3") for a in live(two, o)] == ["SUP-A", "SUP-B", "SUP-A"]
    verdicts = {v.index: v.reason for v in last_decision(two, "O2").decision.lines[0].candidates}
    assert verdicts[0] == "capacity_reached"
    place(two, "O4", line("L1", "P1", qty=1), at=T0 + timedelta(minutes=3))
    assert live(two, "O4") == [] and order(two, "O4").unroutable == {"L1": "capacity_reached"}
    two.pass_time(T0 + timedelta(hours=10))  # still the same China-time day (19:00)
    assert live(two, "O4") == []
    # midnight passed, for SUP-A and for SUP-B, and the ship-by times (23:59:59) of O1-O3 (T4)
    assert two.pass_time(T0 + timedelta(hours=15)) == 5
    [a] = live(two, "O4")
    assert a.supplier_id == "SUP-A" and a.allocated_at.astimezone(T0.tzinfo).hour == 0


def test_rt13_a_router_down_across_days_catches_up_and_replays_the_same(two):
    supplier(two, "SUP-A", daily_capacity=1)
    supplier(two, "SUP-B", daily_capacity=1)
    place(two, "O1", line("L1", "P1"))
    place(two, "O2", line("L1", "P1"), at=T0 + timedelta(minutes=1))
    place(two, "O3", line("L1", "P1"), at=T0 + timedelta(minutes=2))
    assert live(two, "O3") == []
    two.pass_time(T0 + timedelta(days=3))  # the first tick after three days down
    assert [a.supplier_id for a in live(two, "O3")] == ["SUP-A"]
    for o in ("O1", "O2", "O3"):
        for routed in two.decisions(*SHOP, o):
            assert decide(routed.input) == routed.decision


def test_rt13_daily_capacity_must_be_a_whole_number_of_units(two):
    before = stored(two)
    with pytest.raises(DomainError, match="rule RT13: daily_capacity"):
        supplier(two, "SUP-A", daily_capacity=0)
    assert stored(two) == before


# -- L11 link health ---------------------------------------------------------------------------


def test_l11_an_offer_update_dropping_a_sku_breaks_the_link_once_and_a_link_change_mends_it(two):
    offer(two, "SUP-A", "OA", {"a2": 10}, price=None, at=T0)
    offer(two, "SUP-A", "OA", {"a2": 9}, price=None, at=T0 + timedelta(minutes=1))  # still broken: once
    [broken] = events(two, LinkHealthChanged)
    assert (broken.product_id, broken.sku_id, broken.status) == ("P1", "K1", "broken")
    assert [(m.supplier_id, m.offer_id, m.supplier_sku_id, m.why) for m in broken.missing] == [
        ("SUP-A", "OA", "a1", "sku_dropped")]
    link(two, "P1", sku("K1", alt(comp("SUP-A", "OA", "a2")), alt(comp("SUP-B", "OB", "b1"))), at=T0 + timedelta(hours=1))
    assert [e.status for e in events(two, LinkHealthChanged)] == ["broken", "healthy"]
    assert two.link(*SHOP, "P1").health == {}


def test_l11_a_delisted_offer_breaks_and_an_offer_update_mends(two):
    offer(two, "SUP-B", "OB", {"b1": 10}, on_shelf=False, price=None, at=T0)
    assert [(e.status, e.missing[0].why) for e in events(two, LinkHealthChanged)] == [("broken", "delisted")]
    offer(two, "SUP-B", "OB", {"b1": 10}, price=None, at=T0 + timedelta(hours=1))
    assert [e.status for e in events(two, LinkHealthChanged)] == ["broken", "healthy"]


def test_l11_an_expired_micro_supply_offer_breaks_when_the_clock_passes_it_m2(two):
    expires = T0 + timedelta(days=2)
    offer(two, "SUP-B", "OB", {"b1": 10}, price=None, at=T0, expires_at=expires)
    two.pass_time(expires - timedelta(minutes=1))
    assert events(two, LinkHealthChanged) == []
    two.pass_time(expires + timedelta(hours=1))
    [broken] = events(two, LinkHealthChanged)
    assert broken.missing[0].why == "expired" and broken.at == expires
    two.renew_offer("SUP-B", "OB", at=expires + timedelta(hours=2))
    assert [e.status for e in events(two, LinkHealthChanged)] == ["broken", "healthy"]


# -- beside pull pre-link (L10), an address change (I4), and verify (A2, RT6) ------------------


def test_rt12_rt13_l10_a_pull_splits_lines_and_stops_at_a_suppliers_capacity(memory_app):
    app = memory_app
    supplier(app, "SUP-A", daily_capacity=2)
    supplier(app, "SUP-B")
    offer(app, "SUP-A", "OA", {"a1": 10})
    offer(app, "SUP-B", "OB", {"b1": 1}, price="12.00")
    app.set_merchant_settings("default", split_lines=True, at=T0 - timedelta(days=2))
    place(app, "E1", line("L1", "P1", qty=3), at=T0 - timedelta(days=1))  # before the link: waits (L10)
    place(app, "E2", line("L1", "P1", qty=1), at=T0 - timedelta(days=1))
    link(app, "P1", sku("K1", alt(comp("SUP-A", "OA", "a1")), alt(comp("SUP-B", "OB", "b1"))), at=T0)
    app.pull_prelink(*SHOP, "P1", at=T0 + timedelta(minutes=1))
    got = sorted((a.supplier_id, al.qty) for a in live(app, "E1") for al in a.lines)
    assert got == [("SUP-A", 2), ("SUP-B", 1)]  # RT12 within SUP-A's capacity of 2 (RT13)
    assert live(app, "E2") == [] and order(app, "E2").unroutable == {"L1": "capacity_reached"}
    app.pass_time(T0 + timedelta(days=1))
    assert [a.supplier_id for a in live(app, "E2")] == ["SUP-A"]


def test_rt12_i4_an_address_change_stops_every_part_and_the_line_is_split_again(three):
    three.set_merchant_settings("default", split_lines=True, at=T0 - timedelta(hours=1))
    place(three, "O1", line("L1", "P1", qty=5))
    first = {a.allocation_id for a in live(three, "O1")}
    three.change_address(*SHOP, "O1", OTHER_BUYER, at=T0 + timedelta(minutes=5))
    again = live(three, "O1")
    assert {a.allocation_id for a in again}.isdisjoint(first) and len(again) == 2
    assert sorted((a.supplier_id, a.lines[0].qty) for a in again) == [("SUP-B", 3), ("SUP-C", 2)]
    assert all(three.allocation(x).status == "intercepted" for x in first)


def test_rt11_rt12_rt13_l11_verify_re_runs_every_decision_and_the_chain_holds(two):
    from replay.verify import verify

    supplier(two, "SUP-A", daily_capacity=1)
    two.report_stock("SUP-B", "OB", "b1", 2, at=T0 - timedelta(hours=1))
    two.set_merchant_settings("default", split_lines=True, at=T0 - timedelta(hours=1))
    place(two, "O1", line("L1", "P1", qty=3))  # A can take 1 today, B the other 2: split
    place(two, "O2", line("L1", "P1"), at=T0 + timedelta(minutes=1))  # waits: A at capacity, B has none
    assert order(two, "O2").unroutable == {"L1": "capacity_reached"}
    [b] = [a for a in live(two, "O1") if a.supplier_id == "SUP-B"]
    two.reject_allocation("SUP-B", b.allocation_id, "sku_changed", at=T0 + timedelta(minutes=2))
    two.pass_time(T0 + timedelta(days=1))
    assert [a.supplier_id for a in live(two, "O2")] == ["SUP-A"]
    result = verify(two, anchor=False)
    assert result.ok, result.problem
    assert any(d.decision.lines[0].parts for d in two.decisions(*SHOP, "O1"))


# -- from a user's trial -----------------------------------------------------------------------


def test_rt13_an_order_dated_on_an_earlier_day_counts_on_that_day(two):
    supplier(two, "SUP-A", daily_capacity=2)
    supplier(two, "SUP-B", daily_capacity=2)
    place(two, "D1", line("L1", "P1", qty=2))  # day 1: SUP-A full
    place(two, "D2", line("L1", "P1", qty=2), at=T0 + timedelta(days=1))  # day 2: SUP-A full
    place(two, "LATE", line("L1", "P1"), at=T0 + timedelta(hours=2))  # arrives late, dated day 1
    assert [a.supplier_id for a in live(two, "LATE")] == ["SUP-B"]
    verdicts = {v.index: v.reason for v in last_decision(two, "LATE").decision.lines[0].candidates}
    assert verdicts[0] == "capacity_reached"


def test_l11_an_offer_update_dated_before_a_stock_report_still_applies_and_keeps_the_newer_stock(two):
    two.report_stock("SUP-B", "OB", "b1", 7, at=T0 + timedelta(hours=3))  # the supplier's clock runs ahead
    offer(two, "SUP-B", "OB", {"b1": 50, "b2": 5}, price=None, at=T0, on_shelf=False)
    assert not two.offer("SUP-B", "OB").on_shelf and "b2" in two.offer("SUP-B", "OB").skus
    assert two.offer("SUP-B", "OB").stock["b1"] == 7  # the newer report stands
    assert [(e.status, e.missing[0].why) for e in events(two, LinkHealthChanged)] == [("broken", "delisted")]


def test_rt11_a_rejection_dated_before_its_allocation_is_recorded_at_the_allocation_and_routes_once(two):
    place(two, "O1", line("L1", "P1"))
    [a] = live(two, "O1")
    two.reject_allocation("SUP-A", a.allocation_id, "other", at=T0 - timedelta(hours=1))
    [b] = live(two, "O1")
    assert b.allocated_at == a.allocated_at and two.allocation(a.allocation_id).intercepted_at == a.allocated_at
    assert [d.trigger for d in two.decisions(*SHOP, "O1")] == ["placed", "rejected"]  # one decision, not two


def test_l11_a_late_retry_of_an_older_offer_publish_does_not_undo_a_newer_delisting(two):
    offer(two, "SUP-A", "OA", {"a2": 10}, price=None, on_shelf=False, at=T0 + timedelta(hours=1))  # 10:00
    offer(two, "SUP-A", "OA", {"a1": 10}, price=None, at=T0 + timedelta(minutes=30))  # the 09:30 one, late
    assert not two.offer("SUP-A", "OA").on_shelf and "a1" not in two.offer("SUP-A", "OA").skus
    place(two, "O1", line("L1", "P1"), at=T0 + timedelta(hours=2))
    assert [a.supplier_id for a in live(two, "O1")] == ["SUP-B"]


def test_rt12_s1_a_supplier_sku_shared_by_two_alternatives_is_counted_once(memory_app):
    app = memory_app
    supplier(app, "S1")
    offer(app, "S1", "O1", {"case": 6, "lid": 100, "cap": 100})
    app.set_merchant_settings("default", split_lines=True, at=T0 - timedelta(days=2))
    link(app, "SET", sku("K1", alt(comp("S1", "O1", "case"), comp("S1", "O1", "lid")),
                         alt(comp("S1", "O1", "case"), comp("S1", "O1", "cap"))))
    assert app.link(*SHOP, "SET").published["K1"] == 6  # not 12


def test_rt3_rt11_a_line_that_still_cannot_route_records_no_new_decision_on_each_supply_change(two):
    place(two, "O1", line("L1", "P1"))
    for a in live(two, "O1"):
        two.reject_allocation(a.supplier_id, a.allocation_id, "other", at=T0 + timedelta(minutes=1))
    [b] = live(two, "O1")
    two.reject_allocation(b.supplier_id, b.allocation_id, "other", at=T0 + timedelta(minutes=2))
    decisions = len(two.decisions(*SHOP, "O1"))
    for n in range(5):
        two.report_stock("SUP-A", "OA", "a1", 20 + n, at=T0 + timedelta(minutes=10 + n))
    assert len(two.decisions(*SHOP, "O1")) == decisions  # no log growth for an order nobody can take


def test_rt13_i4_a_stopped_allocation_gives_its_units_back_so_the_re_release_fits(two):
    supplier(two, "SUP-A", daily_capacity=10)
    place(two, "O1", line("L1", "P1", qty=6))
    two.change_address(*SHOP, "O1", OTHER_BUYER, at=T0 + timedelta(minutes=5))
    assert [(a.supplier_id, a.lines[0].qty) for a in live(two, "O1")] == [("SUP-A", 6)]  # not capacity_reached
    assert two.load(Supplier, ids.supplier_id("SUP-A")).capacity_left(T0) == 4
