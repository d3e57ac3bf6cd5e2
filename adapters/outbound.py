"""NATS out: publish what the event log says (CONTRACT section 2), at least once, deduplicated.

The publisher reads the event store's notification log from its position, filtered on the five
topics that concern suppliers and shops, maps each event to its contract body and publishes it to
``REFLOW_OUT`` with ``Nats-Msg-Id = reflow-out-<notification id>``. It keeps no state of its own:
on start it reads the last message of ``REFLOW_OUT`` and resumes after the notification that
message names. A re-publish after a crash (a batch that landed but was not yet confirmed) is
dropped by the stream's duplicate window.

Suppliers see only what rule P1 allows: title, spec, quantity, the masked recipient and a token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import Executor
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from engine.allocations import Allocated, AllocationCancelled, AllocationOverdue, InterceptRequested
from engine.app import Reflow
from engine.base import Event, topics_of
from engine.linking import LinkHealthChanged, StockPublished
from engine.order_events import OrderShipped
from engine.privacy import Recipient
from engine.returns import ReturnRequested

log = logging.getLogger("reflow.outbound")

STREAM = "REFLOW_OUT"
MSG_ID_PREFIX = "reflow-out-"
TOPICS = tuple(t for c in (Allocated, InterceptRequested, AllocationCancelled, OrderShipped, StockPublished,
                           LinkHealthChanged, AllocationOverdue, ReturnRequested)
               for t in topics_of(c))
"""Every topic these events are stored under (also the ones they had before they moved)."""


# -- contract bodies ----------------------------------------------------------------------------


class AllocationLineOut(msgspec.Struct, frozen=True):
    offer_id: str
    supplier_sku_id: str
    title: str
    spec: str
    qty: int


class AllocationOut(msgspec.Struct, frozen=True):
    """reflow.out.supplier.<supplier_id>.allocation"""

    allocation_id: str
    supplier_id: str
    lines: list[AllocationLineOut]
    recipient: Recipient
    recipient_token: str
    allocated_at: datetime
    ship_by: datetime


class InterceptOut(msgspec.Struct, frozen=True):
    """reflow.out.supplier.<supplier_id>.intercept"""

    allocation_id: str
    reason: str
    requested_at: datetime | None = None
    """When the fact that stopped it happened (an addition to the contract)."""


class OverdueOut(msgspec.Struct, frozen=True):
    """reflow.out.supplier.<supplier_id>.overdue (T4): once per allocation."""

    allocation_id: str
    ship_by: datetime
    hours_overdue: float


class ReturnLineOut(msgspec.Struct, frozen=True):
    offer_id: str
    supplier_sku_id: str
    qty: int


class ReturnOut(msgspec.Struct, frozen=True):
    """reflow.out.supplier.<supplier_id>.return (RC6)."""

    return_id: str
    allocation_id: str
    lines: list[ReturnLineOut]
    reason: str


class PackageOut(msgspec.Struct, frozen=True):
    carrier: str
    tracking_no: str
    line_ids: list[str]


class ShipmentOut(msgspec.Struct, frozen=True):
    """reflow.out.shop.<platform>.<shop_id>.shipment"""

    order_id: str
    packages: list[PackageOut]


class StockOut(msgspec.Struct, frozen=True):
    """reflow.out.shop.<platform>.<shop_id>.stock; ``sku_id`` null = the product itself (L6)."""

    product_id: str
    sku_id: str | None
    stock: int


class MissingOut(msgspec.Struct, frozen=True):
    supplier_id: str
    offer_id: str
    supplier_sku_id: str
    why: str


class LinkHealthOut(msgspec.Struct, frozen=True):
    """reflow.out.shop.<platform>.<shop_id>.link_health (L11); ``sku_id`` null = the product itself."""

    product_id: str
    sku_id: str | None
    status: str
    missing: list[MissingOut]


_encode = msgspec.json.Encoder(decimal_format="string").encode


class Outgoing(msgspec.Struct, frozen=True):
    position: int
    subject: str
    body: bytes

    @property
    def msg_id(self) -> str:
        return f"{MSG_ID_PREFIX}{self.position}"


class Mapper:
    """Events to outbound messages. Intercepts and shipments name their allocation and order
    through the first event of that aggregate (it carries the natural ids), read once and cached."""

    FIRSTS = 4096
    """First events kept: an intercept or a shipment comes hours after its allocation, so keeping
    every allocation's first event (as before) held ~100k long-lived events for the garbage
    collector to walk, for a one-row read it rarely saved."""

    def __init__(self, app: Reflow) -> None:
        self.app = app
        self._firsts: dict[UUID, Event] = {}

    def first_event(self, originator_id: UUID) -> Event:
        first = self._firsts.get(originator_id)
        if first is None:
            [stored] = self.app.recorder.select_events(originator_id, lte=1, limit=1)
            first = self.app.mapper.to_domain_event(stored)
            if len(self._firsts) >= self.FIRSTS:
                self._firsts.clear()
            self._firsts[originator_id] = first
        return first

    def message(self, position: int, event: Event) -> Outgoing | None:
        match event:
            case Allocated():
                body: Any = AllocationOut(
                    allocation_id=event.allocation_id, supplier_id=event.supplier_id,
                    lines=[AllocationLineOut(offer_id=x.offer_id, supplier_sku_id=x.supplier_sku_id,
                                             title=x.title, spec=x.spec, qty=x.qty)
                           for x in event.lines],
                    recipient=event.recipient, recipient_token=event.recipient_token,
                    allocated_at=event.at, ship_by=event.ship_by,
                )
                subject = f"reflow.out.supplier.{event.supplier_id}.allocation"
            case InterceptRequested() | AllocationCancelled():
                allocated = self.first_event(event.originator_id)
                body = InterceptOut(allocation_id=allocated.allocation_id, reason=event.reason,
                                    requested_at=event.at)
                subject = f"reflow.out.supplier.{allocated.supplier_id}.intercept"
            case AllocationOverdue():
                allocated = self.first_event(event.originator_id)
                body = OverdueOut(allocation_id=allocated.allocation_id, ship_by=event.ship_by,
                                  hours_overdue=event.hours_overdue)
                subject = f"reflow.out.supplier.{allocated.supplier_id}.overdue"
            case ReturnRequested():
                body = ReturnOut(return_id=event.return_id, allocation_id=event.allocation_id, reason=event.reason,
                                 lines=[ReturnLineOut(offer_id=x.offer_id, supplier_sku_id=x.supplier_sku_id, qty=x.qty)
                                        for x in event.lines])
                subject = f"reflow.out.supplier.{event.supplier_id}.return"
            case OrderShipped():
                order = self.first_event(event.originator_id)  # OrderPlaced or OrderReferenced
                body = ShipmentOut(order_id=order.order_id, packages=[
                    PackageOut(carrier=p.carrier, tracking_no=p.tracking_no, line_ids=list(p.line_ids))
                    for p in event.packages
                ])
                subject = f"reflow.out.shop.{order.platform}.{order.shop_id}.shipment"
            case StockPublished():
                body = StockOut(product_id=event.product_id, sku_id=event.sku_id or None,
                                stock=event.stock)
                subject = f"reflow.out.shop.{event.platform}.{event.shop_id}.stock"
            case LinkHealthChanged():
                body = LinkHealthOut(product_id=event.product_id, sku_id=event.sku_id or None, status=event.status,
                                     missing=[MissingOut(supplier_id=x.supplier_id, offer_id=x.offer_id,
                                                         supplier_sku_id=x.supplier_sku_id, why=x.why)
                                              for x in event.missing])
                subject = f"reflow.out.shop.{event.platform}.{event.shop_id}.link_health"
            case _:
                return None
        return Outgoing(position=position, subject=subject, body=_encode(body))

    def page(self, after: int, limit: int) -> tuple[list[Outgoing], int]:
        """The outbound messages of the next ``limit`` notifications after ``after``, and the
        position of the last notification read (``after`` when none)."""
        notifications = self.app.recorder.select_notifications(
            after, limit, topics=TOPICS, inclusive_of_start=False)
        out: list[Outgoing] = []
        last = after
        for n in notifications:
            message = self.message(n.id, self.app.mapper.to_domain_event(n))
            if message is not None:
                out.append(message)
            last = n.id
        return out, last


class Publisher:
    """Publishes the event log's outbound messages from the last published position."""

    def __init__(self, app: Reflow, js: JetStreamContext, *, page_size: int = 1000,
                 run: Callable[[Callable[[], Any]], Awaitable[Any]] | None = None) -> None:
        self.mapper = Mapper(app)
        self.js = js
        self.page_size = page_size
        self.position: int | None = None
        self.published = 0
        self._run = run or (lambda fn: asyncio.to_thread(fn))

    @classmethod
    def in_executor(cls, app: Reflow, js: JetStreamContext, executor: Executor, **kw: Any) -> Publisher:
        def run(fn: Callable[[], Any]) -> Awaitable[Any]:
            return asyncio.get_running_loop().run_in_executor(executor, fn)

        return cls(app, js, run=run, **kw)

    async def resume_position(self) -> int:
        """The notification id named by the last message of REFLOW_OUT (0 when empty)."""
        info = await self.js.stream_info(STREAM)
        if not info.state.last_seq:
            return 0
        try:
            last = await self.js.get_msg(STREAM, seq=info.state.last_seq)
        except NotFoundError:
            return 0
        msg_id = (last.headers or {}).get("Nats-Msg-Id", "")
        if not msg_id.startswith(MSG_ID_PREFIX):
            return 0
        return int(msg_id[len(MSG_ID_PREFIX):])

    async def publish_pending(self) -> int:
        """Publish everything new in the event log; returns how many messages were published.

        Each page's publishes are all in flight at once and awaited together. The position moves
        only past a page whose every message the server confirmed; after a failure the whole page
        is published again (the server drops what had landed), so no message is skipped even when
        the connection broke in the middle of a page."""
        if self.position is None:
            self.position = await self.resume_position()
        total = 0
        while True:
            start = self.position
            batch, last = await self._run(lambda start=start: self.mapper.page(start, self.page_size))
            if last == start:
                return total
            await self._publish_all(batch)
            self.position = last
            total += len(batch)
            self.published += len(batch)

    async def _publish_all(self, batch: Iterable[Outgoing]) -> None:
        futures = [
            await self.js.publish_async(o.subject, o.body, headers={"Nats-Msg-Id": o.msg_id})
            for o in batch
        ]
        if futures:
            await asyncio.wait_for(asyncio.gather(*futures), timeout=30)
