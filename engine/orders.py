"""Orders, allocations and the per-product backlog of lines waiting to be routed."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from collections import Counter

import msgspec

from engine.base import Aggregate, Event, Value
from engine.policy import CandidateFacts, ComponentFacts, Decision, RoutingInput
from engine.privacy import Recipient
from engine.values import LineIn, Region

# -- Order ------------------------------------------------------------------------------------


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


class Order(Aggregate):
    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.platform = self.shop_id = self.order_id = self.merchant_id = ""
        self.channel: str | None = None
        self.placed = False
        self.placed_at: datetime | None = None
        self.lines: dict[str, LineIn] = {}
        self.region: Region | None = None
        self.sealed = b""
        self.address_changed_at: datetime | None = None
        self.under_review = False
        self.held: str | None = None
        self.cancelled = False
        self.shipped = False  # shipment confirmed to the shop (T2), or shipped by other means
        self.shipped_elsewhere = False
        self.packaged: set[str] = set()  # allocations already confirmed to the shop in a package
        self.route: dict[str, str] = {}  # line -> allocated / unroutable / unrouted / ended
        self.unroutable: dict[str, str] = {}  # line -> reason (RT3)
        self.allocations: dict[str, AllocRef] = {}  # live ones (active or tracked)
        self.ended: dict[str, str] = {}  # allocation -> how it ended (intercepted/cancelled)
        self.aftersales: dict[str, Aftersale] = {}
        self.decisions = 0
        # What each line needs (the alternative chosen when it was last routed whole) and what
        # each allocation carries of it, so a line whose parts went to several suppliers (a
        # bundle, L4) is re-routed only for the parts that were stopped (I1, I4, L4).
        self.need: dict[str, CandidateFacts] = {}
        self.parts: dict[str, list[tuple[str, int, ComponentFacts]]] = {}  # allocation -> (line, alt, part)
        self.whole: dict[tuple[str, int], CandidateFacts] = {}  # (line, alternative) routed whole

    @property
    def amount(self) -> Decimal:
        return sum((line.unit_price * line.qty for line in self.lines.values()), Decimal(0))

    @property
    def status(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.shipped:
            return "shipped"
        if self.under_review or self.held:
            return "held"
        needed = [lid for lid in self.lines if not self.refunded(lid)]
        allocated = sum(1 for lid in needed if self.route.get(lid) == "allocated")
        if allocated and allocated == len(needed):
            return "allocated"
        return "partially_allocated" if allocated else "unrouted"

    def open_aftersale(self, line_id: str | None = None) -> bool:
        return any(
            a.open and (line_id is None or a.line_id in (None, line_id))
            for a in self.aftersales.values()
        )

    def live_parts(self, line_id: str) -> Counter[tuple[str, str, str]]:
        """Units of each supplier SKU that live allocations carry for this line."""
        have: Counter[tuple[str, str, str]] = Counter()
        for allocation_id in self.allocations:
            for lid, _, comp in self.parts.get(allocation_id, ()):
                if lid == line_id:
                    have[_part_key(comp)] += comp.need
        return have

    def missing(self, line_id: str) -> CandidateFacts | None:
        """Rules L4, I1, I4: the parts of a line that no live allocation carries, when some do.

        None when no live allocation carries any part of the line (it is routed whole, over every
        alternative). Otherwise the line's chosen alternative reduced to what is missing; its
        components are empty when the line is whole."""
        have = self.live_parts(line_id)
        need = self.need.get(line_id)
        if not have or need is None:
            return None
        left = []
        for comp in need.components:
            take = min(have[_part_key(comp)], comp.need)
            have[_part_key(comp)] -= take
            if comp.need > take:
                left.append(msgspec.structs.replace(comp, need=comp.need - take))
        return msgspec.structs.replace(need, components=tuple(left))

    def covered(self, line_id: str) -> bool:
        """Every part of the line is carried by a live allocation."""
        rest = self.missing(line_id)
        return rest is not None and not rest.components

    def set_aside(self, line_id: str) -> bool:
        """Rule T2 (choice): a line under an open refund or return opened before tracking does not
        hold back the shipment of the rest; if the after-sale is rejected, it ships on its own."""
        return any(
            a.open and not a.post_shipment and a.kind in ("refund", "return") and a.line_id == line_id
            for a in self.aftersales.values()
        )

    def routable_lines(self) -> list[LineIn]:
        """Lines waiting for a supplier: not allocated, not stopped by an after-sale (RT4).

        After a shipment confirmation only a line that was set aside (T2) can still wait."""
        if not self.placed or self.cancelled or self.shipped_elsewhere or self.under_review or self.held:
            return []
        return [
            line
            for line_id, line in self.lines.items()
            if self.route.get(line_id) in ("unrouted", "unroutable")
            and not self.open_aftersale(line_id)
            and not self.refunded(line_id)
        ]

    def refunded(self, line_id: str) -> bool:
        return any(
            a.outcome == "refunded" and a.line_id in (None, line_id)
            for a in self.aftersales.values()
        )


class OrderReferenced(Event, frozen=True):
    """A fact about an order arrived before the order itself (platforms send such)."""

    platform: str
    shop_id: str
    order_id: str

    def apply(self, o: Order) -> None:
        o.platform, o.shop_id, o.order_id = self.platform, self.shop_id, self.order_id


class OrderPlaced(Event, frozen=True):
    platform: str
    shop_id: str
    order_id: str
    merchant_id: str
    lines: tuple[LineIn, ...]
    region: Region
    sealed_buyer: bytes
    channel: str | None = None
    sealed_remark: bytes | None = None

    def apply(self, o: Order) -> None:
        o.platform, o.shop_id, o.order_id = self.platform, self.shop_id, self.order_id
        o.merchant_id, o.channel, o.placed, o.placed_at = self.merchant_id, self.channel, True, self.at
        o.lines = {line.line_id: line for line in self.lines}
        o.route = {line.line_id: "unrouted" for line in self.lines}
        if o.address_changed_at is None or o.address_changed_at < self.at:
            o.region, o.sealed = self.region, self.sealed_buyer


class OrderRouted(Event, frozen=True):
    """A routing decision with everything it was made from (rule RT6)."""

    input: RoutingInput
    decision: Decision
    allocations: tuple[AllocRef, ...]
    trigger: str

    def apply(self, o: Order) -> None:
        o.decisions += 1
        facts = {lf.line_id: lf for lf in self.input.lines}
        for line in self.decision.lines:
            if line.chosen is not None:
                chosen = next(c for c in facts[line.line_id].candidates if c.index == line.chosen)
                if not o.live_parts(line.line_id):  # routed whole; else only its missing parts
                    o.need[line.line_id] = o.whole[(line.line_id, chosen.index)] = chosen
                for comp in chosen.components:
                    ref = next((r for r in self.allocations if r.supplier_id == comp.supplier_id
                                and line.line_id in r.line_ids), None)
                    if ref is not None:
                        o.parts.setdefault(ref.allocation_id, []).append((line.line_id, chosen.index, comp))
                o.route[line.line_id] = "allocated"
                o.unroutable.pop(line.line_id, None)
            elif line.unroutable is not None:
                o.route[line.line_id] = "unroutable"
                o.unroutable[line.line_id] = line.unroutable
        for ref in self.allocations:
            o.allocations[ref.allocation_id] = ref


class OrderHeld(Event, frozen=True):
    """Held for review by a merchant interception rule (rule I6)."""

    reason: str

    def apply(self, o: Order) -> None:
        o.held = self.reason


class OrderReleased(Event, frozen=True):
    def apply(self, o: Order) -> None:
        o.held = None
        for line_id, state in o.route.items():
            if state == "withheld":
                o.route[line_id] = "unrouted"


class ReviewChanged(Event, frozen=True):
    under_review: bool
    reason: str | None = None

    def apply(self, o: Order) -> None:
        o.under_review = self.under_review


class AllocationEnded(Event, frozen=True):
    """One of the order's allocations was intercepted or cancelled; its lines wait again."""

    allocation_id: str
    how: str
    reason: str
    by_merchant: bool = False
    """Cancelled by hand (I5): its lines wait for the merchant's release, not for re-routing."""

    def apply(self, o: Order) -> None:
        ref = o.allocations.pop(self.allocation_id, None)
        o.ended[self.allocation_id] = self.how
        if ref is not None:
            for line_id in ref.line_ids:
                o.route[line_id] = "withheld" if self.by_merchant else "unrouted"


class ShippedDespiteIntercept(Event, frozen=True):
    """Rule I8 `too_late`: the stopped allocation's parcel went out; it covers its lines again."""

    ref: AllocRef

    def apply(self, o: Order) -> None:
        o.allocations[self.ref.allocation_id] = self.ref
        o.ended.pop(self.ref.allocation_id, None)
        for lid, index, _ in o.parts.get(self.ref.allocation_id, ()):
            need = o.need.get(lid)
            if need is not None and need.index != index and (lid, index) in o.whole:
                o.need[lid] = o.whole[(lid, index)]  # the line is served by this parcel's alternative
        for line_id in self.ref.line_ids:
            if o.missing(line_id) is None or o.covered(line_id):
                o.route[line_id] = "allocated"


class AftersaleOpened(Event, frozen=True):
    aftersale_id: str
    kind: str
    line_id: str | None
    post_shipment: bool

    def apply(self, o: Order) -> None:
        o.aftersales[self.aftersale_id] = Aftersale(
            aftersale_id=self.aftersale_id, kind=self.kind, line_id=self.line_id,
            post_shipment=self.post_shipment,
        )


class AftersaleClosed(Event, frozen=True):
    aftersale_id: str
    outcome: str

    def apply(self, o: Order) -> None:
        a = o.aftersales[self.aftersale_id]
        o.aftersales[self.aftersale_id] = Aftersale(
            aftersale_id=a.aftersale_id, kind=a.kind, line_id=a.line_id,
            post_shipment=a.post_shipment, open=False, outcome=self.outcome,
        )


class AddressChanged(Event, frozen=True):
    region: Region
    sealed_buyer: bytes

    def apply(self, o: Order) -> None:
        o.region, o.sealed, o.address_changed_at = self.region, self.sealed_buyer, self.at


class OrderCancelled(Event, frozen=True):
    def apply(self, o: Order) -> None:
        o.cancelled = True


class OrderShipped(Event, frozen=True):
    """Shipment confirmed to the shop, one package per allocation (rule T2)."""

    packages: tuple[Package, ...]

    def apply(self, o: Order) -> None:
        o.shipped = True
        o.packaged.update(p.allocation_id for p in self.packages)


class OrderShippedElsewhere(Event, frozen=True):
    """The shop reports the order shipped by other means (the merchant sent it himself, rule L10)."""

    carrier: str | None = None
    tracking_no: str | None = None

    def apply(self, o: Order) -> None:
        o.shipped = o.shipped_elsewhere = True


def _part_key(comp: ComponentFacts) -> tuple[str, str, str]:
    return (comp.supplier_id, comp.offer_id, comp.supplier_sku_id)


# -- Allocation -------------------------------------------------------------------------------


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
        self.loss_risk_parcels: set[tuple[str, str]] = set()  # (carrier, tracking_no) seen after a stop

    @property
    def line_ids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(line.line_id for line in self.lines))

    @property
    def stopped(self) -> bool:
        return self.status in ("intercepted", "cancelled")


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


# -- Backlog per shop product (rules RT3, L10) -------------------------------------------------


class Parked(Value, frozen=True):
    order_id: str
    reason: str
    placed_at: datetime
    suppliers: tuple[str, ...] = ()


class Backlog(Aggregate):
    """Orders of one shop product with lines waiting: `no_link` ones wait for pull pre-link (L10),
    the others are re-routed when stock, a supplier, an offer or the link changes (RT3)."""

    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.platform = self.shop_id = self.product_id = ""
        self.waiting: dict[str, Parked] = {}


class LinesParked(Event, frozen=True):
    platform: str
    shop_id: str
    product_id: str
    entry: Parked

    def apply(self, b: Backlog) -> None:
        b.platform, b.shop_id, b.product_id = self.platform, self.shop_id, self.product_id
        b.waiting[self.entry.order_id] = self.entry


class LinesUnparked(Event, frozen=True):
    order_id: str

    def apply(self, b: Backlog) -> None:
        b.waiting.pop(self.order_id, None)
