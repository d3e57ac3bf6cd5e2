"""Supply: suppliers, offers and stock, settlement prices, merchants, shops and merchant codes."""

from __future__ import annotations

from engine import ids
from engine.catalog import Offer, Supplier
from engine.commands import (
    ChangeMerchantSettings,
    PublishOffer,
    RegisterCode,
    RegisterShop,
    RenewOffer,
    ReportStock,
    SetMerchantTier,
    SetPrice,
    UpsertSupplier,
)
from engine.errors import InvalidCommand, LinkRefused, UnknownOffer
from engine.handlers.registry import handles
from engine.merchants import CodeBook, Merchant, PriceBook, Shop
from engine.stocksync import supply_changed, watch_expiry
from engine.uow import UnitOfWork
from engine.values import Alternative, Component, HoldRules, MerchantSettings, check_platform, parse_money


@handles(UpsertSupplier)
def upsert_supplier(c: UpsertSupplier, uow: UnitOfWork) -> None:
    supplier = uow.get_or_new(Supplier, ids.supplier_id(c.supplier_id))
    if supplier.upsert(c.at, supplier_id=c.supplier_id, name=c.name, active=bool(c.active),
                       ship_within_hours=c.ship_within_hours, fulfilment_score=c.fulfilment_score,
                       level=c.level, service_stars=c.service_stars, logistics_score=c.logistics_score,
                       experience_score=c.experience_score, daily_capacity=c.daily_capacity):
        supply_changed(uow, {c.supplier_id}, c.at, "supplier")


@handles(SetMerchantTier)
def set_merchant_tier(c: SetMerchantTier, uow: UnitOfWork) -> None:
    uow.supplier(c.supplier_id).set_tier(c.merchant_id, c.tier, c.at)


@handles(PublishOffer)
def publish_offer(c: PublishOffer, uow: UnitOfWork) -> None:
    uow.supplier(c.supplier_id)
    offer = uow.get_or_new(Offer, ids.offer_id(c.supplier_id, c.offer_id))
    if offer.publish(c.at, supplier_id=c.supplier_id, offer_id=c.offer_id, title=c.title,
                     on_shelf=bool(c.on_shelf), skus=tuple(c.skus), private_to=c.private_to,
                     expires_at=c.expires_at, pool=c.pool):
        watch_expiry(uow, offer, c.at)
        supply_changed(uow, {c.supplier_id}, c.at, "offer")


@handles(RenewOffer)
def renew_offer(c: RenewOffer, uow: UnitOfWork) -> None:
    offer = uow.offer(c.supplier_id, c.offer_id)
    offer.renew(c.at)
    watch_expiry(uow, offer, c.at)
    supply_changed(uow, {c.supplier_id}, c.at, "offer")


@handles(ReportStock)
def report_stock(c: ReportStock, uow: UnitOfWork) -> None:
    if uow.offer(c.supplier_id, c.offer_id).report_stock(c.supplier_sku_id, c.stock, c.at):
        supply_changed(uow, {c.supplier_id}, c.at, "stock")


@handles(SetPrice)
def set_price(c: SetPrice, uow: UnitOfWork) -> None:
    price = parse_money("price", c.price)
    uow.supplier(c.supplier_id)
    uow.get_or_new(PriceBook, ids.pricebook_id(c.supplier_id)).set_price(
        c.at, c.supplier_id, c.supplier_sku_id, price, c.effective_from, c.tier)


@handles(RegisterShop)
def register_shop(c: RegisterShop, uow: UnitOfWork) -> None:
    check_platform(c.platform)
    uow.get_or_new(Shop, ids.shop_id(c.platform, c.shop_id)).register(c.platform, c.shop_id, c.merchant_id, c.at)


@handles(ChangeMerchantSettings)
def change_merchant_settings(c: ChangeMerchantSettings, uow: UnitOfWork) -> None:
    tolerance = parse_money("split_tolerance", c.split_tolerance) if c.split_tolerance is not None else None
    amount = parse_money("hold_amount_over", c.hold_amount_over) if c.hold_amount_over is not None else None
    merchant = uow.get_or_new(Merchant, ids.merchant_id(c.merchant_id))
    cur = merchant.settings
    holds = HoldRules(
        amount_over=amount if amount is not None else cur.holds.amount_over,
        remark_words=tuple(c.hold_remark_words) if c.hold_remark_words is not None else cur.holds.remark_words,
        out_of_stock=cur.holds.out_of_stock if c.hold_out_of_stock is None else c.hold_out_of_stock)
    merchant.change_settings(c.merchant_id, MerchantSettings(
        source_pool=cur.source_pool if c.source_pool is None else c.source_pool,
        split_tolerance=cur.split_tolerance if tolerance is None else tolerance, holds=holds,
        split_lines=cur.split_lines if c.split_lines is None else c.split_lines,
        reroute_overdue_hours=cur.reroute_overdue_hours if c.reroute_overdue_hours is None
        else check_reroute_hours(c.reroute_overdue_hours)), c.at)


def check_reroute_hours(hours: int) -> int | None:
    """Rule T4: whole hours >= 1, or 0 for never."""
    if not isinstance(hours, int) or isinstance(hours, bool) or hours < 0:
        raise InvalidCommand(f"reroute_overdue_hours: must be a whole number of hours >= 1 or null, got {hours!r}",
                             "T4")
    return hours or None


@handles(RegisterCode)
def register_code(c: RegisterCode, uow: UnitOfWork) -> None:
    """Rule L7: merchant codes, unique within their kind; an item code maps one component."""
    merchant_id = c.merchant_id or uow.keys.default_merchant
    alt = Alternative(components=tuple(c.components))
    if c.kind not in ("item", "bundle"):
        raise InvalidCommand(f"kind: must be item or bundle, got {c.kind!r}", "L7")
    if not alt.components:
        raise InvalidCommand("components: at least one is needed", "L7")
    if c.kind == "item" and len(alt.components) != 1:
        raise InvalidCommand("components: an item code maps exactly one component", "L7")
    for k, comp in enumerate(alt.components):
        if comp.qty < 1:
            raise InvalidCommand(f"components[{k}].qty: reflow quantity must be >= 1", "L3")
    for comp in alt.components:
        check_component(uow, comp, merchant_id)
    uow.get_or_new(CodeBook, ids.codebook_id(merchant_id)).register(c.code, c.kind, alt, c.at)


def check_component(uow: UnitOfWork, comp: Component, merchant_id: str, where: str = "components") -> None:
    """Rules L2, M1: a link or code names a known supplier SKU open to this merchant."""
    uow.supplier(comp.supplier_id)
    offer = uow.get_offer(comp.supplier_id, comp.offer_id)
    if offer is None:
        raise UnknownOffer(f"{where}.offer_id: supplier {comp.supplier_id!r} has no offer {comp.offer_id!r}")
    if comp.supplier_sku_id not in offer.skus:
        raise UnknownOffer(f"{where}.supplier_sku_id: offer {comp.offer_id!r} has no SKU {comp.supplier_sku_id!r}")
    if not offer.open_to(merchant_id):
        raise LinkRefused(
            f"{where}.offer_id: micro-supply offer {comp.offer_id!r} is private to merchants "
            f"the supplier accepted; {merchant_id!r} is not one", "M1")
