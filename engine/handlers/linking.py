"""Links between shop products and supplier sources (L1-L8), stock rules (S2), and pulling the
orders placed before a product was linked (L10)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from engine import ids
from engine.backlog import Backlog
from engine.commands import PullPrelink, RemoveLink, SetLink, SetStockRule
from engine.errors import InvalidCommand, NotFound
from engine.handlers.registry import handles
from engine.handlers.supply import check_component
from engine.linking import Link, check_link, check_stock_rule
from engine.orders import Order
from engine.routing import merchant_of, reroute_backlog, route, unpark
from engine.stocksync import check_health, index_link, sync_stock
from engine.uow import UnitOfWork
from engine.values import check_platform, parse_money


@handles(SetLink)
def set_link(c: SetLink, uow: UnitOfWork) -> int:
    """The whole desired link of one shop product; returns its version (L8)."""
    check_platform(c.platform)
    check_link(c.mode, c.skus)
    merchant = merchant_of(uow, c.platform, c.shop_id)
    for i, entry in enumerate(c.skus):
        for j, alt in enumerate(entry.alternatives):
            for k, comp in enumerate(alt.components):
                check_component(uow, comp, merchant, f"skus[{i}].alternatives[{j}].components[{k}]")
    link = uow.get_or_new(Link, ids.link_id(c.platform, c.shop_id, c.product_id))
    before = link.suppliers()
    if link.set(c.platform, c.shop_id, c.product_id, c.mode, c.skus, c.at):
        index_link(uow, link, before, c.at)
        check_health(uow, [link], c.at)
        sync_stock(uow, [link], c.at)
        reroute_backlog(uow, [(c.platform, c.shop_id, c.product_id)], c.at, "link")
    return link.link_version


@handles(RemoveLink)
def remove_link(c: RemoveLink, uow: UnitOfWork) -> None:
    link = uow.get(Link, ids.link_id(c.platform, c.shop_id, c.product_id))
    if link is None:
        return
    before = link.suppliers()
    if link.unlink(c.at):
        index_link(uow, link, before, c.at)
        check_health(uow, [link], c.at)


@handles(SetStockRule)
def set_stock_rule(c: SetStockRule, uow: UnitOfWork) -> None:
    """Rule S2, per shop SKU: publish floor(sellable x ratio), 0 below the minimum."""
    rule = check_stock_rule(parse_money("ratio", c.ratio), c.min_stock)
    link = uow.get_or_new(Link, ids.link_id(c.platform, c.shop_id, c.product_id))
    if link.set_rule(c.platform, c.shop_id, c.product_id, c.sku_id or "", rule, c.at):
        sync_stock(uow, [link], c.at)


@handles(PullPrelink)
def pull_prelink(c: PullPrelink, uow: UnitOfWork) -> list[dict[str, Any]]:
    """Rule L10: route the orders of this product that waited for a link, placed within the window,
    not cancelled, not shipped by other means, with no open after-sale, not held. One report entry
    per order looked at: `routed` or `skipped` with its reason."""
    if c.window_days < 1:
        raise InvalidCommand(f"window_days: must be >= 1, got {c.window_days}", "L10")
    link = uow.get(Link, ids.link_id(c.platform, c.shop_id, c.product_id))
    if link is None or not link.linked:
        raise NotFound(f"product_id: {c.platform}/{c.shop_id}/{c.product_id} has no link to pull against", "L10")
    backlog = uow.get(Backlog, ids.backlog_id(c.platform, c.shop_id, c.product_id))
    if backlog is None:
        return []
    since = c.at - timedelta(days=c.window_days)
    entries = backlog.waiting.values() if c.only is None else [
        backlog.waiting[o] for o in set(c.only) if o in backlog.waiting]
    report = []
    for entry in sorted(entries, key=lambda e: (e.placed_at, e.order_id)):
        if entry.reason != "no_link" or entry.placed_at < since:
            continue
        order = uow.order(c.platform, c.shop_id, entry.order_id)
        skip = ("cancelled" if order.cancelled else "shipped" if order.shipped
                else "aftersale_open" if order.has_open_aftersale()
                else "held" if order.held or order.under_review else None)
        if skip in ("cancelled", "shipped"):
            unpark(uow, order, set(order.lines))
        if skip:
            report.append(_pulled(uow, order, "skipped", skip, []))
            continue
        before = set(order.allocations)
        route(uow, order, c.at, "prelink")
        report.append(_pulled(uow, order, "routed", None, [a for a in order.allocations if a not in before]))
    return report


def _pulled(uow: UnitOfWork, order: Order, result: str, reason: str | None, made: list[str]) -> dict[str, Any]:
    """One order's entry in a pull pre-link report (L10, A1)."""
    allocations = [uow.allocation(a) for a in made]
    return {
        "order_id": order.order_id, "placed_at": order.placed_at, "result": result, "reason": reason,
        "status": order.status, "amount": order.amount, "unroutable": dict(order.unroutable),
        "allocations": [
            {"allocation_id": a.allocation_id, "supplier_id": a.supplier_id,
             "cost": None if any(x.amount is None for x in a.lines)
             else sum((x.amount for x in a.lines), Decimal(0))}  # type: ignore[misc]
            for a in allocations],
    }
