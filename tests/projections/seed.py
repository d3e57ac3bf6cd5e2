"""Seed-like scenarios for projection and statement tests, built with the engine itself."""

from __future__ import annotations

from datetime import timedelta

from engine.app import Reflow
from tests.world import T0, allocations, alt, comp, line, link, offer, place, sku, supplier

SHOP = ("douyin", "dy-shop-1")
H = timedelta(hours=1)


def only(app: Reflow, order_id: str, supplier_id: str | None = None):
    found = [a for a in allocations(app, order_id) if supplier_id in (None, a.supplier_id)]
    assert len(found) == 1, found
    return found[0]


def track(app: Reflow, order_id: str, at, supplier_id: str = "S1", no: str | None = None) -> str:
    a = only(app, order_id, supplier_id)
    return app.upload_tracking(supplier_id, a.allocation_id, "YTO", no or f"YT{abs(hash(order_id)) % 10**10:010d}",
                               at=at)


def seed(app: Reflow) -> Reflow:
    """Orders routed; one on time, one late, one intercepted by an after-sale that then becomes a
    loss risk, a post-shipment after-sale, one unroutable, one partial, one cancelled, one held."""
    supplier(app, "S1")
    supplier(app, "S2")
    offer(app, "S1", "O1", {"a": 100, "b": 100}, price={"a": "10.00", "b": "4.50"})
    offer(app, "S2", "O2", {"c": 100}, price="7.00")
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    link(app, "P2", sku("K1", alt(comp("S2", "O2", "c"))))
    link(app, "P3", sku("K1", alt(comp("S1", "O1", "b", qty=2))))

    place(app, "ONTIME", line("L1", "P1", qty=2, price="29.90"), at=T0)
    track(app, "ONTIME", T0 + 2 * H)
    place(app, "LATE", line("L1", "P1"), at=T0)
    track(app, "LATE", T0 + 50 * H)
    place(app, "INTERCEPT", line("L1", "P1"), at=T0)
    app.open_aftersale(*SHOP, "INTERCEPT", "AS-1", "refund", at=T0 + H)
    track(app, "INTERCEPT", T0 + 3 * H)  # I7: a loss risk
    place(app, "POST", line("L1", "P2", price="19.90"), at=T0 + H, channel="live")
    track(app, "POST", T0 + 2 * H, supplier_id="S2")
    app.open_aftersale(*SHOP, "POST", "AS-2", "return", at=T0 + 5 * H)  # I2: post-shipment
    place(app, "NOLINK", line("L1", "P9"), at=T0)
    place(app, "PARTIAL", line("L1", "P1"), line("L2", "P9"), at=T0)
    place(app, "CANCEL", line("L1", "P2"), at=T0)
    app.cancel_order(*SHOP, "CANCEL", at=T0 + H)
    place(app, "HELD", line("L1", "P1"), at=T0)
    app.set_review(*SHOP, "HELD", True, reason="suspicious", at=T0 + H)
    place(app, "TWO", line("L1", "P1"), line("L2", "P2"), line("L3", "P3"), at=T0 + 2 * H)
    return app


ORDERS = ["ONTIME", "LATE", "INTERCEPT", "POST", "NOLINK", "PARTIAL", "CANCEL", "HELD", "TWO"]


def seed_lifecycle(app: Reflow) -> list[str]:
    """Later engine rules: a manual cancellation withholds lines until release (I5), a refunded line
    no longer needs a supplier, a too-late intercept answer ships anyway (I8)."""
    seed(app)
    place(app, "WITHHELD", line("L1", "P1"), at=T0 + 3 * H)
    app.cancel_allocation(only(app, "WITHHELD").allocation_id, at=T0 + 4 * H)
    place(app, "RELEASED", line("L1", "P1"), at=T0 + 3 * H)
    app.cancel_allocation(only(app, "RELEASED").allocation_id, at=T0 + 4 * H)
    app.release_order(*SHOP, "RELEASED", at=T0 + 5 * H)
    place(app, "REFUND", line("L1", "P1"), line("L2", "P9"), at=T0 + 3 * H)
    app.open_aftersale(*SHOP, "REFUND", "AS-R", "refund", line_id="L2", at=T0 + 4 * H)
    app.close_aftersale(*SHOP, "REFUND", "AS-R", "refunded", at=T0 + 5 * H)
    place(app, "TOOLATE", line("L1", "P2"), at=T0 + 3 * H)
    app.open_aftersale(*SHOP, "TOOLATE", "AS-T", "refund", at=T0 + 4 * H)
    [a] = [a for a in allocations(app, "TOOLATE")]
    app.answer_intercept("S2", a.allocation_id, "too_late", carrier="SF", tracking_no="SF1234567890",
                         at=T0 + 5 * H)
    return ORDERS + ["WITHHELD", "RELEASED", "REFUND", "TOOLATE"]
