"""Inbound wire types: one ``msgspec.Struct`` per ``reflow.in.*`` subject (CONTRACT section 1).

``decode(subject, data)`` turns the bytes of a NATS message into its typed, validated struct,
or raises ``BadMessage`` whose ``reason`` is one line fit for the ``Reflow-Error`` header of a
dead letter (CONTRACT section 3): it names the field path, never a buyer's personal data.
``json_schemas()`` gives the JSON Schema of every subject (``reflow schema``). The structs
themselves live in ``adapters.wire`` (``fields``, ``orders``, ``catalog``) and are importable from
here; ``platform`` and ``ship_within_hours`` take their values from ``engine.values``.

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
* ``reflow.in.clock.tick`` {at}: the clock reaches ``at`` and the deadlines due by then pass
  (RT13 a new China-time day, M2/L11 an offer's expiry). serve ticks by itself; a producer that
  drives its own timeline (the demo, a test) may tick too.

The wire checks shape only: types, ranges, required fields, and which command a message is
(``allocation.cancel`` needs ``allocation_id`` or all of ``platform, shop_id, order_id``). Every
business rule (unique line ids, an item code's one component, ``too_late`` with its tracking,
link entries) is the engine's, checked once there; a refusal is dead-lettered all the same, with
one line naming the field and the rule.
"""

from __future__ import annotations

import re
from typing import Any, Union

import msgspec
from msgspec import Struct

from adapters.wire.catalog import (
    CodeRegistered,
    LinkRemoved,
    LinkSet,
    MerchantSettings,
    MerchantTier,
    OfferRenewed,
    PrelinkPull,
    ShopRegistered,
    StockRule,
    SupplierOffer,
    SupplierPrice,
    SupplierStock,
    SupplierUpserted,
)
from adapters.wire.fields import Buyer, LinkAlternative, LinkComponent, LinkSku, OfferSku, OrderLine
from adapters.wire.orders import (
    AftersaleClosed,
    AftersaleOpened,
    AllocationCancel,
    AllocationRejected,
    ClockTick,
    InterceptAnswered,
    OrderAddressChanged,
    OrderCancelled,
    OrderPlaced,
    OrderReleased,
    OrderReview,
    OrderShipped,
    ReturnAnswered,
    ReturnRequested,
    TrackingUploaded,
)

__all__ = [
    "BadMessage",
    "MAX_MESSAGE_BYTES",
    "SUBJECTS",
    "Inbound",
    "decode",
    "json_schemas",
    "subject_of",
    # the structs, one per subject, and the nested ones
    "AftersaleClosed",
    "AftersaleOpened",
    "AllocationCancel",
    "AllocationRejected",
    "Buyer",
    "ClockTick",
    "ReturnAnswered",
    "ReturnRequested",
    "CodeRegistered",
    "InterceptAnswered",
    "LinkAlternative",
    "LinkComponent",
    "LinkRemoved",
    "LinkSet",
    "LinkSku",
    "MerchantSettings",
    "MerchantTier",
    "OfferRenewed",
    "OfferSku",
    "OrderAddressChanged",
    "OrderCancelled",
    "OrderLine",
    "OrderPlaced",
    "OrderReleased",
    "OrderReview",
    "OrderShipped",
    "PrelinkPull",
    "ShopRegistered",
    "StockRule",
    "SupplierOffer",
    "SupplierPrice",
    "SupplierStock",
    "SupplierUpserted",
    "TrackingUploaded",
]

MAX_MESSAGE_BYTES = 1024 * 1024
MAX_REASON_CHARS = 300


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
    "reflow.in.allocation.rejected": AllocationRejected,
    "reflow.in.clock.tick": ClockTick,
    "reflow.in.return.requested": ReturnRequested,
    "reflow.in.return.answered": ReturnAnswered,
    "reflow.in.stock.rule": StockRule,
    "reflow.in.prelink.pull": PrelinkPull,
    "reflow.in.shop.registered": ShopRegistered,
    "reflow.in.merchant.tier": MerchantTier,
    "reflow.in.merchant.settings": MerchantSettings,
}

Inbound = Union[tuple(SUBJECTS.values())]  # type: ignore[valid-type]  # noqa: UP007 (a Union built at run time)

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
