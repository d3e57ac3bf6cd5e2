"""An order's life before the parcel: placed and routed, held and released, reviewed, cancelled,
shipped by other means, after-sales, address changes (L9, RT4, I1-I6, L10)."""

from __future__ import annotations

from engine import ids
from engine.commands import (
    CancelOrder,
    ChangeAddress,
    CloseAftersale,
    OpenAftersale,
    PlaceOrder,
    ReleaseOrder,
    SetReview,
    ShipElsewhere,
)
from engine.errors import NotFound
from engine.handlers.registry import handles
from engine.lifecycle import maybe_ship, stop_active
from engine.orders import Order, check_aftersale, check_order_lines, check_outcome
from engine.routing import merchant_of, route, settings_of, unpark
from engine.uow import UnitOfWork
from engine.values import check_platform


def order_or_reference(uow: UnitOfWork, platform: str, shop_id: str, order_id: str, at) -> Order:  # noqa: ANN001
    """The order, or a reference to it when a fact about it comes first (platforms send such)."""
    order = uow.get_or_new(Order, ids.order_id(platform, shop_id, order_id))
    order.reference(platform, shop_id, order_id, at)
    return order


@handles(PlaceOrder)
def place_order(c: PlaceOrder, uow: UnitOfWork) -> str:
    """Take a shop order and route it (L9, RT1-RT10, I6). The same order twice changes nothing."""
    check_platform(c.platform)
    check_order_lines(c.lines)
    order = uow.get_or_new(Order, ids.order_id(c.platform, c.shop_id, c.order_id))
    if order.placed:
        return order.status
    merchant = merchant_of(uow, c.platform, c.shop_id)
    sealed = uow.keys.seal(c.buyer)
    uow.clear[sealed] = c.buyer
    order.place(c.at, platform=c.platform, shop_id=c.shop_id, order_id=c.order_id, merchant_id=merchant,
                lines=tuple(c.lines), region=c.buyer.region, sealed_buyer=sealed,
                channel=c.channel or channel_of(c.platform),
                sealed_remark=uow.keys.encrypt(c.remark) if c.remark else None)
    if not order.cancelled and not order.under_review:
        reason = hold_reason(uow, order, c.remark)
        if reason:
            order.hold(reason, c.at)
    route(uow, order, c.at, "placed")
    return order.status


def hold_reason(uow: UnitOfWork, order: Order, remark: str | None) -> str | None:
    """Rule I6: the merchant's interception rules hold an order for review."""
    holds = settings_of(uow, order.merchant_id).holds
    if holds.amount_over is not None and order.amount > holds.amount_over:
        return f"amount {order.amount} over {holds.amount_over}"
    for word in holds.remark_words:
        if remark and word in remark:
            return f"remark contains {word!r}"
    return None


def channel_of(platform: str) -> str:
    """Rule M3: orders carry their channel; by default the platform's own."""
    return "micro_supply" if platform == "weigong" else platform


@handles(SetReview)
def set_review(c: SetReview, uow: UnitOfWork) -> str:
    """Rules RT4, I3: under review, an order is not allocated; earlier allocations are cancelled."""
    order = order_or_reference(uow, c.platform, c.shop_id, c.order_id, c.at)
    if order.review(c.under_review, c.reason, c.at):
        if c.under_review:
            stop_active(uow, order, "cancelled", f"review: {c.reason or 'under review'}", c.at)
        else:
            route(uow, order, c.at, "review_cleared")
    return order.status


@handles(ReleaseOrder)
def release_order(c: ReleaseOrder, uow: UnitOfWork) -> str:
    """Rules I5, I6: release a held order by hand and route what is waiting."""
    order = uow.order(c.platform, c.shop_id, c.order_id)
    order.release(c.at)
    route(uow, order, c.at, "released")
    return order.status


@handles(CancelOrder)
def cancel_order(c: CancelOrder, uow: UnitOfWork) -> str:
    """Rule I1: the consumer cancelled; every untracked allocation is intercepted."""
    order = order_or_reference(uow, c.platform, c.shop_id, c.order_id, c.at)
    if not order.cancelled:
        stop_active(uow, order, "intercepted", "order cancelled", c.at)
        order.cancel(c.at)
        unpark(uow, order, set(order.lines))
    return order.status


@handles(ShipElsewhere)
def ship_elsewhere(c: ShipElsewhere, uow: UnitOfWork) -> str:
    """Rule L10: shipped by other means, never routed; an untracked allocation is intercepted so
    the supplier does not send a second parcel."""
    order = order_or_reference(uow, c.platform, c.shop_id, c.order_id, c.at)
    if not (order.shipped or order.cancelled):
        stop_active(uow, order, "intercepted", "shipped by other means", c.at)
        order.ship_elsewhere(c.carrier, c.tracking_no, c.at)
        unpark(uow, order, set(order.lines))
    return order.status


@handles(OpenAftersale)
def open_aftersale(c: OpenAftersale, uow: UnitOfWork) -> str:
    """Rules I1, I2: before tracking, intercept (the order, or the named line); after, record."""
    check_aftersale(c.kind)
    order = order_or_reference(uow, c.platform, c.shop_id, c.order_id, c.at)
    if c.aftersale_id in order.aftersales:
        return order.status
    touched = [a for a in uow.live(order) if c.line_id is None or c.line_id in a.line_ids]
    post = any(a.status in ("tracked", "shipped") for a in touched) or order.shipped
    order.open_aftersale(c.aftersale_id, c.kind, c.line_id, post, c.at)
    stop_active(uow, order, "intercepted", f"aftersale {c.aftersale_id} ({c.kind})", c.at, line_id=c.line_id)
    route(uow, order, c.at, "aftersale_other_lines")
    return order.status


@handles(CloseAftersale)
def close_aftersale(c: CloseAftersale, uow: UnitOfWork) -> str:
    """Rule RT4: a closed after-sale no longer blocks its line; a refunded line needs nothing more."""
    check_outcome(c.outcome)
    order = uow.get(Order, ids.order_id(c.platform, c.shop_id, c.order_id))
    if order is None:
        raise NotFound(f"aftersale_id: {c.aftersale_id!r} was never opened on order {c.order_id}")
    if order.close_aftersale(c.aftersale_id, c.outcome, c.at):
        route(uow, order, c.at, "aftersale_closed")
        maybe_ship(uow, order, c.at)
    return order.status


@handles(ChangeAddress)
def change_address(c: ChangeAddress, uow: UnitOfWork) -> str:
    """Rule I4: untracked allocations are blocked and released again with the new address."""
    order = order_or_reference(uow, c.platform, c.shop_id, c.order_id, c.at)
    if order.sealed and uow.keys.unseal(order.sealed) == c.buyer:
        return order.status
    sealed = uow.keys.seal(c.buyer)
    if order.change_address(c.buyer.region, sealed, c.at):
        uow.clear[sealed] = c.buyer
        stop_active(uow, order, "intercepted", "address changed", c.at)
        route(uow, order, c.at, "address_changed")
    return order.status
