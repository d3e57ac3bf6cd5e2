"""Linking rules L1-L8 (seed 000, seed 004)."""

from __future__ import annotations

import pytest

from engine.errors import InvalidCommand, LinkRefused, UnknownOffer, UnknownSupplier
from tests.world import SHOP, allocations, alt, comp, line, link, offer, place, sku, stored, supplier


@pytest.fixture
def world(memory_app):
    app = memory_app  # in memory: these narratives are about the domain, not the store
    for s in ("S1", "S2"):
        supplier(app, s)
    for i in range(11):
        offer(app, "S1", f"O{i}", {f"O{i}-a": 50, f"O{i}-b": 50})
    offer(app, "S2", "B1", {"B1-a": 50})
    return app


def test_l1_eleventh_offer_is_refused_and_nothing_is_stored(world):
    ten = [sku(f"K{i}", alt(comp("S1", f"O{i}", f"O{i}-a"))) for i in range(10)]
    link(world, "P1", *ten)
    before = stored(world)
    eleven = ten + [sku("K10", alt(comp("S1", "O10", "O10-a")))]
    with pytest.raises(LinkRefused, match="L1.*at most 10"):
        link(world, "P1", *eleven)
    assert stored(world) == before
    assert world.link(*SHOP, "P1").link_version == 1


def test_l1_counts_distinct_offers_not_skus(world):
    # ten offers, two SKUs of each: twenty components, still ten offers
    skus = [sku(f"K{i}{s}", alt(comp("S1", f"O{i}", f"O{i}-{s}"))) for i in range(10) for s in "ab"]
    assert link(world, "P1", *skus) == 1


def test_l2_each_shop_sku_maps_to_its_own_alternatives(world):
    link(world, "P1", sku("K1", alt(comp("S1", "O1", "O1-a"))), sku("K2", alt(comp("S1", "O2", "O2-a"))))
    place(world, "X1", line("L1", "P1", "K1"), line("L2", "P1", "K2"))
    [a] = allocations(world, "X1")
    assert {(al.line_id, al.supplier_sku_id) for al in a.lines} == {("L1", "O1-a"), ("L2", "O2-a")}


def test_l3_reflow_quantity_multiplies_the_consumer_quantity(world):
    link(world, "P1", sku("K1", alt(comp("S1", "O1", "O1-a", qty=2))))
    place(world, "X1", line("L1", "P1", "K1", qty=1))
    [a] = allocations(world, "X1")
    assert a.lines[0].qty == 2  # seed 000: reflow quantity 2, consumer buys 1 -> 2 ordered
    place(world, "X2", line("L1", "P1", "K1", qty=3))
    [b] = allocations(world, "X2")
    assert b.lines[0].qty == 6


def test_l3_reflow_quantity_zero_is_refused_naming_the_field(world):
    before = stored(world)
    with pytest.raises(InvalidCommand, match=r"components\[0\]\.qty.*L3|L3.*components\[0\]\.qty"):
        link(world, "P1", sku("K1", alt(comp("S1", "O1", "O1-a", qty=0))))
    assert stored(world) == before


def test_l4_bundle_components_are_allocated_together_one_allocation_per_supplier(world):
    bundle = alt(comp("S1", "O1", "O1-a"), comp("S1", "O2", "O2-a", qty=2), comp("S2", "B1", "B1-a"))
    link(world, "P1", sku("K1", bundle))
    place(world, "X1", line("L1", "P1", "K1", qty=2))
    allocs = {a.supplier_id: a for a in allocations(world, "X1")}
    assert set(allocs) == {"S1", "S2"}
    assert sorted((al.supplier_sku_id, al.qty) for al in allocs["S1"].lines) == [("O1-a", 2), ("O2-a", 4)]
    assert [(al.supplier_sku_id, al.qty) for al in allocs["S2"].lines] == [("B1-a", 2)]


def test_l4_bundle_with_one_component_short_is_not_allocated_at_all(world):
    world.report_stock("S2", "B1", "B1-a", 0)
    link(world, "P1", sku("K1", alt(comp("S1", "O1", "O1-a"), comp("S2", "B1", "B1-a"))))
    place(world, "X1", line("L1", "P1", "K1"))
    assert allocations(world, "X1") == []
    assert world.offer("S1", "O1").available("O1-a") == 50  # nothing reserved for half a bundle


def test_l5_single_mode_with_two_offers_is_refused(world):
    before = stored(world)
    with pytest.raises(LinkRefused, match="L5"):
        link(world, "P1", sku("K1", alt(comp("S1", "O1", "O1-a")), alt(comp("S1", "O2", "O2-a"))),
             mode="single")
    assert stored(world) == before
    assert link(world, "P1", sku("K1", alt(comp("S1", "O1", "O1-a"))), mode="single") == 1


def test_l6_product_without_skus_links_at_product_level(world):
    link(world, "P9", sku(None, alt(comp("S1", "O3", "O3-a"))))
    place(world, "X1", line("L1", "P9", sku_id=None))
    [a] = allocations(world, "X1")
    assert a.lines[0].supplier_sku_id == "O3-a"


def test_l7_merchant_code_maps_automatically_and_bundle_code_wins(world):
    world.register_code("MC-1", "item", [comp("S1", "O1", "O1-a")])
    world.register_code("MC-1", "bundle", [comp("S1", "O2", "O2-a"), comp("S1", "O2", "O2-b")])
    world.register_code("MC-2", "item", [comp("S1", "O4", "O4-a")])
    place(world, "X1", line("L1", "P-unlinked", sku_id="whatever", code="MC-1"),
          line("L2", "P-unlinked2", sku_id="x", code="MC-2"))
    [a] = allocations(world, "X1")
    by_line = {}
    for al in a.lines:
        by_line.setdefault(al.line_id, set()).add(al.supplier_sku_id)
    assert by_line == {"L1": {"O2-a", "O2-b"}, "L2": {"O4-a"}}
    [decision] = world.decisions(*SHOP, "X1")
    assert [lf.matched_by for lf in decision.input.lines] == ["bundle_code", "item_code"]


def test_l7_codes_are_unique_within_their_kind(world):
    world.register_code("MC-1", "item", [comp("S1", "O1", "O1-a")])
    world.register_code("MC-1", "item", [comp("S1", "O1", "O1-a")])  # the same again: fine
    before = stored(world)
    with pytest.raises(LinkRefused, match="L7.*already registered"):
        world.register_code("MC-1", "item", [comp("S1", "O2", "O2-a")])
    assert stored(world) == before


def test_l8_every_link_change_is_an_event_and_allocations_keep_their_version(world):
    assert link(world, "P1", sku("K1", alt(comp("S1", "O1", "O1-a")))) == 1
    place(world, "X1", line("L1", "P1"))
    assert link(world, "P1", sku("K1", alt(comp("S1", "O1", "O1-a", qty=2)))) == 2
    assert link(world, "P1", sku("K1", alt(comp("S1", "O1", "O1-a", qty=2)))) == 2  # no change, no event
    assert link(world, "P1", sku("K1", alt(comp("S2", "B1", "B1-a")))) == 3
    place(world, "X2", line("L1", "P1"))
    [a1], [a2] = allocations(world, "X1"), allocations(world, "X2")
    assert (a1.lines[0].link_version, a1.supplier_id, a1.lines[0].qty) == (1, "S1", 1)
    assert (a2.lines[0].link_version, a2.supplier_id) == (3, "S2")
    from engine.linking import LinkSet

    events = [e for e in world.events.get(world.link(*SHOP, "P1").id) if isinstance(e, LinkSet)]
    assert [e.changes for e in events] == [
        ("created",), ("qty changed K1",), ("offer added S2/B1", "offer removed S1/O1", "source switched K1")]
    world.remove_link(*SHOP, "P1")
    assert world.link(*SHOP, "P1").link_version == 4


def test_link_to_unknown_supplier_or_offer_is_refused_naming_it(world):
    before = stored(world)
    with pytest.raises(UnknownSupplier, match="supplier_id.*S404"):
        link(world, "P1", sku("K1", alt(comp("S404", "O1", "O1-a"))))
    with pytest.raises(UnknownOffer, match=r"components\[0\]\.offer_id.*O404"):
        link(world, "P1", sku("K1", alt(comp("S1", "O404", "x"))))
    with pytest.raises(UnknownOffer, match="supplier_sku_id.*nope"):
        link(world, "P1", sku("K1", alt(comp("S1", "O1", "nope"))))
    assert stored(world) == before
