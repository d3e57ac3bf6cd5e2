"""Value objects shared by commands, events and the routing policy."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from engine.base import Value
from engine.errors import InvalidCommand

PLATFORMS = ("douyin", "kuaishou", "taobao", "tmall", "pinduoduo", "weigong")
SHIP_WITHIN_HOURS = (24, 48)  # rule T3

UnroutableReason = Literal["no_link", "out_of_stock", "supplier_inactive", "sku_off_shelf", "rejected",
                           "capacity_reached"]


class Component(Value, frozen=True):
    """One supplier SKU in an alternative; `qty` is the reflow quantity (rule L3)."""

    supplier_id: str
    offer_id: str
    supplier_sku_id: str
    qty: int = 1


class Alternative(Value, frozen=True):
    """One way to fulfil a shop SKU: one component, or several (a bundle, rule L4)."""

    components: tuple[Component, ...]
    priority: int | None = None
    provinces: tuple[str, ...] | None = None
    """Ship-to provinces served (rule RT9); None serves everywhere."""


class SkuLink(Value, frozen=True):
    """The alternatives of one shop SKU; neither sku_id nor merchant_code = product level (L6)."""

    alternatives: tuple[Alternative, ...]
    sku_id: str | None = None
    merchant_code: str | None = None


class Region(Value, frozen=True):
    """The part of an address that may be shown in clear (rule P1: down to district)."""

    province: str
    city: str
    district: str


class Buyer(Value, frozen=True):
    """Consumer personal data. Never stored or published in clear (rule P2)."""

    name: str
    phone: str
    province: str
    city: str
    district: str
    address: str

    @property
    def region(self) -> Region:
        return Region(province=self.province, city=self.city, district=self.district)


class Missing(Value, frozen=True):
    """Rule L11: a supplier SKU a link uses that cannot serve it, and why: `sku_dropped` (the
    offer no longer lists it), `sku_changed` (the supplier rejected an allocation for it, RT11),
    `delisted` or `expired` (the offer, M2)."""

    supplier_id: str
    offer_id: str
    supplier_sku_id: str
    why: str


class LineIn(Value, frozen=True):
    line_id: str
    product_id: str
    title: str
    qty: int
    unit_price: Decimal
    sku_id: str | None = None
    merchant_code: str | None = None
    spec: str | None = None


class OfferSku(Value, frozen=True):
    supplier_sku_id: str
    stock: int
    spec: str | None = None
    enrolled: bool = False
    """Enrolled in the merchant's source pool (rule RT8)."""
    channel_price: Decimal | None = None
    lowest_30d_price: Decimal | None = None
    market_price: Decimal | None = None


class SkuQty(Value, frozen=True):
    supplier_sku_id: str
    qty: int


class HoldRules(Value, frozen=True):
    """Merchant interception rules (rule I6)."""

    amount_over: Decimal | None = None
    remark_words: tuple[str, ...] = ()
    out_of_stock: bool = False


class MerchantSettings(Value, frozen=True):
    source_pool: bool = False
    split_tolerance: Decimal = Decimal("0")
    holds: HoldRules = HoldRules()
    split_lines: bool = False
    """Rule RT12 (off by default, choice)."""
    reroute_overdue_hours: int | None = None
    """Rule T4: intercept and re-route an allocation still untracked this many hours after its
    ship-by time; None: never."""


class PoolTerms(Value, frozen=True):
    """Offer-side source-pool terms (rule RT8)."""

    dropship_free_shipping: bool = False
    returns_7d: bool = False
    growth_score: int = 0


def parse_money(field: str, value: object) -> Decimal:
    """A money or ratio value given as a decimal (string); never a float (CONTRACT section 1)."""
    if isinstance(value, (float, bool)):
        raise InvalidCommand(f"{field}: must be a decimal string, got a {type(value).__name__}")
    try:
        d = Decimal(value)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001
        raise InvalidCommand(f"{field}: {value!r} is not a decimal number") from None
    if not d.is_finite() or d < 0:
        raise InvalidCommand(f"{field}: must be a finite number >= 0, got {value!r}")
    return d


def check_platform(platform: str) -> None:
    if platform not in PLATFORMS:
        raise InvalidCommand(f"platform: {platform!r} is not one of {', '.join(PLATFORMS)}")


# -- an order's allocations and packages ------------------------------------------------------


class AllocRef(Value, frozen=True):
    allocation_id: str
    supplier_id: str
    line_ids: tuple[str, ...]


class Package(Value, frozen=True):
    allocation_id: str
    carrier: str
    tracking_no: str
    line_ids: tuple[str, ...]


class Aftersale(Value, frozen=True):
    aftersale_id: str
    kind: str
    line_id: str | None
    post_shipment: bool
    open: bool = True
    outcome: str | None = None
