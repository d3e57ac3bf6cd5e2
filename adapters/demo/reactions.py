"""Stages 3 and 4 of the day: what the simulated suppliers answer to what ``REFLOW_OUT`` told them
(tracking on time or late, intercepts stopped, too late or ignored, one allocation rejected), and
what happens this morning (restock, an offer dropping a SKU and the link mended, the late link and
its pull, releases, returns, a manual cancellation).

Each answer depends only on the seed and on what ``REFLOW_OUT`` says, never on timing."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from adapters.demo.generator import DayPlan
from adapters.demo.scenario import (
    DAYS_AGO,
    DROP,
    DROP_LINK,
    LATE_LINK,
    OFFER_OF_SKU,
    OFFERS,
    REJECTER,
    SCARCE,
    SHOPS,
    SUPPLIER,
    SupplierSpec,
    link_body,
    product_id,
)
from adapters.demo.wire import Message, iso, iso_exact, parse_time


@dataclass
class SupplierWork:
    """What the simulated suppliers did (the morning needs it: returns, restock, cancellation)."""

    tracked_at: dict[str, datetime] = field(default_factory=dict)  # tracking_no -> upload time
    untracked: list[str] = field(default_factory=list)  # allocations still waiting for the supplier
    shipped_units: Counter = field(default_factory=Counter)  # (supplier, sku) -> units out


class Reactions(DayPlan):
    """The suppliers' answers and this morning's messages, made from what the day caused."""

    # stage 3: the suppliers ----------------------------------------------------------------

    def suppliers_answer(self, out: Iterable[tuple[str, dict[str, Any]]], work: SupplierWork) -> list[Message]:
        """Each supplier's answers to what REFLOW_OUT told it, in the order they happen."""
        allocations: dict[str, dict[str, Any]] = {}
        intercepts: dict[str, str] = {}
        requested: dict[str, datetime] = {}
        for subject, body in out:
            if subject.endswith(".allocation"):
                allocations[body["allocation_id"]] = body
            elif subject.endswith(".intercept"):
                intercepts.setdefault(body["allocation_id"], body["reason"])
                requested.setdefault(body["allocation_id"], parse_time(body["requested_at"]))
        allocations = dict(sorted(allocations.items()))
        # RT11: the supplier's first allocation not stopped is one it cannot fill after all
        rejected = next((aid for aid, a in allocations.items() if a["supplier_id"] == REJECTER and aid not in intercepts),
                        None)
        timed: list[tuple[datetime, str, str, dict[str, Any]]] = []
        for k in range(2, DAYS_AGO):  # the clock passes each midnight of the answers
            midnight = self.start + timedelta(days=k)
            timed.append((midnight, "", "clock.tick", {"at": iso(midnight)}))
        for aid, a in allocations.items():
            s = SUPPLIER[a["supplier_id"]]
            r = random.Random(f"reflow-demo/{self.seed}/{aid}")
            allocated_at, ship_by = parse_time(a["allocated_at"]), parse_time(a["ship_by"])
            ref = {"supplier_id": s.supplier_id, "allocation_id": aid}
            units = [(s.supplier_id, x["supplier_sku_id"], x["qty"]) for x in a["lines"]]
            if aid == rejected:  # before any tracking; its lines go to the next source at once
                when = allocated_at + timedelta(minutes=r.randint(20, 90))
                timed.append((when, aid, "allocation.rejected", {**ref, "reason": "out_of_stock",
                                                                 "note": "仓库盘点：此款已断货", "rejected_at": iso(when)}))
                continue
            if aid in intercepts:  # answered after it was asked, never before (the demo's own timeline)
                asked = requested[aid]
                x = r.random()
                if x < s.ignores:  # shipped anyway: the upload is refused and recorded (I7)
                    when = max(allocated_at + timedelta(minutes=r.randint(60, 600)), asked + timedelta(minutes=10))
                    timed.append((when, aid, "tracking.uploaded", {**ref, **self._tracking(s, r), "uploaded_at": iso(when)}))
                elif x < s.ignores + s.too_late and not intercepts[aid].startswith("review"):
                    when = max(allocated_at + timedelta(minutes=r.randint(120, 480)), asked + timedelta(minutes=5))
                    tracking = self._tracking(s, r)
                    work.tracked_at[tracking["tracking_no"]] = when
                    work.shipped_units.update({(sup, sku): q for sup, sku, q in units})
                    timed.append((when, aid, "intercept.answered",
                                   {**ref, "outcome": "too_late", **tracking, "answered_at": iso(when)}))
                else:
                    when = asked + timedelta(minutes=r.randint(5, 120))
                    timed.append((when, aid, "intercept.answered", {**ref, "outcome": "stopped", "answered_at": iso(when)}))
                continue
            x = r.random()
            if x < s.slow:
                work.untracked.append(aid)
                continue
            if x < s.slow + s.late:
                when = ship_by + timedelta(minutes=r.randint(45, 600))
            else:
                room = (ship_by - allocated_at).total_seconds() / 60 - 10
                when = allocated_at + timedelta(minutes=r.randint(30, max(31, int(min(room, 20 * 60)))))
            tracking = self._tracking(s, r)
            work.tracked_at[tracking["tracking_no"]] = when
            work.shipped_units.update({(sup, sku): q for sup, sku, q in units})
            timed.append((when, aid, "tracking.uploaded", {**ref, **tracking, "uploaded_at": iso(when)}))
        timed.sort(key=lambda x: (x[0], x[1]))
        return [self.msg(subject, body) for _, _, subject, body in timed]

    @staticmethod
    def _tracking(s: SupplierSpec, r: random.Random) -> dict[str, str]:
        carrier = r.choice(s.carriers)
        digits = "".join(r.choice("0123456789") for _ in range(12))
        number = {"ZTO": "7" + digits + "1", "YTO": "YT" + digits + "0", "STO": "77" + digits,
                  "YUNDA": "43" + digits[:11], "SF": "SF" + digits + "3", "JD": "JDVA" + digits[:11]}[carrier]
        return {"carrier": carrier, "tracking_no": number}

    # stage 4: this morning -----------------------------------------------------------------

    def morning(self, out: Iterable[tuple[str, dict[str, Any]]], work: SupplierWork, at: datetime) -> list[Message]:
        """Restock, the late link and its pull, releases, returns after delivery, a manual cancel.

        ``at`` dates the restock: the broker's time of the last message before the morning. The
        engine ignores a stock report older than what it knows, and the offer's stock counts from
        the broker's time of its publication; the demo's own clock (and to the second) could fall
        before that on a fast run, and the restock would be dropped (issue 19)."""
        r = random.Random(f"reflow-demo/{self.seed}/morning")
        m, msgs = self.msg, []
        msgs.append(m("clock.tick", {"at": iso_exact(at)}))  # this morning: the clock catches up
        supplier_id, sku = SCARCE
        initial = self.stock[SCARCE]
        arrived = max(2, initial // 2)
        msgs.append(m("supplier.stock", {
            "supplier_id": supplier_id, "offer_id": OFFER_OF_SKU[SCARCE], "supplier_sku_id": sku,
            "stock": max(0, initial - work.shipped_units[SCARCE]) + arrived, "at": iso_exact(at)}))
        msgs += self._sku_dropped(work)
        shop = next(s for s in SHOPS if (s.platform, s.shop_id) == LATE_LINK[:2])
        msgs.append(m("link.set", link_body(shop, LATE_LINK[2])))
        msgs.append(m("prelink.pull", {"platform": shop.platform, "shop_id": shop.shop_id,
                                        "product_id": product_id(shop.platform, LATE_LINK[2]), "window_days": 30}))
        shop = next(s for s in SHOPS if (s.platform, s.shop_id) == DROP_LINK[:2])  # L11: the merchant mends it
        msgs.append(m("link.set", link_body(shop, DROP_LINK[2], swap={DROP[2]: DROP[3][0]})))
        for role in ("review", "held"):
            waiting = [o for o in self.orders if o.role == role]
            for o in waiting[:-1]:  # the last one stays for the merchant to look at
                ref = {"platform": o.shop.platform, "shop_id": o.shop.shop_id, "order_id": o.order_id}
                if role == "review":
                    msgs.append(m("order.review", {**ref, "under_review": False, "reason": "审核通过"}))
                else:
                    msgs.append(m("order.released", ref))
        # returns after delivery (I2): the shops saw the shipments and the consumers' requests
        orders = {(o.shop.platform, o.shop.shop_id, o.order_id): o for o in self.orders}
        shipped = []
        for subject, body in out:
            if subject.endswith(".shipment"):
                _, _, _, platform, shop_id, _ = subject.split(".")
                o = orders.get((platform, shop_id, body["order_id"]))
                times = [work.tracked_at.get(p["tracking_no"]) for p in body["packages"]]
                if o is not None and o.role == "plain" and all(times):
                    shipped.append((o, max(times)))
        last_moment = self.start + timedelta(days=DAYS_AGO - 1, hours=23)
        shipped.sort(key=lambda x: x[0].key)  # REFLOW_OUT's order within a batch is serve's business
        for o, tracked in r.sample(shipped, k=min(len(shipped), max(3, len(shipped) * 4 // 100))):
            opened = min(tracked + timedelta(minutes=r.randint(240, 1800)), last_moment)
            kind = r.choices(("return", "refund", "exchange"), weights=(5, 3, 2))[0]
            body = {"platform": o.shop.platform, "shop_id": o.shop.shop_id, "order_id": o.order_id,
                    "aftersale_id": f"AS{opened:%Y%m%d}{r.randrange(10**8):08d}", "kind": kind,
                    "opened_at": iso(opened)}
            if len(o.lines) > 1:
                body["line_id"] = o.lines[0].line_id
            msgs.append(m("aftersale.opened", body))
        # the merchant cancels one allocation by hand: the buyer asked to wait (I5)
        for aid in sorted(work.untracked)[:1]:
            msgs.append(m("allocation.cancel", {"allocation_id": aid, "reason": "商家手动取消：买家要求暂缓发货"}))
        return msgs

    def _sku_dropped(self, work: SupplierWork) -> list[Message]:
        """L11: a supplier republishes an offer with one SKU replaced by a new one (and its price);
        the links using the old SKU break until the merchant points them at the new one."""
        supplier_id, offer_id, dropped, (new_sku, new_spec, new_price) = DROP
        offer = next(o for o in OFFERS if (o.supplier_id, o.offer_id) == (supplier_id, offer_id))
        skus = [{"supplier_sku_id": sku, "spec": spec,
                 "stock": max(0, self.stock[(supplier_id, sku)] - work.shipped_units[(supplier_id, sku)])}
                for sku, spec, _ in offer.skus if sku != dropped]
        skus.append({"supplier_sku_id": new_sku, "spec": new_spec, "stock": 200})
        return [self.msg("supplier.offer", {"supplier_id": supplier_id, "offer_id": offer_id, "title": offer.title,
                                            "on_shelf": True, "skus": skus}),
                self.msg("supplier.price", {"supplier_id": supplier_id, "supplier_sku_id": new_sku, "price": new_price,
                                            "effective_from": iso(self.start - timedelta(days=60))})]
