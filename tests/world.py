"""Builders for engine tests: a small dropshipping world, written as a merchant would say it."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from engine.app import Reflow
from engine.servicelevel import LOCAL
from engine.values import Alternative, Buyer, Component, LineIn, OfferSku, SkuLink

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=LOCAL)  # a Monday morning, China time
EARLIER = T0 - timedelta(days=1)

BUYER = Buyer(name="张三丰", phone="13812345678", province="浙江省", city="杭州市",
              district="西湖区", address="文三路100号5幢301室")
OTHER_BUYER = Buyer(name="李四", phone="13900001111", province="广东省", city="深圳市",
                    district="南山区", address="科技园南区8栋1204")
SHOP = ("douyin", "dy-shop-1")


def supplier(app: Reflow, sid: str, *, active: bool = True, score: int = 80, hours: int = 48,
             **kw) -> None:
    app.upsert_supplier(sid, f"Supplier {sid}", active, fulfilment_score=score,
                        ship_within_hours=hours, at=EARLIER, **kw)


def offer(app: Reflow, sid: str, oid: str, stock: dict[str, int], *, on_shelf: bool = True,
          price: str | dict[str, str] | None = "10.00", **kw) -> None:
    app.publish_offer(sid, oid, f"Offer {oid}", on_shelf,
                      [OfferSku(supplier_sku_id=k, stock=v, spec=f"spec {k}") for k, v in stock.items()],
                      at=kw.pop("at", EARLIER), **kw)
    if price is not None:
        prices = price if isinstance(price, dict) else {k: price for k in stock}
        for sku, p in prices.items():
            app.set_price(sid, sku, Decimal(p), effective_from=EARLIER - timedelta(days=1), at=EARLIER)


def comp(sid: str, oid: str, sku: str, qty: int = 1) -> Component:
    return Component(supplier_id=sid, offer_id=oid, supplier_sku_id=sku, qty=qty)


def alt(*components: Component, priority: int | None = None, provinces=None) -> Alternative:
    return Alternative(components=tuple(components), priority=priority,
                       provinces=tuple(provinces) if provinces else None)


def sku(sku_id: str | None, *alternatives: Alternative, code: str | None = None) -> SkuLink:
    return SkuLink(sku_id=sku_id, merchant_code=code, alternatives=tuple(alternatives))


def link(app: Reflow, product: str, *skus: SkuLink, mode: str = "multi", at: datetime = EARLIER,
         shop: tuple[str, str] = SHOP) -> int:
    return app.set_link(shop[0], shop[1], product, mode, skus, at=at)


def line(line_id: str, product: str, sku_id: str | None = "K1", qty: int = 1, price: str = "29.90",
         code: str | None = None) -> LineIn:
    return LineIn(line_id=line_id, product_id=product, sku_id=sku_id, merchant_code=code,
                  title=f"Product {product}", qty=qty, unit_price=Decimal(price))


def place(app: Reflow, order_id: str, *lines: LineIn, at: datetime = T0, buyer: Buyer = BUYER,
          shop: tuple[str, str] = SHOP, **kw) -> str:
    return app.place_order(shop[0], shop[1], order_id, at, buyer, lines, **kw)


def allocations(app: Reflow, order_id: str, shop: tuple[str, str] = SHOP):
    return app.allocations_of(shop[0], shop[1], order_id)


def order(app: Reflow, order_id: str, shop: tuple[str, str] = SHOP):
    return app.order(shop[0], shop[1], order_id)


def stored(app: Reflow) -> int:
    """How many events the store holds (to prove a refused command stored nothing)."""
    return app.recorder.max_notification_id() or 0


def live(app: Reflow, order_id: str, shop: tuple[str, str] = SHOP):
    """The order's allocations that will ship (active, tracked or shipped)."""
    return [a for a in allocations(app, order_id, shop) if a.status in ("active", "tracked", "shipped")]


def events(app: Reflow, cls: type) -> list:
    """Every stored event of one type, in log order."""
    from engine.base import decode_event, topics_of

    notes = app.recorder.select_notifications(start=1, limit=100_000, topics=list(topics_of(cls)))
    return [decode_event(n.topic, n.state) for n in notes]


def two_sources(app: Reflow) -> Reflow:
    """A cheap supplier SUP-A and a dearer SUP-B for the same shop SKU (P1/K1)."""
    supplier(app, "SUP-A")
    supplier(app, "SUP-B")
    offer(app, "SUP-A", "OA", {"a1": 10}, price="10.00")
    offer(app, "SUP-B", "OB", {"b1": 10}, price="12.00")
    link(app, "P1", sku("K1", alt(comp("SUP-A", "OA", "a1")), alt(comp("SUP-B", "OB", "b1"))))
    return app
