"""The supply side: suppliers, their offers and stock, settlement prices, merchants and shops."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from engine.base import Aggregate, Event, Value
from engine.values import Alternative, HoldRules, MerchantSettings, OfferSku, SkuQty

MICRO_SUPPLY_TTL = timedelta(days=30)  # rule M2


# -- Supplier ---------------------------------------------------------------------------------


class Supplier(Aggregate):
    name = ""
    active = False
    ship_within_hours = 48
    fulfilment_score = 0
    level = 0
    service_stars: Decimal | None = None
    logistics_score: Decimal | None = None
    experience_score: Decimal | None = None

    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.supplier_id = ""
        self.tiers: dict[str, str] = {}

    def meets_source_pool(self) -> bool:
        """Rule RT8, supplier side: level >= L2, stars >= 3.5, logistics >= 3, experience >= 2."""
        return (
            self.level >= 2
            and (self.service_stars or 0) >= Decimal("3.5")
            and (self.logistics_score or 0) >= 3
            and (self.experience_score or 0) >= 2
        )


class SupplierUpserted(Event, frozen=True):
    supplier_id: str
    name: str
    active: bool
    ship_within_hours: int = 48
    fulfilment_score: int = 0
    level: int = 0
    service_stars: Decimal | None = None
    logistics_score: Decimal | None = None
    experience_score: Decimal | None = None

    def apply(self, s: Supplier) -> None:
        s.supplier_id = self.supplier_id
        s.name = self.name
        s.active = self.active
        s.ship_within_hours = self.ship_within_hours
        s.fulfilment_score = self.fulfilment_score
        s.level = self.level
        s.service_stars = self.service_stars
        s.logistics_score = self.logistics_score
        s.experience_score = self.experience_score


class MerchantTierSet(Event, frozen=True):
    merchant_id: str
    tier: str

    def apply(self, s: Supplier) -> None:
        s.tiers[self.merchant_id] = self.tier


# -- Offer ------------------------------------------------------------------------------------


class PoolTerms(Value, frozen=True):
    """Offer-side source-pool terms (rule RT8)."""

    dropship_free_shipping: bool = False
    returns_7d: bool = False
    growth_score: int = 0


class Offer(Aggregate):
    title = ""
    on_shelf = False
    private_to: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    pool: PoolTerms = PoolTerms()

    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.supplier_id = ""
        self.offer_id = ""
        self.skus: dict[str, OfferSku] = {}
        self.stock: dict[str, int] = {}
        self.reserved: dict[str, int] = {}
        self.holds: dict[str, tuple[SkuQty, ...]] = {}  # allocation id -> what it reserved
        self.stock_at: dict[str, datetime] = {}  # when each SKU's stock was last reported

    def available(self, sku: str) -> int:
        """Reported stock less what open allocations reserved (rule RT7)."""
        return self.stock.get(sku, 0) - self.reserved.get(sku, 0)

    def expired(self, at: datetime) -> bool:
        return self.expires_at is not None and at >= self.expires_at

    def open_to(self, merchant_id: str) -> bool:
        """Rule M1: a private micro-supply offer serves only merchants the supplier accepted."""
        return self.private_to is None or merchant_id in self.private_to


class OfferPublished(Event, frozen=True):
    supplier_id: str
    offer_id: str
    title: str
    on_shelf: bool
    skus: tuple[OfferSku, ...]
    private_to: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    pool: PoolTerms = PoolTerms()

    def apply(self, o: Offer) -> None:
        o.supplier_id, o.offer_id, o.title = self.supplier_id, self.offer_id, self.title
        o.on_shelf, o.private_to, o.pool = self.on_shelf, self.private_to, self.pool
        o.expires_at = self.expires_at
        if o.expires_at is None and self.private_to is not None:
            o.expires_at = self.at + MICRO_SUPPLY_TTL  # rule M2
        o.skus = {s.supplier_sku_id: s for s in self.skus}
        o.stock = {s.supplier_sku_id: s.stock for s in self.skus}
        o.stock_at = {s.supplier_sku_id: self.at for s in self.skus}


class OfferRenewed(Event, frozen=True):
    def apply(self, o: Offer) -> None:
        o.expires_at = self.at + MICRO_SUPPLY_TTL


class StockReported(Event, frozen=True):
    supplier_sku_id: str
    stock: int

    def apply(self, o: Offer) -> None:
        o.stock[self.supplier_sku_id] = self.stock
        o.stock_at[self.supplier_sku_id] = self.at


class StockReserved(Event, frozen=True):
    allocation_id: str
    items: tuple[SkuQty, ...]

    def apply(self, o: Offer) -> None:
        for item in self.items:
            o.reserved[item.supplier_sku_id] = o.reserved.get(item.supplier_sku_id, 0) + item.qty
        o.holds[self.allocation_id] = self.items


class StockReleased(Event, frozen=True):
    """An intercepted or cancelled allocation gives its units back (rule RT7)."""

    allocation_id: str
    reason: str

    def apply(self, o: Offer) -> None:
        for item in o.holds.pop(self.allocation_id, ()):
            o.reserved[item.supplier_sku_id] -= item.qty


class StockShipped(Event, frozen=True):
    """The supplier shipped: the units leave its stock and the reservation ends."""

    allocation_id: str

    def apply(self, o: Offer) -> None:
        for item in o.holds.pop(self.allocation_id, ()):
            o.reserved[item.supplier_sku_id] -= item.qty
            o.stock[item.supplier_sku_id] = o.stock.get(item.supplier_sku_id, 0) - item.qty


class StockShippedLate(Event, frozen=True):
    """Rule I8 `too_late`: units of a stopped allocation left anyway (its reservation was released)."""

    allocation_id: str
    items: tuple[SkuQty, ...]

    def apply(self, o: Offer) -> None:
        for item in self.items:
            o.stock[item.supplier_sku_id] = o.stock.get(item.supplier_sku_id, 0) - item.qty


# -- Prices -----------------------------------------------------------------------------------


class PriceBook(Aggregate):
    """Settlement prices per supplier SKU, effective-dated, with tier prices (rules RC1, seed 002)."""

    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.supplier_id = ""
        # (sku, tier or "") -> [(effective_from, price)] sorted by time
        self.prices: dict[tuple[str, str], list[tuple[datetime, Decimal]]] = {}

    def price_at(self, sku: str, at: datetime, tier: str | None = None) -> Decimal | None:
        for key in ((sku, tier), (sku, "")) if tier else ((sku, ""),):
            found = None
            for effective_from, price in self.prices.get(key, ()):
                if effective_from <= at:
                    found = price
                else:
                    break
            if found is not None:
                return found
        return None


class PriceSet(Event, frozen=True):
    supplier_id: str
    supplier_sku_id: str
    price: Decimal
    effective_from: datetime
    tier: str | None = None

    def apply(self, p: PriceBook) -> None:
        p.supplier_id = self.supplier_id
        series = p.prices.setdefault((self.supplier_sku_id, self.tier or ""), [])
        series.append((self.effective_from, self.price))
        series.sort(key=lambda pair: pair[0])


# -- Merchants, shops, merchant codes ---------------------------------------------------------


class Merchant(Aggregate):
    settings = MerchantSettings()


class MerchantSettingsChanged(Event, frozen=True):
    merchant_id: str
    settings: MerchantSettings

    def apply(self, m: Merchant) -> None:
        m.settings = self.settings


class Shop(Aggregate):
    merchant_id = ""


class ShopRegistered(Event, frozen=True):
    platform: str
    shop_id: str
    merchant_id: str

    def apply(self, s: Shop) -> None:
        s.merchant_id = self.merchant_id


class CodeBook(Aggregate):
    """Merchant codes (rule L7): item codes and bundle codes, unique within their kind."""

    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.codes: dict[tuple[str, str], Alternative] = {}

    def resolve(self, code: str) -> tuple[str, Alternative] | None:
        for kind in ("bundle", "item"):  # a bundle code wins over an equal item code
            alt = self.codes.get((kind, code))
            if alt is not None:
                return kind, alt
        return None


class CodeRegistered(Event, frozen=True):
    code: str
    kind: str
    alternative: Alternative

    def apply(self, c: CodeBook) -> None:
        c.codes[(self.kind, self.code)] = self.alternative


# -- Which shop products use a supplier (for re-routing and stock sync) -----------------------


class SupplierIndex(Aggregate):
    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.products: set[tuple[str, str, str]] = set()


class ProductUsesSupplier(Event, frozen=True):
    platform: str
    shop_id: str
    product_id: str

    def apply(self, i: SupplierIndex) -> None:
        i.products.add((self.platform, self.shop_id, self.product_id))


class ProductLeftSupplier(Event, frozen=True):
    platform: str
    shop_id: str
    product_id: str

    def apply(self, i: SupplierIndex) -> None:
        i.products.discard((self.platform, self.shop_id, self.product_id))


__all__ = [
    "CodeBook",
    "CodeRegistered",
    "HoldRules",
    "Merchant",
    "MerchantSettingsChanged",
    "MerchantTierSet",
    "Offer",
    "OfferPublished",
    "OfferRenewed",
    "PoolTerms",
    "PriceBook",
    "PriceSet",
    "ProductLeftSupplier",
    "ProductUsesSupplier",
    "Shop",
    "ShopRegistered",
    "StockReleased",
    "StockReported",
    "StockReserved",
    "StockShipped",
    "Supplier",
    "SupplierIndex",
    "SupplierUpserted",
]
