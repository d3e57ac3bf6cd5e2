"""The per-shop-product backlog of order lines waiting to be routed (RT3, L10)."""

from __future__ import annotations

from datetime import datetime

from engine.base import Aggregate, Event, Value


class Parked(Value, frozen=True):
    order_id: str
    reason: str
    placed_at: datetime
    suppliers: tuple[str, ...] = ()


class Backlog(Aggregate):
    """Orders of one shop product with lines waiting: `no_link` ones wait for pull pre-link (L10),
    the others are re-routed when stock, a supplier, an offer or the link changes (RT3)."""

    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.platform = self.shop_id = self.product_id = ""
        self.waiting: dict[str, Parked] = {}

    def park(self, platform: str, shop_id: str, product_id: str, entry: Parked) -> None:
        if self.waiting.get(entry.order_id) != entry:
            self.trigger(LinesParked, entry.placed_at, platform=platform, shop_id=shop_id,
                         product_id=product_id, entry=entry)

    def unpark(self, order_id: str, at: datetime | None) -> None:
        if order_id in self.waiting:
            self.trigger(LinesUnparked, at or self.waiting[order_id].placed_at, order_id=order_id)


class LinesParked(Event, frozen=True):
    platform: str
    shop_id: str
    product_id: str
    entry: Parked

    def apply(self, b: Backlog) -> None:
        b.platform, b.shop_id, b.product_id = self.platform, self.shop_id, self.product_id
        b.waiting[self.entry.order_id] = self.entry


class LinesUnparked(Event, frozen=True):
    order_id: str

    def apply(self, b: Backlog) -> None:
        b.waiting.pop(self.order_id, None)
