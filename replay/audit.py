"""`reflow audit`: one order's full history, each routing decision explained, its state as of a time.

The history is the order's own events and those of every allocation it made, merged by business
time. As of a time T, an aggregate's state is its events in the order they were recorded, up to
the first one whose business time is after T (a prefix, so the state shown is one that existed).
Consumer data is shown masked only (rule P1): name `张*`, phone `138****5678`, region in clear.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from engine import ids
from engine.allocations import (
    Allocated,
    Allocation,
    AllocationCancelled,
    AllocationOverdue,
    AllocationRejected,
    AllocationShipped,
    InterceptAnswered,
    InterceptRequested,
    LossRiskRecorded,
    TrackingUploaded,
)
from engine.base import Event
from engine.errors import NotFound
from engine.order_events import (
    AddressChanged,
    AftersaleClosed,
    AftersaleOpened,
    AllocationEnded,
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
from engine.orders import Order
from engine.policy import CandidateFacts, LineDecision, LineFacts, Verdict, decide
from engine.privacy import Recipient, mask, unseal
from engine.returns import ReturnAnswered, ReturnRequested
from engine.servicelevel import LOCAL


@dataclass(frozen=True)
class Entry:
    at: datetime
    source: str
    """`order` or an allocation id."""
    version: int
    event: Event


@dataclass(frozen=True)
class CandidateRow:
    index: int
    components: str
    cost: Decimal | None
    stock: int
    score: int
    priority: int | None
    verdict: str
    """`chosen`, `lost: <why>` or `ineligible: <why>`."""


@dataclass(frozen=True)
class LineExplained:
    line_id: str
    link_version: int | None
    matched_by: str
    outcome: str
    candidates: list[CandidateRow]


@dataclass(frozen=True)
class DecisionExplained:
    at: datetime
    trigger: str
    reproduced: bool
    """Rule RT6: re-running the policy on the recorded input gives the recorded decision."""
    lines: list[LineExplained]
    consolidated_to: str | None
    allocations: list[str]


@dataclass
class Audit:
    platform: str
    shop_id: str
    order_id: str
    as_of: datetime | None
    entries: list[Entry] = field(default_factory=list)
    hidden: int = 0
    """Events recorded after the as-of time (not shown)."""
    order: Order | None = None
    allocations: list[Allocation] = field(default_factory=list)
    recipient: Recipient | None = None
    decisions: list[DecisionExplained] = field(default_factory=list)


def audit(app: Any, platform: str, shop_id: str, order_id: str, as_of: datetime | None = None) -> Audit:
    oid = ids.order_id(platform, shop_id, order_id)
    events = list(app.events.get(oid))
    if not events:
        raise NotFound(f"--order: reflow has no order {platform}/{shop_id}/{order_id}")
    result = Audit(platform, shop_id, order_id, as_of)
    shown = _prefix(events, as_of)
    result.hidden += len(events) - len(shown)
    result.entries += [Entry(e.at, "order", e.originator_version, e) for e in shown]
    result.order = Order.project(None, shown) if shown else None
    made = list(dict.fromkeys(ref.allocation_id for e in shown if isinstance(e, OrderRouted) for ref in e.allocations))
    for allocation_id in made:
        alloc_events = list(app.events.get(ids.allocation_uuid(allocation_id)))
        visible = _prefix(alloc_events, as_of)
        result.hidden += len(alloc_events) - len(visible)
        result.entries += [Entry(e.at, allocation_id, e.originator_version, e) for e in visible]
        if visible:
            result.allocations.append(Allocation.project(None, visible))
    aftersales = list(dict.fromkeys(e.aftersale_id for e in shown if isinstance(e, AftersaleOpened)))
    for allocation_id in made:  # rule RC6: returns to the supplier of this order's parcels
        for aftersale_id in aftersales:
            return_id = ids.return_id(allocation_id, aftersale_id)
            visible = _prefix(list(app.events.get(ids.return_uuid(return_id))), as_of)
            result.entries += [Entry(e.at, return_id, e.originator_version, e) for e in visible]
    result.entries.sort(key=lambda x: (x.at, _CAUSAL.get(type(x.event), 5), x.source, x.version))
    order = result.order
    if order is not None and order.sealed:
        result.recipient = mask(unseal(app.cipher, order.sealed))
    result.decisions = [explain(e) for e in shown if isinstance(e, OrderRouted)]
    return result


# Events written by one command share its time; within it they happen in this order.
_CAUSAL = {
    OrderReferenced: 0, OrderPlaced: 0, OrderHeld: 1, ReviewChanged: 1, AftersaleOpened: 1, AftersaleClosed: 1,
    AddressChanged: 1, OrderReleased: 1, InterceptRequested: 2, AllocationCancelled: 2, InterceptAnswered: 2,
    AllocationRejected: 2,
    AllocationEnded: 3, OrderRouted: 4, Allocated: 5, TrackingUploaded: 6, LossRiskRecorded: 6,
    ShippedDespiteIntercept: 7, OrderShipped: 8, OrderShippedElsewhere: 8, AllocationShipped: 9,
}


def _prefix(events: list[Event], as_of: datetime | None) -> list[Event]:
    if as_of is None:
        return events
    out = []
    for e in events:
        if e.at > as_of:
            break
        out.append(e)
    return out


def explain(event: OrderRouted) -> DecisionExplained:
    """A decision in words: per line, every candidate with its facts and why it won or lost."""
    lines = [
        _explain_line(facts, decided)
        for facts, decided in zip(event.input.lines, event.decision.lines)
    ]
    return DecisionExplained(
        at=event.at, trigger=event.trigger, reproduced=decide(event.input) == event.decision, lines=lines,
        consolidated_to=event.decision.consolidated_to,
        allocations=[f"{r.allocation_id} ({r.supplier_id}: {', '.join(r.line_ids)})" for r in event.allocations],
    )


def _explain_line(facts: LineFacts, decided: LineDecision) -> LineExplained:
    verdicts = {v.index: v for v in decided.candidates}
    rows = [_candidate(c, verdicts.get(c.index), decided.chosen) for c in facts.candidates]
    if decided.parts:
        outcome = "split (RT12): " + " + ".join(f"alternative {p.index} x{p.units}" for p in decided.parts)
    elif decided.chosen is not None:
        outcome = f"alternative {decided.chosen}"
    else:
        outcome = f"unroutable: {decided.unroutable}"
    return LineExplained(line_id=facts.line_id, link_version=facts.link_version, matched_by=facts.matched_by or "-",
                         outcome=outcome, candidates=rows)


def _candidate(c: CandidateFacts, v: Verdict | None, chosen: int | None) -> CandidateRow:
    parts = []
    for comp in c.components:
        flags = [] if comp.supplier_active else ["supplier inactive"]
        flags += [] if comp.on_shelf else ["off shelf"]
        flags += [] if comp.in_pool else ["not in pool"]
        flags += ["excluded for this order: rejected it (RT11) or overdue (T4)"] if comp.rejected else []
        flags += [] if comp.capacity_left is None else [f"capacity left today {comp.capacity_left} (RT13)"]
        cost = "unpriced" if comp.unit_cost is None else f"{comp.unit_cost}"
        parts.append(f"{comp.supplier_id}/{comp.offer_id}/{comp.supplier_sku_id} x{comp.need} "
                     f"@{cost} avail {comp.available}" + (f" ({', '.join(flags)})" if flags else ""))
    if v is None:
        verdict = "?"
    elif v.units is not None:
        verdict = f"part: {v.units} unit{'s' if v.units > 1 else ''} (RT12)"
    elif c.index == chosen:
        verdict = "chosen"
    elif not v.eligible:
        verdict = f"ineligible: {v.reason}"
    else:
        verdict = f"lost: {v.lost}"
    return CandidateRow(index=c.index, components="; ".join(parts), cost=v.cost if v else None,
                        stock=v.stock if v else 0, score=v.score if v else 0, priority=c.priority, verdict=verdict)


def local(t: datetime) -> str:
    return t.astimezone(LOCAL).strftime("%Y-%m-%d %H:%M:%S")


def describe(e: Event) -> str:
    """One line per event; never consumer data in clear (sealed fields are not shown at all)."""
    match e:
        case OrderPlaced():
            lines = ", ".join(f"{x.line_id}: {x.product_id}/{x.sku_id or x.merchant_code or '-'} x{x.qty} @{x.unit_price}"
                              for x in e.lines)
            region = f"{e.region.province} {e.region.city} {e.region.district}"
            return f"placed on {e.channel or e.platform}, ship to {region}; {lines}"
        case OrderReferenced():
            return "a fact about the order arrived before the order"
        case OrderRouted():
            chosen = [f"{d.line_id}→alt " + "+".join(f"{p.index}x{p.units}" for p in d.parts) if d.parts
                      else f"{d.line_id}→alt {d.chosen}" if d.chosen is not None else f"{d.line_id}→{d.unroutable}"
                      for d in e.decision.lines]
            return f"routed ({e.trigger}): {', '.join(chosen)}" + (
                f"; allocations {', '.join(r.allocation_id for r in e.allocations)}" if e.allocations else "")
        case OrderHeld():
            return f"held: {e.reason}"
        case OrderReleased():
            return "released by hand"
        case ReviewChanged():
            return f"{'under review' if e.under_review else 'review cleared'}" + (f": {e.reason}" if e.reason else "")
        case AllocationEnded():
            return f"allocation {e.allocation_id} {e.how}: {e.reason}" + (" (by the merchant)" if e.by_merchant else "")
        case ShippedDespiteIntercept():
            return f"allocation {e.ref.allocation_id} shipped despite the intercept (I8)"
        case AftersaleOpened():
            return (f"after-sale {e.aftersale_id} opened ({e.kind}" + (f", line {e.line_id}" if e.line_id else "")
                    + (", after shipment" if e.post_shipment else "") + ")")
        case AftersaleClosed():
            return f"after-sale {e.aftersale_id} closed: {e.outcome}"
        case AddressChanged():
            return f"address changed: now {e.region.province} {e.region.city} {e.region.district}"
        case OrderShipped():
            return "shipment confirmed to the shop: " + ", ".join(f"{p.carrier} {p.tracking_no} ({', '.join(p.line_ids)})"
                                                                  for p in e.packages)
        case OrderShippedElsewhere():
            return "shipped by other means" + (f": {e.carrier} {e.tracking_no}" if e.tracking_no else "")
        case Allocated():
            lines = ", ".join(f"{x.line_id}: {x.offer_id}/{x.supplier_sku_id} x{x.qty} @{x.unit_cost}" for x in e.lines)
            r = e.recipient
            return (f"allocated to {e.supplier_id}: {lines}; ship by {local(e.ship_by)}; "
                    f"recipient {r.name} {r.phone} {r.province} {r.city} {r.district} {r.address}")
        case InterceptRequested():
            return f"intercept sent to the supplier: {e.reason}"
        case AllocationCancelled():
            return f"cancelled, supplier told to stop: {e.reason}"
        case AllocationOverdue():
            return (f"overdue (T4): no tracking by {local(e.ship_by)}; supplier reminded at {local(e.reminded_at)}"
                    f" ({e.hours_overdue} h late)")
        case ReturnRequested():
            return (f"return {e.return_id} sent to {e.supplier_id} (RC6): "
                    + ", ".join(f"{x.offer_id}/{x.supplier_sku_id} x{x.qty}" for x in e.lines))
        case ReturnAnswered():
            return f"return {'accepted: a credit on the next statement' if e.outcome == 'accepted' else 'refused'}" + (
                f" ({e.reason})" if e.reason else "")
        case AllocationRejected():
            return f"rejected by the supplier (RT11): {e.reason}" + (f"; {e.note}" if e.note else "")
        case InterceptAnswered():
            return f"supplier answered the intercept: {e.outcome}" + (f" ({e.carrier} {e.tracking_no})" if e.tracking_no else "")
        case TrackingUploaded():
            return f"tracking uploaded: {e.carrier} {e.tracking_no}" + (" (late, T3)" if e.late else "")
        case LossRiskRecorded():
            return f"tracking refused, loss risk (I7): {e.carrier} {e.tracking_no}; {e.reason}"
        case AllocationShipped():
            return "shipped"
    return type(e).__name__


HISTORY = ["at", "where", "version", "event", "detail"]


def history(a: Audit) -> list[dict[str, Any]]:
    """The timeline as rows, one a history entry (`reflow audit --format csv`)."""
    return [{"at": x.at, "where": x.source, "version": x.version, "event": type(x.event).__name__,
             "detail": describe(x.event)} for x in a.entries]


def as_data(a: Audit) -> dict[str, Any]:
    """The whole audit as plain data (`reflow audit --format json`); the consumer masked only (P1)."""
    from dataclasses import asdict

    o = a.order
    state = None if o is None else {
        "status": o.status, "cancelled": o.cancelled, "shipped": o.shipped, "under_review": o.under_review,
        "held": o.held, "merchant_id": o.merchant_id, "channel": o.channel,
        "lines": [{"line_id": lid, "route": o.route.get(lid), "unroutable": o.unroutable.get(lid)} for lid in o.lines]}
    r = a.recipient
    return {
        "platform": a.platform, "shop_id": a.shop_id, "order_id": a.order_id, "as_of": a.as_of, "order": state,
        "recipient_masked": None if r is None else {f: getattr(r, f) for f in r.__struct_fields__},
        "allocations": [{"allocation_id": x.allocation_id, "supplier_id": x.supplier_id, "status": x.status,
                         "carrier": x.carrier, "tracking_no": x.tracking_no, "intercept_reason": x.intercept_reason}
                        for x in a.allocations],
        "history": history(a), "later_events_not_shown": a.hidden,
        "decisions": [asdict(d) for d in a.decisions],
    }


def render(a: Audit, console: Any) -> None:
    """Print an audit with rich: state, timeline, then every decision explained. Keeps to the
    console's width (80 columns is enough): an entry's time, place and event on one line, its
    detail under it; a candidate's facts in a table, its components under it; ids never cut."""
    from rich import box
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    def say(*parts: str | tuple[str, str], indent: int = 0) -> None:
        console.print(Padding(Text.assemble(*parts), (0, 0, 0, indent)))

    when = f"as of {local(a.as_of)} (China time)" if a.as_of else "now"
    say((f"order {a.platform}/{a.shop_id}/{a.order_id}", "bold"), f"  {when}")
    o = a.order
    if o is None:
        say("no event of this order had happened by then")
    else:
        flags = [f for f, on in (("cancelled", o.cancelled), ("shipped", o.shipped), ("under review", o.under_review),
                                 (f"held: {o.held}", bool(o.held))) if on]
        say(f"status {o.status}" + (f" ({', '.join(flags)})" if flags else "")
            + (f"; merchant {o.merchant_id}, channel {o.channel}" if o.placed else ""))
        if a.recipient is not None:
            r = a.recipient
            say(f"recipient (masked) {r.name} {r.phone} {r.province} {r.city} {r.district} {r.address}")
        if o.lines:
            say("lines: " + "; ".join(
                f"{lid} {o.route.get(lid, '?')}" + (f" ({o.unroutable[lid]})" if lid in o.unroutable else "")
                for lid in o.lines))
        for alloc in a.allocations:
            say(f"allocation {alloc.allocation_id} {alloc.supplier_id}: {alloc.status}"
                + (f", {alloc.carrier} {alloc.tracking_no}" if alloc.tracking_no else "")
                + (f", {alloc.intercept_reason}" if alloc.intercept_reason else ""))
    say(("history", "bold"), " (China time; each event's detail under it)")
    where = max((len(x.source) for x in a.entries), default=0)
    for x in a.entries:
        say(f"{local(x.at)}  {x.source:<{where}}  v{x.version:<3} {type(x.event).__name__}")
        say(describe(x.event), indent=4)
    if a.hidden:
        say(f"({a.hidden} later events not shown)")
    for n, d in enumerate(a.decisions, 1):
        say((f"decision {n}", "bold"), f" at {local(d.at)}, trigger {d.trigger}; reproduced by the "
            f"policy: {'yes' if d.reproduced else 'NO (rule RT6 broken)'}"
            + (f"; fewer splits: all to {d.consolidated_to}" if d.consolidated_to else ""))
        for line in d.lines:
            say((f"line {line.line_id}: {line.outcome}", "bold"),
                f"  (link v{line.link_version}, matched by {line.matched_by})", indent=2)
            facts = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)  # as adapters.cli_common.table
            for col in ("alt", "cost", "stock", "score", "priority", "verdict"):
                facts.add_column(col, no_wrap=col != "verdict", overflow="fold",
                                 justify="right" if col in ("cost", "stock", "score") else "left")
            parts = Table.grid(padding=(0, 2))
            parts.add_column(no_wrap=True)
            parts.add_column(overflow="fold")
            for c in line.candidates:
                facts.add_row(str(c.index), "-" if c.cost is None else str(c.cost), str(c.stock), str(c.score),
                              "-" if c.priority is None else str(c.priority), c.verdict)
                parts.add_row(f"alt {c.index}", c.components.replace("; ", "\n"))
            console.print(Padding(facts, (0, 0, 0, 4)))
            if line.candidates:
                console.print(Padding(parts, (0, 0, 0, 4)))
        if d.allocations:
            say("allocations: " + ", ".join(d.allocations), indent=2)
