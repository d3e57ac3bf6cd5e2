"""Inbound wire types: one ``msgspec.Struct`` per ``reflow.in.*`` subject (CONTRACT section 1).

``decode(subject, data)`` turns the bytes of a NATS message into its typed, validated struct,
or raises ``BadMessage`` whose ``reason`` is one line fit for the ``Reflow-Error`` header of a
dead letter (CONTRACT section 3): it names the field path, never a buyer's personal data.
``json_schemas()`` gives the JSON Schema of every subject (``reflow schema``).

Wire conventions
----------------
* Unknown extra fields are ignored; structs are frozen.
* Money (``unit_price``, ``price``, ...) is a decimal string ``"19.90"`` with no sign (so >= 0);
  a JSON number is refused. On the struct the attribute is a ``decimal.Decimal`` holding the
  exact string (``"19.90"`` stays ``Decimal('19.90')``). ``ratio`` is a decimal string in [0, 1].
* Times are RFC 3339 with an offset; a time without one is refused.
* ``shop_id`` and ``supplier_id`` become tokens of outbound NATS subjects, so they may not
  contain whitespace, ``.``, ``*`` or ``>``. Other ids are 1-128 characters without whitespace.

Additions to the contract (all new subjects or new optional fields; document in the README)
---------------------------------------------------------------------------------------
* ``reflow.in.shop.registered`` {platform, shop_id, merchant_id}: the shop belongs to that
  merchant. A shop never registered belongs to the default merchant.
* ``reflow.in.merchant.tier`` {supplier_id, merchant_id, tier}: the supplier places the
  merchant in a price tier (seed 002); ``supplier.price`` messages with that ``tier`` apply.
* ``reflow.in.merchant.settings`` {merchant_id, source_pool?, split_tolerance?,
  hold_amount_over?, hold_remark_words?, hold_out_of_stock?}: RT8 source pool on/off, RT10
  split tolerance as a fraction (``"0.05"`` = 5 %), I6 hold rules (order amount over a money
  limit, remark containing a word, any line out of stock). A field left out is not set by
  this message.
* ``reflow.in.order.released`` {platform, shop_id, order_id}: release a held order by hand (I6).
* ``reflow.in.code.registered`` {merchant_id?, code, kind (item/bundle), components[...]}:
  a merchant code (L7) and what it maps to; an ``item`` code has exactly one component.
* ``reflow.in.offer.renewed`` {supplier_id, offer_id, renewed_at}: a micro-supply offer is
  renewed for another 30 days (M2).
* ``link.set`` alternatives take optional ``provinces`` [ship-to provinces served] (RT9).
* ``supplier.offer`` takes optional RT8 source-pool facts: ``dropship_free_shipping``,
  ``seven_day_returns``, ``growth_score`` (0-100), and per SKU ``pool_enrolled``,
  ``channel_price``, ``lowest_price_30d``, ``market_price`` (money strings).
* ``supplier.upserted``: ``level`` is the 1688 L-level as an integer (2 for L2);
  ``service_stars``, ``logistics_score``, ``experience_score`` are JSON numbers 0-5.

Structural rules checked here (beyond types): ``allocation.cancel`` needs ``allocation_id`` or
all of ``platform, shop_id, order_id``; ``intercept.answered`` with ``too_late`` needs
``carrier`` and ``tracking_no`` (I8); line ids are unique within an order; in ``link.set`` SKU
entries are unique and a product-level entry (neither ``sku_id`` nor ``merchant_code``, L6)
is the only entry.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Union

import msgspec
from msgspec import Meta, Struct

__all__ = [
    "BadMessage",
    "MAX_MESSAGE_BYTES",
    "SUBJECTS",
    "Inbound",
    "decode",
    "json_schemas",
    "subject_of",
]

MAX_MESSAGE_BYTES = 1024 * 1024
MAX_REASON_CHARS = 300

# ---------------------------------------------------------------------------------------------
# Constrained wire types

Platform = Literal["douyin", "kuaishou", "taobao", "tmall", "pinduoduo", "weigong"]
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
EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2100, 1, 1, tzinfo=timezone.utc)
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

    def __post_init__(self) -> None:
        super().__post_init__()
        seen: set[str] = set()
        for i, line in enumerate(self.lines):
            if line.line_id in seen:
                raise ValueError(f"duplicate line_id at lines[{i}]")
            seen.add(line.line_id)


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
# Links, codes, stock rules


class LinkSet(_In, kw_only=True):
    """reflow.in.link.set: the whole desired link of one product."""

    platform: Platform
    shop_id: SubjectToken
    product_id: Id
    mode: Literal["single", "multi"]
    skus: Annotated[list[LinkSku], Meta(min_length=1, max_length=1000)]

    def __post_init__(self) -> None:
        super().__post_init__()
        keys: set[tuple[str | None, str | None]] = set()
        for i, sku in enumerate(self.skus):
            if sku.sku_id is None and sku.merchant_code is None and len(self.skus) > 1:
                raise ValueError(
                    f"skus[{i}] is product-level (no sku_id, no merchant_code)"
                    " and must be the only entry"
                )
            key = (sku.sku_id, sku.merchant_code)
            if key in keys:
                raise ValueError(f"duplicate sku entry at skus[{i}]")
            keys.add(key)


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

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.kind == "item" and len(self.components) != 1:
            raise ValueError("an item code needs exactly one component (use kind bundle)")


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
    ship_within_hours: Literal[24, 48] | None = None
    fulfilment_score: Score100 | None = None
    level: Annotated[int, Meta(ge=0, le=10)] | None = None
    service_stars: Score5 | None = None
    logistics_score: Score5 | None = None
    experience_score: Score5 | None = None


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
    """reflow.in.merchant.settings (addition): RT8, RT10 and I6 settings of one merchant."""

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


# ---------------------------------------------------------------------------------------------
# Allocations, tracking


class TrackingUploaded(_In, kw_only=True):
    """reflow.in.tracking.uploaded"""

    supplier_id: SubjectToken
    allocation_id: Id
    carrier: Annotated[str, Meta(min_length=1, max_length=64)]
    tracking_no: Annotated[str, Meta(min_length=1, max_length=64)]
    uploaded_at: Time


class InterceptAnswered(_In, kw_only=True):
    """reflow.in.intercept.answered (I8); too_late comes with carrier and tracking_no."""

    supplier_id: SubjectToken
    allocation_id: Id
    outcome: Literal["stopped", "too_late"]
    carrier: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    tracking_no: Annotated[str, Meta(min_length=1, max_length=64)] | None = None
    answered_at: Time

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.outcome == "too_late":
            missing = [f for f in ("carrier", "tracking_no") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"outcome too_late requires {', '.join(missing)}")


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


# ---------------------------------------------------------------------------------------------
# Subjects, decoding, schemas

SUBJECTS: dict[str, type[Struct]] = {
    "reflow.in.order.placed": OrderPlaced,
    "reflow.in.order.address_changed": OrderAddressChanged,
    "reflow.in.order.review": OrderReview,
    "reflow.in.order.cancelled": OrderCancelled,
    "reflow.in.order.released": OrderReleased,
    "reflow.in.order.shipped": OrderShipped,
    "reflow.in.aftersale.opened": AftersaleOpened,
    "reflow.in.aftersale.closed": AftersaleClosed,
    "reflow.in.link.set": LinkSet,
    "reflow.in.link.removed": LinkRemoved,
    "reflow.in.code.registered": CodeRegistered,
    "reflow.in.supplier.upserted": SupplierUpserted,
    "reflow.in.supplier.offer": SupplierOffer,
    "reflow.in.offer.renewed": OfferRenewed,
    "reflow.in.supplier.stock": SupplierStock,
    "reflow.in.supplier.price": SupplierPrice,
    "reflow.in.tracking.uploaded": TrackingUploaded,
    "reflow.in.intercept.answered": InterceptAnswered,
    "reflow.in.allocation.cancel": AllocationCancel,
    "reflow.in.stock.rule": StockRule,
    "reflow.in.prelink.pull": PrelinkPull,
    "reflow.in.shop.registered": ShopRegistered,
    "reflow.in.merchant.tier": MerchantTier,
    "reflow.in.merchant.settings": MerchantSettings,
}

Inbound = Union[tuple(SUBJECTS.values())]  # type: ignore[valid-type]  # for match statements

_SUBJECT_OF: dict[type[Struct], str] = {t: s for s, t in SUBJECTS.items()}
_DECODERS: dict[str, msgspec.json.Decoder] = {
    subject: msgspec.json.Decoder(t) for subject, t in SUBJECTS.items()
}


class BadMessage(Exception):
    """An inbound message that cannot be accepted; ``reason`` is one line, free of personal data."""

    def __init__(self, reason: str) -> None:
        self.reason = one_line(reason)
        super().__init__(self.reason)


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


def one_line(text: str, limit: int = MAX_REASON_CHARS) -> str:
    """Control characters and newlines become one space; cut to ``limit`` characters."""
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


_ENUM_VALUE = re.compile(r"^Invalid enum value (.*?)( - at `[^`]*`)?$", re.S)


def _validation_reason(subject: str, message: str) -> str:
    """msgspec's message, with an echoed enum value cut short so the field path always shows."""
    match = _ENUM_VALUE.match(message)
    if match:
        value = one_line(match.group(1), limit=24)
        message = f"Invalid enum value {value}{match.group(2) or ''}"
    head, sep, path = message.rpartition(" - at `")
    if sep and len(subject) + len(message) > MAX_REASON_CHARS - 4:
        path = one_line(path, limit=MAX_REASON_CHARS // 2)
        head = one_line(head, limit=max(20, MAX_REASON_CHARS - len(subject) - len(path) - 12))
        message = f"{head}{sep}{path}"
    return f"{subject}: {message}"


def subject_of(message: Struct) -> str:
    """The subject a decoded message came from."""
    return _SUBJECT_OF[type(message)]


def decode(subject: str, data: bytes | bytearray | memoryview) -> Any:
    """Decode and validate the body of a message on ``subject``; raise ``BadMessage`` if bad."""
    decoder = _DECODERS.get(subject)
    if decoder is None:
        raise BadMessage(f"unknown subject {subject}")
    size = len(data)
    if size > MAX_MESSAGE_BYTES:
        raise BadMessage(f"{subject}: message too large ({size} bytes, limit {MAX_MESSAGE_BYTES})")
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadMessage(f"{subject}: body is not valid UTF-8 (byte {exc.start})") from None
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise BadMessage(_validation_reason(subject, str(exc))) from None
    except msgspec.DecodeError as exc:
        raise BadMessage(f"{subject}: not valid JSON: {exc}") from None
    except RecursionError:
        raise BadMessage(f"{subject}: JSON nested too deeply") from None


def json_schemas() -> dict[str, dict[str, Any]]:
    """Subject -> self-contained JSON Schema (draft 2020-12) of its body."""
    out: dict[str, dict[str, Any]] = {}
    for subject, t in SUBJECTS.items():
        schema = msgspec.json.schema(t)
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": subject,
            "title": subject,
            **schema,
        }
        out[subject] = schema
    return out
