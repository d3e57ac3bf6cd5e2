"""The overdue watch (rule T4): an allocation still without tracking at its ship-by time (T3) is
overdue. Its supplier gets one reminder; where the merchant set `reroute_overdue_hours = N`, an
allocation still untracked N hours after ship-by is intercepted with reason `overdue` and its lines
are routed again, never again to that supplier for this order.

Both are deadlines (engine/clock.py): the ship-by time is set when the allocation is made
(`engine.routing.allocate`), the re-route when the reminder goes out; each is passed as events when
the clock reaches it, whether serve was running then or catches up later."""

from __future__ import annotations

from datetime import datetime, timedelta

from engine import ids
from engine.allocations import Allocation
from engine.clock import on_deadline, schedule
from engine.lifecycle import stop
from engine.order_events import OVERDUE
from engine.routing import route, settings_of
from engine.uow import UnitOfWork


@on_deadline("ship_by")
def ship_by_passed(uow: UnitOfWork, allocation_id: str, due: datetime, now: datetime) -> None:
    alloc = uow.get(Allocation, ids.allocation_uuid(allocation_id))
    if alloc is None or not alloc.remind_overdue(due, now):
        return  # tracked, stopped, or reminded already
    hours = settings_of(uow, uow.order(alloc.platform, alloc.shop_id, alloc.order_id).merchant_id
                        ).reroute_overdue_hours
    if hours:
        schedule(uow, due + timedelta(hours=hours), "overdue_reroute", allocation_id, due)


@on_deadline("overdue_reroute")
def reroute_overdue(uow: UnitOfWork, allocation_id: str, due: datetime, now: datetime) -> None:
    alloc = uow.get(Allocation, ids.allocation_uuid(allocation_id))
    if alloc is None or alloc.status != "active":
        return  # tracked (late, T3) or stopped meanwhile
    order = uow.order(alloc.platform, alloc.shop_id, alloc.order_id)
    stop(uow, order, alloc, "intercepted", OVERDUE, due, exclude=True)
    route(uow, order, max(now, due), OVERDUE)  # a router catching up gives the next supplier time from now
