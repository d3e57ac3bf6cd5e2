"""NATS in: one decoded wire message becomes one engine command (CONTRACT section 1).

The wire types (adapters/messages.py) check the shape of a message; ``command`` turns it into its
engine command (engine/commands.py); every business check is the engine's.

``handle(app, subject, data, received_at)`` decodes, validates and applies a message, and says
whether it was applied or must go to the dead letters (CONTRACT section 3) with a one-line reason.
A refusal by the engine (``DomainError``) or by the wire types (``BadMessage``) is a dead letter;
anything else (the store is down) propagates, so the message is not acknowledged and comes back.

Messages without a business time of their own (``order.review``, ``link.set``, ...) take the
time the broker stored them (``received_at``), so a redelivery carries the same time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

import msgspec

from adapters import messages as m
from adapters.messages import BadMessage, decode, one_line
from engine import commands as c
from engine import ids
from engine.app import Reflow
from engine.errors import DomainError
from engine.values import Alternative, Buyer, Component, LineIn, OfferSku, PoolTerms, SkuLink


@dataclass(frozen=True)
class Outcome:
    """What became of one message: applied (``error`` is None) or dead-lettered."""

    error: str | None = None

    @property
    def dead(self) -> bool:
        return self.error is not None


APPLIED = Outcome()
ALREADY_APPLIED = Outcome()
"""A redelivered message whose effect was stored before: acknowledged, not applied again."""


def handle(app: Reflow, subject: str, data: bytes, received_at: datetime) -> Outcome:
    """Apply one inbound message. Raises only on failures that are not the message's fault."""
    try:
        message = decode(subject, data)
    except BadMessage as bad:
        return Outcome(bad.reason)
    return handle_decoded(app, subject, message, received_at)


def handle_decoded(app: Reflow, subject: str, message: m.Inbound, received_at: datetime) -> Outcome:
    """Apply one message already decoded by ``decode``."""
    try:
        app.execute(command(message, received_at))
    except DomainError as refused:
        return refusal(subject, message, refused)
    return APPLIED


def new_order_ids(messages: list[object]) -> set[UUID]:
    """The aggregate ids of the orders these messages place (to look them up all at once)."""
    return {ids.order_id(x.platform, x.shop_id, x.order_id) for x in messages if isinstance(x, m.OrderPlaced)}


def refusal(subject: str, message: object, refused: DomainError) -> Outcome:
    """The dead letter for a message the engine refused."""
    return Outcome(_reason(subject, str(refused), message))


def _reason(subject: str, text: str, message: object) -> str:
    """``<subject>: <engine message>`` on one line, with any buyer detail blanked out (P2)."""
    buyer = getattr(message, "buyer", None)
    if buyer is not None:
        for value in (buyer.name, buyer.phone, buyer.address):
            if len(value) >= 2:
                text = text.replace(value, "***")
    return one_line(f"{subject}: {text}")


def apply(app: Reflow, message: m.Inbound, now: datetime) -> object:
    """Execute the engine command a wire message stands for; its result."""
    return app.execute(command(message, now))


def command(message: m.Inbound, now: datetime) -> c.Command:
    """The engine command a wire message stands for. Messages without a business time of their
    own take ``now``, the time the broker stored them (so a redelivery carries the same time)."""
    return _COMMANDS[type(message)](message, now)


def _order_key(x: m.Inbound) -> dict[str, str]:
    return {"platform": x.platform, "shop_id": x.shop_id, "order_id": x.order_id}  # type: ignore[union-attr]


def _cancel(x: m.AllocationCancel, now: datetime) -> c.Command:
    if x.allocation_id is not None:
        return c.CancelAllocation(at=now, allocation_id=x.allocation_id, reason=x.reason)
    return c.CancelAllocations(at=now, platform=x.platform, shop_id=x.shop_id,  # type: ignore[arg-type]
                               order_ids=(x.order_id,), reason=x.reason)  # type: ignore[arg-type]


_COMMANDS: dict[type, Callable[[Any, datetime], c.Command]] = {
    m.OrderPlaced: lambda x, now: c.PlaceOrder(
        at=x.placed_at, **_order_key(x), buyer=_buyer(x.buyer), lines=tuple(_line(y) for y in x.lines),
        channel=x.channel, remark=x.remark),
    m.OrderAddressChanged: lambda x, now: c.ChangeAddress(at=x.changed_at, **_order_key(x), buyer=_buyer(x.buyer)),
    m.OrderReview: lambda x, now: c.SetReview(at=now, **_order_key(x), under_review=x.under_review,
                                             reason=x.reason),
    m.OrderCancelled: lambda x, now: c.CancelOrder(at=x.cancelled_at, **_order_key(x)),
    m.OrderShipped: lambda x, now: c.ShipElsewhere(at=x.shipped_at, **_order_key(x), carrier=x.carrier,
                                                  tracking_no=x.tracking_no),
    m.OrderReleased: lambda x, now: c.ReleaseOrder(at=now, **_order_key(x)),
    m.AftersaleOpened: lambda x, now: c.OpenAftersale(at=x.opened_at, **_order_key(x), aftersale_id=x.aftersale_id,
                                                     kind=x.kind, line_id=x.line_id),
    m.AftersaleClosed: lambda x, now: c.CloseAftersale(at=x.closed_at, **_order_key(x),
                                                      aftersale_id=x.aftersale_id, outcome=x.outcome),
    m.LinkSet: lambda x, now: c.SetLink(at=now, platform=x.platform, shop_id=x.shop_id, product_id=x.product_id,
                                       mode=x.mode, skus=tuple(_sku_link(s) for s in x.skus)),
    m.LinkRemoved: lambda x, now: c.RemoveLink(at=now, platform=x.platform, shop_id=x.shop_id,
                                              product_id=x.product_id),
    m.CodeRegistered: lambda x, now: c.RegisterCode(at=now, code=x.code, kind=x.kind, merchant_id=x.merchant_id,
                                                   components=tuple(_component(y) for y in x.components)),
    m.StockRule: lambda x, now: c.SetStockRule(at=now, platform=x.platform, shop_id=x.shop_id,
                                              product_id=x.product_id, sku_id=x.sku_id, ratio=x.ratio,
                                              min_stock=x.min_stock),
    m.PrelinkPull: lambda x, now: c.PullPrelink(at=now, platform=x.platform, shop_id=x.shop_id,
                                               product_id=x.product_id,
                                               window_days=x.window_days or c.PREPULL_WINDOW_DAYS),
    m.SupplierUpserted: lambda x, now: c.UpsertSupplier(
        at=now, supplier_id=x.supplier_id, name=x.name, active=x.active, ship_within_hours=x.ship_within_hours,
        fulfilment_score=_whole(x.fulfilment_score), level=x.level, service_stars=_dec(x.service_stars),
        logistics_score=_dec(x.logistics_score), experience_score=_dec(x.experience_score),
        daily_capacity=x.daily_capacity),
    m.SupplierOffer: lambda x, now: c.PublishOffer(
        at=now, supplier_id=x.supplier_id, offer_id=x.offer_id, title=x.title, on_shelf=x.on_shelf,
        skus=tuple(_offer_sku(s) for s in x.skus),
        private_to=tuple(x.private_to) if x.private_to is not None else None, expires_at=x.expires_at,
        pool=_pool(x)),
    m.OfferRenewed: lambda x, now: c.RenewOffer(at=x.renewed_at, supplier_id=x.supplier_id, offer_id=x.offer_id),
    m.SupplierStock: lambda x, now: c.ReportStock(at=x.at, supplier_id=x.supplier_id, offer_id=x.offer_id,
                                                 supplier_sku_id=x.supplier_sku_id, stock=x.stock),
    m.SupplierPrice: lambda x, now: c.SetPrice(at=now, supplier_id=x.supplier_id, supplier_sku_id=x.supplier_sku_id,
                                              price=x.price, effective_from=x.effective_from, tier=x.tier),
    m.MerchantTier: lambda x, now: c.SetMerchantTier(at=now, supplier_id=x.supplier_id, merchant_id=x.merchant_id,
                                                    tier=x.tier),
    m.ShopRegistered: lambda x, now: c.RegisterShop(at=now, platform=x.platform, shop_id=x.shop_id,
                                                   merchant_id=x.merchant_id),
    m.MerchantSettings: lambda x, now: c.ChangeMerchantSettings(
        at=now, merchant_id=x.merchant_id, source_pool=x.source_pool, split_tolerance=x.split_tolerance,
        hold_amount_over=x.hold_amount_over,
        hold_remark_words=tuple(x.hold_remark_words) if x.hold_remark_words is not None else None,
        hold_out_of_stock=x.hold_out_of_stock, split_lines=x.split_lines,
        reroute_overdue_hours=None if x.reroute_overdue_hours is msgspec.UNSET else x.reroute_overdue_hours or 0),
    m.TrackingUploaded: lambda x, now: c.UploadTracking(at=x.uploaded_at, supplier_id=x.supplier_id,
                                                       allocation_id=x.allocation_id, carrier=x.carrier,
                                                       tracking_no=x.tracking_no),
    m.InterceptAnswered: lambda x, now: c.AnswerIntercept(at=x.answered_at, supplier_id=x.supplier_id,
                                                         allocation_id=x.allocation_id, outcome=x.outcome,
                                                         carrier=x.carrier, tracking_no=x.tracking_no),
    m.AllocationCancel: _cancel,
    m.AllocationRejected: lambda x, now: c.RejectAllocation(at=x.rejected_at, supplier_id=x.supplier_id,
                                                           allocation_id=x.allocation_id, reason=x.reason,
                                                           note=x.note),
    m.ClockTick: lambda x, now: c.PassTime(at=x.at, received_at=now),
    m.ReturnRequested: lambda x, now: c.RequestReturn(at=x.requested_at, **_order_key(x), aftersale_id=x.aftersale_id),
    m.ReturnAnswered: lambda x, now: c.AnswerReturn(at=x.answered_at, supplier_id=x.supplier_id, return_id=x.return_id,
                                                   outcome=x.outcome, reason=x.reason),
}
"""Every inbound subject's wire type and the engine command it becomes."""


# -- wire values to engine values -------------------------------------------------------------


def _buyer(b: m.Buyer) -> Buyer:
    return Buyer(name=b.name, phone=b.phone, province=b.province, city=b.city,
                 district=b.district, address=b.address)


def _line(x: m.OrderLine) -> LineIn:
    return LineIn(line_id=x.line_id, product_id=x.product_id, sku_id=x.sku_id,
                  merchant_code=x.merchant_code, title=x.title, spec=x.spec, qty=x.qty,
                  unit_price=x.unit_price)


def _component(c: m.LinkComponent) -> Component:
    return Component(supplier_id=c.supplier_id, offer_id=c.offer_id,
                     supplier_sku_id=c.supplier_sku_id, qty=c.qty)


def _sku_link(s: m.LinkSku) -> SkuLink:
    return SkuLink(
        sku_id=s.sku_id, merchant_code=s.merchant_code,
        alternatives=tuple(
            Alternative(components=tuple(_component(c) for c in a.components), priority=a.priority,
                        provinces=tuple(a.provinces) if a.provinces is not None else None)
            for a in s.alternatives
        ),
    )


def _offer_sku(s: m.OfferSku) -> OfferSku:
    return OfferSku(supplier_sku_id=s.supplier_sku_id, stock=s.stock, spec=s.spec,
                    enrolled=bool(s.pool_enrolled), channel_price=s.channel_price,
                    lowest_30d_price=s.lowest_price_30d, market_price=s.market_price)


def _pool(o: m.SupplierOffer) -> PoolTerms:
    return PoolTerms(dropship_free_shipping=bool(o.dropship_free_shipping),
                     returns_7d=bool(o.seven_day_returns), growth_score=_whole(o.growth_score) or 0)


def _dec(value: float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _whole(score: float | None) -> int | None:
    """The engine keeps 0-100 scores as whole numbers; the wire allows ``96.5`` (rounds half up)."""
    if score is None:
        return None
    return int(Decimal(str(score)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
