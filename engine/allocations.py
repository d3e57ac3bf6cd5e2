"""Allocations: what one supplier is asked to ship for one order (RT5), and what becomes of it:
intercepted or cancelled (I1-I5), answered (I8), tracked (T1), shipped (T2), loss risks (I7)."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal

from engine.base import Aggregate, Event, Value
from engine.errors import InvalidCommand, TrackingRefused
from engine.privacy import Recipient

TRACKING_NO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{5,39}$")
CARRIER = re.compile(r"^[\w\u4e00-\u9fff .-]{2,32}$")
REJECT_REASONS = ("out_of_stock", "sku_changed", "cannot_ship_to", "price_changed", "other")  # rule RT11



class AllocLine(Value, frozen=True):
    line_id: str
    offer_id: str
    supplier_sku_id: str
    title: str
    spec: str
    qty: int
    unit_cost: Decimal | None
    amount: Decimal | None
    product_id: str = ""
    link_version: int | None = None


class Allocation(Aggregate):
    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.allocation_id = self.supplier_id = ""
        self.platform = self.shop_id = self.order_id = ""
        self.status = "active"
        self.lines: tuple[AllocLine, ...] = ()
        self.allocated_at: datetime | None = None
        self.ship_by: datetime | None = None
        self.carrier: str | None = None
        self.tracking_no: str | None = None
        self.tracked_at: datetime | None = None
        self.intercepted_at: datetime | None = None
        self.intercept_reason: str | None = None
        self.answer: str | None = None
        self.loss_risks = 0
        self.reminded_at: datetime | None = None  # the overdue reminder (T4)
        self.loss_risk_parcels: set[tuple[str, str]] = set()  # (carrier, tracking_no) seen after a stop

    @property
    def line_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(line.line_id for line in self.lines))

    @property
    def stopped(self) -> bool:
        """Intercepted, cancelled or rejected: the supplier is not to ship it."""
        return self.status in ("intercepted", "cancelled", "rejected")

    # -- commands ---------------------------------------------------------------------------

    def allocate(self, at: datetime, **fields: object) -> None:
        """Rules RT5, P1, T3: one supplier's purchase order, with a masked recipient and ship-by."""
        self.trigger(Allocated, at, **fields)

    def stop(self, how: str, reason: str, at: datetime) -> None:
        """Rules I1, I3, I4, I5: intercept or cancel; the supplier is told to stop."""
        self.trigger(InterceptRequested if how == "intercepted" else AllocationCancelled, at, reason=reason)

    def reject(self, supplier_id: str, reason: str, note: str | None, at: datetime) -> bool:
        """Rule RT11: the supplier cannot fill it, before tracking; False for a repeated rejection."""
        if reason not in REJECT_REASONS:
            raise InvalidCommand(f"reason: must be one of {', '.join(REJECT_REASONS)}, got {reason!r}", "RT11")
        self.check_owner(supplier_id, "RT11")
        if self.status == "rejected":
            return False
        if self.tracking_no is not None:
            raise TrackingRefused(
                f"allocation_id: {self.allocation_id} already has tracking {self.tracking_no}; "
                "a rejection comes before tracking", "RT11")
        if self.stopped:
            raise InvalidCommand(
                f"allocation_id: {self.allocation_id} was {self.status} ({self.intercept_reason}); "
                "answer the intercept instead", "RT11")
        self.trigger(AllocationRejected, at, reason=reason, note=note)
        return True

    def remind_overdue(self, due: datetime, now: datetime) -> bool:
        """Rule T4: still without tracking at its ship-by time: one reminder to the supplier."""
        if self.status != "active" or self.reminded_at is not None:
            return False
        self.trigger(AllocationOverdue, due, ship_by=self.ship_by, reminded_at=now,
                     hours_overdue=round(max((now - due).total_seconds(), 0) / 3600, 1))
        return True

    def check_cancellable(self) -> None:
        """Rule I5: only an allocation without tracking can be cancelled by hand."""
        if self.status != "active" and not self.stopped:
            raise InvalidCommand(
                f"allocation_id: {self.allocation_id} already has tracking ({self.status}); "
                "open an after-sale instead", "I5")

    def check_owner(self, supplier_id: str, rule: str) -> None:
        """Rules T1, I8: only the supplier the allocation went to may answer for it."""
        if self.supplier_id != supplier_id:
            raise TrackingRefused(f"supplier_id: allocation {self.allocation_id} belongs to another supplier", rule)

    def answer_intercept(self, supplier_id: str, outcome: str, carrier: str | None, tracking_no: str | None,
                         at: datetime) -> bool:
        """Rule I8: `stopped`, or `too_late` with tracking. False for a repeated answer."""
        if outcome not in ("stopped", "too_late"):
            raise InvalidCommand(f"outcome: must be stopped or too_late, got {outcome!r}", "I8")
        if outcome == "too_late":
            missing = [name for name, value in (("carrier", carrier), ("tracking_no", tracking_no)) if not value]
            if missing:
                raise InvalidCommand(f"outcome too_late requires {', '.join(missing)}", "I8")
            check_tracking(carrier, tracking_no)
        self.check_owner(supplier_id, "I8")
        if self.answer is not None:
            return False
        if self.status not in ("intercepted", "cancelled"):
            raise InvalidCommand(f"allocation_id: {self.allocation_id} was not intercepted", "I8")
        self.trigger(InterceptAnswered, at, outcome=outcome, carrier=carrier, tracking_no=tracking_no)
        return True

    def upload_tracking(self, supplier_id: str, carrier: str, tracking_no: str, at: datetime) -> str:
        """Rules T1, I7: `tracked`, `duplicate`, or `loss_risk` (the allocation was stopped)."""
        check_tracking(carrier, tracking_no)
        self.check_owner(supplier_id, "T1")
        if self.tracking_no is not None:
            if (self.carrier, self.tracking_no) == (carrier, tracking_no):
                return "duplicate"
            raise TrackingRefused(
                f"tracking_no: allocation {self.allocation_id} already has tracking {self.tracking_no}", "T1")
        if self.stopped:
            if (carrier, tracking_no) in self.loss_risk_parcels:
                return "duplicate"  # the same parcel reported again: one risk, not two (I7)
            self.trigger(LossRiskRecorded, at, carrier=carrier, tracking_no=tracking_no,
                         reason=f"tracking after {self.status}: {self.intercept_reason}")
            return "loss_risk"
        self.trigger(TrackingUploaded, at, carrier=carrier, tracking_no=tracking_no, late=at > self.ship_by)
        return "tracked"

    def confirm_shipped(self, at: datetime) -> None:
        """Rule T2: its package was confirmed to the shop."""
        if self.status == "tracked":
            self.trigger(AllocationShipped, at)


def check_tracking(carrier: str | None, tracking_no: str | None) -> None:
    """Rule T1: a carrier name and a plausible tracking number."""
    if not carrier or not CARRIER.match(carrier):
        raise TrackingRefused(f"carrier: {carrier!r} is not a carrier name", "T1")
    if not tracking_no or not TRACKING_NO.match(tracking_no):
        raise TrackingRefused(
            f"tracking_no: {tracking_no!r} is not a tracking number (6-40 letters, digits, dashes)", "T1")


class Allocated(Event, frozen=True):
    allocation_id: str
    platform: str
    shop_id: str
    order_id: str
    merchant_id: str
    supplier_id: str
    lines: tuple[AllocLine, ...]
    recipient: Recipient
    recipient_token: str
    ship_by: datetime
    channel: str | None = None
    trigger: str = "placed"

    def apply(self, a: Allocation) -> None:
        a.allocation_id, a.supplier_id = self.allocation_id, self.supplier_id
        a.platform, a.shop_id, a.order_id = self.platform, self.shop_id, self.order_id
        a.lines, a.allocated_at, a.ship_by = self.lines, self.at, self.ship_by


class InterceptRequested(Event, frozen=True):
    """The supplier is told to stop (rules I1, I4); it answers with I8."""

    reason: str

    def apply(self, a: Allocation) -> None:
        a.status, a.intercepted_at, a.intercept_reason = "intercepted", self.at, self.reason


class AllocationCancelled(Event, frozen=True):
    """Cancelled by the merchant (I5) or by a review (I3); the supplier is told to stop."""

    reason: str

    def apply(self, a: Allocation) -> None:
        a.status, a.intercepted_at, a.intercept_reason = "cancelled", self.at, self.reason


class AllocationRejected(Event, frozen=True):
    """Rule RT11: the supplier said it cannot fill the allocation, and why."""

    reason: str
    note: str | None = None

    def apply(self, a: Allocation) -> None:
        a.status, a.intercepted_at, a.intercept_reason = "rejected", self.at, self.reason


class AllocationOverdue(Event, frozen=True):
    """Rule T4: no tracking by the ship-by time; the supplier is reminded once (at `reminded_at`,
    when the clock passed the deadline: later than `at` if reflow was down then)."""

    ship_by: datetime
    reminded_at: datetime
    hours_overdue: float

    def apply(self, a: Allocation) -> None:
        a.reminded_at = self.reminded_at


class InterceptAnswered(Event, frozen=True):
    """Rule I8: `stopped`, or `too_late` with the tracking number of the parcel already sent."""

    outcome: str
    carrier: str | None = None
    tracking_no: str | None = None

    def apply(self, a: Allocation) -> None:
        a.answer = self.outcome
        if self.outcome == "too_late":
            a.status, a.carrier, a.tracking_no, a.tracked_at = (
                "shipped", self.carrier, self.tracking_no, self.at,
            )


class TrackingUploaded(Event, frozen=True):
    carrier: str
    tracking_no: str
    late: bool

    def apply(self, a: Allocation) -> None:
        a.status, a.carrier, a.tracking_no, a.tracked_at = "tracked", self.carrier, self.tracking_no, self.at


class LossRiskRecorded(Event, frozen=True):
    """Rule I7: tracking came for a stopped allocation; the supplier may have shipped anyway."""

    carrier: str
    tracking_no: str
    reason: str

    def apply(self, a: Allocation) -> None:
        a.loss_risks += 1
        a.loss_risk_parcels.add((self.carrier, self.tracking_no))


class AllocationShipped(Event, frozen=True):
    def apply(self, a: Allocation) -> None:
        a.status = "shipped"


