"""The routing policy on its own: ``engine.policy.decide`` on hand-built facts (no store, no app).

The fast layer of the test pyramid: each test builds a ``RoutingInput`` by hand and checks one
rule of DOMAIN.md (RT1-RT3, RT6-RT10, L3, L4) on the ``Decision``. The engine narratives in
``test_routing.py`` check the same rules end to end, through the application and its store.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.policy import (
    CandidateFacts,
    ComponentFacts,
    Decision,
    LineDecision,
    LineFacts,
    RoutingInput,
    decide,
    rank,
)

AT = datetime(2026, 11, 2, 9, 0, tzinfo=timezone(timedelta(hours=8)))
ZHEJIANG, GUANGDONG = "浙江省", "广东省"


# -- builders -------------------------------------------------------------------------------

def part(supplier: str = "S1", sku: str = "a", *, offer: str | None = None, qty: int = 1,
         active: bool = True, on_shelf: bool = True, available: int = 10,
         cost: str | None = "10.00", score: int = 80, in_pool: bool = True) -> ComponentFacts:
    """One component of an alternative; ``need`` is set by :func:`line` (L3: line qty x qty)."""
    return ComponentFacts(
        supplier_id=supplier, offer_id=offer or f"O-{supplier}", supplier_sku_id=sku, qty=qty,
        need=qty, supplier_active=active, on_shelf=on_shelf, available=available,
        unit_cost=None if cost is None else Decimal(cost), score=score, in_pool=in_pool,
    )


def alt(*parts: ComponentFacts, priority: int | None = None,
        provinces: tuple[str, ...] | None = None) -> CandidateFacts:
    """An alternative; its index (link order) is its position in :func:`line`."""
    return CandidateFacts(index=-1, components=parts, priority=priority, provinces=provinces)


def line(line_id: str, *alts: CandidateFacts, qty: int = 1) -> LineFacts:
    """A line of ``qty`` units; each component needs ``qty x`` its reflow quantity (L3)."""
    candidates = tuple(
        msgspec.structs.replace(
            a, index=i,
            components=tuple(msgspec.structs.replace(p, need=qty * p.qty) for p in a.components),
        )
        for i, a in enumerate(alts)
    )
    return LineFacts(line_id=line_id, qty=qty, candidates=candidates, link_version=1,
                     matched_by="sku" if alts else "")


def routing(*lines: LineFacts, province: str = ZHEJIANG, tolerance: str = "0") -> RoutingInput:
    return RoutingInput(at=AT, province=province, lines=lines, split_tolerance=Decimal(tolerance))


def one(*alts: CandidateFacts, qty: int = 1, province: str = ZHEJIANG) -> LineDecision:
    """The decision for an order of one line with these alternatives."""
    [d] = decide(routing(line("L1", *alts, qty=qty), province=province)).lines
    return d


def verdicts(d: LineDecision) -> list[tuple[bool, str | None, str | None]]:
    return [(v.eligible, v.reason, v.lost) for v in d.candidates]


# -- RT1: eligibility -----------------------------------------------------------------------

def test_rt1_inactive_supplier_is_ineligible_with_its_reason():
    d = one(alt(part("S1", active=False, cost="1.00")), alt(part("S2", cost="9.00")))
    assert d.chosen == 1 and d.unroutable is None
    assert verdicts(d) == [(False, "supplier_inactive", None), (True, None, None)]


def test_rt1_bundle_with_one_inactive_supplier_is_ineligible_as_a_whole():
    d = one(alt(part("S1", "a"), part("S2", "b", active=False)), alt(part("S3")))
    assert d.chosen == 1
    assert d.candidates[0].reason == "supplier_inactive"


def test_rt1_off_shelf_sku_is_ineligible_with_its_reason():
    d = one(alt(part("S1", on_shelf=False, cost="1.00")), alt(part("S2")))
    assert d.chosen == 1
    assert verdicts(d) == [(False, "sku_off_shelf", None), (True, None, None)]


@pytest.mark.parametrize(("available", "eligible"), [(5, False), (6, True), (7, True)])
def test_rt1_stock_must_cover_n_times_qty(available, eligible):
    """3 bought of a shop SKU with reflow quantity 2: the supplier SKU must have 6."""
    d = one(alt(part("S1", qty=2, available=available)), qty=3)
    assert d.candidates[0].eligible is eligible
    assert (d.chosen, d.unroutable) == ((0, None) if eligible else (None, "out_of_stock"))
    assert d.candidates[0].reason == (None if eligible else "out_of_stock")


@pytest.mark.parametrize(("facts", "reason"), [
    (dict(active=False, on_shelf=False, available=0, in_pool=False), "supplier_inactive"),
    (dict(on_shelf=False, available=0, in_pool=False), "sku_off_shelf"),
    (dict(available=0, in_pool=False), "not_in_pool"),
    (dict(available=0), "out_of_stock"),
])
def test_rt1_a_candidate_failing_several_checks_names_the_first(facts, reason):
    """Supplier, then shelf, then provinces (RT9), then pool (RT8), then stock."""
    assert one(alt(part("S1", **facts))).candidates[0].reason == reason


def test_rt1_ineligible_candidate_is_never_chosen_however_cheap_or_prioritised():
    d = one(alt(part("S1", active=False, cost="1.00"), priority=1),
            alt(part("S2", on_shelf=False, cost="1.00"), priority=1),
            alt(part("S3", available=0, cost="1.00"), priority=1),
            alt(part("S4", cost="99.00", score=0)))
    assert d.chosen == 3


# -- RT2: ranking ---------------------------------------------------------------------------

def test_rt2_manual_priority_beats_cost_and_the_loser_lost_on_priority():
    d = one(alt(part("S1", cost="20.00"), priority=1), alt(part("S2", cost="10.00")))
    assert d.chosen == 0
    assert verdicts(d) == [(True, None, None), (True, None, "priority")]


def test_rt2_lower_priority_number_wins():
    d = one(alt(part("S1", cost="1.00"), priority=2), alt(part("S2", cost="9.00"), priority=1))
    assert d.chosen == 1 and d.candidates[0].lost == "priority"


def test_rt2_cheapest_eligible_wins_and_the_loser_lost_on_cost():
    d = one(alt(part("S1", cost="12.00", score=99)), alt(part("S2", cost="10.00", score=1)))
    assert d.chosen == 1
    assert verdicts(d) == [(True, None, "cost"), (True, None, None)]


def test_rt2_cost_is_the_total_settlement_cost_of_the_line():
    """Unit cost x need, summed over the components: a cheap unit needing many units can lose."""
    d = one(alt(part("S1", cost="4.00", qty=3)),                         # 2 x 3 x 4 = 24
            alt(part("S2", "a", cost="5.00"), part("S2", "b", cost="6.00")),  # 2 x 5 + 2 x 6 = 22
            qty=2)
    assert [v.cost for v in d.candidates] == [Decimal("24.00"), Decimal("22.00")]
    assert d.chosen == 1 and d.candidates[0].lost == "cost"


def test_rt2_unpriced_candidate_ranks_after_any_priced_one():
    d = one(alt(part("S1", cost=None)), alt(part("S2", cost="99.00")))
    assert d.candidates[0].cost is None
    assert d.chosen == 1 and d.candidates[0].lost == "cost"


def test_rt2_equal_cost_goes_to_the_best_fulfilment_score():
    d = one(alt(part("S1", score=70)), alt(part("S2", score=90)))
    assert d.chosen == 1
    assert verdicts(d) == [(True, None, "score"), (True, None, None)]


def test_rt2_bundle_scores_as_its_weakest_supplier():
    d = one(alt(part("S1", "a", cost="5.00", score=95), part("S2", "b", cost="5.00", score=60)),
            alt(part("S3", cost="10.00", score=70)))
    assert d.candidates[0].score == 60
    assert d.chosen == 1 and d.candidates[0].lost == "score"


def test_rt2_equal_cost_and_score_goes_to_the_earliest_in_the_link():
    d = one(alt(part("S1")), alt(part("S2")), alt(part("S3")))
    assert d.chosen == 0
    assert verdicts(d) == [(True, None, None), (True, None, "link_order"), (True, None, "link_order")]


def test_rt2_each_loser_names_the_first_criterion_it_lost_on():
    d = one(alt(part("S1", cost="12.00", score=99)),   # dearer
            alt(part("S2", cost="10.00", score=70)),   # as cheap, worse score
            alt(part("S3", cost="10.00", score=90)),   # the winner
            alt(part("S4", cost="10.00", score=90)),   # as good, later in the link
            alt(part("S5", cost="1.00", active=False)))  # ineligible: no `lost`
    assert d.chosen == 2
    assert [v.lost for v in d.candidates] == ["cost", "score", None, "link_order", None]
    assert d.candidates[4].reason == "supplier_inactive"


def test_rt2_against_a_prioritised_winner_every_unprioritised_loser_lost_on_priority():
    d = one(alt(part("S1", cost="1.00", score=100)), alt(part("S2", cost="50.00", score=0), priority=3))
    assert d.chosen == 1 and d.candidates[0].lost == "priority"


# -- RT3: unroutable lines ------------------------------------------------------------------

def test_rt3_line_without_candidates_is_no_link():
    d = one()
    assert (d.chosen, d.unroutable, d.candidates) == (None, "no_link", ())


@pytest.mark.parametrize(("facts", "province", "reason"), [
    (dict(available=0), ZHEJIANG, "out_of_stock"),
    (dict(active=False), ZHEJIANG, "supplier_inactive"),
    (dict(on_shelf=False), ZHEJIANG, "sku_off_shelf"),
    (dict(in_pool=False), ZHEJIANG, "sku_off_shelf"),   # RT8: reported as off shelf for the line
    (dict(), GUANGDONG, "sku_off_shelf"),               # RT9: not served, likewise
])
def test_rt3_line_with_no_eligible_candidate_is_unroutable_with_a_reason(facts, province, reason):
    d = one(alt(part("S1", **facts), provinces=(ZHEJIANG,)), province=province)
    assert (d.chosen, d.unroutable) == (None, reason)
    assert not d.candidates[0].eligible and d.candidates[0].lost is None


@pytest.mark.parametrize(("first", "second", "reason"), [
    (dict(active=False), dict(available=0), "out_of_stock"),
    (dict(on_shelf=False), dict(available=0), "out_of_stock"),
    (dict(on_shelf=False), dict(active=False), "supplier_inactive"),
    (dict(in_pool=False), dict(active=False), "supplier_inactive"),
])
def test_rt3_reasons_order_out_of_stock_then_supplier_inactive_then_off_shelf(first, second, reason):
    for alts in ((alt(part("S1", **first)), alt(part("S2", **second))),
                 (alt(part("S1", **second)), alt(part("S2", **first)))):
        assert one(*alts).unroutable == reason


def test_rt3_unroutable_line_keeps_every_verdict_with_its_reason():
    d = one(alt(part("S1", active=False)), alt(part("S2", available=0)), alt(part("S3", on_shelf=False)))
    assert verdicts(d) == [(False, "supplier_inactive", None), (False, "out_of_stock", None),
                           (False, "sku_off_shelf", None)]


def test_rt3_one_unroutable_line_does_not_stop_the_others():
    dec = decide(routing(line("L1"), line("L2", alt(part("S1"))), line("L3", alt(part("S1", available=0)))))
    assert [(d.line_id, d.chosen, d.unroutable) for d in dec.lines] == [
        ("L1", None, "no_link"), ("L2", 0, None), ("L3", None, "out_of_stock")]


# -- RT8: source pool -----------------------------------------------------------------------

def test_rt8_candidate_outside_the_source_pool_is_not_in_pool():
    d = one(alt(part("S1", in_pool=False, cost="1.00")), alt(part("S2", cost="9.00")))
    assert d.chosen == 1
    assert verdicts(d) == [(False, "not_in_pool", None), (True, None, None)]


def test_rt8_bundle_with_one_part_outside_the_pool_is_not_in_pool():
    d = one(alt(part("S1", "a"), part("S1", "b", in_pool=False)))
    assert d.candidates[0].reason == "not_in_pool" and d.chosen is None


# -- RT9: provinces -------------------------------------------------------------------------

def test_rt9_alternative_serves_only_its_provinces():
    near = alt(part("S1", cost="8.00"), provinces=(ZHEJIANG, "江苏省"))
    far = alt(part("S2", cost="9.00"))
    d = one(near, far, province=GUANGDONG)
    assert d.chosen == 1 and verdicts(d)[0] == (False, "not_served", None)
    d = one(near, far, province=ZHEJIANG)
    assert d.chosen == 0 and verdicts(d) == [(True, None, None), (True, None, "cost")]


def test_rt9_alternative_naming_no_provinces_serves_everywhere():
    for province in (ZHEJIANG, GUANGDONG, ""):
        assert one(alt(part("S1"), provinces=None), province=province).chosen == 0


# -- RT10: fewer splits ---------------------------------------------------------------------

def _crossed(tolerance: str) -> Decision:
    """L1 is cheapest at S1, L2 at S2: split 10 + 10 = 20; either supplier alone costs 21."""
    return decide(routing(
        line("L1", alt(part("S1", cost="10.00")), alt(part("S2", cost="11.00"))),
        line("L2", alt(part("S2", cost="10.00")), alt(part("S1", cost="11.00"))),
        tolerance=tolerance,
    ))


@pytest.mark.parametrize("tolerance", ["0", "0.04"])
def test_rt10_no_consolidation_beyond_the_tolerance(tolerance):
    dec = _crossed(tolerance)
    assert dec.consolidated_to is None
    assert [d.chosen for d in dec.lines] == [0, 0]


@pytest.mark.parametrize("tolerance", ["0.05", "0.5"])
def test_rt10_fewer_splits_within_the_tolerance_goes_to_one_supplier(tolerance):
    """21 is 5% above 20: within a 5% tolerance (inclusive); S1 and S2 tie, S1 first by name."""
    dec = _crossed(tolerance)
    assert dec.consolidated_to == "S1"
    l1, l2 = dec.lines
    assert l1.chosen == 0 and verdicts(l1) == [(True, None, None), (True, None, "cost")]
    assert l2.chosen == 1 and verdicts(l2) == [(True, None, "fewer_splits"), (True, None, None)]


def test_rt10_equal_cost_consolidates_even_with_zero_tolerance():
    """L1 goes to S1 on score alone; S2 can take both lines at the same total."""
    dec = decide(routing(
        line("L1", alt(part("S1", score=90)), alt(part("S2", score=80))),
        line("L2", alt(part("S2", score=80))),
    ))
    assert dec.consolidated_to == "S2"
    assert [d.chosen for d in dec.lines] == [1, 0]
    assert dec.lines[0].candidates[0].lost == "fewer_splits"


def test_rt10_picks_the_cheapest_single_supplier():
    dec = decide(routing(
        line("L1", alt(part("S1", cost="10.00")), alt(part("S2", cost="12.00")), alt(part("S3", cost="11.00"))),
        line("L2", alt(part("S2", cost="10.00")), alt(part("S1", cost="12.00")), alt(part("S3", cost="10.50"))),
        tolerance="0.2",
    ))
    assert dec.consolidated_to == "S3"
    assert [d.chosen for d in dec.lines] == [2, 2]


def test_rt10_never_overrides_a_manual_priority():
    dec = decide(routing(
        line("L1", alt(part("S1"), priority=1), alt(part("S2"))),
        line("L2", alt(part("S2"))),
        tolerance="1",
    ))
    assert dec.consolidated_to is None
    assert [d.chosen for d in dec.lines] == [0, 0]


def test_rt10_may_consolidate_onto_the_prioritised_supplier():
    dec = decide(routing(
        line("L1", alt(part("S1"), priority=1), alt(part("S2"))),
        line("L2", alt(part("S2", score=90)), alt(part("S1", score=80))),
    ))
    assert dec.consolidated_to == "S1"
    assert [d.chosen for d in dec.lines] == [0, 1]


def test_rt10_one_supplier_already_is_not_a_consolidation():
    dec = decide(routing(line("L1", alt(part("S1"))), line("L2", alt(part("S1", "b")))))
    assert dec.consolidated_to is None


def test_rt10_needs_a_price_for_every_chosen_candidate():
    dec = decide(routing(
        line("L1", alt(part("S1", cost=None, score=90)), alt(part("S2", cost=None, score=80))),
        line("L2", alt(part("S2"))),
        tolerance="1",
    ))
    assert dec.consolidated_to is None and [d.chosen for d in dec.lines] == [0, 0]


@pytest.mark.parametrize(("available", "consolidated"), [(1, None), (2, "S2")])
def test_rt10_consolidation_respects_stock(available, consolidated):
    """Both lines at S2 need two units of S2's SKU x; with only one there is no consolidation."""
    dec = decide(routing(
        line("L1", alt(part("S1", score=90)), alt(part("S2", "x", score=80, available=available))),
        line("L2", alt(part("S2", "x", score=80, available=available))),
    ))
    assert dec.consolidated_to == consolidated


# -- L3 / L4: quantities and bundles --------------------------------------------------------

@pytest.mark.parametrize(("available", "stock", "eligible"), [(5, 2, False), (6, 3, True), (9, 4, True)])
def test_l3_need_is_qty_times_reflow_qty(available, stock, eligible):
    """Reflow quantity 2, 3 bought: cost and stock are counted in supplier units (6 needed)."""
    d = one(alt(part("S1", qty=2, available=available, cost="10.00")), qty=3)
    v = d.candidates[0]
    assert (v.cost, v.stock, v.eligible) == (Decimal("60.00"), stock, eligible)


def test_l4_bundle_stock_is_its_scarcest_part():
    d = one(alt(part("S1", "a", available=10), part("S2", "b", qty=2, available=7)))
    assert d.candidates[0].stock == 3


@pytest.mark.parametrize(("qty", "eligible"), [(3, True), (4, False)])
def test_l4_bundle_is_eligible_only_when_every_part_is_covered(qty, eligible):
    d = one(alt(part("S1", "a", available=10), part("S2", "b", qty=2, available=7)), qty=qty)
    assert d.candidates[0].eligible is eligible
    assert d.candidates[0].reason == (None if eligible else "out_of_stock")


def test_l4_bundle_cost_is_the_sum_of_its_parts():
    d = one(alt(part("S1", "a", cost="3.00"), part("S2", "b", qty=2, cost="4.50")), qty=2)
    assert d.candidates[0].cost == Decimal("2") * 3 + Decimal("4") * Decimal("4.50")


# -- RT7 within one decision ----------------------------------------------------------------

def test_rt7_stock_used_by_an_earlier_line_is_not_offered_to_a_later_line():
    dec = decide(routing(
        line("L1", alt(part("S1", available=3)), qty=2),
        line("L2", alt(part("S1", available=3)), alt(part("S2", cost="15.00")), qty=2),
    ))
    l1, l2 = dec.lines
    assert l1.chosen == 0
    assert l2.chosen == 1
    assert (l2.candidates[0].reason, l2.candidates[0].stock) == ("out_of_stock", 1)


def test_rt7_a_later_line_with_nothing_left_is_out_of_stock():
    dec = decide(routing(line("L1", alt(part("S1", available=1))), line("L2", alt(part("S1", available=1)))))
    assert [(d.chosen, d.unroutable) for d in dec.lines] == [(0, None), (None, "out_of_stock")]


def test_rt7_a_bundle_part_and_a_single_line_share_one_supplier_sku():
    dec = decide(routing(
        line("L1", alt(part("S1", "a", available=4), part("S2", "b")), qty=3),
        line("L2", alt(part("S1", "a", available=4)), qty=2),
    ))
    assert [(d.chosen, d.unroutable) for d in dec.lines] == [(0, None), (None, "out_of_stock")]


def test_rt7_only_the_winner_uses_stock():
    dec = decide(routing(
        line("L1", alt(part("S1", cost="10.00")), alt(part("S2", "b", cost="12.00", available=1))),
        line("L2", alt(part("S2", "b", cost="12.00", available=1))),
        tolerance="1",  # consolidation to S2 would need two units of b: not possible
    ))
    assert [(d.chosen, d.unroutable) for d in dec.lines] == [(0, None), (0, None)]


def test_rt7_the_same_sku_id_in_another_offer_is_other_stock():
    dec = decide(routing(
        line("L1", alt(part("S1", "a", offer="O1", available=1))),
        line("L2", alt(part("S1", "a", offer="O2", available=1))),
    ))
    assert [d.chosen for d in dec.lines] == [0, 0]


@pytest.mark.parametrize(("available", "stock"), [(1, 0), (2, 1), (5, 2)])
def test_rt7_l4_bundle_naming_one_supplier_sku_twice_needs_both_units(available, stock):
    d = one(alt(part("S1", "a", available=available), part("S1", "a", available=available)))
    assert d.candidates[0].stock == stock
    assert (d.chosen, d.unroutable) == ((None, "out_of_stock") if stock == 0 else (0, None))


# -- RT6 and properties (hypothesis) --------------------------------------------------------

SUPPLIERS = ("S1", "S2", "S3")
KEYS = (("S1", "O1", "a"), ("S1", "O1", "b"), ("S1", "O9", "a"),  # O9/a: same SKU id, other offer
        ("S2", "O2", "a"), ("S2", "O2", "b"), ("S3", "O3", "a"))
SKU_FACTS = st.fixed_dictionaries(dict(
    on_shelf=st.integers(0, 7).map(bool),
    in_pool=st.integers(0, 7).map(bool),
    available=st.sampled_from([0, 1, 2, 3, 5, 20]),
    cost=st.sampled_from([None, "9.00", "10.00", "10.00", "10.00", "10.50", "12.00"]),
))

SPLIT_SKU_FACTS = st.fixed_dictionaries(dict(
    on_shelf=st.integers(0, 9).map(bool),
    available=st.sampled_from([0, 1, 2, 20, 20]),
    cost=st.sampled_from([None, "9.50", "10.00", "10.00", "10.40", "11.00"]),
))


class _World:
    """One consistent set of facts per supplier and per supplier SKU, drawn on first use, so
    every line of an order sees the same stock, price and score for the same SKU (as the
    engine's facts do)."""

    def __init__(self, draw, sku_facts=SKU_FACTS) -> None:
        self.draw = draw
        self.sku_facts = sku_facts
        self.suppliers: dict[str, dict] = {}
        self.skus: dict[tuple[str, str, str], dict] = {}

    def part(self, supplier: str, offer: str, sku: str, qty: int = 1) -> ComponentFacts:
        if supplier not in self.suppliers:
            self.suppliers[supplier] = dict(active=self.draw(st.integers(0, 7).map(bool)),
                                            score=self.draw(st.sampled_from([0, 60, 80, 90])))
        if (supplier, offer, sku) not in self.skus:
            self.skus[(supplier, offer, sku)] = self.draw(self.sku_facts)
        return part(supplier, sku, offer=offer, qty=qty,
                    **self.suppliers[supplier], **self.skus[(supplier, offer, sku)])

    def order(self, lines: list[LineFacts]) -> RoutingInput:
        return routing(*lines, province=self.draw(st.sampled_from([ZHEJIANG, GUANGDONG])),
                       tolerance=self.draw(st.sampled_from(["0", "0.05", "0.5", "1"])))


@st.composite
def any_orders(draw) -> RoutingInput:
    """1-4 lines, each with 0-4 alternatives of one component or now and then a bundle (L4, one
    supplier SKU possibly named twice), some prioritised (RT2), some serving one province (RT9)."""
    world = _World(draw)

    def candidate() -> CandidateFacts:
        size = draw(st.sampled_from([1, 1, 1, 2]))
        keys = draw(st.lists(st.sampled_from(KEYS), min_size=size, max_size=size))  # may repeat
        return alt(*(world.part(*key, qty=draw(st.integers(1, 2))) for key in keys),
                   priority=draw(st.sampled_from([None] * 6 + [1, 2])),
                   provinces=draw(st.sampled_from([None, None, None, (ZHEJIANG,), (GUANGDONG,)])))

    return world.order([
        line(f"L{i}", *[candidate() for _ in range(draw(st.integers(0, 4)))], qty=draw(st.integers(1, 2)))
        for i in range(draw(st.integers(1, 4)))
    ])


@st.composite
def split_orders(draw) -> RoutingInput:
    """RT10's ground: 2-4 lines that most suppliers can each fulfil, so that the cheapest
    split often spans suppliers and one supplier alone is often within reach."""
    world = _World(draw, SPLIT_SKU_FACTS)
    lines = []
    for i in range(draw(st.integers(2, 4))):
        suppliers = draw(st.permutations(SUPPLIERS))[: draw(st.sampled_from([1, 2, 3, 3]))]
        lines.append(line(f"L{i}", *(
            alt(world.part(s, f"O-{s}", draw(st.sampled_from(["a", "b", "c"]))),
                priority=draw(st.sampled_from([None] * 9 + [1])))
            for s in suppliers
        )))
    return world.order(lines)


routing_inputs = st.one_of(any_orders(), split_orders())
PROPERTY = settings(max_examples=100, deadline=None)  # ~0.6 s each; thousands pass as well


def _chosen_facts(inp: RoutingInput, dec: Decision):
    for facts, d in zip(inp.lines, dec.lines, strict=True):
        if d.chosen is not None:
            yield facts, next(c for c in facts.candidates if c.index == d.chosen)


@PROPERTY
@given(routing_inputs)
def test_rt6_decide_is_deterministic_and_replays_from_its_recorded_input(inp):
    dec = decide(inp)
    assert decide(inp) == dec
    recorded = msgspec.json.decode(msgspec.json.encode(inp), type=RoutingInput)
    assert recorded == inp and decide(recorded) == dec
    assert msgspec.json.decode(msgspec.json.encode(dec), type=Decision) == dec


@PROPERTY
@given(routing_inputs)
def test_rt2_rt3_chosen_candidate_is_eligible_and_ranks_first_unless_consolidated(inp):
    dec = decide(inp)
    assert [d.line_id for d in dec.lines] == [f.line_id for f in inp.lines]
    for facts, d in zip(inp.lines, dec.lines):
        assert [v.index for v in d.candidates] == [c.index for c in facts.candidates]
        assert (d.chosen is None) == (d.unroutable is not None)
        for v in d.candidates:
            assert v.eligible == (v.reason is None)
            assert v.lost is None or v.eligible
        if not facts.candidates:
            assert d.unroutable == "no_link"
            continue
        if d.chosen is None:
            assert not any(v.eligible for v in d.candidates)
            assert d.unroutable in ("out_of_stock", "supplier_inactive", "sku_off_shelf")
            continue
        winner = next(v for v in d.candidates if v.index == d.chosen)
        assert winner.eligible and winner.lost is None
        if dec.consolidated_to is None:
            losers = [v for v in d.candidates if v.eligible and v is not winner]
            assert all(rank(winner) < rank(v) for v in losers)
            assert all(v.lost in ("priority", "cost", "score", "link_order") for v in losers)


@PROPERTY
@given(routing_inputs)
def test_rt7_a_decision_never_uses_more_stock_than_there_is(inp):
    dec = decide(inp)
    used: dict[tuple[str, str, str], int] = defaultdict(int)
    available = {}
    for _, cand in _chosen_facts(inp, dec):
        for comp in cand.components:
            key = (comp.supplier_id, comp.offer_id, comp.supplier_sku_id)
            used[key] += comp.need
            available[key] = comp.available
    assert all(used[k] <= available[k] for k in used)


@PROPERTY
@given(st.one_of(split_orders(), any_orders()))
def test_rt10_consolidated_order_is_one_supplier_within_the_tolerance(inp):
    dec = decide(inp)
    if dec.consolidated_to is None:
        return
    # A tolerance of -100% turns RT10 off: no positive total is <= 0.
    split = decide(msgspec.structs.replace(inp, split_tolerance=Decimal("-1")))
    assert split.consolidated_to is None
    chosen = [c for _, c in _chosen_facts(inp, dec)]
    assert chosen and all({p.supplier_id for p in c.components} == {dec.consolidated_to} for c in chosen)
    assert [d.chosen is None for d in dec.lines] == [d.chosen is None for d in split.lines]

    def total(d: Decision) -> Decimal:
        return sum((v.cost for line in d.lines for v in line.candidates if v.index == line.chosen),
                   Decimal(0))

    assert total(dec) <= total(split) * (1 + inp.split_tolerance)
    split_choice = {f.line_id: c for f, c in _chosen_facts(inp, split)}
    for d, s in zip(dec.lines, split.lines):
        if d.chosen != s.chosen:
            assert next(v for v in d.candidates if v.index == s.chosen).lost == "fewer_splits"
            assert split_choice[d.line_id].priority is None  # a manual priority is never overridden
