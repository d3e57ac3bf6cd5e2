"""The merchant side of supply: settlement prices (RC1), merchants and their settings, shops,
merchant codes (L7), and the index of which shop products use a supplier."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from engine.base import Aggregate, Event
from engine.errors import LinkRefused
from engine.values import Alternative, MerchantSettings

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

    def set_price(self, at: datetime, supplier_id: str, supplier_sku_id: str, price: Decimal,
                  effective_from: datetime, tier: str | None) -> None:
        """Rule RC1: a settlement price from a time on, for everyone or for one tier."""
        if (effective_from, price) in self.prices.get((supplier_sku_id, tier or ""), []):
            return
        self.trigger(PriceSet, at, supplier_id=supplier_id, supplier_sku_id=supplier_sku_id,
                     price=price, effective_from=effective_from, tier=tier)


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

    def change_settings(self, merchant_id: str, settings: MerchantSettings, at: datetime) -> None:
        if settings != self.settings or not self.version:
            self.trigger(MerchantSettingsChanged, at, merchant_id=merchant_id, settings=settings)


class MerchantSettingsChanged(Event, frozen=True):
    merchant_id: str
    settings: MerchantSettings

    def apply(self, m: Merchant) -> None:
        m.settings = self.settings


class Shop(Aggregate):
    merchant_id = ""

    def register(self, platform: str, shop_id: str, merchant_id: str, at: datetime) -> None:
        """The shop belongs to this merchant (its settings, tiers and codes apply)."""
        if self.merchant_id != merchant_id:
            self.trigger(ShopRegistered, at, platform=platform, shop_id=shop_id, merchant_id=merchant_id)


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

    def register(self, code: str, kind: str, alternative: Alternative, at: datetime) -> None:
        """Rule L7: codes are unique within their kind; the same code again changes nothing."""
        current = self.codes.get((kind, code))
        if current == alternative:
            return
        if current is not None:
            raise LinkRefused(f"code: {kind} code {code!r} is already registered", "L7")
        self.trigger(CodeRegistered, at, code=code, kind=kind, alternative=alternative)


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

    def add(self, platform: str, shop_id: str, product_id: str, at: datetime) -> None:
        if (platform, shop_id, product_id) not in self.products:
            self.trigger(ProductUsesSupplier, at, platform=platform, shop_id=shop_id, product_id=product_id)

    def remove(self, platform: str, shop_id: str, product_id: str, at: datetime) -> None:
        self.trigger(ProductLeftSupplier, at, platform=platform, shop_id=shop_id, product_id=product_id)


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
