"""The events of an order's life (rules L9, RT4-RT6, I1-I8, T2), each applied to its `Order`."""

from __future__ import annotations

from typing import Any

import msgspec

from engine.base import Event
from engine.policy import Decision, RoutingInput, picked
from engine.values import Aftersale, AllocRef, LineIn, Package, Region

OVERDUE = "overdue"  # rule T4: the reason of an intercept for an allocation overdue too long
Order = Any  # engine.orders.Order, which imports these events (so no import back: no cycle)


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
                served = picked(facts[line.line_id], line)
                if not o.live_parts(line.line_id):  # routed whole; else only its missing parts
                    chosen = served[0] if len(served) == 1 else msgspec.structs.replace(
                        served[0], components=tuple(c for s in served for c in s.components))  # split (RT12)
                    o.need[line.line_id] = chosen
                    if len(served) == 1:
                        o.whole[(line.line_id, chosen.index)] = chosen
                    if len(served) > 1 and all(len(s.components) == 1 for s in served):
                        o.split.add(line.line_id)
                    else:
                        o.split.discard(line.line_id)
                elif facts[line.line_id].matched_by == "remaining_units":  # RT12: the missing units, anew
                    o.need[line.line_id] = msgspec.structs.replace(o.need[line.line_id], components=tuple(
                        o.live_components(line.line_id)) + tuple(c for s in served for c in s.components))
                    if not all(len(s.components) == 1 for s in served):
                        o.split.discard(line.line_id)
                for cand in served:
                    for comp in cand.components:
                        ref = next((r for r in self.allocations if r.supplier_id == comp.supplier_id
                                    and line.line_id in r.line_ids), None)
                        if ref is not None:
                            o.parts.setdefault(ref.allocation_id, []).append((line.line_id, cand.index, comp))
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
    """One of the order's allocations was intercepted, cancelled or rejected (RT11); its lines wait
    again."""

    allocation_id: str
    how: str
    reason: str
    by_merchant: bool = False
    """Cancelled by hand (I5): its lines wait for the merchant's release, not for re-routing."""
    exclude: bool = False
    """Its supplier is never used again for this order (T4 overdue; RT11 rejections say so by `how`)."""

    def apply(self, o: Order) -> None:
        ref = o.allocations.pop(self.allocation_id, None)
        o.ended[self.allocation_id] = self.how
        if ref is not None and (self.how == "rejected" or self.exclude):
            o.excluded.add(ref.supplier_id)  # rules RT11, T4: never again to that supplier for this order
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
