"""The generated day's orders, from a seed: who buys what, when, in which shop; which orders get
which trouble (cancelled, held, reviewed, address changed, refunded); the issue-15 stories (a
factory's evening live-stream sale past its capacity, a bulk order split between two sources); the
issue-16 stories (a parcel never shipped, a parcel sent back) and the after-sales of delivered
parcels; each supplier SKU's stock.

Deterministic for (seed, orders, day): one ``random.Random`` seeded with them, drawn in a fixed
order (the stories draw from their own). The stages made of these orders are in ``day`` and
``reactions``."""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from adapters.demo.buyers import GIVEN, HOLD_REMARKS, HOUR_WEIGHTS, PHONE_PREFIXES, REGIONS, REMARKS, STREETS, SURNAMES
from adapters.demo.scenario import (
    BULK,
    BULK_QTY,
    BULK_STOCK,
    DAYS_AGO,
    DEFAULT_ORDERS,
    DEFAULT_SEED,
    FLASH,
    FLASH_ORDERS,
    HOLD_OVER,
    OFFERS,
    OVERDUE,
    PRODUCTS,
    RETURNED,
    SCARCE,
    SHOPS,
    ShopSpec,
    price_on,
)
from adapters.demo.wire import Message
from engine.servicelevel import LOCAL


@dataclass
class Line:
    line_id: str
    product: str
    k: int  # index of the SKU in the product
    qty: int
    price: Decimal


@dataclass
class PlannedOrder:
    shop: ShopSpec
    order_id: str
    placed_at: datetime
    buyer: dict[str, str]
    lines: list[Line]
    channel: str | None
    remark: str | None
    role: str = "plain"  # plain | held | review | cancel | address | refund_all | refund_line

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.shop.platform, self.shop.shop_id, self.order_id)

    @property
    def amount(self) -> Decimal:
        return sum((ln.price * ln.qty for ln in self.lines), Decimal(0))


class DayPlan:
    """The generated day of one merchant before any message: its orders and its stock."""

    def __init__(self, seed: int = DEFAULT_SEED, orders: int = DEFAULT_ORDERS, day: date | None = None) -> None:
        if orders < 50:
            raise ValueError(f"--orders: at least 50, got {orders}")
        self.seed, self.n_orders = seed, orders
        self.day = day or (datetime.now(LOCAL).date() - timedelta(days=DAYS_AGO))
        self.start = datetime(self.day.year, self.day.month, self.day.day, tzinfo=LOCAL)
        self.rng = random.Random(f"reflow-demo/{seed}/{orders}")
        self._n = 0
        self.orders = self._orders()
        self._assign_roles()
        self.flash, self.capacity, self.bulk = self._stories()
        self.overdue, self.returned, self.after_delivery = self._after_the_parcel()
        self.stock = self._stock()

    # ids -----------------------------------------------------------------------------------

    def msg(self, subject: str, body: dict[str, Any]) -> Message:
        self._n += 1
        return Message(subject, body, f"demo-{self.seed}-{self.day:%Y%m%d}-{self._n:06d}")

    def _order_id(self, platform: str, taken: set[str]) -> str:
        r = self.rng
        while True:
            if platform == "douyin":
                oid = "69" + "".join(r.choice("0123456789") for _ in range(17))
            elif platform == "kuaishou":
                oid = f"{self.day:%y%m}" + "".join(r.choice("0123456789") for _ in range(12))
            elif platform in ("taobao", "tmall"):
                oid = r.choice("23") + "".join(r.choice("0123456789") for _ in range(18))
            elif platform == "pinduoduo":
                oid = f"{self.day:%y%m%d}-" + "".join(r.choice("0123456789") for _ in range(15))
            else:
                oid = f"WG{self.day:%Y%m%d}{r.randrange(10**6):06d}"
            if oid not in taken:
                taken.add(oid)
                return oid

    def _buyer(self) -> dict[str, str]:
        r = self.rng
        province, city, districts, _ = r.choices(REGIONS, weights=[x[3] for x in REGIONS])[0]
        return {
            "name": r.choice(SURNAMES) + r.choice(GIVEN),
            "phone": r.choice(PHONE_PREFIXES) + f"{r.randrange(10**8):08d}",
            "province": province, "city": city, "district": r.choice(districts),
            "address": self._street(),
        }

    def _street(self) -> str:
        r = self.rng
        return (f"{r.choice(STREETS)}{r.randint(1, 899)}号 {r.randint(1, 30)}栋"
                f"{r.randint(1, 4)}单元{r.randint(1, 32)}{r.randint(1, 4):02d}室")

    # the orders ----------------------------------------------------------------------------

    def _orders(self) -> list[PlannedOrder]:
        r = self.rng
        taken: set[str] = set()
        seconds = sorted(self._second_of_day() for _ in range(self.n_orders))
        out = []
        for s in seconds:
            shop = r.choices(SHOPS, weights=[x.weight for x in SHOPS])[0]
            placed_at = self.start + timedelta(seconds=s)
            n_lines = r.choices((1, 2, 3), weights=(76, 19, 5))[0]
            keys: list[str] = []
            while len(keys) < n_lines:
                key = r.choices(shop.products, weights=[PRODUCTS[k].weight for k in shop.products])[0]
                if key not in keys:
                    keys.append(key)
            oid = self._order_id(shop.platform, taken)
            lines = []
            for i, key in enumerate(keys):
                spec = PRODUCTS[key]
                k = r.randrange(len(spec.skus))
                price = price_on(shop.platform, spec.skus[k][1])
                qty = r.choices((1, 2, 3), weights=(72, 21, 7))[0] if price < 100 else 1
                lines.append(Line(f"{oid}-{i + 1}", key, k, qty, price))
            remark = r.choice(REMARKS) if r.random() < 0.08 else None
            channel = "live" if r.random() < shop.live else None
            out.append(PlannedOrder(shop, oid, placed_at, self._buyer(), lines, channel, remark))
        # orders the hold rules stop (I6): a company buying tea gifts, rush and invoice remarks
        held = max(2, self.n_orders // 400)
        for n in range(held):
            victim = out[r.randrange(len(out))]
            while victim.role != "plain" or victim.shop.platform == "weigong":
                victim = out[r.randrange(len(out))]
            victim.role = "held"
            if n % 2 == 0 and "tea" in victim.shop.products:
                victim.lines = [Line(f"{victim.order_id}-1", "tea", 0, r.randint(8, 12),
                                     price_on(victim.shop.platform, PRODUCTS["tea"].skus[0][1]))]
                victim.remark = "公司中秋福利采购，需分开包装"
            else:
                victim.remark = HOLD_REMARKS[n % len(HOLD_REMARKS)]
        for o in out:  # nothing else trips a hold rule by accident
            if o.role != "held":
                while o.amount > HOLD_OVER:
                    o.lines.pop()
        # a few pre-link orders for the product linked late, whatever the size
        douyin = [o for o in out if o.shop.platform == "douyin" and o.role == "plain"]
        for o in r.sample(douyin, k=min(len(douyin), max(3, self.n_orders // 300))):
            if not any(ln.product == "powerbank" for ln in o.lines):
                o.lines[0] = Line(o.lines[0].line_id, "powerbank", r.randrange(2), 1, Decimal("99.00"))
        return out

    def _second_of_day(self) -> int:
        hour = self.rng.choices(range(24), weights=HOUR_WEIGHTS)[0]
        return hour * 3600 + self.rng.randrange(3600)

    def _assign_roles(self) -> None:
        """Pick, once and for all, which orders get which trouble."""
        r, n = self.rng, self.n_orders
        plain = [o for o in self.orders if o.role == "plain" and o.placed_at.hour < 22]
        r.shuffle(plain)
        wanted = [("cancel", max(3, n * 3 // 100)), ("address", max(3, n * 25 // 1000)),
                  ("refund_all", max(3, n * 15 // 1000)), ("review", max(2, n // 200))]
        for role, count in wanted:
            for _ in range(count):
                plain.pop().role = role
        multi = [o for o in plain if len(o.lines) > 1]
        for o in multi[: max(2, n // 100)]:
            o.role = "refund_line"

    def _stories(self) -> tuple[list[PlannedOrder], int | None, PlannedOrder | None]:
        """Issue 15, made of plain orders (never held, cancelled, changed or refunded), drawn from a
        random source of their own so the rest of the day stays as it was:

        - RT13: the day's last douyin orders become the factory's live-stream sale. Its daily
          capacity is what all of them but the last take, so the last order (two lines) finds
          the factory full: its lines wait for the next day. No order of the factory comes after.
        - RT12: a company's order on taobao, in office hours, for more cups than either source has.

        Returns the sale's orders, the factory's capacity (None: no sale) and the bulk order."""
        r = random.Random(f"reflow-demo/{self.seed}/{self.n_orders}/stories")
        platform, shop_id, key = FLASH
        douyin = [o for o in self.orders if o.key[:2] == (platform, shop_id) and o.role == "plain"
                  and not any(ln.product == "powerbank" for ln in o.lines)]
        flash = douyin[-FLASH_ORDERS:] if len(douyin) >= 3 else []
        for n, o in enumerate(flash):
            last = n == len(flash) - 1
            ks = r.sample(range(len(PRODUCTS[key].skus)), 2) if last else [r.randrange(len(PRODUCTS[key].skus))]
            o.lines = [Line(f"{o.order_id}-{i + 1}", key, k, 1 if last else r.randint(1, 3),
                            price_on(platform, PRODUCTS[key].skus[k][1])) for i, k in enumerate(ks)]
            o.channel, o.remark = "live", None
        capacity = sum(ln.qty for o in flash[:-1] for ln in o.lines) or None
        platform, shop_id, key = BULK
        office = [o for o in self.orders if o.key[:2] == (platform, shop_id) and o.role == "plain"
                  and 9 <= o.placed_at.hour < 18]
        bulk = r.choice(office) if office else None
        if bulk is not None:
            bulk.lines = [Line(f"{bulk.order_id}-1", key, 0, BULK_QTY, price_on(platform, PRODUCTS[key].skus[0][1]))]
            bulk.remark = "公司年会礼品，杯身印公司LOGO"
        return flash, capacity, bulk

    def _after_the_parcel(self) -> tuple[PlannedOrder | None, PlannedOrder | None, list[PlannedOrder]]:
        """Issue 16, made of plain orders of the morning (so the parcel's ship-by is that night, T3),
        each the only order of its second, drawn from a random source of their own:

        - T4: a douyin order for one black case; its supplier never ships it (``FORGETFUL``);
        - RC6: a tmall order for one serum; its parcel is returned, and the merchant sends it back.

        Also the orders whose buyers open an after-sale once their parcels are out (I2)."""
        r = random.Random(f"reflow-demo/{self.seed}/{self.n_orders}/stories16")
        taken = {o.key for o in self.flash} | ({self.bulk.key} if self.bulk else set())
        seconds = Counter(o.placed_at for o in self.orders)

        def story(where: tuple[str, str, str], k: int) -> PlannedOrder | None:
            platform, shop_id, key = where
            fits = [o for o in self.orders if o.key[:2] == (platform, shop_id) and o.role == "plain"
                    and o.key not in taken and 9 <= o.placed_at.hour < 15 and seconds[o.placed_at] == 1
                    and not any(ln.product == "powerbank" for ln in o.lines)]  # pre-link orders wait (L10)
            if not fits:
                return None
            o = r.choice(fits)
            o.lines = [Line(f"{o.order_id}-1", key, k, 1, price_on(platform, PRODUCTS[key].skus[k][1]))]
            taken.add(o.key)
            return o

        overdue, returned = story(OVERDUE, 0), story(RETURNED, 0)
        plain = [o for o in self.orders if o.role == "plain" and o.key not in taken]
        return overdue, returned, r.sample(plain, k=min(len(plain), max(3, len(plain) * 4 // 100)))

    def _stock(self) -> dict[tuple[str, str], int]:
        """Each supplier SKU's stock: what the day could ask of it and some more; SCARCE runs out."""
        demand: Counter = Counter()
        for o in self.orders:
            for ln in o.lines:
                for alternative in PRODUCTS[ln.product].skus[ln.k][2]:
                    for supplier_id, _, sku, qty in alternative:
                        demand[(supplier_id, sku)] += qty * ln.qty
        stock = {}
        for offer in OFFERS:
            for sku, _, _ in offer.skus:
                need = demand[(offer.supplier_id, sku)]
                stock[(offer.supplier_id, sku)] = 10 * math.ceil((need * 1.6 + 40) / 10)
        stock[SCARCE] = max(1, int(demand[SCARCE] * 0.6))
        for supplier_id, sku, n in BULK_STOCK:  # each less than the bulk order wants, together enough (RT12)
            stock[(supplier_id, sku)] = n
        return stock
