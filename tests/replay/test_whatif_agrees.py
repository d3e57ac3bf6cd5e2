"""What-if (A1) and live routing use one routing service: given the same new link, what-if picks
what the live engine picks, with the source pool on (RT8), provinces (RT9), fewer splits (RT10)
and merchant codes (L7). Issue 13: what-if's own copy of the facts ignored RT8."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from engine.values import OfferSku, PoolTerms
from replay.whatif import Change, replay
from tests.world import EARLIER, OTHER_BUYER, SHOP, T0, alt, comp, line, link, offer, place, sku, supplier

H = timedelta(hours=1)
GOOD = dict(level="L3", service_stars=4.5, logistics_score=4, experience_score=3)
TERMS = PoolTerms(dropship_free_shipping=True, returns_7d=True, growth_score=70)


def enrolled(sku_id: str, price: str) -> OfferSku:
    return OfferSku(supplier_sku_id=sku_id, stock=500, enrolled=True, channel_price=Decimal("9.00"),
                    lowest_30d_price=Decimal("9.50"), market_price=Decimal("20.00"))


@pytest.fixture
def world(app):
    supplier(app, "OLD")
    offer(app, "OLD", "O0", {"z": 100}, price="12.00")
    link(app, "P1", sku("K1", alt(comp("OLD", "O0", "z"))))
    supplier(app, "POOL", score=70, **GOOD)
    supplier(app, "CHEAP", score=90, level=1, service_stars=4.5, logistics_score=4, experience_score=3)
    app.publish_offer("POOL", "OP", "Pool offer", True, [enrolled("a", "9.00")], pool=TERMS, at=EARLIER)
    app.publish_offer("CHEAP", "OC", "Cheap offer", True, [enrolled("a", "9.00")], pool=TERMS, at=EARLIER)
    app.set_price("POOL", "a", Decimal("10.00"), effective_from=EARLIER - timedelta(days=1), at=EARLIER)
    app.set_price("CHEAP", "a", Decimal("5.00"), effective_from=EARLIER - timedelta(days=1), at=EARLIER)
    return app


def what_if_then_live(app, new_link, order_id: str, **place_kw) -> tuple[str, str]:
    """What-if for `order_id` under `new_link`, then the live engine with that link set."""
    place(app, order_id, line("L1", "P1"), at=T0, **place_kw)
    [row] = [r for r in replay(app, *SHOP, T0 - H, T0 + H, Change(product_id="P1", link=new_link)).rows
             if r.order_id == order_id]
    link(app, "P1", *new_link, at=T0 + H)
    place(app, f"{order_id}-live", line("L1", "P1"), at=T0 + 2 * H, **place_kw)
    [decision] = app.decisions(*SHOP, f"{order_id}-live")
    live = decision.input.lines[0].candidates[decision.decision.lines[0].chosen].components[0]
    return row.what_if, f"L1: {live.supplier_id}/{live.offer_id}/{live.supplier_sku_id}x1"


def test_A1_rt8_what_if_agrees_with_live_routing_with_the_source_pool_on(world):
    world.set_merchant_settings("default", source_pool=True, at=EARLIER)
    new = (sku("K1", alt(comp("CHEAP", "OC", "a")), alt(comp("POOL", "OP", "a"))),)
    what_if, live = what_if_then_live(world, new, "R1")
    assert live == "L1: POOL/OP/ax1"  # CHEAP is cheaper but level L1: outside the pool
    assert what_if == live


def test_A1_rt9_what_if_agrees_with_live_routing_on_provinces(world):
    new = (sku("K1", alt(comp("CHEAP", "OC", "a"), provinces=["广东省"]), alt(comp("POOL", "OP", "a"))),)
    what_if, live = what_if_then_live(world, new, "R2")  # buyer in 浙江省
    assert live == "L1: POOL/OP/ax1" and what_if == live
    what_if, live = what_if_then_live(world, new, "R3", buyer=OTHER_BUYER)  # buyer in 广东省
    assert live == "L1: CHEAP/OC/ax1" and what_if == live


def test_A1_l7_what_if_resolves_merchant_codes_as_live_routing_does(world):
    world.register_code("CUP-1", "item", [comp("POOL", "OP", "a")], at=EARLIER)
    place(world, "R4", line("L1", "P1", sku_id=None, code="CUP-1"), at=T0)
    new = (sku("K1", alt(comp("CHEAP", "OC", "a"))),)  # no entry for the code: L7 resolves it
    [row] = replay(world, *SHOP, T0 - H, T0 + H, Change(product_id="P1", link=new)).rows
    link(world, "P1", *new, at=T0 + H)
    place(world, "R4-live", line("L1", "P1", sku_id=None, code="CUP-1"), at=T0 + 2 * H)
    [decision] = world.decisions(*SHOP, "R4-live")
    assert decision.input.lines[0].matched_by == "item_code"
    assert row.what_if == "L1: POOL/OP/ax1"


def test_A1_rt10_what_if_agrees_with_live_routing_on_fewer_splits(world):
    """Two lines: P2 only at POOL; P1's new link prefers CHEAP. Within a 100 % tolerance the whole
    order goes to POOL, live and in the what-if alike."""
    world.set_merchant_settings("default", split_tolerance="1.0", at=EARLIER)
    link(world, "P2", sku("K1", alt(comp("POOL", "OP", "a"))))
    new = (sku("K1", alt(comp("CHEAP", "OC", "a")), alt(comp("POOL", "OP", "a"))),)
    place(world, "R5", line("L1", "P1"), line("L2", "P2"), at=T0)
    [row] = replay(world, *SHOP, T0 - H, T0 + H, Change(product_id="P1", link=new)).rows
    link(world, "P1", *new, at=T0 + H)
    place(world, "R5-live", line("L1", "P1"), line("L2", "P2"), at=T0 + 2 * H)
    [decision] = world.decisions(*SHOP, "R5-live")
    assert decision.decision.consolidated_to == "POOL"
    assert row.what_if.startswith("L1: POOL/OP/ax1")
