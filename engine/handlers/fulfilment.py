"""Allocations after they are sent: cancelled by the merchant (I5), intercepts answered (I8),
tracking uploaded (T1, I7), and shipment confirmed to the shop (T2)."""

from __future__ import annotations

from engine.commands import AnswerIntercept, CancelAllocation, CancelAllocations, RejectAllocation, UploadTracking
from engine.handlers.registry import handles
from engine.lifecycle import ended, maybe_ship, shipped_despite_intercept, stop, stop_active
from engine.routing import route
from engine.stocksync import supply_changed
from engine.uow import UnitOfWork


@handles(CancelAllocation)
def cancel_allocation(c: CancelAllocation, uow: UnitOfWork) -> None:
    """Rule I5: the merchant cancels one allocation by hand; its lines wait for a release."""
    alloc = uow.allocation(c.allocation_id)
    if alloc.stopped:
        return
    alloc.check_cancellable()
    order = uow.order(alloc.platform, alloc.shop_id, alloc.order_id)
    stop(uow, order, alloc, "cancelled", c.reason or "cancelled by merchant", c.at, by_merchant=True)


@handles(CancelAllocations)
def cancel_allocations(c: CancelAllocations, uow: UnitOfWork) -> int:
    """Rule I5 in a batch: every untracked allocation of the given orders; returns how many."""
    return sum(stop_active(uow, uow.order(c.platform, c.shop_id, oid), "cancelled",
                           c.reason or "cancelled by merchant", c.at, by_merchant=True)
               for oid in c.order_ids)


@handles(RejectAllocation)
def reject_allocation(c: RejectAllocation, uow: UnitOfWork) -> str:
    """Rule RT11: the allocation ends as rejected and gives its stock back; the reason tells what
    became of the supplier's SKUs; the lines are routed again at once, never again to that
    supplier for this order. `rejected`, or `duplicate` for a rejection already recorded."""
    alloc = uow.allocation(c.allocation_id, "RT11")
    at = max(c.at, alloc.allocated_at or c.at)  # a supplier's clock behind ours: never before the allocation
    if not alloc.reject(c.supplier_id, c.reason, c.note, at):
        return "duplicate"
    order = uow.order(alloc.platform, alloc.shop_id, alloc.order_id)
    ended(uow, order, alloc, "rejected", c.reason, at)
    for offer_id, sku_id in sorted({(line.offer_id, line.supplier_sku_id) for line in alloc.lines}):
        uow.offer(alloc.supplier_id, offer_id).reject_sku(sku_id, c.reason, alloc.allocation_id, at)
    supply_changed(uow, {alloc.supplier_id}, at, "rejection")  # stock, link health, other waiting lines
    route(uow, order, at, "rejected")  # then this order's lines, once
    return "rejected"


@handles(AnswerIntercept)
def answer_intercept(c: AnswerIntercept, uow: UnitOfWork) -> None:
    """Rule I8: `stopped`, or `too_late` with tracking: shipped, with a post-shipment after-sale."""
    alloc = uow.allocation(c.allocation_id)
    if alloc.answer_intercept(c.supplier_id, c.outcome, c.carrier, c.tracking_no, c.at) and c.outcome == "too_late":
        shipped_despite_intercept(uow, uow.order(alloc.platform, alloc.shop_id, alloc.order_id), alloc, c.at)


@handles(UploadTracking)
def upload_tracking(c: UploadTracking, uow: UnitOfWork) -> str:
    """Rules T1, T2, I7: `tracked`, `shipped` (confirmed to the shop), `duplicate`, or `loss_risk`."""
    alloc = uow.allocation(c.allocation_id)
    result = alloc.upload_tracking(c.supplier_id, c.carrier, c.tracking_no, c.at)
    if result != "tracked":
        return result
    for offer_id in sorted({line.offer_id for line in alloc.lines}):
        uow.offer(c.supplier_id, offer_id).ship(c.allocation_id, c.at)
    order = uow.order(alloc.platform, alloc.shop_id, alloc.order_id)
    return "shipped" if maybe_ship(uow, order, c.at) else "tracked"
