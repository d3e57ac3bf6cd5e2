"""NATS in: one decoded wire message becomes one engine command (CONTRACT section 1).

``handle(app, subject, data, received_at)`` decodes, validates and applies a message, and says
whether it was applied or must go to the dead letters (CONTRACT section 3) with a one-line reason.
A refusal by the engine (``DomainError``) or by the wire types (``BadMessage``) is a dead letter;
anything else (the store is down) propagates, so the message is not acknowledged and comes back.

Messages without a business time of their own (``order.review``, ``link.set``, ...) take the
time the broker stored them (``received_at``), so a redelivery carries the same time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from uuid import UUID

from adapters import messages as m
from adapters.messages import BadMessage, decode, one_line
from engine import ids
from engine.app import Reflow
from engine.catalog import PoolTerms
from engine.errors import DomainError
from engine.values import Alternative, Buyer, Component, LineIn, OfferSku, SkuLink


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
        apply(app, message, received_at)
    except DomainError as refused:
        return Outcome(_reason(subject, str(refused), message))
    return APPLIED


def new_order_ids(messages: list[object]) -> set[UUID]:
    """The aggregate ids of the orders these messages place (to look them up all at once)."""
    return {ids.order_id(x.platform, x.shop_id, x.order_id) for x in messages if isinstance(x, m.OrderPlaced)}


def _reason(subject: str, text: str, message: object) -> str:
    """``<subject>: <engine message>`` on one line, with any buyer detail blanked out (P2)."""
    buyer = getattr(message, "buyer", None)
    if buyer is not None:
        for value in (buyer.name, buyer.phone, buyer.address):
            if len(value) >= 2:
                text = text.replace(value, "***")
    return one_line(f"{subject}: {text}")


def apply(app: Reflow, message: m.Inbound, now: datetime) -> object:
    """Call the engine command a wire message stands for."""
    match message:
        case m.OrderPlaced():
            return app.place_order(
                message.platform, message.shop_id, message.order_id, message.placed_at,
                _buyer(message.buyer), [_line(x) for x in message.lines],
                channel=message.channel, remark=message.remark,
            )
        case m.OrderAddressChanged():
            return app.change_address(message.platform, message.shop_id, message.order_id,
                                      _buyer(message.buyer), at=message.changed_at)
        case m.OrderReview():
            return app.set_review(message.platform, message.shop_id, message.order_id,
                                  message.under_review, message.reason, at=now)
        case m.OrderCancelled():
            return app.cancel_order(message.platform, message.shop_id, message.order_id,
                                    at=message.cancelled_at)
        case m.OrderShipped():
            return app.ship_elsewhere(message.platform, message.shop_id, message.order_id,
                                      message.carrier, message.tracking_no, at=message.shipped_at)
        case m.OrderReleased():
            return app.release_order(message.platform, message.shop_id, message.order_id, at=now)
        case m.AftersaleOpened():
            return app.open_aftersale(message.platform, message.shop_id, message.order_id,
                                      message.aftersale_id, message.kind, message.line_id,
                                      at=message.opened_at)
        case m.AftersaleClosed():
            return app.close_aftersale(message.platform, message.shop_id, message.order_id,
                                       message.aftersale_id, message.outcome, at=message.closed_at)
        case m.LinkSet():
            return app.set_link(message.platform, message.shop_id, message.product_id, message.mode,
                                [_sku_link(s) for s in message.skus], at=now)
        case m.LinkRemoved():
            return app.remove_link(message.platform, message.shop_id, message.product_id, at=now)
        case m.CodeRegistered():
            return app.register_code(message.code, message.kind,
                                     [_component(c) for c in message.components],
                                     merchant_id=message.merchant_id, at=now)
        case m.StockRule():
            return app.set_stock_rule(message.platform, message.shop_id, message.product_id,
                                      message.sku_id, message.ratio, message.min_stock, at=now)
        case m.PrelinkPull():
            extra = {"window_days": message.window_days} if message.window_days else {}
            return app.pull_prelink(message.platform, message.shop_id, message.product_id,
                                    at=now, **extra)
        case m.SupplierUpserted():
            return app.upsert_supplier(
                message.supplier_id, message.name, message.active,
                ship_within_hours=message.ship_within_hours,
                fulfilment_score=_whole(message.fulfilment_score), level=message.level,
                service_stars=message.service_stars, logistics_score=message.logistics_score,
                experience_score=message.experience_score, at=now,
            )
        case m.SupplierOffer():
            return app.publish_offer(
                message.supplier_id, message.offer_id, message.title, message.on_shelf,
                [_offer_sku(s) for s in message.skus], private_to=message.private_to,
                expires_at=message.expires_at, pool=_pool(message), at=now,
            )
        case m.OfferRenewed():
            return app.renew_offer(message.supplier_id, message.offer_id, at=message.renewed_at)
        case m.SupplierStock():
            return app.report_stock(message.supplier_id, message.offer_id, message.supplier_sku_id,
                                    message.stock, at=message.at)
        case m.SupplierPrice():
            return app.set_price(message.supplier_id, message.supplier_sku_id, message.price,
                                 message.effective_from, tier=message.tier, at=now)
        case m.MerchantTier():
            return app.set_merchant_tier(message.supplier_id, message.merchant_id, message.tier, at=now)
        case m.ShopRegistered():
            return app.register_shop(message.platform, message.shop_id, message.merchant_id, at=now)
        case m.MerchantSettings():
            return app.set_merchant_settings(
                message.merchant_id, source_pool=message.source_pool,
                split_tolerance=message.split_tolerance, hold_amount_over=message.hold_amount_over,
                hold_remark_words=message.hold_remark_words,
                hold_out_of_stock=message.hold_out_of_stock, at=now,
            )
        case m.TrackingUploaded():
            return app.upload_tracking(message.supplier_id, message.allocation_id, message.carrier,
                                       message.tracking_no, at=message.uploaded_at)
        case m.InterceptAnswered():
            return app.answer_intercept(message.supplier_id, message.allocation_id, message.outcome,
                                        message.carrier, message.tracking_no, at=message.answered_at)
        case m.AllocationCancel() if message.allocation_id is not None:
            return app.cancel_allocation(message.allocation_id, message.reason, at=now)
        case m.AllocationCancel():
            return app.cancel_allocations(message.platform, message.shop_id, [message.order_id],
                                          message.reason, at=now)
    raise TypeError(f"no engine command for {type(message).__name__}")  # a new subject unmapped


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


def _whole(score: float | None) -> int | None:
    """The engine keeps 0-100 scores as whole numbers; the wire allows ``96.5`` (rounds half up)."""
    if score is None:
        return None
    return int(Decimal(str(score)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
