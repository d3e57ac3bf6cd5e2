"""The routing policy: a pure function from recorded facts to a decision (rules RT1-RT3, RT5,
RT6, RT8-RT10).

`decide(RoutingInput) -> Decision`. Everything the decision depends on is in the input (link
version, each candidate's cost, stock, score, eligibility facts), and the input is stored with the
decision, so re-running `decide` on it reproduces the decision exactly (rule RT6).
"""

from __future__ import annotations

import itertools
from datetime import datetime
from decimal import Decimal

import msgspec

from engine.base import Value


class ComponentFacts(Value, frozen=True):
    supplier_id: str
    offer_id: str
    supplier_sku_id: str
    qty: int
    """Reflow quantity (L3)."""
    need: int
    """Units this line needs of the component: ordered qty x reflow qty."""
    supplier_active: bool
    on_shelf: bool
    """Offer known, on shelf, not expired, SKU listed, open to this merchant (RT1, M1, M2)."""
    available: int
    unit_cost: Decimal | None
    score: int
    in_pool: bool = True
    """Meets the source pool (RT8), or the merchant has the pool off."""
    rejected: bool = False
    """The supplier rejected an allocation of this order (RT11), or one was taken from it for being
    overdue (T4): never again for this order (the verdict says `rejected`)."""
    capacity_left: int | None = None
    """Units the supplier can still take on the decision's China-time day (RT13); None: no limit."""

    @property
    def key(self) -> tuple[str, str, str]:
        """The supplier SKU: (supplier, offer, SKU)."""
        return (self.supplier_id, self.offer_id, self.supplier_sku_id)


class CandidateFacts(Value, frozen=True):
    index: int
    components: tuple[ComponentFacts, ...]
    priority: int | None = None
    provinces: tuple[str, ...] | None = None


class LineFacts(Value, frozen=True):
    line_id: str
    qty: int
    candidates: tuple[CandidateFacts, ...]
    link_version: int | None = None
    matched_by: str = ""
    """sku, merchant_code, product, item_code, bundle_code, or "" when nothing matched."""


class RoutingInput(Value, frozen=True):
    at: datetime
    province: str
    lines: tuple[LineFacts, ...]
    split_tolerance: Decimal = Decimal("0")
    split_lines: bool = False
    """Rule RT12: a line no single alternative covers may be covered by several."""


class Verdict(Value, frozen=True):
    index: int
    eligible: bool
    cost: Decimal | None
    stock: int
    score: int
    priority: int | None = None
    reason: str | None = None
    """Why it was not eligible: rejected, supplier_inactive, sku_off_shelf, not_served, not_in_pool,
    out_of_stock, capacity_reached."""
    lost: str | None = None
    """Why an eligible candidate lost: priority, cost, score, link_order, fewer_splits."""
    units: int | None = None
    """Rule RT12: the whole units this alternative takes as one part of a split line."""


class Part(Value, frozen=True):
    """Rule RT12: one alternative's share of a split line, in whole units of the shop SKU."""

    index: int
    units: int


class LineDecision(Value, frozen=True):
    line_id: str
    candidates: tuple[Verdict, ...]
    chosen: int | None = None
    """The alternative that serves the line (the first part, when the line is split)."""
    unroutable: str | None = None
    parts: tuple[Part, ...] = ()
    """Rule RT12: the alternatives a split line is covered by, in RT2 order; empty when not split."""


class Decision(Value, frozen=True):
    lines: tuple[LineDecision, ...]
    consolidated_to: str | None = None


_ORDER_OF_REASONS = ("rejected", "capacity_reached", "out_of_stock", "supplier_inactive", "sku_off_shelf")
_LINE_REASON = {
    "rejected": "rejected",
    "capacity_reached": "capacity_reached",
    "supplier_inactive": "supplier_inactive",
    "sku_off_shelf": "sku_off_shelf",
    "not_served": "sku_off_shelf",
    "not_in_pool": "sku_off_shelf",
    "out_of_stock": "out_of_stock",
}


def cost_of(c: CandidateFacts) -> Decimal | None:
    total = Decimal(0)
    for comp in c.components:
        if comp.unit_cost is None:
            return None
        total += comp.unit_cost * comp.need
    return total


def _stock(c: CandidateFacts, used: dict[tuple[str, str, str], int]) -> int:
    """How many of the shop SKU this candidate could make now (a bundle: its scarcest part; a
    supplier SKU named twice in one bundle counts both)."""
    return min((avail - used.get(key, 0)) // qty for key, (avail, qty, _) in _per_sku(c).items())


def _per_sku(c: CandidateFacts) -> dict[tuple[str, str, str], tuple[int, int, int]]:
    """Per supplier SKU of a candidate: (available, reflow qty, units needed), summed over the
    components that name it (rules L4, RT7)."""
    out: dict[tuple[str, str, str], tuple[int, int, int]] = {}
    for comp in c.components:
        _, qty, need = out.get(comp.key, (0, 0, 0))
        out[comp.key] = (comp.available, qty + comp.qty, need + comp.need)
    return out


def _ineligible(c: CandidateFacts, province: str, used: dict) -> str | None:
    """Rule RT1 (plus RT11 rejections, RT8 pool, RT9 provinces, RT13 capacity); None when eligible."""
    if any(comp.rejected for comp in c.components):
        return "rejected"
    if not all(comp.supplier_active for comp in c.components):
        return "supplier_inactive"
    if not all(comp.on_shelf for comp in c.components):
        return "sku_off_shelf"
    if c.provinces is not None and province not in c.provinces:
        return "not_served"
    if not all(comp.in_pool for comp in c.components):
        return "not_in_pool"
    if any(avail - used.get(key, 0) < need for key, (avail, _, need) in _per_sku(c).items()):
        return "out_of_stock"
    if any(left is not None and left - used.get((s,), 0) < need for s, (left, _, need) in _per_supplier(c).items()):
        return "capacity_reached"
    return None


def _per_supplier(c: CandidateFacts) -> dict[str, tuple[int | None, int, int]]:
    """Rule RT13, per supplier of a candidate: (capacity left today, units per shop SKU, units needed)."""
    out: dict[str, tuple[int | None, int, int]] = {}
    for comp in c.components:
        _, qty, need = out.get(comp.supplier_id, (None, 0, 0))
        out[comp.supplier_id] = (comp.capacity_left, qty + comp.qty, need + comp.need)
    return out


def _whole_units(c: CandidateFacts, used: dict) -> int:
    """How many whole units of the shop SKU a candidate can make now, by stock (RT7) and by its
    suppliers' capacity left today (RT13)."""
    units = _stock(c, used)
    for s, (left, qty, _) in _per_supplier(c).items():
        if left is not None:
            units = min(units, (left - used.get((s,), 0)) // qty)
    return max(units, 0)


def rank(v: Verdict) -> tuple:
    """Rule RT2: manual priority, then cheapest, then best fulfilment score, then link order."""
    return (
        0 if v.priority is not None else 1,
        v.priority if v.priority is not None else 0,
        0 if v.cost is not None else 1,
        v.cost if v.cost is not None else Decimal(0),
        -v.score,
        v.index,
    )


def _why_lost(winner: Verdict, loser: Verdict) -> str:
    w, lo = rank(winner), rank(loser)
    if w[:2] != lo[:2]:
        return "priority"
    if w[2:4] != lo[2:4]:
        return "cost"
    if w[4] != lo[4]:
        return "score"
    return "link_order"


def _consume(c: CandidateFacts, used: dict) -> None:
    for comp in c.components:
        used[comp.key] = used.get(comp.key, 0) + comp.need
        used[(comp.supplier_id,)] = used.get((comp.supplier_id,), 0) + comp.need  # RT13


def stock_in_turn(candidates: list[CandidateFacts]) -> int:
    """Rules S1 with RT12: the whole units the candidates could make one after the other, each
    taking what its stock allows, so a supplier SKU two of them share counts once."""
    used: dict = {}
    total = 0
    for c in candidates:
        units = max(_stock(c, used), 0)
        _consume(scaled(c, units), used)
        total += units
    return total


def scaled(c: CandidateFacts, units: int) -> CandidateFacts:
    """A candidate making `units` of the shop SKU (one part of a split line, RT12)."""
    return msgspec.structs.replace(c, components=tuple(
        msgspec.structs.replace(comp, need=comp.qty * units) for comp in c.components))


def picked(line: LineFacts, decision: LineDecision) -> list[CandidateFacts]:
    """What serves a routed line: its chosen candidate, or each part of a split line (RT12) with
    the units it takes; empty when the line is not routed."""
    if decision.parts:
        return [scaled(_candidate(line, p.index), p.units) for p in decision.parts]
    if decision.chosen is None:
        return []
    return [_candidate(line, decision.chosen)]


def _split(line: LineFacts, verdicts: list[Verdict], used: dict) -> LineDecision | None:
    """Rule RT12: cover the line with several alternatives in RT2 order, each taking the whole
    units it can make, with as few parts as possible; None when they cannot cover it (all or
    nothing: nothing is taken)."""
    pool = sorted((v for v in verdicts if v.reason in ("out_of_stock", "capacity_reached")
                   and _whole_units(_candidate(line, v.index), used) > 0), key=rank)
    for k in range(2, len(pool) + 1):
        for combo in itertools.combinations(pool, k):
            trial, parts, left = dict(used), [], line.qty
            for v in combo:
                cand = _candidate(line, v.index)
                take = min(_whole_units(cand, trial), left)
                if take < 1:
                    break
                _consume(scaled(cand, take), trial)
                parts.append(Part(index=v.index, units=take))
                left -= take
            if left == 0 and len(parts) == k:
                used.clear()
                used.update(trial)
                units = {p.index: p.units for p in parts}
                return LineDecision(
                    line_id=line.line_id, chosen=parts[0].index, parts=tuple(parts),
                    candidates=tuple(_with(v, units=units[v.index]) if v.index in units else v for v in verdicts))
    return None


def _decide_line(line: LineFacts, province: str, used: dict, split_lines: bool = False) -> LineDecision:
    verdicts = []
    for c in line.candidates:
        reason = _ineligible(c, province, used)
        verdicts.append(
            Verdict(
                index=c.index,
                eligible=reason is None,
                cost=cost_of(c),
                stock=max(_stock(c, used), 0),
                score=min(comp.score for comp in c.components),
                priority=c.priority,
                reason=reason,
            )
        )
    if not verdicts:
        return LineDecision(line_id=line.line_id, candidates=(), unroutable="no_link")
    eligible = sorted((v for v in verdicts if v.eligible), key=rank)
    if not eligible and split_lines and line.qty > 1 and line.matched_by != "remaining_parts":
        split = _split(line, verdicts, used)
        if split is not None:
            return split
    if not eligible:
        reasons = {_LINE_REASON[v.reason] for v in verdicts if v.reason}
        reason = next(r for r in _ORDER_OF_REASONS if r in reasons)
        return LineDecision(line_id=line.line_id, candidates=tuple(verdicts), unroutable=reason)
    winner = eligible[0]
    _consume(line.candidates[[c.index for c in line.candidates].index(winner.index)], used)
    final = tuple(
        v if (not v.eligible or v.index == winner.index) else _with(v, lost=_why_lost(winner, v))
        for v in verdicts
    )
    return LineDecision(line_id=line.line_id, candidates=final, chosen=winner.index)


def _with(v: Verdict, **changes) -> Verdict:
    return msgspec.structs.replace(v, **changes)


def _suppliers(c: CandidateFacts) -> set[str]:
    return {comp.supplier_id for comp in c.components}


def _candidate(line: LineFacts, index: int) -> CandidateFacts:
    return next(c for c in line.candidates if c.index == index)


def decide(inp: RoutingInput) -> Decision:
    used: dict[tuple[str, str, str], int] = {}
    lines = [_decide_line(line, inp.province, used, inp.split_lines) for line in inp.lines]
    if any(d.parts for d in lines):
        return Decision(lines=tuple(lines))  # RT12 with RT10: a split line is not consolidated
    return _fewer_splits(inp, lines)


def _fewer_splits(inp: RoutingInput, lines: list[LineDecision]) -> Decision:
    """Rule RT10: one supplier for the whole order when within the merchant's split tolerance."""
    routed = [(f, d) for f, d in zip(inp.lines, lines) if d.chosen is not None]
    chosen = [_candidate(f, d.chosen) for f, d in routed]
    suppliers_used = set().union(*(_suppliers(c) for c in chosen)) if chosen else set()
    if len(suppliers_used) < 2:
        return Decision(lines=tuple(lines))
    split_cost = [cost_of(c) for c in chosen]
    if any(c is None for c in split_cost):
        return Decision(lines=tuple(lines))
    limit = sum(split_cost, Decimal(0)) * (1 + inp.split_tolerance)
    best: tuple | None = None
    all_suppliers = sorted(
        {comp.supplier_id for f, _ in routed for c in f.candidates for comp in c.components}
    )
    for supplier in all_suppliers:
        used: dict = {}
        picks: list[int] = []
        for (facts, _), current in zip(routed, chosen):
            if current.priority is not None and _suppliers(current) != {supplier}:
                break  # a manual priority is the merchant's word; fewer splits does not override it
            options = sorted(
                (
                    Verdict(index=c.index, eligible=True, cost=cost_of(c), stock=0,
                            score=min(x.score for x in c.components), priority=c.priority)
                    for c in facts.candidates
                    if _suppliers(c) == {supplier} and _ineligible(c, inp.province, used) is None
                    and cost_of(c) is not None
                ),
                key=rank,
            )
            if not options:
                break
            picks.append(options[0].index)
            _consume(_candidate(facts, options[0].index), used)
        else:
            total = sum((cost_of(_candidate(f, i)) for (f, _), i in zip(routed, picks)), Decimal(0))
            score = min(_candidate(f, i).components[0].score for (f, _), i in zip(routed, picks))
            key = (total, -score, supplier)
            if total <= limit and (best is None or key < best[0]):
                best = (key, supplier, picks)
    if best is None:
        return Decision(lines=tuple(lines))
    _, supplier, picks = best
    new_lines = list(lines)
    routed_ids = {d.line_id: i for i, (_, d) in enumerate(routed)}
    for pos, dec in enumerate(lines):
        if dec.line_id not in routed_ids:
            continue
        pick = picks[routed_ids[dec.line_id]]
        if pick == dec.chosen:
            continue
        new_lines[pos] = LineDecision(
            line_id=dec.line_id,
            chosen=pick,
            candidates=tuple(
                _with(v, lost="fewer_splits") if v.index == dec.chosen
                else _with(v, eligible=True, reason=None, lost=None) if v.index == pick
                else v
                for v in dec.candidates
            ),
        )
    return Decision(lines=tuple(new_lines), consolidated_to=supplier)
