"""A deterministic order flow for the reliability suite, and what it must end in.

``Workload(orders=n, seed=s)`` is a catalog (suppliers, offers, prices, links with a primary and a
backup alternative) followed by ``n`` orders. Each order has a fate, drawn from the seed:

| fate      | messages after ``order.placed``                                      | ends                |
|-----------|----------------------------------------------------------------------|---------------------|
| plain     | tracking for each allocation                                         | shipped             |
| post      | tracking, then an after-sale (I2: nothing intercepted)               | shipped             |
| refund    | after-sale opened (I1), maybe the supplier's tracking anyway (I7), closed refunded | unrouted, intercepted |
| cancel    | order cancelled (I1)                                                 | cancelled           |
| address   | address changed (I4), tracking for the new allocation                | shipped             |
| review    | under review (I3), review cleared, tracking for the new allocation   | shipped             |
| bundle    | a two-supplier bundle line (L4) and a plain line: tracking for one part, address    | shipped             |
|           | changed (I4: only the untracked part is routed again), a refund of the plain line   |                     |
|           | (I1), tracking for the new part (T2)                                                 |                     |

Stock is ample, so routing always takes the primary supplier of each line and allocation ids are
known in advance (``engine.ids.new_allocation_id``): the producer can send the suppliers' tracking
without reading ``REFLOW_OUT``, and the expected end of every order is exact.

Every buyer is a canary: name, street address and remark carry a unique ``Zq<8 hex>`` token and
the phone is unique, so a scan for clear consumer data (P2) is a set lookup, not a guess.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from engine.ids import new_allocation_id

CHINA = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=CHINA)
TOKEN = re.compile(rb"Zq[0-9a-f]{8}")
PHONE = re.compile(rb"(?<![0-9])19[0-9]{9}(?![0-9])")
SHOPS = [("douyin", "dy-rel-1"), ("kuaishou", "ks-rel-2")]
SUPPLIERS = ["sup-a", "sup-b", "sup-c", "sup-d"]
PRODUCTS = ["P100", "P200", "P300", "P400"]  # product i: primary SUPPLIERS[i], backup SUPPLIERS[i+1]
STOCK = 1_000_000
FATES = [("plain", 56), ("post", 6), ("refund", 8), ("cancel", 8), ("address", 8), ("review", 8), ("bundle", 6)]
# The bundle (L4): a cup from sup-a and a lid from sup-c, one shop SKU.
BUNDLE = "P500"
BUNDLE_PARTS = [("sup-a", "o-P500a", "s-P500a"), ("sup-c", "o-P500c", "s-P500c")]


def iso(t: datetime) -> str:
    return t.isoformat()


@dataclass
class Order:
    n: int
    shop: tuple[str, str]
    order_id: str
    fate: str
    lines: list[tuple[str, str, int]]  # line_id, product, qty
    placed_at: datetime
    buyer: dict[str, str]
    remark: str
    new_buyer: dict[str, str] | None = None
    loss: bool = False  # refund fate: the supplier uploads tracking for the intercepted allocation

    @property
    def suppliers(self) -> list[str]:
        return sorted({s for _, p, _ in self.lines for s, _, _ in parts_of(p)})

    def allocation_ids(self, round_: int = 0) -> list[tuple[str, str]]:
        """(supplier, allocation id) of the ``round_``-th routing (0 first, 1 after I3/I4)."""
        k = len(self.suppliers)
        return [(s, new_allocation_id(*self.shop, self.order_id, s, round_ * k + i))
                for i, s in enumerate(self.suppliers)]

    def expected(self) -> tuple[str, Counter]:
        """The order's end: its status and its allocations' statuses."""
        k = len(self.suppliers)
        return {
            "plain": ("shipped", Counter(shipped=k)),
            "post": ("shipped", Counter(shipped=k)),
            "refund": ("unrouted", Counter(intercepted=k)),
            "cancel": ("cancelled", Counter(intercepted=k)),
            "address": ("shipped", Counter(intercepted=k, shipped=k)),
            "review": ("shipped", Counter(cancelled=k, shipped=k)),
            # sup-a and sup-b stopped by the address change, sup-b's replacement by the refund;
            # the lid's first allocation and the cup's replacement ship
            "bundle": ("shipped", Counter(intercepted=3, shipped=2)),
        }[self.fate]

    def loss_risks(self) -> int:
        return len(self.suppliers) if self.loss else 0

    def units(self) -> Counter:
        """Units this order finally takes from each (supplier, sku)."""
        if self.fate in ("refund", "cancel"):
            return Counter()
        out: Counter = Counter()
        for _, product, qty in self.lines:
            if self.fate == "bundle" and product != BUNDLE:
                continue  # refunded before tracking
            for supplier, _, sku in parts_of(product):
                out[(supplier, sku)] += qty
        return out


def sku_of(product: str) -> str:
    return f"s-{product}"


def parts_of(product: str) -> list[tuple[str, str, str]]:
    """(supplier, offer, sku) of each part of a product's primary alternative."""
    if product == BUNDLE:
        return BUNDLE_PARTS
    return [(SUPPLIERS[PRODUCTS.index(product)], f"o-{product}", sku_of(product))]


def offers() -> list[tuple[str, str, str]]:
    """Every (supplier, offer, sku) of the catalog."""
    return [p for product in PRODUCTS + [BUNDLE] for p in parts_of(product)]


@dataclass
class Message:
    subject: str  # without the "reflow.in." prefix
    body: dict[str, Any]
    msg_id: str
    order: int | None = None  # which order it belongs to (None: catalog)
    kind: str = ""  # placed, track, loss, aftersale, close, cancel, address, review_on, review_off


@dataclass
class Workload:
    orders_n: int
    seed: int = 1
    stock: int = STOCK
    fates: tuple[str, ...] = tuple(f for f, _ in FATES)
    losses: bool = True  # refund fate: sometimes the supplier ships anyway (I7)
    shops: tuple[tuple[str, str], ...] = tuple(SHOPS)
    orders: list[Order] = field(default_factory=list)
    catalog: list[Message] = field(default_factory=list)
    flow: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        rng = random.Random(self.seed)
        self.catalog = self._catalog()
        fates = [f for f, w in FATES for _ in range(w) if f in self.fates]
        later: list[tuple[int, Message]] = []  # (due at order index, message)
        for n in range(self.orders_n):
            order = self._order(rng, n, rng.choice(fates))
            self.orders.append(order)
            self.flow.append(self._msg("order.placed", self._placed(order), order, "placed"))
            for delay, msg in self._after(rng, order):
                later.append((n + delay, msg))
            due = [m for d, m in later if d <= n]
            later = [(d, m) for d, m in later if d > n]
            self.flow.extend(due)
        self.flow.extend(m for _, m in sorted(later, key=lambda x: x[0]))

    @property
    def messages(self) -> list[Message]:
        return self.catalog + self.flow

    # -- the catalog ------------------------------------------------------------------------

    def _catalog(self) -> list[Message]:
        out = []
        for s in SUPPLIERS:
            out.append(Message("supplier.upserted", {"supplier_id": s, "name": f"Supplier {s}",
                                                     "active": True, "ship_within_hours": 48,
                                                     "fulfilment_score": 90}, f"cat-{s}"))
        for i, p in enumerate(PRODUCTS):
            s = SUPPLIERS[i]
            out.append(Message("supplier.offer", {
                "supplier_id": s, "offer_id": f"o-{p}", "title": f"Offer {p}", "on_shelf": True,
                "skus": [{"supplier_sku_id": sku_of(p), "spec": "black", "stock": self.stock}]},
                f"cat-offer-{p}"))
            out.append(Message("supplier.price", {"supplier_id": s, "supplier_sku_id": sku_of(p),
                                                  "price": "6.80", "effective_from": iso(T0 - timedelta(days=30))},
                               f"cat-price-{p}"))
        for s, oid, sku in BUNDLE_PARTS:
            out.append(Message("supplier.offer", {
                "supplier_id": s, "offer_id": oid, "title": f"Offer {oid}", "on_shelf": True,
                "skus": [{"supplier_sku_id": sku, "spec": "white", "stock": self.stock}]}, f"cat-offer-{oid}"))
            out.append(Message("supplier.price", {"supplier_id": s, "supplier_sku_id": sku, "price": "3.20",
                                                  "effective_from": iso(T0 - timedelta(days=30))},
                               f"cat-price-{oid}"))
        for platform, shop_id in self.shops:
            out.append(Message("link.set", {
                "platform": platform, "shop_id": shop_id, "product_id": BUNDLE, "mode": "multi",
                "skus": [{"sku_id": "K1", "alternatives": [{"components": [
                    {"supplier_id": s, "offer_id": oid, "supplier_sku_id": sku, "qty": 1}
                    for s, oid, sku in BUNDLE_PARTS]}]}]}, f"cat-link-{platform}-{shop_id}-{BUNDLE}"))
        for i, p in enumerate(PRODUCTS):
            backup_supplier = SUPPLIERS[(i + 1) % len(SUPPLIERS)]
            backup_product = PRODUCTS[(i + 1) % len(PRODUCTS)]
            for platform, shop_id in self.shops:
                out.append(Message("link.set", {
                    "platform": platform, "shop_id": shop_id, "product_id": p, "mode": "multi",
                    "skus": [{"sku_id": "K1", "alternatives": [
                        {"priority": 1, "components": [{"supplier_id": SUPPLIERS[i], "offer_id": f"o-{p}",
                                                        "supplier_sku_id": sku_of(p), "qty": 1}]},
                        {"priority": 2, "components": [{"supplier_id": backup_supplier,
                                                        "offer_id": f"o-{backup_product}",
                                                        "supplier_sku_id": sku_of(backup_product), "qty": 1}]},
                    ]}]}, f"cat-link-{platform}-{shop_id}-{p}"))
        return out

    # -- orders -----------------------------------------------------------------------------

    def _buyer(self, rng: random.Random, n: int, tag: str) -> dict[str, str]:
        return {"name": f"顾{self.token(rng)}", "phone": f"19{(n * 7 + len(tag)) % 10**9:09d}"
                if tag == "a" else f"19{(10**9 - 1 - n) % 10**9:09d}",
                "province": "浙江省", "city": "杭州市", "district": "西湖区",
                "address": f"幸福路 {n} 号 {self.token(rng)} 室"}

    @staticmethod
    def token(rng: random.Random) -> str:
        return f"Zq{rng.getrandbits(32):08x}"

    def _order(self, rng: random.Random, n: int, fate: str) -> Order:
        shop = self.shops[n % len(self.shops)]
        first = rng.randrange(len(PRODUCTS))
        lines = [(f"{n}-1", PRODUCTS[first], rng.randint(1, 3))]
        if fate == "bundle":  # the bundle, and a plain line from sup-b that is refunded
            lines = [(f"{n}-1", BUNDLE, rng.randint(1, 2)), (f"{n}-2", PRODUCTS[1], 1)]
        elif rng.random() < 0.25:
            lines.append((f"{n}-2", PRODUCTS[(first + 1 + rng.randrange(3)) % len(PRODUCTS)], 1))
        order = Order(n=n, shop=shop, order_id=f"R{self.seed}-{n}", fate=fate, lines=lines,
                      placed_at=T0 + timedelta(seconds=n), buyer=self._buyer(rng, n, "a"),
                      remark=f"请放门口 {self.token(rng)}")
        if fate in ("address", "bundle"):
            order.new_buyer = self._buyer(rng, n, "b")
        return order

    def _placed(self, o: Order) -> dict[str, Any]:
        return {"platform": o.shop[0], "shop_id": o.shop[1], "order_id": o.order_id,
                "placed_at": iso(o.placed_at), "buyer": o.buyer, "remark": o.remark,
                "lines": [{"line_id": lid, "product_id": p, "sku_id": "K1", "title": f"Product {p}",
                           "qty": q, "unit_price": "19.90"} for lid, p, q in o.lines]}

    def _msg(self, subject: str, body: dict[str, Any], o: Order, kind: str, k: int = 0) -> Message:
        return Message(subject, body, f"w{self.seed}-{o.n}-{kind}-{k}", o.n, kind)

    def _tracking(self, o: Order, round_: int, kind: str = "track") -> list[Message]:
        at = o.placed_at + timedelta(hours=3 + round_)
        return [self._msg("tracking.uploaded", {
            "supplier_id": s, "allocation_id": a, "carrier": "YTO",
            "tracking_no": f"YT{o.n:010d}{round_}{i}", "uploaded_at": iso(at)}, o, kind, i)
            for i, (s, a) in enumerate(o.allocation_ids(round_))]

    def _after(self, rng: random.Random, o: Order) -> list[tuple[int, Message]]:
        """The order's later messages, each with how many orders later it is sent."""
        key = {"platform": o.shop[0], "shop_id": o.shop[1], "order_id": o.order_id}
        d = lambda lo, hi: rng.randint(lo, hi)  # noqa: E731
        out: list[tuple[int, Message]] = []
        if o.fate in ("plain", "post"):
            t = d(1, 40)
            out += [(t, m) for m in self._tracking(o, 0)]
            if o.fate == "post":
                out.append((t + d(1, 20), self._msg("aftersale.opened", {
                    **key, "aftersale_id": f"AS-{o.order_id}", "kind": "return",
                    "opened_at": iso(o.placed_at + timedelta(days=2))}, o, "aftersale")))
        elif o.fate == "refund":
            t = d(1, 30)
            out.append((t, self._msg("aftersale.opened", {
                **key, "aftersale_id": f"AS-{o.order_id}", "kind": "refund",
                "opened_at": iso(o.placed_at + timedelta(minutes=30))}, o, "aftersale")))
            if rng.random() < 0.3 and self.losses:  # the supplier shipped anyway: a loss risk (I7)
                o.loss = True
                out += [(t + d(1, 10), m) for m in self._tracking(o, 0, "loss")]
            out.append((t + d(1, 30), self._msg("aftersale.closed", {
                **key, "aftersale_id": f"AS-{o.order_id}", "outcome": "refunded",
                "closed_at": iso(o.placed_at + timedelta(days=1))}, o, "close")))
        elif o.fate == "cancel":
            out.append((d(0, 30), self._msg("order.cancelled", {
                **key, "cancelled_at": iso(o.placed_at + timedelta(minutes=20))}, o, "cancel")))
        elif o.fate == "address":
            t = d(0, 30)
            out.append((t, self._msg("order.address_changed", {
                **key, "buyer": o.new_buyer, "changed_at": iso(o.placed_at + timedelta(minutes=10))},
                o, "address")))
            out += [(t + d(1, 30), m) for m in self._tracking(o, 1)]
        elif o.fate == "bundle":
            # round 0: sup-a 0, sup-b 1, sup-c 2; the address change stops sup-a's and sup-b's,
            # and re-routes the cup alone (sup-a 3) and the plain line (sup-b 4)
            ids = {k: new_allocation_id(*o.shop, o.order_id, s, k)
                   for k, s in enumerate(["sup-a", "sup-b", "sup-c", "sup-a", "sup-b"])}

            def track(k: int, supplier: str, hours: int) -> Message:
                return self._msg("tracking.uploaded", {
                    "supplier_id": supplier, "allocation_id": ids[k], "carrier": "STO",
                    "tracking_no": f"ST{o.n:010d}{k}", "uploaded_at": iso(o.placed_at + timedelta(hours=hours))},
                    o, "track", k)

            t = d(1, 10)
            out.append((t, track(2, "sup-c", 1)))
            t += d(1, 10)
            out.append((t, self._msg("order.address_changed", {
                **key, "buyer": o.new_buyer, "changed_at": iso(o.placed_at + timedelta(hours=2))},
                o, "address")))
            t += d(1, 10)
            out.append((t, self._msg("aftersale.opened", {
                **key, "aftersale_id": f"AS-{o.order_id}", "kind": "refund", "line_id": f"{o.n}-2",
                "opened_at": iso(o.placed_at + timedelta(hours=3))}, o, "aftersale")))
            t += d(1, 10)
            out.append((t, track(3, "sup-a", 5)))
            t += d(1, 10)
            out.append((t, self._msg("aftersale.closed", {
                **key, "aftersale_id": f"AS-{o.order_id}", "outcome": "refunded",
                "closed_at": iso(o.placed_at + timedelta(days=1))}, o, "close")))
        elif o.fate == "review":
            t = d(0, 20)
            out.append((t, self._msg("order.review", {**key, "under_review": True, "reason": "risk"},
                                     o, "review_on")))
            t += d(1, 20)
            out.append((t, self._msg("order.review", {**key, "under_review": False}, o, "review_off")))
            out += [(t + d(1, 30), m) for m in self._tracking(o, 1)]
        return out

    # -- what the run must end in -----------------------------------------------------------

    def canaries(self) -> tuple[set[bytes], set[bytes]]:
        """(tokens, phones) of every buyer, address change and remark in the run."""
        tokens: set[bytes] = set()
        phones: set[bytes] = set()
        for o in self.orders:
            for b in filter(None, (o.buyer, o.new_buyer)):
                tokens.update(TOKEN.findall((b["name"] + b["address"]).encode()))
                phones.add(b["phone"].encode())
            tokens.update(TOKEN.findall(o.remark.encode()))
        return tokens, phones

    def expected_units(self) -> Counter:
        total: Counter = Counter()
        for o in self.orders:
            total.update(o.units())
        return total

    def outbound_expected(self) -> Counter:
        """How many messages of each kind REFLOW_OUT must hold (stock messages aside)."""
        c: Counter = Counter()
        for o in self.orders:
            _, allocs = o.expected()
            c["allocation"] += sum(allocs.values())
            c["intercept"] += allocs["intercepted"] + allocs["cancelled"]
            c["shipment"] += o.expected()[0] == "shipped"
        return c


def scan(data: bytes, tokens: set[bytes], phones: set[bytes]) -> list[bytes]:
    """Every canary (consumer data of the run) found in clear in ``data``."""
    hits = [t for t in TOKEN.findall(data) if t in tokens]
    hits += [p for p in PHONE.findall(data) if p in phones]
    return hits
