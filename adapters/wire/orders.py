"""Inbound structs about orders: what the shops report (placed, address changed, review,
cancelled, shipped elsewhere, released, after-sales) and what the suppliers answer (tracking,
intercepts), and the merchant's allocation cancels."""

from __future__ import annotations

from typing import Annotated, Literal

from msgspec import Meta

from adapters.wire.fields import Buyer, Id, OrderLine, Platform, Remark, SubjectToken, Text, Time, _In

# ---------------------------------------------------------------------------------------------
# Orders


class OrderPlaced(_In, kw_only=True):
    """reflow.in.order.placed"""

    platform: Platform
    shop_id: SubjectToken
    order_id: Id
    placed_at: Time
    buyer: Buyer
    lines: Annotated[list[OrderLine], Meta(min_length=1, max_length=1000)]
    channel: Annotated[str, Meta(max_length=64)] | None = None
    remark: Remark | None = None


class OrderAddressChanged(_In, kw_only=True):
    """reflow.in.order.address_changed"""

    platform: Platform
    shop_id: SubjectToken
    order_id: Id
    buyer: Buyer
    changed_at: Time


class OrderReview(_In, kw_only=True):
    """reflow.in.order.review"""

    platform: Platform
    shop_id: SubjectToken
    order_id: Id
    under_review: bool
    reason: Text | None = None


class OrderCancelled(_In, kw_only=True):
    """reflow.in.order.cancelled"""

    platform: Platform
    shop_id: SubjectToken
    order_id: Id
    cancelled_at: Time


class OrderShipped(_In, kw_only=True):
    """reflow.in.order.shipped (addition): the shop reports the order shipped by other means, so
    pull pre-link never routes it (L10) and an untracked allocation is intercepted."""

    platform: Platform
    shop_id: SubjectToken
    order_id: Id
    shipped_at: Time
    carrier: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    tracking_no: Annotated[str, Meta(min_length=1, max_length=64)] | None = None


class OrderReleased(_In, kw_only=True):
    """reflow.in.order.released (addition): release an order held by an I6 rule."""

    platform: Platform
    shop_id: SubjectToken
    order_id: Id


class AftersaleOpened(_In, kw_only=True):
    """reflow.in.aftersale.opened"""

    platform: Platform
    shop_id: SubjectToken
    order_id: Id
    aftersale_id: Id
    kind: Literal["refund", "return", "exchange"]
    line_id: Id | None = None
    opened_at: Time


class AftersaleClosed(_In, kw_only=True):
    """reflow.in.aftersale.closed"""

    platform: Platform
    shop_id: SubjectToken
    order_id: Id
    aftersale_id: Id
    outcome: Literal["refunded", "rejected", "withdrawn"]
    closed_at: Time


# ---------------------------------------------------------------------------------------------
# Allocations, tracking


class TrackingUploaded(_In, kw_only=True):
    """reflow.in.tracking.uploaded"""

    supplier_id: SubjectToken
    allocation_id: Id
    carrier: Annotated[str, Meta(min_length=1, max_length=64)]
    tracking_no: Annotated[str, Meta(min_length=1, max_length=64)]
    uploaded_at: Time


class AllocationRejected(_In, kw_only=True):
    """reflow.in.allocation.rejected (RT11): the supplier cannot fill an allocation, before tracking."""

    supplier_id: SubjectToken
    allocation_id: Id
    reason: Literal["out_of_stock", "sku_changed", "cannot_ship_to", "price_changed", "other"]
    note: Text | None = None
    rejected_at: Time


class ReturnRequested(_In, kw_only=True):
    """reflow.in.return.requested (RC6): send a post-shipment return (I2) back to its supplier."""

    platform: Platform
    shop_id: SubjectToken
    order_id: Id
    aftersale_id: Id
    requested_at: Time


class ReturnAnswered(_In, kw_only=True):
    """reflow.in.return.answered (RC6): the supplier takes the return back, or refuses it with a reason."""

    supplier_id: SubjectToken
    return_id: Id
    outcome: Literal["accepted", "refused"]
    reason: Text | None = None
    answered_at: Time


class ClockTick(_In, kw_only=True):
    """reflow.in.clock.tick (addition): the clock reaches ``at``; the deadlines due by then pass."""

    at: Time


class InterceptAnswered(_In, kw_only=True):
    """reflow.in.intercept.answered (I8); too_late comes with carrier and tracking_no."""

    supplier_id: SubjectToken
    allocation_id: Id
    outcome: Literal["stopped", "too_late"]
    carrier: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    tracking_no: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    answered_at: Time


class AllocationCancel(_In, kw_only=True):
    """reflow.in.allocation.cancel: by allocation_id, or every allocation of one order (I5)."""

    allocation_id: Id | None = None
    platform: Platform | None = None
    shop_id: SubjectToken | None = None
    order_id: Id | None = None
    reason: Text | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.allocation_id is None:
            missing = [f for f in ("platform", "shop_id", "order_id") if getattr(self, f) is None]
            if missing:
                raise ValueError(
                    "needs allocation_id or all of platform, shop_id, order_id"
                    f" (missing {', '.join(missing)})"
                )
