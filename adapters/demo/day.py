"""``DemoDay``: the generated day of one merchant as a deterministic timeline (``play``): the
opening; the day and the days after, in the order of time, with the suppliers' and the shops'
answers as ``REFLOW_OUT`` calls for them (``reactions``); this morning.

The demo drives its own clock, and a ``clock.tick`` at ``T`` goes out only once every message of
the timeline dated at or before ``T`` is out, the answers to them included: at each midnight, and
just after the ship-by time of each parcel its supplier tracks late or never (and when the
merchant's re-route falls due), so the overdue reminders (T4) are those of the parcels really
untracked at their ship-by. A stage is made only from the plan and what the stages before it
caused, once applied (a step of the days is a stage of its own), so every run of a seed and day
publishes the same messages."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from adapters.demo.generator import PlannedOrder
from adapters.demo.reactions import Reactions, SupplierWork
from adapters.demo.scenario import (
    BULK,
    CODE_ONLY,
    CODES,
    DAYS_AGO,
    FACTORY,
    FLASH,
    HOLD_OVER,
    HOLD_WORDS,
    LATE_LINK,
    MERCHANT,
    OFFERS,
    PRICE_RISE,
    PRODUCTS,
    REROUTE_OVERDUE_HOURS,
    SHOPS,
    SUPPLIERS,
    component,
    link_body,
    product_id,
    sku_id,
)
from adapters.demo.wire import Message, Stage, Timed, iso

CLOCK_STEP = 30 * 60  # seconds: a deadline passes at the next half hour after it (a late tracking comes later)


def tick_after(at: datetime) -> datetime:
    """The clock's next half hour strictly after ``at`` (China time is a whole number of hours off UTC)."""
    return datetime.fromtimestamp((int(at.timestamp()) // CLOCK_STEP + 1) * CLOCK_STEP, at.tzinfo)


class DemoDay(Reactions):
    """The generated day of one merchant: every message, deterministic for (seed, orders, day)."""

    # the timeline ---------------------------------------------------------------------------

    async def play(self, stage: Stage) -> SupplierWork:
        """The opening, the days in the order of time, this morning. The restock (and the
        morning's clock tick) is dated at the broker's time of the timeline's last message, the
        latest time serve has seen, and so after the offer's publication."""
        work = SupplierWork()
        await stage("opening: shops, suppliers, offers, links", self.opening())
        last_at = await self.days(stage, work)
        await stage("this morning: restock, a SKU replaced, pull, releases", self.morning(work, last_at))
        return work

    async def days(self, stage: Stage, work: SupplierWork) -> datetime:
        """The day's messages and the answers to them, in steps along the clock. Each step sends the
        next tick once nothing dated at or before it waits, then what is due by the tick after: the
        shops' messages first, and the suppliers' only in a step of their own, so a supplier has
        seen every intercept the shops' messages caused before its tracking goes out. Returns the
        broker's time of the last message."""
        for n, x in enumerate(self.the_day()):
            work.pending[f"day/{n:06d}"] = x
        midnights = {self.start + timedelta(days=k) for k in range(1, DAYS_AGO)}
        ticked: datetime | None = None
        last_at = self.start
        while True:
            ticks = sorted(midnights | {tick_after(t) for ts in work.deadlines.values() for t in ts})
            after = [t for t in ticks if ticked is None or t > ticked]
            due = [k for k, x in work.pending.items() if not after or x.at <= after[0]]
            step: list[Timed] = []
            if after and not due:  # everything up to the tick is out: the clock reaches it
                ticked = after.pop(0)
                step.append(Timed(ticked, "clock", (), "clock.tick", {"at": iso(ticked)}))
                due = [k for k, x in work.pending.items() if not after or x.at <= after[0]]
            shops = [k for k in due if work.pending[k].side == "shop"]
            step += sorted((work.pending.pop(k) for k in shops or due), key=Timed.order)
            work.sent.update(shops or due)
            if not step:
                return last_at
            title = (f"the day {self.day}: {self.n_orders:,} orders" if ticked is None
                     else "the days after: answers and the clock")
            applied = await stage(title, [self.msg(x.subject, x.body) for x in step])
            last_at = applied.last_at
            self.react(applied.out, work)

    # the opening ---------------------------------------------------------------------------

    def opening(self) -> list[Message]:
        m, out = self.msg, []
        for shop in SHOPS:
            out.append(m("shop.registered", {"platform": shop.platform, "shop_id": shop.shop_id,
                                              "merchant_id": MERCHANT}))
        out.append(m("merchant.settings", {
            "merchant_id": MERCHANT, "source_pool": False, "split_tolerance": "0.05",
            "hold_amount_over": str(HOLD_OVER), "hold_remark_words": list(HOLD_WORDS), "hold_out_of_stock": False,
            "split_lines": True, "reroute_overdue_hours": REROUTE_OVERDUE_HOURS}))  # RT12, T4
        for s in SUPPLIERS:
            body = {"supplier_id": s.supplier_id, "name": s.name, "active": True,
                    "ship_within_hours": s.ship_within_hours, "fulfilment_score": s.score}
            if s.supplier_id == FACTORY and self.capacity is not None:
                body["daily_capacity"] = self.capacity  # RT13
            out.append(m("supplier.upserted", body))
        for o in OFFERS:
            out.append(m("supplier.offer", {
                "supplier_id": o.supplier_id, "offer_id": o.offer_id, "title": o.title, "on_shelf": True,
                "private_to": [MERCHANT] if o.private else None,
                "skus": [{"supplier_sku_id": sku, "spec": spec, "stock": self.stock[(o.supplier_id, sku)]}
                         for sku, spec, _ in o.skus]}))
        since = self.start - timedelta(days=60)
        for o in OFFERS:
            for sku, _, price in o.skus:
                out.append(m("supplier.price", {"supplier_id": o.supplier_id, "supplier_sku_id": sku,
                                                 "price": price, "effective_from": iso(since)}))
        supplier_id, sku, price = PRICE_RISE
        out.append(m("supplier.price", {"supplier_id": supplier_id, "supplier_sku_id": sku, "price": price,
                                         "effective_from": iso(self.start + timedelta(hours=12))}))
        for code, comp in CODES.values():
            out.append(m("code.registered", {"merchant_id": MERCHANT, "code": code, "kind": "item",
                                              "components": [component(comp)]}))
        for shop in SHOPS:
            for key in shop.products:
                if (shop.platform, shop.shop_id, key) not in (LATE_LINK, CODE_ONLY):
                    out.append(m("link.set", link_body(shop, key)))
        for platform, shop_id, key in (FLASH, BULK):  # the issue-15 stories' products
            shop = next(x for x in SHOPS if (x.platform, x.shop_id) == (platform, shop_id))
            out.append(m("link.set", link_body(shop, key)))
        douyin, pdd = SHOPS[0], SHOPS[4]
        out.append(m("stock.rule", {"platform": douyin.platform, "shop_id": douyin.shop_id,
                                     "product_id": product_id(douyin.platform, "case15"),
                                     "sku_id": sku_id(douyin.platform, "case15", 0), "ratio": "0.8", "min_stock": 10}))
        out.append(m("stock.rule", {"platform": pdd.platform, "shop_id": pdd.shop_id,
                                     "product_id": product_id(pdd.platform, "blanket"),
                                     "sku_id": sku_id(pdd.platform, "blanket", 1), "ratio": "0.5", "min_stock": 20}))
        return out

    # the day -------------------------------------------------------------------------------

    def the_day(self) -> list[Timed]:
        """Orders and what the shops report about them, in time order; one producer bug. The clock
        is the timeline's (``days``)."""
        r = self.rng
        timed: list[tuple[datetime, int, str, dict[str, Any]]] = []

        def at(when: datetime, subject: str, body: dict[str, Any]) -> None:
            timed.append((when, len(timed), subject, body))

        for o in self.orders:
            at(o.placed_at, "order.placed", self.placed_body(o))
            ref = {"platform": o.shop.platform, "shop_id": o.shop.shop_id, "order_id": o.order_id}
            t = o.placed_at
            if o.role == "cancel":
                when = t + timedelta(minutes=r.randint(5, 180))
                at(when, "order.cancelled", {**ref, "cancelled_at": iso(when)})
            elif o.role == "address":
                when = t + timedelta(minutes=r.randint(10, 120))
                buyer = dict(o.buyer, address=self._street())
                at(when, "order.address_changed", {**ref, "buyer": buyer, "changed_at": iso(when)})
            elif o.role == "review":
                at(t + timedelta(minutes=r.randint(2, 20)), "order.review",
                   {**ref, "under_review": True, "reason": "平台风控：收货信息异常"})
            elif o.role in ("refund_all", "refund_line"):
                opened = t + timedelta(minutes=r.randint(30, 300))
                aftersale_id = f"AS{opened:%Y%m%d}{r.randrange(10**8):08d}"
                body = {**ref, "aftersale_id": aftersale_id, "kind": "refund", "opened_at": iso(opened)}
                if o.role == "refund_line":
                    body["line_id"] = o.lines[-1].line_id
                at(opened, "aftersale.opened", body)
                outcome = r.choices(("refunded", "withdrawn", None), weights=(4, 3, 3))[0]
                if outcome:
                    closed = opened + timedelta(minutes=r.randint(40, 360))
                    at(closed, "aftersale.closed", {**ref, "aftersale_id": aftersale_id, "outcome": outcome,
                                                    "closed_at": iso(closed)})
                    if outcome == "refunded" and o.role == "refund_all":  # the platform closes the order
                        at(closed + timedelta(minutes=1), "order.cancelled",
                           {**ref, "cancelled_at": iso(closed + timedelta(minutes=1))})
        # a producer bug: a supplier's price feed sends a price as a JSON number (the same price it
        # sent as a string at the opening). It goes to the dead letters; nothing else happens.
        offer = OFFERS[-1]
        sku, _, price = offer.skus[0]
        at(self.start + timedelta(hours=9), "supplier.price", {
            "supplier_id": offer.supplier_id, "supplier_sku_id": sku, "price": float(price),
            "effective_from": iso(self.start - timedelta(days=60))})
        timed.sort(key=lambda x: (x[0], x[1]))
        return [Timed(when, "shop", (0, n), subject, body) for when, n, subject, body in timed]

    def placed_body(self, o: PlannedOrder) -> dict[str, Any]:
        lines = []
        for ln in o.lines:
            spec = PRODUCTS[ln.product]
            sku_spec = spec.skus[ln.k][0]
            line: dict[str, Any] = {"line_id": ln.line_id, "product_id": product_id(o.shop.platform, ln.product),
                                    "title": spec.title, "qty": ln.qty, "unit_price": f"{ln.price:.2f}"}
            if spec.sku_level:
                line["sku_id"] = sku_id(o.shop.platform, ln.product, ln.k)
                line["spec"] = sku_spec
            if (o.shop.platform, o.shop.shop_id, ln.product) == CODE_ONLY:
                line["merchant_code"] = CODES[sku_spec][0]
            lines.append(line)
        body: dict[str, Any] = {"platform": o.shop.platform, "shop_id": o.shop.shop_id, "order_id": o.order_id,
                                "placed_at": iso(o.placed_at), "buyer": o.buyer, "lines": lines}
        if o.channel:
            body["channel"] = o.channel
        if o.remark:
            body["remark"] = o.remark
        return body
