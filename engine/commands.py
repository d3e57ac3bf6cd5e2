"""Commands: what someone asks reflow to do, one immutable value each, with an explicit time.

A command is named in the imperative (`PlaceOrder`, `UploadTracking`) and carries business values
only; every business check happens once, in the handler or aggregate that decides it (naming its
rule). `engine.handlers.handle(command, uow)` runs one; `Reflow.run_batch` runs many in one unit
of work. The wire layer (adapters/messages.py) turns each inbound subject's body into one of these.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from engine.values import Buyer, Component, LineIn, OfferSku, PoolTerms, SkuLink

PREPULL_WINDOW_DAYS = 30  # rule L10 (choice)


class Command(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    at: datetime
    """When it happened (the business time of the fact, or when it was received)."""


# -- supply -------------------------------------------------------------------------------------


class UpsertSupplier(Command, frozen=True):
    supplier_id: str
    name: str
    active: bool
    ship_within_hours: int | None = None
    fulfilment_score: int | None = None
    level: int | str | None = None
    service_stars: Decimal | None = None
    logistics_score: Decimal | None = None
    experience_score: Decimal | None = None
    daily_capacity: int | None = None
    """Rule RT13: units per China-time day; None: no limit."""


class SetMerchantTier(Command, frozen=True):
    supplier_id: str
    merchant_id: str
    tier: str


class PublishOffer(Command, frozen=True):
    supplier_id: str
    offer_id: str
    title: str
    on_shelf: bool
    skus: tuple[OfferSku, ...]
    private_to: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    pool: PoolTerms = PoolTerms()


class RenewOffer(Command, frozen=True):
    supplier_id: str
    offer_id: str


class ReportStock(Command, frozen=True):
    supplier_id: str
    offer_id: str
    supplier_sku_id: str
    stock: int


class SetPrice(Command, frozen=True):
    supplier_id: str
    supplier_sku_id: str
    price: Decimal | str
    effective_from: datetime
    tier: str | None = None


class RegisterShop(Command, frozen=True):
    platform: str
    shop_id: str
    merchant_id: str


class ChangeMerchantSettings(Command, frozen=True):
    """What is given changes; what is None keeps its current value."""

    merchant_id: str
    source_pool: bool | None = None
    split_tolerance: Decimal | str | None = None
    hold_amount_over: Decimal | str | None = None
    hold_remark_words: tuple[str, ...] | None = None
    hold_out_of_stock: bool | None = None
    split_lines: bool | None = None
    reroute_overdue_hours: int | None = None
    """Rule T4: hours after ship-by; 0 sets it to never (None keeps the current value)."""


class RegisterCode(Command, frozen=True):
    code: str
    kind: str
    components: tuple[Component, ...]
    merchant_id: str | None = None


# -- links --------------------------------------------------------------------------------------


class SetLink(Command, frozen=True):
    platform: str
    shop_id: str
    product_id: str
    mode: str
    skus: tuple[SkuLink, ...]


class RemoveLink(Command, frozen=True):
    platform: str
    shop_id: str
    product_id: str


class SetStockRule(Command, frozen=True):
    platform: str
    shop_id: str
    product_id: str
    sku_id: str | None
    ratio: Decimal | str
    min_stock: int


class PullPrelink(Command, frozen=True):
    platform: str
    shop_id: str
    product_id: str
    window_days: int = PREPULL_WINDOW_DAYS
    only: tuple[str, ...] | None = None


# -- orders -------------------------------------------------------------------------------------


class OrderCommand(Command, frozen=True):
    platform: str
    shop_id: str
    order_id: str


class PlaceOrder(OrderCommand, frozen=True):
    buyer: Buyer
    lines: tuple[LineIn, ...]
    channel: str | None = None
    remark: str | None = None


class SetReview(OrderCommand, frozen=True):
    under_review: bool
    reason: str | None = None


class ReleaseOrder(OrderCommand, frozen=True):
    pass


class CancelOrder(OrderCommand, frozen=True):
    pass


class ShipElsewhere(OrderCommand, frozen=True):
    carrier: str | None = None
    tracking_no: str | None = None


class OpenAftersale(OrderCommand, frozen=True):
    aftersale_id: str
    kind: str
    line_id: str | None = None


class CloseAftersale(OrderCommand, frozen=True):
    aftersale_id: str
    outcome: str


class ChangeAddress(OrderCommand, frozen=True):
    buyer: Buyer


# -- allocations --------------------------------------------------------------------------------


class CancelAllocation(Command, frozen=True):
    allocation_id: str
    reason: str | None = None


class CancelAllocations(Command, frozen=True):
    platform: str
    shop_id: str
    order_ids: tuple[str, ...]
    reason: str | None = None


class AnswerIntercept(Command, frozen=True):
    supplier_id: str
    allocation_id: str
    outcome: str
    carrier: str | None = None
    tracking_no: str | None = None


class RejectAllocation(Command, frozen=True):
    """Rule RT11: the supplier cannot fill an allocation it received."""

    supplier_id: str
    allocation_id: str
    reason: str
    note: str | None = None


class UploadTracking(Command, frozen=True):
    supplier_id: str
    allocation_id: str
    carrier: str
    tracking_no: str


# -- returns to the supplier (RC6) ---------------------------------------------------------------


class RequestReturn(OrderCommand, frozen=True):
    aftersale_id: str


class AnswerReturn(Command, frozen=True):
    supplier_id: str
    return_id: str
    outcome: str
    reason: str | None = None


# -- time ---------------------------------------------------------------------------------------


class PassTime(Command, frozen=True):
    """The clock reaches `at`: every deadline due by then passes (engine/clock.py). `received_at`,
    when the tick came from a producer, is the broker's time: a tick may not run ahead of it.
    `limit`: pass at most this many (the earliest), so that catching up on a long history is many
    small units of work rather than one that holds every allocation of it in memory; run it again
    until fewer than `limit` pass."""

    received_at: datetime | None = None
    limit: int | None = None


# -- statements ---------------------------------------------------------------------------------


class IssueStatement(Command, frozen=True):
    """Rules RC2-RC5: a supplier statement over content computed from the projection."""

    supplier_id: str
    position: int
    """The event-store position the content was computed at."""
    content: dict[str, Any]
