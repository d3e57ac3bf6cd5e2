"""The supply side: suppliers and their offers, with stock and reservations (RT1, RT7, M1, M2)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from engine.base import Aggregate, Event
from engine.errors import InvalidCommand, UnknownOffer
from engine.servicelevel import china_day
from engine.values import SHIP_WITHIN_HOURS, OfferSku, PoolTerms, SkuQty

MICRO_SUPPLY_TTL = timedelta(days=30)  # rule M2
CAPACITY_DAYS = 31  # rule RT13: the days a supplier's used capacity is kept for (orders arrive late)


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
    daily_capacity: int | None = None

    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.supplier_id = ""
        self.tiers: dict[str, str] = {}
        self.used: dict[date, int] = {}  # units allocated per China-time day (RT13), the last few days

    def upsert(self, at: datetime, **fields: Any) -> bool:
        """Set what the supplier's profile says; False when nothing changed."""
        check_supplier_profile(fields)
        fields.update(ship_within_hours=fields["ship_within_hours"] or 48,
                      fulfilment_score=fields["fulfilment_score"] or 0, level=_level(fields["level"]),
                      **{k: None if fields[k] is None else Decimal(str(fields[k]))
                         for k in ("service_stars", "logistics_score", "experience_score")})
        if self.version and all(getattr(self, k) == v for k, v in fields.items()):
            return False
        self.trigger(SupplierUpserted, at, **fields)
        return True

    def capacity_left(self, at: datetime) -> int | None:
        """Rule RT13: units the supplier can still take on `at`'s China-time day; None: no limit."""
        if self.daily_capacity is None:
            return None
        return self.daily_capacity - self.used.get(china_day(at), 0)

    def use_capacity(self, allocation_id: str, units: int, at: datetime) -> None:
        """Rule RT13: an allocation counts on the China-time day it is made."""
        if self.daily_capacity is not None:
            self.trigger(CapacityUsed, at, allocation_id=allocation_id, day=china_day(at), units=units)

    def release_capacity(self, allocation_id: str, allocated_at: datetime, units: int, at: datetime) -> None:
        """Rule RT13: a stopped allocation (never packed) gives its units back to its day."""
        day = china_day(allocated_at)
        if self.daily_capacity is not None and self.used.get(day, 0) > 0:
            self.trigger(CapacityReleased, at, allocation_id=allocation_id, day=day,
                         units=min(units, self.used[day]))

    def set_tier(self, merchant_id: str, tier: str, at: datetime) -> None:
        """Seed 002: the supplier places a merchant in a price tier."""
        if self.tiers.get(merchant_id) != tier:
            self.trigger(MerchantTierSet, at, merchant_id=merchant_id, tier=tier)

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
    daily_capacity: int | None = None

    def apply(self, s: Supplier) -> None:
        s.daily_capacity = self.daily_capacity
        s.supplier_id = self.supplier_id
        s.name = self.name
        s.active = self.active
        s.ship_within_hours = self.ship_within_hours
        s.fulfilment_score = self.fulfilment_score
        s.level = self.level
        s.service_stars = self.service_stars
        s.logistics_score = self.logistics_score
        s.experience_score = self.experience_score


class CapacityUsed(Event, frozen=True):
    """Rule RT13: units of the supplier's daily capacity an allocation took."""

    allocation_id: str
    day: date
    units: int

    def apply(self, s: Supplier) -> None:
        s.used[self.day] = s.used.get(self.day, 0) + self.units
        if len(s.used) > CAPACITY_DAYS:  # an order dated days back still counts on its own day
            for day in sorted(s.used)[:-CAPACITY_DAYS]:
                del s.used[day]


class CapacityReleased(Event, frozen=True):
    """Rule RT13: units a stopped allocation gave back to its day."""

    allocation_id: str
    day: date
    units: int

    def apply(self, s: Supplier) -> None:
        if self.day in s.used:
            s.used[self.day] -= self.units


class MerchantTierSet(Event, frozen=True):
    merchant_id: str
    tier: str

    def apply(self, s: Supplier) -> None:
        s.tiers[self.merchant_id] = self.tier


# -- Offer ------------------------------------------------------------------------------------


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
        self.withdrawn: set[str] = set()  # SKUs the supplier said changed (RT11), until it publishes again
        self.published_at: datetime | None = None

    # -- commands ---------------------------------------------------------------------------

    def publish(self, at: datetime, **fields: Any) -> bool:
        """The supplier's whole offer; False for a repeat or a publish older than the last one (a
        late retry must not undo a newer delisting). A SKU whose stock was reported after `at`
        keeps that newer stock."""
        check_offer_stock(fields["skus"])
        if self.version and ((self.published_at is not None and at < self.published_at) or self._same(fields)):
            return False
        self.trigger(OfferPublished, at, **fields)
        return True

    def renew(self, at: datetime) -> None:
        """Rule M2: another 30 days."""
        self.trigger(OfferRenewed, at)

    def report_stock(self, supplier_sku_id: str, stock: int, at: datetime) -> bool:
        """Rule RT1: the supplier's stock on hand; False for a repeat or an older report."""
        if not isinstance(stock, int) or stock < 0:
            raise InvalidCommand(f"stock: must be an integer >= 0, got {stock!r}", "RT1")
        if supplier_sku_id not in self.skus:
            raise UnknownOffer(f"supplier_sku_id: {supplier_sku_id!r} is not a SKU of offer {self.offer_id!r}")
        last = self.stock_at.get(supplier_sku_id)
        if self.stock.get(supplier_sku_id) == stock or (last is not None and at < last):
            return False
        self.trigger(StockReported, at, supplier_sku_id=supplier_sku_id, stock=stock)
        return True

    def reserve(self, allocation_id: str, items: tuple[SkuQty, ...], at: datetime) -> None:
        """Rule RT7: the units are the allocation's at once."""
        self.trigger(StockReserved, at, allocation_id=allocation_id, items=items)

    def release(self, allocation_id: str, reason: str, at: datetime) -> None:
        """Rule RT7: a stopped allocation gives its units back (once)."""
        if allocation_id in self.holds:
            self.trigger(StockReleased, at, allocation_id=allocation_id, reason=reason)

    def reject_sku(self, supplier_sku_id: str, reason: str, allocation_id: str, at: datetime) -> None:
        """Rule RT11: `out_of_stock` sets the SKU's stock to 0 until the supplier's next report;
        `sku_changed` takes the SKU off shelf until the supplier publishes the offer again (L11)."""
        if reason in ("out_of_stock", "sku_changed"):
            self.trigger(SkuRejected, at, supplier_sku_id=supplier_sku_id, reason=reason, allocation_id=allocation_id)

    def ship(self, allocation_id: str, at: datetime) -> None:
        self.trigger(StockShipped, at, allocation_id=allocation_id)

    def ship_late(self, allocation_id: str, items: tuple[SkuQty, ...], at: datetime) -> None:
        """Rule I8 `too_late`: the units of a stopped allocation left anyway."""
        self.trigger(StockShippedLate, at, allocation_id=allocation_id, items=items)

    def _same(self, fields: dict[str, Any]) -> bool:
        return not self.withdrawn and (self.title, self.on_shelf, self.private_to, self.pool, tuple(self.skus.values())) == (
            fields["title"], fields["on_shelf"], fields["private_to"], fields["pool"], fields["skus"],
        ) and (fields["expires_at"] is None or fields["expires_at"] == self.expires_at)

    # -- queries ----------------------------------------------------------------------------

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
        newer = {k: (o.stock[k], t) for k, t in o.stock_at.items() if t > self.at and k in o.skus and k in o.stock}
        o.stock = {s.supplier_sku_id: s.stock for s in self.skus}
        o.stock_at = {s.supplier_sku_id: self.at for s in self.skus}
        for k, (stock, t) in newer.items():  # a stock report newer than this publish stands
            o.stock[k], o.stock_at[k] = stock, t
        o.withdrawn = set()
        o.published_at = self.at


class OfferRenewed(Event, frozen=True):
    def apply(self, o: Offer) -> None:
        o.expires_at = self.at + MICRO_SUPPLY_TTL


class StockReported(Event, frozen=True):
    supplier_sku_id: str
    stock: int

    def apply(self, o: Offer) -> None:
        o.stock[self.supplier_sku_id] = self.stock
        o.stock_at[self.supplier_sku_id] = self.at


class SkuRejected(Event, frozen=True):
    """Rule RT11: what a supplier's rejection says about one of its SKUs."""

    supplier_sku_id: str
    reason: str
    allocation_id: str

    def apply(self, o: Offer) -> None:
        if self.reason == "out_of_stock":
            o.stock[self.supplier_sku_id] = 0
            o.stock_at[self.supplier_sku_id] = max(self.at, o.stock_at.get(self.supplier_sku_id, self.at))
        else:
            o.withdrawn.add(self.supplier_sku_id)


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


def check_supplier_profile(fields: dict[str, Any]) -> None:
    hours, score = fields["ship_within_hours"], fields["fulfilment_score"]
    if hours is not None and hours not in SHIP_WITHIN_HOURS:
        raise InvalidCommand(f"ship_within_hours: must be 24 or 48, got {hours}", "T3")
    if score is not None and not 0 <= score <= 100:
        raise InvalidCommand(f"fulfilment_score: must be 0-100, got {score}", "RT2")
    capacity = fields.get("daily_capacity")
    if capacity is not None and (not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1):
        raise InvalidCommand(f"daily_capacity: must be a whole number of units >= 1 or null, got {capacity!r}",
                             "RT13")


def check_offer_stock(skus: tuple[OfferSku, ...]) -> None:
    for i, sku in enumerate(skus):
        if sku.stock < 0:
            raise InvalidCommand(f"skus[{i}].stock: must be >= 0, got {sku.stock}", "RT1")


def _level(level: int | str | None) -> int:
    """Rule RT8: a 1688 level as a number (`L2` or 2)."""
    if level is None:
        return 0
    if isinstance(level, str):
        digits = level.strip().upper().removeprefix("L")
        if not digits.isdigit():
            raise InvalidCommand(f"level: {level!r} is not a level like L2", "RT8")
        return int(digits)
    return int(level)
