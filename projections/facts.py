"""From events to fact rows: one batch collects plain Python lists per table, then Arrow tables.

Only what analysts and statements need is kept. Never projected (rule P2): the sealed buyer, the
sealed remark, the masked recipient and its token; nothing here reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pyarrow as pa

from engine.allocations import (
    Allocated,
    AllocationCancelled,
    AllocationOverdue,
    AllocationRejected,
    AllocationShipped,
    InterceptAnswered,
    InterceptRequested,
    LossRiskRecorded,
    TrackingUploaded,
)
from engine.catalog import MerchantTierSet, SupplierUpserted
from engine.linking import LinkHealthChanged
from engine.merchants import PriceSet
from engine.order_events import (
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
from engine.returns import ReturnAnswered, ReturnRequested
from engine.statements import StatementIssued
from projections.schema import ARROW_SCHEMAS, TABLES

UTC = UTC
_Q4 = Decimal("0.0001")


def ts(dt: datetime | None) -> datetime | None:
    """Stored as naive UTC (see projections.schema)."""
    return None if dt is None else dt.astimezone(UTC).replace(tzinfo=None)


def db_money(d: Decimal | None) -> Decimal | None:
    """Money as the DECIMAL(18, 4) columns hold it."""
    if d is None or d.as_tuple().exponent >= -4:  # type: ignore[operator]
        return d
    return d.quantize(_Q4)


class Batch:
    """Rows of one batch, per fact table, in column order of `projections.schema.TABLES`."""

    def __init__(self) -> None:
        self.rows: dict[str, list[tuple]] = {name: [] for name in TABLES}
        self.events = 0

    def add(self, pos: int, event: Any) -> None:
        handler = HANDLERS.get(type(event))
        if handler is not None:
            handler(self.rows, pos, event)
            self.events += 1

    def tables(self) -> list[tuple[str, pa.Table]]:
        out = []
        for name, rows in self.rows.items():
            if rows:
                schema = ARROW_SCHEMAS[name]
                columns = list(zip(*rows))
                arrays = [pa.array(col, type=field.type) for col, field in zip(columns, schema)]
                out.append((name, pa.Table.from_arrays(arrays, schema=schema)))
        return out


Rows = dict[str, list[tuple]]


def _placed(r: Rows, pos: int, e: OrderPlaced) -> None:
    oid = str(e.originator_id)
    r["order_keys"].append((oid, e.platform, e.shop_id, e.order_id, pos))
    r["orders_placed"].append((oid, e.merchant_id, e.channel, ts(e.at), pos))
    for n, ln in enumerate(e.lines):
        r["order_lines"].append((oid, n, ln.line_id, ln.product_id, ln.sku_id, ln.merchant_code, ln.qty,
                                 db_money(ln.unit_price), pos))


def _referenced(r: Rows, pos: int, e: OrderReferenced) -> None:
    r["order_keys"].append((str(e.originator_id), e.platform, e.shop_id, e.order_id, pos))


def _routed(r: Rows, pos: int, e: OrderRouted) -> None:
    oid, at = str(e.originator_id), ts(e.at)
    for ld in e.decision.lines:
        if ld.chosen is not None:
            r["line_routes"].append((oid, ld.line_id, pos, "allocated", None, at))
        elif ld.unroutable is not None:
            r["line_routes"].append((oid, ld.line_id, pos, "unroutable", ld.unroutable, at))
    for ref in e.allocations:
        for line_id in ref.line_ids:
            r["alloc_refs"].append((oid, ref.allocation_id, ref.supplier_id, line_id, pos))


def _flag(flag: str, value: Callable[[Any], bool], reason: Callable[[Any], str | None]) -> Callable:
    def handle(r: Rows, pos: int, e: Any) -> None:
        r["order_flags"].append((str(e.originator_id), pos, flag, value(e), reason(e), ts(e.at)))
    return handle


def _ended(r: Rows, pos: int, e: AllocationEnded) -> None:
    r["allocations_ended"].append((str(e.originator_id), e.allocation_id, e.how, e.reason, ts(e.at), pos,
                                   getattr(e, "by_merchant", False)))


def _shipped_despite_intercept(r: Rows, pos: int, e: ShippedDespiteIntercept) -> None:
    """Rule I8 `too_late`: the stopped allocation's lines are covered again."""
    for line_id in e.ref.line_ids:
        r["line_routes"].append((str(e.originator_id), line_id, pos, "allocated", None, ts(e.at)))


def _aftersale_opened(r: Rows, pos: int, e: AftersaleOpened) -> None:
    r["aftersales"].append((str(e.originator_id), e.aftersale_id, e.kind, e.line_id, e.post_shipment,
                            ts(e.at), pos))


def _aftersale_closed(r: Rows, pos: int, e: AftersaleClosed) -> None:
    r["aftersales_closed"].append((str(e.originator_id), e.aftersale_id, e.outcome, ts(e.at), pos))


def _allocated(r: Rows, pos: int, e: Allocated) -> None:
    r["allocations"].append((str(e.originator_id), e.allocation_id, e.platform, e.shop_id, e.order_id,
                             e.merchant_id, e.supplier_id, e.channel, e.trigger, ts(e.at), ts(e.ship_by), pos))
    for n, ln in enumerate(e.lines):
        r["allocation_lines"].append((e.allocation_id, n, ln.line_id, ln.offer_id, ln.supplier_sku_id,
                                      ln.product_id, ln.qty, db_money(ln.unit_cost), db_money(ln.amount),
                                      ln.link_version, pos))


def _alloc_event(kind: str, status: Callable[[Any], str | None]) -> Callable:
    def handle(r: Rows, pos: int, e: Any) -> None:
        r["allocation_events"].append((
            str(e.originator_id), pos, kind, status(e), ts(e.at), getattr(e, "reason", None),
            getattr(e, "carrier", None), getattr(e, "tracking_no", None), getattr(e, "late", None),
            getattr(e, "outcome", None)))
    return handle


def _return_requested(r: Rows, pos: int, e: ReturnRequested) -> None:
    r["returns"].append((str(e.originator_id), e.return_id, e.allocation_id, e.supplier_id, e.platform, e.shop_id,
                         e.order_id, e.aftersale_id, ts(e.at), pos))
    for n, x in enumerate(e.lines):
        r["return_lines"].append((e.return_id, n, x.line_id, x.offer_id, x.supplier_sku_id, x.qty))


def _return_answered(r: Rows, pos: int, e: ReturnAnswered) -> None:
    r["return_answers"].append((str(e.originator_id), e.outcome, e.reason, ts(e.at), pos))


def _overdue(r: Rows, pos: int, e: AllocationOverdue) -> None:
    """Rule T4: the reminder, at the time it went out."""
    r["allocation_events"].append((str(e.originator_id), pos, "overdue", None, ts(e.reminded_at), None, None, None,
                                   None, None))


_missing_json = msgspec.json.Encoder().encode


def _link_health(r: Rows, pos: int, e: LinkHealthChanged) -> None:
    r["link_health"].append((e.platform, e.shop_id, e.product_id, e.sku_id, e.status,
                             _missing_json(list(e.missing)).decode(), ts(e.at), pos))


def _supplier(r: Rows, pos: int, e: SupplierUpserted) -> None:
    r["suppliers"].append((str(e.originator_id), e.supplier_id, e.name, e.active, e.ship_within_hours, pos))


def _price(r: Rows, pos: int, e: PriceSet) -> None:
    r["prices"].append((e.supplier_id, e.supplier_sku_id, e.tier or "", db_money(e.price), ts(e.effective_from),
                        ts(e.at), pos))


def _tier(r: Rows, pos: int, e: MerchantTierSet) -> None:
    r["merchant_tiers"].append((str(e.originator_id), e.merchant_id, e.tier, ts(e.at), pos))


def _statement(r: Rows, pos: int, e: StatementIssued) -> None:
    s = e.statement
    r["statements"].append((s.statement_id, s.supplier_id, ts(s.period_from), ts(s.period_to), ts(s.issued_at),
                            len(s.lines), s.qty, db_money(s.total), s.content_hash, s.position, pos))
    for n, ln in enumerate(s.lines):
        r["statement_lines"].append((
            s.statement_id, n, ln.allocation_id, ln.platform, ln.shop_id, ln.order_id, ln.line_id, ln.offer_id,
            ln.supplier_sku_id, ln.product_id, ln.qty, db_money(ln.unit_price), db_money(ln.amount), ln.price_tier,
            ts(ln.allocated_at), ts(ln.tracked_at), ln.carrier, ln.tracking_no))
    for n, c in enumerate(s.credits):
        r["statement_credits"].append((s.statement_id, n, c.return_id, c.allocation_id, c.aftersale_id, c.platform,
                                       c.shop_id, c.order_id, ts(c.answered_at), c.qty, db_money(c.amount)))
    for n, a in enumerate(s.apart):
        r["statement_apart"].append((
            s.statement_id, a.section, n, a.allocation_id, a.platform, a.shop_id, a.order_id, a.line_id,
            a.aftersale_id, a.kind, a.carrier, a.tracking_no, a.reason, ts(a.at)))


HANDLERS: dict[type, Callable[[Rows, int, Any], None]] = {
    OrderPlaced: _placed,
    OrderReferenced: _referenced,
    OrderRouted: _routed,
    OrderHeld: _flag("held", lambda e: True, lambda e: e.reason),
    OrderReleased: _flag("held", lambda e: False, lambda e: None),
    ReviewChanged: _flag("review", lambda e: e.under_review, lambda e: e.reason),
    OrderCancelled: _flag("cancelled", lambda e: True, lambda e: None),
    OrderShipped: _flag("shipped", lambda e: True, lambda e: None),
    OrderShippedElsewhere: _flag("shipped", lambda e: True, lambda e: "shipped by other means"),
    AllocationEnded: _ended,
    ShippedDespiteIntercept: _shipped_despite_intercept,
    AftersaleOpened: _aftersale_opened,
    AftersaleClosed: _aftersale_closed,
    Allocated: _allocated,
    InterceptRequested: _alloc_event("intercepted", lambda e: "intercepted"),
    AllocationCancelled: _alloc_event("cancelled", lambda e: "cancelled"),
    InterceptAnswered: _alloc_event("answered", lambda e: "shipped" if e.outcome == "too_late" else None),
    TrackingUploaded: _alloc_event("tracked", lambda e: "tracked"),
    LossRiskRecorded: _alloc_event("loss_risk", lambda e: None),
    AllocationShipped: _alloc_event("shipped", lambda e: "shipped"),
    AllocationRejected: _alloc_event("rejected", lambda e: "rejected"),
    AllocationOverdue: _overdue,
    ReturnRequested: _return_requested,
    ReturnAnswered: _return_answered,
    LinkHealthChanged: _link_health,
    SupplierUpserted: _supplier,
    PriceSet: _price,
    MerchantTierSet: _tier,
    StatementIssued: _statement,
}
