"""Stock sync to the shops (rules S1-S3), link health (L11), and what a supply change sets off (RT3)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from engine import ids
from engine.catalog import Offer
from engine.clock import on_deadline, schedule
from engine.linking import Link, sku_key
from engine.merchants import SupplierIndex
from engine.routing import merchant_of, reroute_backlog, sellable, settings_of
from engine.uow import UnitOfWork
from engine.values import Missing, SkuLink

HEALTH_TRIGGERS = ("offer", "expiry", "rejection")
"""Supply changes that can break or mend a link (L11): stock and supplier changes cannot."""


def sync_stock(uow: UnitOfWork, links: Iterable[Link], at: datetime) -> None:
    """Rules S1-S3: publish each affected shop SKU's stock, only when the number changes."""
    for link in links:
        if not link.linked:
            continue
        merchant = merchant_of(uow, link.platform, link.shop_id)
        settings = settings_of(uow, merchant)
        for entry in link.skus:
            link.publish_stock(entry, sellable(uow, entry, merchant, settings, at), at)


def missing_of(uow: UnitOfWork, entry: SkuLink, at: datetime) -> tuple[Missing, ...]:
    """Rule L11: the supplier SKUs of a shop SKU's link that cannot serve it now, and why."""
    found: dict[tuple[str, str, str], Missing] = {}
    for alt in entry.alternatives:
        for comp in alt.components:
            offer = uow.get_offer(comp.supplier_id, comp.offer_id)
            why = ("sku_dropped" if offer is None or comp.supplier_sku_id not in offer.skus
                   else "sku_changed" if comp.supplier_sku_id in offer.withdrawn
                   else "delisted" if not offer.on_shelf
                   else "expired" if offer.expired(at) else None)
            if why is not None:
                found[(comp.supplier_id, comp.offer_id, comp.supplier_sku_id)] = Missing(
                    supplier_id=comp.supplier_id, offer_id=comp.offer_id, supplier_sku_id=comp.supplier_sku_id,
                    why=why)
    return tuple(found[k] for k in sorted(found))


def check_health(uow: UnitOfWork, links: Iterable[Link], at: datetime) -> None:
    """Rule L11: report each shop SKU whose link broke or was mended."""
    for link in links:
        link.report_health({sku_key(e): missing_of(uow, e, at) for e in link.skus} if link.linked else {}, at)


def supply_changed(uow: UnitOfWork, supplier_ids: Iterable[str], at: datetime, trigger: str) -> None:
    """A stock, supplier or offer change: link health (L11), shop stock (S3), waiting lines (RT3)."""
    products: set[tuple[str, str, str]] = set()
    for supplier_id in supplier_ids:
        index = uow.get(SupplierIndex, ids.supplier_index_id(supplier_id))
        if index is not None:
            products |= index.products
    links = [link for link in (uow.get(Link, ids.link_id(*p)) for p in sorted(products)) if link is not None]
    if trigger in HEALTH_TRIGGERS:
        check_health(uow, links, at)
    sync_stock(uow, links, at)
    reroute_backlog(uow, products, at, trigger)


def watch_expiry(uow: UnitOfWork, offer: Offer, at: datetime) -> None:
    """Rules M2, L11: when the offer expires, its links break and shop stock follows."""
    if offer.expires_at is not None:
        schedule(uow, offer.expires_at, "offer_expiry", f"{offer.supplier_id}\x1f{offer.offer_id}", at)


@on_deadline("offer_expiry")
def offer_expired(uow: UnitOfWork, key: str, due: datetime, now: datetime) -> None:
    supplier_id, offer_id = key.split("\x1f")
    offer = uow.get_offer(supplier_id, offer_id)
    if offer is not None and offer.expired(due):  # a renewed offer has not expired
        supply_changed(uow, {supplier_id}, due, "expiry")


@on_deadline("capacity_day")
def capacity_day(uow: UnitOfWork, key: str, due: datetime, now: datetime) -> None:
    """Rule RT13: a new China-time day; lines waiting for the supplier's capacity route again."""
    supplier_id = key
    supply_changed(uow, {supplier_id}, max(now, due), "new_day")  # routed from when the clock got there


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
