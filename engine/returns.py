"""Returns to the supplier (rule RC6): a post-shipment after-sale of kind `return` (I2) is sent back
to the supplier of each shipped allocation that carries its lines, when the merchant asks; the
supplier answers `accepted` or `refused` (with a reason). An accepted return is a credit on that
supplier's next statement, at the price its lines were settled at, listed apart from the lines,
never credited twice (engine/statements.py keeps what each statement credited)."""

from __future__ import annotations

from datetime import datetime

from engine.base import Aggregate, Event, Value
from engine.errors import InvalidCommand, TrackingRefused

OUTCOMES = ("accepted", "refused")


class ReturnLine(Value, frozen=True):
    line_id: str
    offer_id: str
    supplier_sku_id: str
    qty: int


class SupplierReturn(Aggregate):
    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.return_id = self.allocation_id = self.supplier_id = self.aftersale_id = ""
        self.platform = self.shop_id = self.order_id = ""
        self.lines: tuple[ReturnLine, ...] = ()
        self.status = "requested"
        self.reason: str | None = None

    def request(self, at: datetime, **fields: object) -> bool:
        """Rule RC6: the supplier is asked to take the lines back; False when asked already."""
        if self.version:
            return False
        self.trigger(ReturnRequested, at, **fields)
        return True

    def answer(self, supplier_id: str, outcome: str, reason: str | None, at: datetime) -> bool:
        """Rule RC6: `accepted` (a credit) or `refused` with a reason; a second answer changes nothing."""
        if outcome not in OUTCOMES:
            raise InvalidCommand(f"outcome: must be accepted or refused, got {outcome!r}", "RC6")
        if outcome == "refused" and not (reason or "").strip():
            raise InvalidCommand("reason: a refused return needs a reason", "RC6")
        if supplier_id != self.supplier_id:
            raise TrackingRefused(f"supplier_id: return {self.return_id} was sent to another supplier", "RC6")
        if self.status != "requested":
            return False
        self.trigger(ReturnAnswered, at, outcome=outcome, reason=reason)
        return True


class ReturnRequested(Event, frozen=True):
    return_id: str
    allocation_id: str
    supplier_id: str
    platform: str
    shop_id: str
    order_id: str
    aftersale_id: str
    lines: tuple[ReturnLine, ...]
    reason: str

    def apply(self, r: SupplierReturn) -> None:
        r.return_id, r.allocation_id, r.supplier_id = self.return_id, self.allocation_id, self.supplier_id
        r.platform, r.shop_id, r.order_id, r.aftersale_id = self.platform, self.shop_id, self.order_id, self.aftersale_id
        r.lines = self.lines


class ReturnAnswered(Event, frozen=True):
    outcome: str
    reason: str | None = None

    def apply(self, r: SupplierReturn) -> None:
        r.status, r.reason = self.outcome, self.reason
