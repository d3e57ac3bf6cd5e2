"""What happens to allocations after routing, across the order and its allocations: stopping
them (I1, I3, I4, I5), a parcel that went out anyway (I8), and confirming shipment (T2)."""

from __future__ import annotations

from datetime import datetime

from engine.allocations import Allocation
from engine.orders import Order
from engine.routing import per_offer
from engine.uow import UnitOfWork
from engine.values import AllocRef, Package


def stop(uow: UnitOfWork, order: Order, alloc: Allocation, how: str, reason: str, at: datetime,
         by_merchant: bool = False, exclude: bool = False) -> None:
    """Intercept or cancel an untracked allocation and release its stock (I1, I3, I4, I5, RT7)."""
    alloc.stop(how, reason, at)
    ended(uow, order, alloc, how, reason, at, by_merchant, exclude)


def ended(uow: UnitOfWork, order: Order, alloc: Allocation, how: str, reason: str, at: datetime,
          by_merchant: bool = False, exclude: bool = False) -> None:
    """An allocation that will not ship (stopped, or rejected by its supplier, RT11): its stock is
    released (RT7), its units go back to the supplier's day (RT13), and its lines wait again."""
    for offer_id in sorted({line.offer_id for line in alloc.lines}):
        offer = uow.get_offer(alloc.supplier_id, offer_id)
        if offer is not None:
            offer.release(alloc.allocation_id, reason, at)
    if alloc.allocated_at is not None:
        uow.supplier(alloc.supplier_id).release_capacity(alloc.allocation_id, alloc.allocated_at,
                                                         sum(line.qty for line in alloc.lines), at)
    order.allocation_ended(alloc.allocation_id, how, reason, by_merchant, at, exclude)


def stop_active(uow: UnitOfWork, order: Order, how: str, reason: str, at: datetime, *,
                line_id: str | None = None, by_merchant: bool = False) -> int:
    """Stop every untracked allocation of the order (or of one line); how many were stopped."""
    n = 0
    for alloc in uow.live(order):
        if alloc.status == "active" and (line_id is None or line_id in alloc.line_ids):
            stop(uow, order, alloc, how, reason, at, by_merchant)
            n += 1
    return n


def shipped_despite_intercept(uow: UnitOfWork, order: Order, alloc: Allocation, at: datetime) -> None:
    """Rule I8 `too_late`: the parcel is out; the units left, a replacement for the same parts must
    not ship a second parcel, and the return is a post-shipment after-sale."""
    for offer_id, items in per_offer(alloc.lines).items():
        uow.offer(alloc.supplier_id, offer_id).ship_late(alloc.allocation_id, items, at)
    for other in uow.live(order):
        if other.status == "active" and superseded(order, alloc, other):
            stop(uow, order, other, "intercepted", f"superseded: {alloc.allocation_id} shipped despite intercept", at)
    order.shipped_despite_intercept(
        AllocRef(allocation_id=alloc.allocation_id, supplier_id=alloc.supplier_id, line_ids=alloc.line_ids), at)
    maybe_ship(uow, order, at)


def superseded(order: Order, shipped: Allocation, other: Allocation) -> bool:
    """Does a parcel that went out anyway make this live allocation redundant? Where it carries the
    same parts of a line, or a line served by another alternative; a bundle's other parts, at other
    suppliers, still ship (L4)."""
    mine = order.parts.get(shipped.allocation_id, [])
    theirs = order.parts.get(other.allocation_id, [])
    if not mine or not theirs:
        return bool(set(other.line_ids) & set(shipped.line_ids))
    keys = {(lid, c.key) for lid, _, c in mine}
    alternatives = {(lid, index) for lid, index, _ in mine}
    lines = {lid for lid, _ in alternatives}
    return any((lid, c.key) in keys
               or (lid in lines and (lid, index) not in alternatives)
               for lid, index, c in theirs)


def maybe_ship(uow: UnitOfWork, order: Order, at: datetime) -> bool:
    """Rule T2: when every live allocation has tracking and no line still waits for a supplier
    (every part of a bundle line tracked, L4), confirm shipment to the shop, one package per
    allocation. A line set aside under a refund opened before tracking does not wait; should that
    refund be rejected, its own allocation is confirmed later in a shipment of its own."""
    if order.cancelled or order.shipped_elsewhere:
        return False
    live = uow.live(order)
    new = [a for a in live if a.allocation_id not in order.packaged]
    if not new or any(a.status not in ("tracked", "shipped") for a in live):
        return False
    if any(not order.covered(lid) and not order.refunded(lid) and not order.set_aside(lid) for lid in order.lines):
        return False
    order.confirm_shipment(tuple(
        Package(allocation_id=a.allocation_id, carrier=a.carrier or "", tracking_no=a.tracking_no or "",
                line_ids=a.line_ids) for a in new), at)
    for a in new:
        a.confirm_shipped(at)
    return True
