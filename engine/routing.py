"""The routing service: from an order's lines to recorded facts, a decision, and allocations.

One place for the facts a decision is made from (rules RT1, RT2, RT8, RT9, L2-L7), used alike by
live routing, pull pre-link (L10), stock sync (S1) and what-if (A1), so they cannot drift apart.
`route` decides with the pure policy (`engine.policy.decide`), reserves stock in the same unit of
work (RT7), records the decision with its input (RT6), and parks what is left waiting (RT3).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from engine import ids
from engine.allocations import Allocation, AllocLine
from engine.backlog import Backlog, Parked
from engine.catalog import Offer, Supplier
from engine.clock import next_day_start, schedule
from engine.linking import Link
from engine.merchants import CodeBook, Merchant, PriceBook, Shop, SupplierIndex
from engine.orders import Order
from engine.policy import (
    CandidateFacts,
    ComponentFacts,
    Decision,
    LineFacts,
    RoutingInput,
    Verdict,
    cost_of,
    decide,
    picked,
    rank,
    stock_in_turn,
)
from engine.privacy import mask, recipient_token
from engine.servicelevel import ship_by
from engine.uow import UnitOfWork
from engine.values import AllocRef, Alternative, Component, LineIn, MerchantSettings, OfferSku, SkuLink, SkuQty

POOL_MIN_STOCK = 200  # rule RT8
POOL_MIN_GROWTH = 60
Needs = dict[tuple[str, str, str], int]


# -- whose, and which settings -------------------------------------------------------------------


def merchant_of(uow: UnitOfWork, platform: str, shop_id: str) -> str:
    shop = uow.get(Shop, ids.shop_id(platform, shop_id))
    return shop.merchant_id if shop is not None else uow.keys.default_merchant


def settings_of(uow: UnitOfWork, merchant_id: str) -> MerchantSettings:
    m = uow.get(Merchant, ids.merchant_id(merchant_id))
    return m.settings if m is not None else MerchantSettings()


# -- facts ---------------------------------------------------------------------------------------


def resolve(uow: UnitOfWork, platform: str, shop_id: str, merchant_id: str, line: LineIn,
            link: Link | None = None) -> tuple[tuple[Alternative, ...], int | None, str]:
    """Which alternatives serve a line: link SKU, link code entry, merchant code (L7), product (L6).

    `link` replaces the stored link (what-if asks about a link that is not set)."""
    if link is None:
        link = uow.get(Link, ids.link_id(platform, shop_id, line.product_id))
    found = link.entry_for(line.sku_id, line.merchant_code) if link is not None else None
    if found is not None:
        return found[0].alternatives, link.link_version, found[1]  # type: ignore[union-attr]
    if line.merchant_code:
        book = uow.get(CodeBook, ids.codebook_id(merchant_id))
        code = book.resolve(line.merchant_code) if book is not None else None
        if code is not None:
            return (code[1],), None, f"{code[0]}_code"
    entry = link.product_entry() if link is not None else None
    if entry is not None:
        return entry.alternatives, link.link_version, "product"  # type: ignore[union-attr]
    return (), None, ""


def candidate(uow: UnitOfWork, merchant_id: str, qty: int, alt: Alternative, index: int, at: datetime,
              settings: MerchantSettings, needs: Needs | None = None,
              excluded: frozenset[str] | set[str] = frozenset()) -> CandidateFacts:
    """Everything the policy needs to know about one alternative for one line, read now;
    `excluded` names the suppliers that rejected this order (RT11)."""
    comps = []
    for comp in alt.components:
        key = (comp.supplier_id, comp.offer_id, comp.supplier_sku_id)
        supplier = uow.get(Supplier, ids.supplier_id(comp.supplier_id))
        offer = uow.get(Offer, ids.offer_id(comp.supplier_id, comp.offer_id))
        book = uow.get(PriceBook, ids.pricebook_id(comp.supplier_id))
        sku = offer.skus.get(comp.supplier_sku_id) if offer is not None else None
        tier = supplier.tiers.get(merchant_id) if supplier is not None else None
        comps.append(ComponentFacts(
            supplier_id=comp.supplier_id, offer_id=comp.offer_id, supplier_sku_id=comp.supplier_sku_id,
            qty=comp.qty, need=comp.qty * qty if needs is None else needs[key],
            supplier_active=supplier is not None and supplier.active,
            on_shelf=offer is not None and sku is not None and offer.on_shelf
            and comp.supplier_sku_id not in offer.withdrawn and not offer.expired(at) and offer.open_to(merchant_id),
            available=offer.available(comp.supplier_sku_id) if offer is not None else 0,
            unit_cost=book.price_at(comp.supplier_sku_id, at, tier) if book is not None else None,
            score=supplier.fulfilment_score if supplier is not None else 0,
            in_pool=(not settings.source_pool) or in_pool(supplier, offer, sku, at),
            rejected=comp.supplier_id in excluded,
            capacity_left=supplier.capacity_left(at) if supplier is not None else None,
        ))
    return CandidateFacts(index=index, components=tuple(comps), priority=alt.priority, provinces=alt.provinces)


def in_pool(supplier: Supplier | None, offer: Offer | None, sku: OfferSku | None, at: datetime) -> bool:
    """Rule RT8: source-pool eligibility of a supplier, its offer and the enrolled SKU."""
    if supplier is None or offer is None or sku is None or not supplier.meets_source_pool():
        return False
    terms = offer.pool
    if not (terms.dropship_free_shipping and terms.returns_7d and terms.growth_score >= POOL_MIN_GROWTH):
        return False
    if supplier.ship_within_hours not in (24, 48) or not sku.enrolled:
        return False
    if offer.stock.get(sku.supplier_sku_id, 0) < POOL_MIN_STOCK:
        return False
    price = sku.channel_price
    if price is None or sku.lowest_30d_price is None or sku.market_price is None:
        return False
    return price <= sku.lowest_30d_price and price < Decimal("0.9") * sku.market_price


def line_facts(uow: UnitOfWork, order: Order, line: LineIn, at: datetime, settings: MerchantSettings,
               link: Link | None = None) -> LineFacts:
    """The facts of one line: every alternative of its link, or, when part of the line is still
    with a live allocation (a bundle's tracked half, L4), only the parts that were stopped (I4); for
    a split line (RT12), the units left, over every alternative again."""
    left = order.units_left(line.line_id)
    if left is not None:
        alternatives, version, _ = resolve(uow, order.platform, order.shop_id, order.merchant_id, line, link)
        return LineFacts(line_id=line.line_id, qty=left, link_version=version, matched_by="remaining_units",
                         candidates=tuple(candidate(uow, order.merchant_id, left, alt, i, at, settings,
                                                    excluded=order.excluded) for i, alt in enumerate(alternatives)))
    rest = order.missing(line.line_id)
    if rest is not None and rest.components:
        alt = Alternative(components=tuple(
            Component(supplier_id=c.supplier_id, offer_id=c.offer_id, supplier_sku_id=c.supplier_sku_id, qty=c.qty)
            for c in rest.components), priority=rest.priority, provinces=rest.provinces)
        needs = {c.key: c.need for c in rest.components}
        version = next((al.link_version for ref in order.allocations for al in uow.allocation(ref).lines
                        if al.line_id == line.line_id), None)
        cand = candidate(uow, order.merchant_id, line.qty, alt, rest.index, at, settings, needs, order.excluded)
        return LineFacts(line_id=line.line_id, qty=line.qty, candidates=(cand,), link_version=version,
                         matched_by="remaining_parts")
    alternatives, version, matched = resolve(uow, order.platform, order.shop_id, order.merchant_id, line, link)
    return LineFacts(
        line_id=line.line_id, qty=line.qty, link_version=version, matched_by=matched,
        candidates=tuple(candidate(uow, order.merchant_id, line.qty, alt, i, at, settings, excluded=order.excluded)
                         for i, alt in enumerate(alternatives)))


def routing_input(uow: UnitOfWork, order: Order, lines: list[LineIn], at: datetime,
                  settings: MerchantSettings) -> RoutingInput:
    return RoutingInput(at=at, province=order.region.province if order.region else "",
                        lines=tuple(line_facts(uow, order, line, at, settings) for line in lines),
                        split_tolerance=settings.split_tolerance, split_lines=settings.split_lines)


def sellable(uow: UnitOfWork, entry: SkuLink, merchant_id: str, settings: MerchantSettings, at: datetime) -> int:
    """Rule S1: the stock of the best eligible alternative; a bundle counts its scarcest part.
    Where the merchant splits lines (RT12), every eligible alternative's stock counts, in RT2
    order, each supplier SKU once (two alternatives sharing one never count it twice)."""
    eligible: list[tuple[Verdict, CandidateFacts]] = []
    for index, alt in enumerate(entry.alternatives):
        facts = candidate(uow, merchant_id, 1, alt, index, at, settings)
        if not all(c.supplier_active and c.on_shelf and c.in_pool for c in facts.components):
            continue
        stock = min(max(c.available, 0) // c.qty for c in facts.components)
        if stock >= 1:
            eligible.append((Verdict(index=index, eligible=True, cost=cost_of(facts), stock=stock,
                                     score=min(c.score for c in facts.components), priority=alt.priority), facts))
    eligible.sort(key=lambda vf: rank(vf[0]))
    if not settings.split_lines:
        return eligible[0][0].stock if eligible else 0
    return stock_in_turn([facts for _, facts in eligible])


# -- routing -------------------------------------------------------------------------------------


def route(uow: UnitOfWork, order: Order, at: datetime, trigger: str) -> Decision | None:
    """Route the order's waiting lines (RT1-RT10), allocate (RT5, RT7), record (RT6), park (RT3)."""
    lines = order.routable_lines()
    if not lines:
        return None
    settings = settings_of(uow, order.merchant_id)
    inp = routing_input(uow, order, lines, at, settings)
    decision = decide(inp)
    if settings.holds.out_of_stock and trigger == "placed" and any(
            d.unroutable == "out_of_stock" for d in decision.lines):
        order.hold("a line is out of stock", at)  # rule I6
        return None
    if trigger.startswith("reroute") and all(d.chosen is None and order.unroutable.get(d.line_id) == d.unroutable
                                             for d in decision.lines):
        return decision  # RT3: still waiting for the same reason; nothing decided, nothing recorded
    refs = allocate(uow, order, lines, inp.lines, decision, at, trigger)
    order.record_route(inp, decision, refs, trigger, at)
    park(uow, order, lines, inp.lines, decision)
    for supplier_id in at_capacity(inp, decision):
        schedule(uow, next_day_start(at), "capacity_day", supplier_id, at)  # rule RT13
    return decision


def at_capacity(inp: RoutingInput, decision: Decision) -> list[str]:
    """Rule RT13: the suppliers with a daily capacity that a waiting line could not use today."""
    out: set[str] = set()
    for lf, ld in zip(inp.lines, decision.lines):
        if ld.chosen is not None:
            continue
        capped = {v.index for v in ld.candidates if v.reason == "capacity_reached"}
        out |= {c.supplier_id for cand in lf.candidates if cand.index in capped
                for c in cand.components if c.capacity_left is not None}
    return sorted(out)


def allocate(uow: UnitOfWork, order: Order, lines: list[LineIn], facts: tuple[LineFacts, ...],
             decision: Decision, at: datetime, trigger: str) -> tuple[AllocRef, ...]:
    """Rule RT5: one allocation per supplier per order; rule RT7: stock reserved at once; P1: the
    supplier sees a masked recipient and an opaque token."""
    by_line = {line.line_id: line for line in lines}
    per_supplier: dict[str, list[AllocLine]] = defaultdict(list)
    for lf, ld in zip(facts, decision.lines):
        if ld.chosen is None:
            continue
        line = by_line[lf.line_id]
        for comp in (comp for cand in picked(lf, ld) for comp in cand.components):
            offer = uow.offer(comp.supplier_id, comp.offer_id)
            per_supplier[comp.supplier_id].append(AllocLine(
                line_id=line.line_id, offer_id=comp.offer_id, supplier_sku_id=comp.supplier_sku_id,
                title=offer.title or line.title, spec=offer.skus[comp.supplier_sku_id].spec or line.spec or "",
                qty=comp.need, unit_cost=comp.unit_cost,
                amount=comp.unit_cost * comp.need if comp.unit_cost is not None else None,
                product_id=line.product_id, link_version=lf.link_version))
    if not per_supplier:
        return ()
    buyer = uow.clear.get(order.sealed) or uow.keys.unseal(order.sealed)
    recipient = mask(buyer)
    token = recipient_token(uow.keys.token_key, f"{order.platform}/{order.shop_id}/{order.order_id}", order.sealed)
    refs = []
    seq = len(order.allocations) + len(order.ended)
    for supplier_id in sorted(per_supplier):
        alloc_lines = tuple(per_supplier[supplier_id])
        allocation_id = ids.new_allocation_id(order.platform, order.shop_id, order.order_id, supplier_id, seq)
        seq += 1
        alloc_uuid = ids.allocation_uuid(allocation_id)
        if order.version == len(order.pending):  # a new order's allocations are new too
            uow.absent.add(alloc_uuid)
        alloc = uow.get_or_new(Allocation, alloc_uuid)
        alloc.allocate(at, allocation_id=allocation_id, platform=order.platform, shop_id=order.shop_id,
                       order_id=order.order_id, merchant_id=order.merchant_id, supplier_id=supplier_id,
                       lines=alloc_lines, recipient=recipient, recipient_token=token,
                       ship_by=ship_by(at, uow.supplier(supplier_id).ship_within_hours),
                       channel=order.channel, trigger=trigger)
        uow.supplier(supplier_id).use_capacity(allocation_id, sum(al.qty for al in alloc_lines), at)  # RT13
        schedule(uow, alloc.ship_by, "ship_by", allocation_id, at)  # rule T4 (engine/overdue.py)
        for offer_id, items in per_offer(alloc_lines).items():
            uow.offer(supplier_id, offer_id).reserve(allocation_id, items, at)
        refs.append(AllocRef(allocation_id=allocation_id, supplier_id=supplier_id,
                             line_ids=tuple(dict.fromkeys(al.line_id for al in alloc_lines))))
    return tuple(refs)


def per_offer(lines: Iterable[AllocLine]) -> dict[str, tuple[SkuQty, ...]]:
    """What an allocation takes from each offer, SKU by SKU, in a stable order."""
    acc: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for al in lines:
        acc[al.offer_id][al.supplier_sku_id] += al.qty
    return {offer_id: tuple(SkuQty(supplier_sku_id=k, qty=q) for k, q in sorted(skus.items()))
            for offer_id, skus in sorted(acc.items())}


# -- the backlog of waiting lines (RT3, L10) -----------------------------------------------------


def park(uow: UnitOfWork, order: Order, lines: list[LineIn], facts: tuple[LineFacts, ...],
         decision: Decision) -> None:
    """Keep unroutable lines in their product's backlog (RT3, L10); take routed ones out."""
    by_product: dict[str, list[tuple[LineFacts, str | None]]] = defaultdict(list)
    products = {line.line_id: line.product_id for line in lines}
    for lf, ld in zip(facts, decision.lines):
        by_product[products[lf.line_id]].append((lf, ld.unroutable))
    for product_id, items in by_product.items():
        backlog = uow.get_or_new(Backlog, ids.backlog_id(order.platform, order.shop_id, product_id))
        reasons = [r for _, r in items if r is not None]
        if not reasons:
            backlog.unpark(order.order_id, order.placed_at)
            continue
        suppliers = tuple(sorted({c.supplier_id for lf, _ in items for cand in lf.candidates for c in cand.components}))
        backlog.park(order.platform, order.shop_id, product_id, Parked(
            order_id=order.order_id, reason="no_link" if "no_link" in reasons else reasons[0],
            placed_at=order.placed_at, suppliers=suppliers))  # type: ignore[arg-type]
        for supplier_id in suppliers:
            uow.get_or_new(SupplierIndex, ids.supplier_index_id(supplier_id)).add(
                order.platform, order.shop_id, product_id, order.placed_at)  # type: ignore[arg-type]


def unpark(uow: UnitOfWork, order: Order, line_ids: Iterable[str]) -> None:
    for product_id in {order.lines[lid].product_id for lid in line_ids if lid in order.lines}:
        backlog = uow.get(Backlog, ids.backlog_id(order.platform, order.shop_id, product_id))
        if backlog is not None:
            backlog.unpark(order.order_id, order.placed_at)


def reroute_backlog(uow: UnitOfWork, products: Iterable[tuple[str, str, str]], at: datetime, trigger: str) -> None:
    """Rule RT3: lines unroutable for a reason other than `no_link` are routed again."""
    for platform, shop_id, product_id in sorted(products):
        backlog = uow.get(Backlog, ids.backlog_id(platform, shop_id, product_id))
        if backlog is None:
            continue
        for entry in sorted(backlog.waiting.values(), key=lambda e: (e.placed_at, e.order_id)):
            if entry.reason != "no_link":
                route(uow, uow.order(platform, shop_id, entry.order_id), at, f"reroute:{trigger}")
