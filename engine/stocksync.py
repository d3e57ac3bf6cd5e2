"""Stock sync to the shops (rules S1-S3) and what a supply change sets off (RT3)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from engine import ids
from engine.linking import Link
from engine.merchants import SupplierIndex
from engine.routing import merchant_of, reroute_backlog, sellable, settings_of
from engine.uow import UnitOfWork


def sync_stock(uow: UnitOfWork, links: Iterable[Link], at: datetime) -> None:
    """Rules S1-S3: publish each affected shop SKU's stock, only when the number changes."""
    for link in links:
        if not link.linked:
            continue
        merchant = merchant_of(uow, link.platform, link.shop_id)
        settings = settings_of(uow, merchant)
        for entry in link.skus:
            link.publish_stock(entry, sellable(uow, entry, merchant, settings, at), at)


def supply_changed(uow: UnitOfWork, supplier_ids: Iterable[str], at: datetime, trigger: str) -> None:
    """A stock, supplier or offer change: publish shop stock (S3) and retry waiting lines (RT3)."""
    products: set[tuple[str, str, str]] = set()
    for supplier_id in supplier_ids:
        index = uow.get(SupplierIndex, ids.supplier_index_id(supplier_id))
        if index is not None:
            products |= index.products
    links = [uow.get(Link, ids.link_id(*p)) for p in sorted(products)]
    sync_stock(uow, [link for link in links if link is not None], at)
    reroute_backlog(uow, products, at, trigger)


def index_link(uow: UnitOfWork, link: Link, before: set[str], at: datetime) -> None:
    """Keep each supplier's index of the shop products that use it (for S3 and RT3)."""
    after = link.suppliers()
    for supplier_id in sorted(after - before):
        uow.get_or_new(SupplierIndex, ids.supplier_index_id(supplier_id)).add(
            link.platform, link.shop_id, link.product_id, at)
    for supplier_id in sorted(before - after):
        index = uow.get(SupplierIndex, ids.supplier_index_id(supplier_id))
        if index is not None:
            index.remove(link.platform, link.shop_id, link.product_id, at)
