"""``DemoDay``: the generated day of one merchant as a deterministic timeline of four stages
(``play``): the opening, the day's orders, the suppliers' answers, this morning. The demo drives
its own clock: a ``clock.tick`` at each midnight of the timeline and at the start of the morning.

A stage is made only from the plan (``generator``) and what the stages before it caused once
applied (``reactions``), so every run of a seed and day publishes the same messages."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from adapters.demo.generator import PlannedOrder
from adapters.demo.reactions import Reactions, SupplierWork
from adapters.demo.scenario import (
    BULK,
    CODE_ONLY,
    CODES,
    FACTORY,
    FLASH,
    HOLD_OVER,
    HOLD_WORDS,
    LATE_LINK,
    MERCHANT,
    OFFERS,
    PRICE_RISE,
    PRODUCTS,
    SHOPS,
    SUPPLIERS,
    component,
    link_body,
    product_id,
    sku_id,
)
from adapters.demo.wire import Message, Stage, iso


class DemoDay(Reactions):
    """The generated day of one merchant: every message, deterministic for (seed, orders, day)."""

    # the timeline ---------------------------------------------------------------------------

    async def play(self, stage: Stage) -> SupplierWork:
        """The day's four stages, in order. A stage is made only from the plan and what the
        stages before it caused, once they are applied, never from anything that happens while
        messages are in flight; so the whole message sequence is the same on every run of a seed
        and day, and so are serve's decisions (the engine decides by message order, not by how
        the messages were batched). The restock (and the morning's clock tick) is dated at the
        broker's time of the suppliers' last answer, the latest time serve has seen, and so after
        the offer's publication; the other clock ticks are the timeline's midnights."""
        work = SupplierWork()
        await stage("opening: shops, suppliers, offers, links", self.opening())
        day = await stage(f"the day {self.day}: {self.n_orders:,} orders", self.the_day())
        answers = await stage("suppliers: tracking, intercept answers, a rejection", self.suppliers_answer(day.out, work))
        await stage("this morning: restock, a SKU replaced, pull, releases", self.morning(answers.out, work, answers.last_at))
        return work

    # stage 1: the opening ------------------------------------------------------------------

    def opening(self) -> list[Message]:
        m, out = self.msg, []
        for shop in SHOPS:
            out.append(m("shop.registered", {"platform": shop.platform, "shop_id": shop.shop_id,
                                              "merchant_id": MERCHANT}))
        out.append(m("merchant.settings", {
            "merchant_id": MERCHANT, "source_pool": False, "split_tolerance": "0.05",
            "hold_amount_over": str(HOLD_OVER), "hold_remark_words": list(HOLD_WORDS), "hold_out_of_stock": False,
            "split_lines": True}))  # RT12
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

    # stage 2: the day ----------------------------------------------------------------------

    def the_day(self) -> list[Message]:
        """Orders and what the shops report about them, in time order; one producer bug; the clock
        passing midnight (the factory's capacity is new again, RT13)."""
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
        midnight = self.start + timedelta(days=1)
        at(midnight, "clock.tick", {"at": iso(midnight)})
        timed.sort(key=lambda x: (x[0], x[1]))
        return [self.msg(subject, body) for _, _, subject, body in timed]

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
