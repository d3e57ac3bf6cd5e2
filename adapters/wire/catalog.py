"""Inbound structs that set up routing: links (L1-L8), merchant codes (L7), stock rules (S2),
pre-link pulls (L10), suppliers, offers, stock and prices, merchant tiers and settings, shops."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from adapters.wire.fields import (
    Code,
    Id,
    LinkComponent,
    LinkSku,
    Money,
    OfferSku,
    Platform,
    Ratio,
    Score5,
    Score100,
    ShipWithinHours,
    Stock,
    SubjectToken,
    Time,
    Title,
    _In,
)

# ---------------------------------------------------------------------------------------------
# Links, codes, stock rules


class LinkSet(_In, kw_only=True):
    """reflow.in.link.set: the whole desired link of one product."""

    platform: Platform
    shop_id: SubjectToken
    product_id: Id
    mode: Literal["single", "multi"]
    skus: Annotated[list[LinkSku], Meta(min_length=1, max_length=1000)]


class LinkRemoved(_In, kw_only=True):
    """reflow.in.link.removed"""

    platform: Platform
    shop_id: SubjectToken
    product_id: Id


class CodeRegistered(_In, kw_only=True):
    """reflow.in.code.registered (addition): a merchant code and what it maps to (L7)."""

    merchant_id: Id | None = None
    code: Code
    kind: Literal["item", "bundle"]
    components: Annotated[list[LinkComponent], Meta(min_length=1, max_length=50)]


class StockRule(_In, kw_only=True):
    """reflow.in.stock.rule: published stock = floor(sellable x ratio), 0 below min_stock (S2)."""

    _decimals = ("ratio",)

    platform: Platform
    shop_id: SubjectToken
    product_id: Id
    sku_id: Id | None = None
    ratio: Ratio
    min_stock: Stock


class PrelinkPull(_In, kw_only=True):
    """reflow.in.prelink.pull (L10)."""

    platform: Platform
    shop_id: SubjectToken
    product_id: Id
    window_days: Annotated[int, Meta(ge=1, le=3650)] | None = None


# ---------------------------------------------------------------------------------------------
# Suppliers and offers


class SupplierUpserted(_In, kw_only=True):
    """reflow.in.supplier.upserted"""

    supplier_id: SubjectToken
    name: Title
    active: bool
    ship_within_hours: ShipWithinHours | None = None
    fulfilment_score: Score100 | None = None
    level: Annotated[int, Meta(ge=0, le=10)] | None = None
    service_stars: Score5 | None = None
    logistics_score: Score5 | None = None
    experience_score: Score5 | None = None
    daily_capacity: Annotated[int, Meta(ge=1, le=100_000_000)] | None = None
    """Rule RT13: units per China-time day; absent or null: no limit."""


class SupplierOffer(_In, kw_only=True):
    """reflow.in.supplier.offer"""

    supplier_id: SubjectToken
    offer_id: Id
    title: Title
    on_shelf: bool
    private_to: Annotated[list[Id], Meta(max_length=10_000)] | None = None
    expires_at: Time | None = None
    skus: Annotated[list[OfferSku], Meta(min_length=1, max_length=1000)]
    dropship_free_shipping: bool | None = None
    seven_day_returns: bool | None = None
    growth_score: Score100 | None = None


class OfferRenewed(_In, kw_only=True):
    """reflow.in.offer.renewed (addition): a micro-supply offer renewed (M2)."""

    supplier_id: SubjectToken
    offer_id: Id
    renewed_at: Time


class SupplierStock(_In, kw_only=True):
    """reflow.in.supplier.stock"""

    supplier_id: SubjectToken
    offer_id: Id
    supplier_sku_id: Id
    stock: Stock
    at: Time


class SupplierPrice(_In, kw_only=True):
    """reflow.in.supplier.price: settlement price, optionally for one merchant tier (RC1)."""

    _decimals = ("price",)

    supplier_id: SubjectToken
    supplier_sku_id: Id
    price: Money
    effective_from: Time
    tier: Annotated[str, Meta(min_length=1, max_length=64)] | None = None


class MerchantTier(_In, kw_only=True):
    """reflow.in.merchant.tier (addition): the supplier places the merchant in a tier (seed 002)."""

    supplier_id: SubjectToken
    merchant_id: Id
    tier: Annotated[str, Meta(min_length=1, max_length=64)]


class ShopRegistered(_In, kw_only=True):
    """reflow.in.shop.registered (addition): the shop belongs to the merchant."""

    platform: Platform
    shop_id: SubjectToken
    merchant_id: Id


class MerchantSettings(_In, kw_only=True):
    """reflow.in.merchant.settings (addition): RT8, RT10, RT12, T4 and I6 settings of one merchant."""

    _decimals = ("split_tolerance", "hold_amount_over")

    merchant_id: Id
    source_pool: bool | None = None
    split_tolerance: Money | None = None
    hold_amount_over: Money | None = None
    hold_remark_words: (
        Annotated[list[Annotated[str, Meta(min_length=1, max_length=64)]], Meta(max_length=200)]
        | None
    ) = None
    hold_out_of_stock: bool | None = None
    split_lines: bool | None = None
    """Rule RT12: split a line no single alternative covers (off by default)."""
    reroute_overdue_hours: Annotated[int, Meta(ge=1, le=8760)] | None | msgspec.UnsetType = msgspec.UNSET
    """Rule T4: re-route an allocation this many hours after ship-by; null: never; absent: unchanged."""
