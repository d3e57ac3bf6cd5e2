"""Aggregates alone, without a store or the application: each decides its own rules (issue 13)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from engine.allocations import Allocation, AllocLine
from engine.catalog import Offer
from engine.errors import InvalidCommand, LinkRefused, NotFound, TrackingRefused, UnknownOffer
from engine.linking import Link, StockRule
from engine.merchants import CodeBook
from engine.orders import Order
from engine.policy import CandidateFacts, ComponentFacts, Decision, LineDecision, LineFacts, RoutingInput
from engine.privacy import Recipient
from engine.values import AllocRef, OfferSku, PoolTerms, Region, SkuLink, SkuQty
from tests.world import T0, alt, comp, line, sku

H = timedelta(hours=1)
REGION = Region(province="浙江省", city="杭州市", district="西湖区")


def an_offer(stock: int = 5) -> Offer:
    o = Offer(uuid4())
    o.publish(T0, supplier_id="S1", offer_id="O1", title="Cup", on_shelf=True,
              skus=(OfferSku(supplier_sku_id="a", stock=stock),), private_to=None, expires_at=None,
              pool=PoolTerms())
    return o


def an_allocation() -> Allocation:
    a = Allocation(uuid4())
    a.allocate(T0, allocation_id="A1", platform="douyin", shop_id="s", order_id="X1", merchant_id="m",
               supplier_id="S1", lines=(AllocLine(line_id="L1", offer_id="O1", supplier_sku_id="a", title="Cup",
                                                  spec="", qty=1, unit_cost=None, amount=None),),
               recipient=Recipient(name="张*", phone="138****5678", province="浙江省", city="杭州市",
                                   district="西湖区", address="****"),
               recipient_token="rt_x", ship_by=T0 + 48 * H)
    return a


def test_rt1_rt7_offer_reports_reserves_and_releases_on_its_own():
    o = an_offer(5)
    assert o.report_stock("a", 5, T0 + H) is False  # the same number again
    assert o.report_stock("a", 9, T0 - H) is False  # older than what the offer knows
    with pytest.raises(UnknownOffer, match="supplier_sku_id"):
        o.report_stock("zz", 1, T0 + H)
    with pytest.raises(InvalidCommand, match="rule RT1: stock"):
        o.report_stock("a", -1, T0 + H)
    o.reserve("A1", (SkuQty(supplier_sku_id="a", qty=2),), T0 + H)
    assert o.available("a") == 3
    o.release("A1", "intercepted", T0 + 2 * H)
    o.release("A1", "intercepted", T0 + 2 * H)  # once only
    assert o.available("a") == 5 and len(o.pending) == 3


def test_m2_offer_expires_unless_renewed():
    o = Offer(uuid4())
    o.publish(T0, supplier_id="S1", offer_id="O1", title="Cup", on_shelf=True,
              skus=(OfferSku(supplier_sku_id="a", stock=1),), private_to=("m1",), expires_at=None, pool=PoolTerms())
    assert o.expired(T0 + timedelta(days=30)) and not o.open_to("m2")  # M1 too
    o.renew(T0 + timedelta(days=29))
    assert not o.expired(T0 + timedelta(days=30))


def test_t1_i7_allocation_decides_its_tracking():
    a = an_allocation()
    with pytest.raises(TrackingRefused, match="rule T1: supplier_id"):
        a.upload_tracking("S2", "SF", "SF0000000001", T0 + H)
    with pytest.raises(TrackingRefused, match="rule T1: tracking_no"):
        a.upload_tracking("S1", "SF", "x", T0 + H)
    assert a.upload_tracking("S1", "SF", "SF0000000001", T0 + H) == "tracked"
    assert a.upload_tracking("S1", "SF", "SF0000000001", T0 + 2 * H) == "duplicate"
    b = an_allocation()
    b.stop("intercepted", "address changed", T0 + H)
    assert b.upload_tracking("S1", "SF", "SF0000000002", T0 + 2 * H) == "loss_risk"
    assert b.upload_tracking("S1", "SF", "SF0000000002", T0 + 3 * H) == "duplicate"  # one risk, not two
    assert b.loss_risks == 1


def test_i5_i8_allocation_decides_cancellation_and_intercept_answers():
    a = an_allocation()
    with pytest.raises(InvalidCommand, match="rule I8: allocation_id"):
        a.answer_intercept("S1", "stopped", None, None, T0 + H)  # never intercepted
    a.upload_tracking("S1", "SF", "SF0000000001", T0 + H)
    with pytest.raises(InvalidCommand, match="rule I5"):
        a.check_cancellable()
    b = an_allocation()
    b.stop("intercepted", "refund", T0 + H)
    assert b.answer_intercept("S1", "too_late", "SF", "SF0000000003", T0 + 2 * H) is True
    assert b.answer_intercept("S1", "stopped", None, None, T0 + 3 * H) is False  # answered already
    assert (b.status, b.tracking_no) == ("shipped", "SF0000000003")


def test_l8_link_set_bumps_its_version_only_on_a_change():
    link = Link(uuid4())
    skus = (sku("K1", alt(comp("S1", "O1", "a"))),)
    assert link.set("douyin", "s", "P1", "multi", skus, T0) is True
    assert link.set("douyin", "s", "P1", "multi", skus, T0 + H) is False
    assert link.unlink(T0 + 2 * H) is True and link.unlink(T0 + 3 * H) is False
    assert link.link_version == 2
    with pytest.raises(LinkRefused, match="rule L5"):
        link.set("douyin", "s", "P1", "single", (sku("K1", alt(comp("S1", "O1", "a")), alt(comp("S2", "O2", "a"))),), T0)


def test_l6_l2_link_matches_sku_then_code_then_product():
    link = Link(uuid4())
    link.set("douyin", "s", "P1", "multi", (
        sku("K1", alt(comp("S1", "O1", "a"))), SkuLink(merchant_code="MC", alternatives=(alt(comp("S2", "O2", "a")),)),
    ), T0)
    assert link.entry_for("K1", None)[1] == "sku"
    assert link.entry_for(None, "MC")[1] == "merchant_code"
    assert link.entry_for("K9", None) is None and link.product_entry() is None


def test_s2_s3_link_publishes_stock_only_when_it_changes():
    link = Link(uuid4())
    entry = sku("K1", alt(comp("S1", "O1", "a")))
    link.set("douyin", "s", "P1", "multi", (entry,), T0)
    link.set_rule("douyin", "s", "P1", "K1", StockRule(ratio=Decimal("0.5"), min_stock=2), T0)
    link.publish_stock(entry, 9, T0)
    link.publish_stock(entry, 8, T0 + H)  # floor(8 x 0.5) == floor(9 x 0.5): nothing new
    link.publish_stock(entry, 1, T0 + 2 * H)  # below the minimum: 0
    assert [e.stock for e in link.pending if type(e).__name__ == "StockPublished"] == [4, 0]


def test_l7_code_book_refuses_a_second_code_of_the_same_kind():
    book = CodeBook(uuid4())
    book.register("CUP", "item", alt(comp("S1", "O1", "a")), T0)
    book.register("CUP", "item", alt(comp("S1", "O1", "a")), T0)  # the same again: nothing
    with pytest.raises(LinkRefused, match="rule L7"):
        book.register("CUP", "item", alt(comp("S2", "O2", "a")), T0)
    book.register("CUP", "bundle", alt(comp("S2", "O2", "a")), T0)
    assert book.resolve("CUP")[0] == "bundle" and len(book.pending) == 2


def placed_order() -> Order:
    o = Order(uuid4())
    o.place(T0, platform="douyin", shop_id="s", order_id="X1", merchant_id="m", lines=(line("L1", "P1"),),
            region=REGION, sealed_buyer=b"sealed")
    return o


def test_i4_order_keeps_the_newer_address():
    o = placed_order()
    assert o.change_address(REGION, b"new", T0 + 2 * H) is True
    assert o.change_address(REGION, b"older", T0 + H) is False
    assert o.sealed == b"new"


def test_rt4_order_aftersales_block_routing_until_closed():
    o = placed_order()
    with pytest.raises(InvalidCommand, match="rule I1: line_id"):
        o.open_aftersale("AS-1", "refund", "L9", False, T0 + H)
    with pytest.raises(NotFound, match="aftersale_id"):
        o.close_aftersale("AS-1", "refunded", T0 + H)
    o.open_aftersale("AS-1", "return", None, False, T0 + H)
    assert o.routable_lines() == []
    assert o.close_aftersale("AS-1", "rejected", T0 + 2 * H) is True
    assert o.close_aftersale("AS-1", "rejected", T0 + 3 * H) is False
    assert [x.line_id for x in o.routable_lines()] == ["L1"]


def test_l4_order_knows_which_parts_of_a_bundle_line_are_missing():
    o = placed_order()
    parts = (ComponentFacts(supplier_id="S1", offer_id="O1", supplier_sku_id="a", qty=1, need=1,
                            supplier_active=True, on_shelf=True, available=5, unit_cost=None, score=0),
             ComponentFacts(supplier_id="S2", offer_id="O2", supplier_sku_id="b", qty=2, need=2,
                            supplier_active=True, on_shelf=True, available=5, unit_cost=None, score=0))
    inp = RoutingInput(at=T0, province="浙江省", lines=(LineFacts(line_id="L1", qty=1, candidates=(
        CandidateFacts(index=0, components=parts),)),))
    o.record_route(inp, Decision(lines=(LineDecision(line_id="L1", candidates=(), chosen=0),)), (
        AllocRef(allocation_id="A1", supplier_id="S1", line_ids=("L1",)),
        AllocRef(allocation_id="A2", supplier_id="S2", line_ids=("L1",))), "placed", T0)
    assert o.covered("L1") and o.status == "allocated"
    o.allocation_ended("A2", "intercepted", "address changed", False, T0 + H)
    rest = o.missing("L1")
    assert [(c.supplier_id, c.need) for c in rest.components] == [("S2", 2)]
    assert o.status == "partially_allocated" and [x.line_id for x in o.routable_lines()] == ["L1"]  # S1 still ships
    o.allocation_ended("A1", "intercepted", "address changed", False, T0 + H)
    assert o.missing("L1") is None  # nothing of it is live: routed whole again
