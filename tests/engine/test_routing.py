"""Routing rules RT1-RT3, RT5-RT10 (seeds 000, 001, 003), and seed 000's first scenario."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest

from engine.app import Reflow
from engine.policy import decide
from engine.values import OfferSku, PoolTerms
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
    supplier(app, "S1", score=70)
    supplier(app, "S2", score=90)
    supplier(app, "S3", score=90)
    offer(app, "S1", "O1", {"a": 10}, price="12.00")
    offer(app, "S2", "O2", {"a": 10}, price="10.00")
    offer(app, "S3", "O3", {"a": 10}, price="10.00")
    return app


def chosen_supplier(app, order_id):
    return [a.supplier_id for a in allocations(app, order_id)]


def test_l9_seed_000_scenario_1_new_listing_routes_every_new_order_and_ships_on_tracking(world):
    """A product listed with its link in place: orders reflow automatically and ship on tracking."""
    link(world, "P-new", sku("K1", alt(comp("S2", "O2", "a"))))
    for n in range(3):
        assert place(world, f"N{n}", line("L1", "P-new", "K1"), at=T0 + timedelta(minutes=n)) == "allocated"
    for n in range(3):
        [a] = allocations(world, f"N{n}")
        assert world.upload_tracking("S2", a.allocation_id, "YTO", f"YT{n:010d}",
                                     at=T0 + timedelta(hours=2)) == "shipped"
        assert order(world, f"N{n}").status == "shipped"
    assert world.offer("S2", "O2").stock["a"] == 7


def test_rt1_inactive_supplier_is_not_eligible(world):
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a")), alt(comp("S1", "O1", "a"))))
    supplier(world, "S2", active=False, score=90)
    place(world, "X1", line("L1", "P1"))
    assert chosen_supplier(world, "X1") == ["S1"]
    [d] = world.decisions(*SHOP, "X1")
    assert d.decision.lines[0].candidates[0].reason == "supplier_inactive"


def test_rt1_off_shelf_and_expired_skus_are_not_eligible(world):
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a")), alt(comp("S3", "O3", "a")), alt(comp("S1", "O1", "a"))))
    offer(world, "S2", "O2", {"a": 10}, on_shelf=False, price=None)
    offer(world, "S3", "O3", {"a": 10}, expires_at=T0 - timedelta(minutes=1), price=None)
    place(world, "X1", line("L1", "P1"))
    assert chosen_supplier(world, "X1") == ["S1"]
    [d] = world.decisions(*SHOP, "X1")
    assert [v.reason for v in d.decision.lines[0].candidates] == ["sku_off_shelf", "sku_off_shelf", None]


def test_rt1_stock_must_cover_n_times_qty(world):
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a", qty=3)), alt(comp("S1", "O1", "a", qty=3))))
    world.report_stock("S2", "O2", "a", 5)
    place(world, "X1", line("L1", "P1", qty=2))  # needs 6
    assert chosen_supplier(world, "X1") == ["S1"]


def test_rt2_prefers_cheapest_eligible_alternative(world):
    link(world, "P1", sku("K1", alt(comp("S1", "O1", "a")), alt(comp("S2", "O2", "a"))))
    place(world, "X1", line("L1", "P1"))
    assert chosen_supplier(world, "X1") == ["S2"]
    [d] = world.decisions(*SHOP, "X1")
    loser = d.decision.lines[0].candidates[0]
    assert (loser.lost, str(loser.cost)) == ("cost", "12.00")


def test_rt2_manual_priority_beats_cost(world):
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a")), alt(comp("S1", "O1", "a"), priority=1)))
    place(world, "X1", line("L1", "P1"))
    assert chosen_supplier(world, "X1") == ["S1"]
    [d] = world.decisions(*SHOP, "X1")
    assert d.decision.lines[0].candidates[0].lost == "priority"


def test_rt2_equal_cost_goes_to_best_fulfilment_score_then_link_order(world):
    supplier(world, "S3", score=95)
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a")), alt(comp("S3", "O3", "a"))))
    place(world, "X1", line("L1", "P1"))
    assert chosen_supplier(world, "X1") == ["S3"]
    supplier(world, "S3", score=90)
    place(world, "X2", line("L1", "P1"))
    assert chosen_supplier(world, "X2") == ["S2"]
    [d] = world.decisions(*SHOP, "X2")
    assert d.decision.lines[0].candidates[1].lost == "link_order"


def test_rt2_tier_price_overrides_the_base_price_for_that_merchant(world):
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a")), alt(comp("S1", "O1", "a"))))
    world.set_merchant_tier("S1", "default", "gold", at=EARLIER)
    world.set_price("S1", "a", "8.00", effective_from=EARLIER, tier="gold", at=EARLIER)
    place(world, "X1", line("L1", "P1"))
    assert chosen_supplier(world, "X1") == ["S1"]
    [a] = allocations(world, "X1")
    assert str(a.lines[0].unit_cost) == "8.00"


def test_rt3_no_link_line_waits_for_prelink_even_when_stock_changes(world):
    place(world, "X1", line("L1", "P-unlinked"))
    o = order(world, "X1")
    assert (o.status, o.unroutable) == ("unrouted", {"L1": "no_link"})
    world.report_stock("S2", "O2", "a", 99)
    assert order(world, "X1").status == "unrouted"


def test_rt3_out_of_stock_line_is_rerouted_when_stock_arrives(world):
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a"))))
    world.report_stock("S2", "O2", "a", 0)
    place(world, "X1", line("L1", "P1"))
    assert order(world, "X1").unroutable == {"L1": "out_of_stock"}
    world.report_stock("S2", "O2", "a", 4)
    o = order(world, "X1")
    assert (o.status, o.unroutable) == ("allocated", {})
    assert [d.trigger for d in world.decisions(*SHOP, "X1")] == ["placed", "reroute:stock"]


def test_rt3_supplier_inactive_and_off_shelf_lines_reroute_when_fixed(world):
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a"))))
    link(world, "P2", sku("K1", alt(comp("S3", "O3", "a"))))
    supplier(world, "S2", active=False)
    offer(world, "S3", "O3", {"a": 10}, on_shelf=False, price=None)
    place(world, "X1", line("L1", "P1"))
    place(world, "X2", line("L1", "P2"))
    assert order(world, "X1").unroutable == {"L1": "supplier_inactive"}
    assert order(world, "X2").unroutable == {"L1": "sku_off_shelf"}
    supplier(world, "S2", active=True)
    offer(world, "S3", "O3", {"a": 10}, on_shelf=True, price=None)
    assert order(world, "X1").status == order(world, "X2").status == "allocated"


def test_rt3_link_change_reroutes_waiting_lines(world):
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a"))))
    world.report_stock("S2", "O2", "a", 0)
    place(world, "X1", line("L1", "P1"))
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a")), alt(comp("S1", "O1", "a"))))
    assert chosen_supplier(world, "X1") == ["S1"]


def test_rt5_lines_to_one_supplier_form_one_allocation(world):
    offer(world, "S2", "O4", {"b": 10}, price="3.00")
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a"))))
    link(world, "P2", sku("K1", alt(comp("S2", "O4", "b"))))
    link(world, "P3", sku("K1", alt(comp("S1", "O1", "a"))))
    place(world, "X1", line("L1", "P1"), line("L2", "P2"), line("L3", "P3"))
    allocs = {a.supplier_id: a.line_ids for a in allocations(world, "X1")}
    assert allocs == {"S2": ("L1", "L2"), "S1": ("L3",)}


def test_rt6_decision_records_its_inputs_and_replays_to_the_same_answer(world):
    link(world, "P1", sku("K1", alt(comp("S1", "O1", "a")), alt(comp("S2", "O2", "a")), alt(comp("S3", "O3", "a"))))
    supplier(world, "S3", active=False, score=90)
    place(world, "X1", line("L1", "P1", qty=2))
    [d] = world.decisions(*SHOP, "X1")
    lf = d.input.lines[0]
    assert lf.link_version == 1
    assert [(c.components[0].supplier_id, str(c.components[0].unit_cost), c.components[0].available,
             c.components[0].score) for c in lf.candidates] == [
        ("S1", "12.00", 10, 70), ("S2", "10.00", 10, 90), ("S3", "10.00", 10, 90)]
    verdicts = d.decision.lines[0].candidates
    assert [(v.eligible, v.reason, v.lost) for v in verdicts] == [
        (True, None, "cost"), (True, None, None), (False, "supplier_inactive", None)]
    assert [str(v.cost) for v in verdicts] == ["24.00", "20.00", "20.00"]
    assert decide(d.input) == d.decision  # determinism: the recorded inputs give the same decision


def test_rt7_stock_is_reserved_at_once_so_two_orders_cannot_take_the_last_unit(world):
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a"))))
    world.report_stock("S2", "O2", "a", 1)
    place(world, "X1", line("L1", "P1"))
    place(world, "X2", line("L1", "P1"))
    assert order(world, "X1").status == "allocated"
    assert order(world, "X2").unroutable == {"L1": "out_of_stock"}
    assert world.offer("S2", "O2").available("a") == 0


def test_rt7_cancelled_allocation_releases_its_reservation(world):
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a"))))
    place(world, "X1", line("L1", "P1", qty=3))
    assert world.offer("S2", "O2").available("a") == 7
    [a] = allocations(world, "X1")
    world.cancel_allocation(a.allocation_id)
    assert world.offer("S2", "O2").available("a") == 10


def test_rt7_two_routers_racing_for_the_last_unit_never_both_get_it(app, store_url, tmp_path):
    """Two application instances on one store (two routers), many orders racing for 5 units."""
    supplier(app, "S2")
    offer(app, "S2", "O2", {"a": 5})
    link(app, "P1", sku("K1", alt(comp("S2", "O2", "a"))))

    def route(r: Reflow, prefix: str) -> None:
        for n in range(10):
            place(r, f"{prefix}{n}", line("L1", "P1"))

    assert race(app, route) == []
    allocated = [f"{p}{n}" for p in "AB" for n in range(10) if order(app, f"{p}{n}").status == "allocated"]
    assert len(allocated) == 5
    offer_state = app.offer("S2", "O2")
    assert (offer_state.reserved["a"], offer_state.available("a")) == (5, 0)


def race(app: Reflow, route) -> list[BaseException]:
    """Run ``route(router, prefix)`` on ``app`` (prefix A) and on a second application on the
    same store (prefix B) at once; the errors they raised."""
    second = Reflow(_same_env(app))
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def router(r: Reflow, prefix: str) -> None:
        try:
            barrier.wait()
            route(r, prefix)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=router, args=(r, p)) for r, p in ((app, "A"), (second, "B"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    second.close()
    return errors


def _same_env(app: Reflow) -> dict[str, str]:
    env = {k: v for k, v in app.env.items()} if hasattr(app.env, "items") else dict(app.env)
    env["REFLOW_CIPHER_KEY"] = app._cipher_key
    return env


def test_rt8_source_pool_admits_only_qualifying_suppliers_and_offers(world):
    good = dict(level="L3", service_stars=4.5, logistics_score=4, experience_score=3)
    supplier(world, "S1", score=70, **good)
    supplier(world, "S2", score=90, level=1, service_stars=4.5, logistics_score=4, experience_score=3)
    enrolled = OfferSku(supplier_sku_id="a", stock=500, enrolled=True, channel_price=Decimal("9.00"),
                        lowest_30d_price=Decimal("9.50"), market_price=Decimal("20.00"))
    terms = PoolTerms(dropship_free_shipping=True, returns_7d=True, growth_score=70)
    world.publish_offer("S1", "O1", "Offer O1", True, [enrolled], pool=terms, at=EARLIER)
    world.publish_offer("S2", "O2", "Offer O2", True, [enrolled], pool=terms, at=EARLIER)
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a")), alt(comp("S1", "O1", "a"))))
    place(world, "X0", line("L1", "P1"))
    assert chosen_supplier(world, "X0") == ["S2"]  # pool off: cheapest wins
    world.set_merchant_settings("default", source_pool=True, at=EARLIER)
    place(world, "X1", line("L1", "P1"))
    assert chosen_supplier(world, "X1") == ["S1"]  # S2 is level L1
    [d] = world.decisions(*SHOP, "X1")
    assert d.decision.lines[0].candidates[0].reason == "not_in_pool"
    # the offer side: a channel price above the 30-day lowest leaves the pool
    dear = OfferSku(supplier_sku_id="a", stock=500, enrolled=True, channel_price=Decimal("9.60"),
                    lowest_30d_price=Decimal("9.50"), market_price=Decimal("20.00"))
    world.publish_offer("S1", "O1", "Offer O1", True, [dear], pool=terms, at=EARLIER)
    place(world, "X2", line("L1", "P1"))
    assert order(world, "X2").unroutable == {"L1": "sku_off_shelf"}


def test_rt9_alternative_serves_only_its_provinces(world):
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a"), provinces=["广东省"]), alt(comp("S1", "O1", "a"))))
    place(world, "X1", line("L1", "P1"))  # buyer in 浙江省
    place(world, "X2", line("L1", "P1"), buyer=OTHER_BUYER)  # buyer in 广东省
    assert chosen_supplier(world, "X1") == ["S1"]
    assert chosen_supplier(world, "X2") == ["S2"]


def test_rt10_fewer_splits_within_tolerance(world):
    offer(world, "S1", "O5", {"b": 10}, price="5.00")
    offer(world, "S2", "O6", {"b": 10}, price="5.50")
    link(world, "P1", sku("K1", alt(comp("S2", "O2", "a")), alt(comp("S1", "O1", "a"))))  # S2 10, S1 12
    link(world, "P2", sku("K1", alt(comp("S1", "O5", "b")), alt(comp("S2", "O6", "b"))))  # S1 5, S2 5.5
    # cheapest split: S2 10 + S1 5 = 15; all S2: 15.50 (3.3% more); all S1: 17
    place(world, "X1", line("L1", "P1"), line("L2", "P2"))
    assert sorted(chosen_supplier(world, "X1")) == ["S1", "S2"]  # tolerance 0: stays split
    world.set_merchant_settings("default", split_tolerance="0.05", at=EARLIER)
    place(world, "X2", line("L1", "P1"), line("L2", "P2"))
    assert chosen_supplier(world, "X2") == ["S2"]
    [d] = world.decisions(*SHOP, "X2")
    assert d.decision.consolidated_to == "S2"
    assert d.decision.lines[1].candidates[0].lost == "fewer_splits"
    assert decide(d.input) == d.decision
