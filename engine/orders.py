"""The order: a consumer's purchase on a shop, its lines, and what reflow decided for them.

It decides its own lifecycle (holds, reviews, after-sales, address changes, cancellation, shipment
confirmation) and remembers which allocation carries which part of each line, so a bundle whose
parts went to several suppliers (L4) is re-routed only for the parts that were stopped."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from decimal import Decimal

import msgspec

from engine.base import Aggregate
from engine.errors import InvalidCommand, NotFound
from engine.order_events import (
    AddressChanged,
    AftersaleClosed,
    AftersaleOpened,
    AllocationEnded,
    OrderCancelled,
    OrderHeld,
    OrderPlaced,
    OrderReferenced,
    OrderReleased,
    OrderRouted,
    OrderShipped,
    OrderShippedElsewhere,
    ReviewChanged,
    ShippedDespiteIntercept,
)
from engine.policy import CandidateFacts, ComponentFacts, Decision, RoutingInput
from engine.values import Aftersale, AllocRef, LineIn, Package, Region, parse_money

AFTERSALE_KINDS = ("refund", "return", "exchange")
AFTERSALE_OUTCOMES = ("refunded", "rejected", "withdrawn")


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
        self.ended: dict[str, str] = {}  # allocation -> how it ended (intercepted/cancelled/rejected)
        self.excluded: set[str] = set()  # suppliers that rejected this order (RT11)
        self.aftersales: dict[str, Aftersale] = {}
        self.decisions = 0
        # What each line needs (the alternative chosen when it was last routed whole) and what
        # each allocation carries of it, so a line whose parts went to several suppliers (a
        # bundle, L4) is re-routed only for the parts that were stopped (I1, I4, L4).
        self.need: dict[str, CandidateFacts] = {}
        self.parts: dict[str, list[tuple[str, int, ComponentFacts]]] = {}  # allocation -> (line, alt, part)
        self.whole: dict[tuple[str, int], CandidateFacts] = {}  # (line, alternative) routed whole
        self.split: set[str] = set()  # lines last split over single-SKU alternatives (RT12)

    # -- commands ---------------------------------------------------------------------------

    def reference(self, platform: str, shop_id: str, order_id: str, at: datetime) -> None:
        """A fact about the order arrived before the order itself: keep it until the order comes."""
        if not self.version:
            self.trigger(OrderReferenced, at, platform=platform, shop_id=shop_id, order_id=order_id)

    def place(self, at: datetime, **fields: object) -> None:
        self.trigger(OrderPlaced, at, **fields)

    def hold(self, reason: str, at: datetime) -> None:
        """Rule I6: held for the merchant's review."""
        self.trigger(OrderHeld, at, reason=reason)

    def record_route(self, inp: RoutingInput, decision: Decision, refs: tuple[AllocRef, ...], trigger: str,
                     at: datetime) -> None:
        """Rule RT6: the decision with everything it was made from."""
        self.trigger(OrderRouted, at, input=inp, decision=decision, allocations=refs, trigger=trigger)

    def release(self, at: datetime) -> None:
        """Rules I5, I6: released by hand."""
        if self.held or "withheld" in self.route.values():
            self.trigger(OrderReleased, at)

    def review(self, under_review: bool, reason: str | None, at: datetime) -> bool:
        """Rule RT4; False when the review state does not change."""
        if self.under_review == under_review:
            return False
        self.trigger(ReviewChanged, at, under_review=under_review, reason=reason)
        return True

    def cancel(self, at: datetime) -> None:
        self.trigger(OrderCancelled, at)

    def ship_elsewhere(self, carrier: str | None, tracking_no: str | None, at: datetime) -> None:
        """Rule L10: shipped by other means; never routed again."""
        self.trigger(OrderShippedElsewhere, at, carrier=carrier, tracking_no=tracking_no)

    def open_aftersale(self, aftersale_id: str, kind: str, line_id: str | None, post_shipment: bool,
                       at: datetime) -> None:
        if line_id is not None and self.placed and line_id not in self.lines:
            raise InvalidCommand(f"line_id: order {self.order_id} has no line {line_id!r}", "I1")
        self.trigger(AftersaleOpened, at, aftersale_id=aftersale_id, kind=kind, line_id=line_id,
                     post_shipment=post_shipment)

    def close_aftersale(self, aftersale_id: str, outcome: str, at: datetime) -> bool:
        """Rule RT4: the line may be routed again; False when it was closed already."""
        if aftersale_id not in self.aftersales:
            raise NotFound(f"aftersale_id: {aftersale_id!r} was never opened on order {self.order_id}")
        if not self.aftersales[aftersale_id].open:
            return False
        self.trigger(AftersaleClosed, at, aftersale_id=aftersale_id, outcome=outcome)
        return True

    def change_address(self, region: Region, sealed: bytes, at: datetime) -> bool:
        """Rule I4: the newer address wins; an older change arriving late changes nothing."""
        if self.address_changed_at is not None and at < self.address_changed_at:
            return False
        if self.placed and self.placed_at and at < self.placed_at:
            return False
        self.trigger(AddressChanged, at, region=region, sealed_buyer=sealed)
        return True

    def allocation_ended(self, allocation_id: str, how: str, reason: str, by_merchant: bool,
                         at: datetime, exclude: bool = False) -> None:
        self.trigger(AllocationEnded, at, allocation_id=allocation_id, how=how, reason=reason,
                     by_merchant=by_merchant, **({"exclude": True} if exclude else {}))

    def shipped_despite_intercept(self, ref: AllocRef, at: datetime) -> None:
        """Rule I8 `too_late`: the parcel went out; the return is an after-sale after shipment."""
        self.trigger(ShippedDespiteIntercept, at, ref=ref)
        for line_id in ref.line_ids:
            self.trigger(AftersaleOpened, at, aftersale_id=f"{ref.allocation_id}-too-late-{line_id}",
                         kind="return", line_id=line_id, post_shipment=True)

    def confirm_shipment(self, packages: tuple[Package, ...], at: datetime) -> None:
        """Rule T2: one package per allocation, confirmed to the shop."""
        self.trigger(OrderShipped, at, packages=packages)

    # -- queries ----------------------------------------------------------------------------

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
        partly = any(self.live_parts(lid) for lid in needed)  # part of a bundle or split line (L4, RT12)
        return "partially_allocated" if allocated or partly else "unrouted"

    def has_open_aftersale(self, line_id: str | None = None) -> bool:
        return any(
            a.open and (line_id is None or a.line_id in (None, line_id))
            for a in self.aftersales.values()
        )

    def live_parts(self, line_id: str) -> Counter[tuple[str, str, str]]:
        """Units of each supplier SKU that live allocations carry for this line."""
        have: Counter[tuple[str, str, str]] = Counter()
        for comp in self.live_components(line_id):
            have[comp.key] += comp.need
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
            take = min(have[comp.key], comp.need)
            have[comp.key] -= take
            if comp.need > take:
                left.append(msgspec.structs.replace(comp, need=comp.need - take))
        return msgspec.structs.replace(need, components=tuple(left))

    def units_left(self, line_id: str) -> int | None:
        """Rule RT12: the units of a split line that no live allocation carries, when some do
        (each part a single supplier SKU: its units are its quantity over the reflow quantity)."""
        if line_id not in self.split or line_id not in self.lines:
            return None
        live = sum(comp.need // comp.qty for comp in self.live_components(line_id))
        left = self.lines[line_id].qty - live
        return left if live and left > 0 else None

    def live_components(self, line_id: str) -> list[ComponentFacts]:
        """The parts of this line that live allocations carry."""
        return [comp for allocation_id in self.allocations for lid, _, comp in self.parts.get(allocation_id, ())
                if lid == line_id]

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
            and not self.has_open_aftersale(line_id)
            and not self.refunded(line_id)
        ]

    def refunded(self, line_id: str) -> bool:
        return any(
            a.outcome == "refunded" and a.line_id in (None, line_id)
            for a in self.aftersales.values()
        )






def check_order_lines(lines: tuple[LineIn, ...]) -> None:
    """An order has lines, each with a quantity, a price, and an id of its own."""
    if not lines:
        raise InvalidCommand("lines: an order has at least one line")
    seen: set[str] = set()
    for i, line in enumerate(lines):
        if line.qty < 1:
            raise InvalidCommand(f"lines[{i}].qty: must be >= 1, got {line.qty}")
        parse_money(f"lines[{i}].unit_price", line.unit_price)
        if line.line_id in seen:
            raise InvalidCommand(f"lines[{i}].line_id: {line.line_id!r} appears twice")
        seen.add(line.line_id)


def check_aftersale(kind: str) -> None:
    if kind not in AFTERSALE_KINDS:
        raise InvalidCommand(f"kind: must be refund, return or exchange, got {kind!r}", "I1")


def check_outcome(outcome: str) -> None:
    if outcome not in AFTERSALE_OUTCOMES:
        raise InvalidCommand(f"outcome: must be refunded, rejected or withdrawn, got {outcome!r}")
