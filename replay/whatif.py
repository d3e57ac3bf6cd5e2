"""What-if (rule A1): replay the routing decisions of a period against a changed link or policy
setting, and report per decision the allocation it would get and the cost difference. Nothing is
stored.

Each recorded `OrderRouted` holds its whole input (RT6), so a what-if is the pure policy run on
that input, changed:

- `split_tolerance`: the merchant's fewer-splits tolerance (RT10);
- `split_lines`: split lines on or off (RT12);
- `capacity`: a supplier's daily capacity set, changed or lifted (RT13); what the what-if itself
  allocates to that supplier counts against it on its China-time day;
- `without`: suppliers taken out, as if inactive (RT1);
- `link`: a new link for one product. A line of that product gets the new link's alternatives.
  A component the recorded input already had keeps its recorded facts (stock, price, score,
  shelf); a new one takes its facts from the store now (price as of the decision's time from the
  price book, stock, activity and shelf as they are now: the store keeps no stock history).

One row per order: its latest decision made in the period (the one in force; an order routed
again after an interception or a pull is judged by that). Decisions are replayed in the order they
were recorded, and stock carries over: units a what-if moves from one source to another are taken
from (or given back to) that source for every later decision in the period.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec

from engine import ids, routing
from engine.base import decode_event, topics_of
from engine.linking import Link
from engine.order_events import OrderPlaced, OrderReferenced, OrderRouted
from engine.policy import Decision, LineFacts, RoutingInput, cost_of, decide, picked
from engine.servicelevel import china_day
from engine.uow import UnitOfWork
from engine.values import LineIn, SkuLink

TOPICS = [t for cls in (OrderPlaced, OrderReferenced, OrderRouted) for t in topics_of(cls)]


@dataclass(frozen=True)
class Change:
    split_tolerance: Decimal | None = None
    without: frozenset[str] = frozenset()
    product_id: str | None = None
    link: tuple[SkuLink, ...] | None = None
    split_lines: bool | None = None
    """Rule RT12 turned on or off."""
    capacity: tuple[tuple[str, int | None], ...] = ()
    """Rule RT13: (supplier, units per China-time day, None = no limit) in place of the recorded one."""

    def describe(self) -> str:
        parts = []
        if self.split_tolerance is not None:
            parts.append(f"split tolerance {self.split_tolerance}")
        if self.split_lines is not None:
            parts.append(f"split lines {'on' if self.split_lines else 'off'}")
        parts += [f"capacity {s} {'unlimited' if n is None else n}" for s, n in self.capacity]
        if self.without:
            parts.append(f"without {', '.join(sorted(self.without))}")
        if self.link is not None:
            parts.append(f"new link for {self.product_id}")
        return "; ".join(parts) or "no change"


@dataclass
class Row:
    order_id: str
    decided_at: datetime
    trigger: str
    recorded: str
    recorded_cost: Decimal
    what_if: str
    what_if_cost: Decimal
    delta: Decimal
    lines_lost: int = 0
    """Lines the recorded decision routed that the what-if leaves unroutable (their cost is gone
    because nothing would be bought, not because something cheaper would)."""
    lines_gained: int = 0
    """Lines the recorded decision left unroutable that the what-if routes."""

    @property
    def changed(self) -> bool:
        return self.recorded != self.what_if or self.delta != 0

    @property
    def comparable(self) -> bool:
        """Routed the same lines both ways, so the cost difference is a saving or a cost."""
        return not (self.lines_lost or self.lines_gained)

    def as_dict(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "decided_at": self.decided_at, "trigger": self.trigger,
                "recorded": self.recorded, "recorded_cost": self.recorded_cost, "what_if": self.what_if,
                "what_if_cost": self.what_if_cost, "delta": self.delta, "lines_lost": self.lines_lost,
                "lines_gained": self.lines_gained}


@dataclass
class Report:
    change: Change
    rows: list[Row] = field(default_factory=list)
    scanned: int = 0

    @property
    def delta(self) -> Decimal:
        """The cost difference over the orders routed the same lines both ways."""
        return sum((r.delta for r in self.rows if r.comparable), Decimal(0))

    @property
    def unroutable(self) -> list[Row]:
        """Orders the what-if would leave with lines unroutable that were routed (reported apart)."""
        return [r for r in self.rows if r.lines_lost]

    @property
    def newly_routed(self) -> list[Row]:
        return [r for r in self.rows if r.lines_gained and not r.lines_lost]

    @property
    def changed(self) -> list[Row]:
        return [r for r in self.rows if r.changed]


@dataclass
class _Order:
    platform: str
    shop_id: str
    order_id: str
    merchant_id: str = ""
    lines: dict[str, LineIn] = field(default_factory=dict)


def replay(app: Any, platform: str, shop_id: str, start: datetime, end: datetime, change: Change, *,
           product_id: str | None = None, batch: int = 5000,
           progress: Callable[[int, int], None] | None = None) -> Report:
    """What-if over the decisions made from `start` to `end` (inclusive) for one shop (and product)."""
    report = Report(change)
    orders: dict[UUID, _Order] = {}
    used: dict[Any, int] = defaultdict(int)  # units moved to a source by the what-if; (supplier, day): units
    facts_now = app.unit_of_work()  # read only: what-if stores nothing
    latest: dict[UUID, tuple[_Order, OrderRouted]] = {}
    end_id = app.recorder.max_notification_id() or 0
    pos = 0
    while pos < end_id:
        notes = app.recorder.select_notifications(start=pos + 1, limit=batch, stop=end_id, topics=TOPICS)
        if not notes:
            break
        for n in notes:
            report.scanned += 1
            event = decode_event(n.topic, n.state)
            if isinstance(event, (OrderPlaced, OrderReferenced)):
                if event.platform == platform and event.shop_id == shop_id:
                    known = orders.setdefault(event.originator_id, _Order(platform, shop_id, event.order_id))
                    if isinstance(event, OrderPlaced):
                        known.merchant_id, known.lines = event.merchant_id, {x.line_id: x for x in event.lines}
                continue
            order = orders.get(event.originator_id)
            if order is None or not (start <= event.input.at <= end):
                continue
            if product_id is not None and not any(
                order.lines.get(lf.line_id) and order.lines[lf.line_id].product_id == product_id
                for lf in event.input.lines
            ):
                continue
            latest.pop(event.originator_id, None)  # keep insertion order = order of the latest decision
            latest[event.originator_id] = (order, event)
        pos = notes[-1].id
        if progress:
            progress(pos, end_id)
    report.rows = [_replay_one(order, event, change, used, facts_now) for order, event in latest.values()]
    return report


def _replay_one(order: _Order, event: OrderRouted, change: Change, used: dict, facts_now: UnitOfWork) -> Row:
    changed = _change_input(order, event.input, change, facts_now)
    changed = _with_stock_moved(changed, used)
    changed = _with_capacity(changed, change, used)
    again = decide(changed)
    before = _take(event.input, event.decision)
    after = _take(changed, again)
    for key in set(before) | set(after):
        used[key] += after.get(key, 0) - before.get(key, 0)
    day = china_day(changed.at)
    for key, units in after.items():
        used[(key[0], day)] += units  # RT13: what the what-if allocates counts on its day
    rec_cost, rec_text = _summary(event.input, event.decision)
    new_cost, new_text = _summary(changed, again)
    was = {d.line_id for d in event.decision.lines if d.chosen is not None}
    now = {d.line_id for d in again.lines if d.chosen is not None}
    return Row(order_id=order.order_id, decided_at=event.at, trigger=event.trigger, recorded=rec_text,
               recorded_cost=rec_cost, what_if=new_text, what_if_cost=new_cost, delta=new_cost - rec_cost,
               lines_lost=len(was - now), lines_gained=len(now - was))


def _change_input(order: _Order, inp: RoutingInput, change: Change, facts_now: UnitOfWork) -> RoutingInput:
    lines = []
    for lf in inp.lines:
        line = order.lines.get(lf.line_id)
        if change.link is not None and line is not None and line.product_id == change.product_id:
            lf = _relinked(order, line, lf, change.link, inp.at, facts_now)
        if change.without:
            lf = msgspec.structs.replace(lf, candidates=tuple(
                msgspec.structs.replace(c, components=tuple(
                    msgspec.structs.replace(x, supplier_active=False) if x.supplier_id in change.without else x
                    for x in c.components))
                for c in lf.candidates))
        lines.append(lf)
    tolerance = inp.split_tolerance if change.split_tolerance is None else change.split_tolerance
    split = inp.split_lines if change.split_lines is None else change.split_lines
    return msgspec.structs.replace(inp, lines=tuple(lines), split_tolerance=tolerance, split_lines=split)


def _with_capacity(inp: RoutingInput, change: Change, used: dict) -> RoutingInput:
    """Rule RT13 with a changed capacity: what is left of it on the decision's day, after what the
    what-if allocated to that supplier earlier that day."""
    if not change.capacity:
        return inp
    limits, day = dict(change.capacity), china_day(inp.at)

    def left(x):
        if x.supplier_id not in limits:
            return x
        limit = limits[x.supplier_id]
        return msgspec.structs.replace(x, capacity_left=None if limit is None else limit - used[(x.supplier_id, day)])

    return msgspec.structs.replace(inp, lines=tuple(
        msgspec.structs.replace(lf, candidates=tuple(
            msgspec.structs.replace(c, components=tuple(left(x) for x in c.components)) for c in lf.candidates))
        for lf in inp.lines))


def _relinked(order: _Order, line: LineIn, lf: LineFacts, skus: tuple[SkuLink, ...], at: datetime,
              uow: UnitOfWork) -> LineFacts:
    """The line's facts under the new link, resolved and read by the live routing service (so
    what-if cannot drift from live routing: codes L7, source pool RT8, provinces RT9), keeping the
    recorded facts of every component the recorded decision already had."""
    link = Link(ids.link_id(order.platform, order.shop_id, line.product_id))
    link.set(order.platform, order.shop_id, line.product_id, "multi", skus, at)
    alternatives, _, matched = routing.resolve(uow, order.platform, order.shop_id, order.merchant_id, line, link)
    if not alternatives:
        return msgspec.structs.replace(lf, candidates=(), matched_by="")
    settings = routing.settings_of(uow, order.merchant_id)
    recorded = {x.key: x for c in lf.candidates for x in c.components}
    candidates = []
    for index, alt in enumerate(alternatives):
        now = routing.candidate(uow, order.merchant_id, line.qty, alt, index, at, settings)
        candidates.append(msgspec.structs.replace(now, components=tuple(
            msgspec.structs.replace(recorded[x.key], qty=x.qty, need=x.need) if x.key in recorded else x
            for x in now.components)))
    return msgspec.structs.replace(lf, candidates=tuple(candidates), matched_by=f"what-if {matched}")


def _with_stock_moved(inp: RoutingInput, used: dict) -> RoutingInput:
    if not any(used.values()):
        return inp
    return msgspec.structs.replace(inp, lines=tuple(
        msgspec.structs.replace(lf, candidates=tuple(
            msgspec.structs.replace(c, components=tuple(
                msgspec.structs.replace(x, available=x.available - used.get(x.key, 0)) if used.get(x.key) else x
                for x in c.components))
            for c in lf.candidates))
        for lf in inp.lines))




def _chosen(inp: RoutingInput, decision: Decision):
    """Per line: what serves it (one candidate, or the parts of a split line, RT12), or None."""
    for lf, d in zip(inp.lines, decision.lines):
        served = picked(lf, d)
        yield lf, d, (msgspec.structs.replace(served[0], components=tuple(x for c in served for x in c.components))
                      if served else None)


def _take(inp: RoutingInput, decision: Decision) -> dict[tuple[str, str, str], int]:
    units: dict[tuple[str, str, str], int] = defaultdict(int)
    for _, _, cand in _chosen(inp, decision):
        for x in cand.components if cand is not None else ():
            units[x.key] += x.need
    return units


def _summary(inp: RoutingInput, decision: Decision) -> tuple[Decimal, str]:
    total = Decimal(0)
    parts = []
    for lf, d, cand in _chosen(inp, decision):
        if cand is None:
            parts.append(f"{lf.line_id}: {d.unroutable}")
            continue
        cost = cost_of(cand)
        total += cost or Decimal(0)
        what = "+".join(f"{x.supplier_id}/{x.offer_id}/{x.supplier_sku_id}x{x.need}" for x in cand.components)
        parts.append(f"{lf.line_id}: {what}" + ("" if cost is not None else " (unpriced)"))
    return total, "; ".join(parts)
