"""Deterministic ids: every aggregate id is derived from the natural key of the business thing,
so the same fact arriving twice lands on the same aggregate (and is recognised as a repeat)."""

from __future__ import annotations

from functools import lru_cache
from uuid import UUID, uuid5

NS = UUID("5f1e3c2a-7d1b-4c1e-9a57-2f0d6b8e1a40")


@lru_cache(maxsize=1 << 13)
def _id(*parts: str) -> UUID:
    """Suppliers, offers, links... are asked for on every order, and an order's own ids several
    times within its batch. Small on purpose: every entry is a long-lived object the garbage
    collector walks on each full collection (issue 17: a 65,536-entry cache kept ~100k UUIDs)."""
    return uuid5(NS, "\x1f".join(parts))


def order_id(platform: str, shop_id: str, order: str) -> UUID:
    return _id("order", platform, shop_id, order)


def link_id(platform: str, shop_id: str, product_id: str) -> UUID:
    return _id("link", platform, shop_id, product_id)


def backlog_id(platform: str, shop_id: str, product_id: str) -> UUID:
    return _id("backlog", platform, shop_id, product_id)


def supplier_id(supplier: str) -> UUID:
    return _id("supplier", supplier)


def supplier_index_id(supplier: str) -> UUID:
    return _id("supplier-index", supplier)


def offer_id(supplier: str, offer: str) -> UUID:
    return _id("offer", supplier, offer)


def pricebook_id(supplier: str) -> UUID:
    return _id("prices", supplier)


def merchant_id(merchant: str) -> UUID:
    return _id("merchant", merchant)


def shop_id(platform: str, shop: str) -> UUID:
    return _id("shop", platform, shop)


def codebook_id(merchant: str) -> UUID:
    return _id("codes", merchant)


def allocation_uuid(allocation: str) -> UUID:
    return _id("allocation", allocation)


def new_allocation_id(platform: str, shop: str, order: str, supplier: str, seq: int) -> str:
    """A short, stable, human-quotable allocation id (what suppliers see and answer with)."""
    return "A" + _id("alloc", platform, shop, order, supplier, str(seq)).hex[:16].upper()


def clock_id() -> UUID:
    return _id("clock")


def agenda_id(day: str) -> UUID:
    return _id("agenda", day)


def return_id(allocation: str, aftersale: str) -> str:
    """A return to the supplier (RC6): one per after-sale and allocation, short and quotable."""
    return "R" + _id("return", allocation, aftersale).hex[:16].upper()


def return_uuid(return_: str) -> UUID:
    return _id("return-of", return_)
