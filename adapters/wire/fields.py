"""Constrained wire types, the base of every inbound struct, and the nested structs (a buyer, an
order line, a link's components and alternatives, an offer's SKUs). Wire conventions: see
``adapters.messages``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, ClassVar, Literal

import msgspec
from msgspec import Meta, Struct

from engine.values import PLATFORMS, SHIP_WITHIN_HOURS

# ---------------------------------------------------------------------------------------------
# Constrained wire types

Platform = Literal[PLATFORMS]  # the engine's list: one source of truth
ShipWithinHours = Literal[SHIP_WITHIN_HOURS]  # rule T3
Id = Annotated[str, Meta(min_length=1, max_length=128, pattern=r"^\S+$")]
SubjectToken = Annotated[
    str,
    Meta(
        min_length=1,
        max_length=128,
        pattern=r"^[^\s.*>]+$",
        description="id used as a NATS subject token: no whitespace, '.', '*' or '>'",
    ),
]
Code = Annotated[str, Meta(min_length=1, max_length=128)]
Title = Annotated[str, Meta(min_length=1, max_length=512)]
Text = Annotated[str, Meta(max_length=512)]
Remark = Annotated[str, Meta(max_length=2000)]
Time = Annotated[
    datetime,
    Meta(tz=True, description="RFC 3339 time with offset, e.g. 2024-05-01T10:00:00+08:00, "
                              "from 2000-01-01 to 2100-01-01 (UTC)"),
]
# Business times outside these bounds are refused: the engine adds days and hours to them (ship-by,
# windows, renewals), and a year-9999 time would overflow there instead of being dead-lettered.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
Money = Annotated[
    str,
    Meta(
        pattern=r"^\d{1,12}(\.\d{1,8})?$",
        description="money as a decimal string >= 0, e.g. \"19.90\" (never a JSON number)",
        examples=["19.90"],
    ),
]
Ratio = Annotated[
    str,
    Meta(
        pattern=r"^(0(\.\d{1,8})?|1(\.0{1,8})?)$",
        description="decimal string in [0, 1], e.g. \"0.8\"",
        examples=["0.8"],
    ),
]
Province = Annotated[str, Meta(min_length=1, max_length=64)]
Qty = Annotated[int, Meta(ge=1, le=1_000_000)]
Stock = Annotated[int, Meta(ge=0, le=1_000_000_000)]
Score100 = Annotated[float, Meta(ge=0, le=100)]
Score5 = Annotated[float, Meta(ge=0, le=5)]


class _In(Struct, frozen=True, kw_only=True, forbid_unknown_fields=False, gc=False):
    """Base of every inbound struct: decimal strings named in ``_decimals`` become Decimal."""

    _decimals: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        for name in self._decimals:
            value = getattr(self, name)
            if isinstance(value, str):
                msgspec.structs.force_setattr(self, name, Decimal(value))
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, datetime) and not EARLIEST <= value < LATEST:
                raise ValueError(f"{name}: time out of range (2000-01-01 to 2100-01-01 UTC)")


# ---------------------------------------------------------------------------------------------
# Nested types


class Buyer(_In, kw_only=True):
    """The consumer's delivery contact (personal data, P2)."""

    name: Annotated[str, Meta(min_length=1, max_length=128)]
    phone: Annotated[str, Meta(min_length=1, max_length=64)]
    province: Annotated[str, Meta(min_length=1, max_length=64)]
    city: Annotated[str, Meta(min_length=1, max_length=64)]
    district: Annotated[str, Meta(max_length=64)]  # some cities have no district level
    address: Annotated[str, Meta(min_length=1, max_length=512)]


class OrderLine(_In, kw_only=True):
    _decimals = ("unit_price",)

    line_id: Id
    product_id: Id
    sku_id: Id | None = None
    merchant_code: Code | None = None
    title: Title
    spec: Text | None = None
    qty: Qty
    unit_price: Money


class LinkComponent(_In, kw_only=True):
    """One supplier SKU in an alternative; ``qty`` is the reflow quantity (L3)."""

    supplier_id: SubjectToken
    offer_id: Id
    supplier_sku_id: Id
    qty: Qty


class LinkAlternative(_In, kw_only=True):
    """One or more components allocated together (a bundle when several, L4)."""

    priority: Annotated[int, Meta(ge=0, le=1_000_000)] | None = None
    components: Annotated[list[LinkComponent], Meta(min_length=1, max_length=50)]
    provinces: Annotated[list[Province], Meta(max_length=64)] | None = None  # RT9, addition


class LinkSku(_In, kw_only=True):
    """A shop SKU's alternatives; neither ``sku_id`` nor ``merchant_code`` = product level (L6)."""

    sku_id: Id | None = None
    merchant_code: Code | None = None
    alternatives: Annotated[list[LinkAlternative], Meta(min_length=1, max_length=50)]


class OfferSku(_In, kw_only=True):
    _decimals = ("channel_price", "lowest_price_30d", "market_price")

    supplier_sku_id: Id
    spec: Text | None = None
    stock: Stock
    pool_enrolled: bool | None = None
    channel_price: Money | None = None
    lowest_price_30d: Money | None = None
    market_price: Money | None = None
