"""The day's counterparts: what the simulated suppliers answer to what ``REFLOW_OUT`` tells them
(tracking on time, late or slow; intercepts stopped, too late or ignored; one allocation rejected,
one never shipped; a return taken back), what the shops report once parcels are out (after-sales,
one parcel the merchant sends back to its supplier), and this morning (restock, an offer dropping a
SKU and the link mended, the late link and its pull, releases, a manual cancellation).

Each answer depends only on the seed and on what ``REFLOW_OUT`` says, never on timing: an
allocation's own random numbers decide it when its supplier first sees it. The answers wait in
``SupplierWork.pending`` until the timeline (``day``) reaches their time."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from adapters.demo.generator import DayPlan, PlannedOrder
from adapters.demo.scenario import (
    DAYS_AGO,
    DROP,
    DROP_LINK,
    FORGETFUL,
    LATE_LINK,
    LATE_MINUTES,
    OFFER_OF_SKU,
    OFFERS,
    REJECTER,
    REROUTE_OVERDUE_HOURS,
    SCARCE,
    SHOPS,
    SLOW_MINUTES,
    SUPPLIER,
    SupplierSpec,
    link_body,
    product_id,
)
from adapters.demo.wire import Message, Timed, iso, iso_exact, parse_time


@dataclass
class SupplierWork:
    """What the counterparts decided and not sent yet, and what they did."""

    pending: dict[str, Timed] = field(default_factory=dict)  # key -> a message waiting for its time
    sent: set[str] = field(default_factory=set)  # keys of the messages sent
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)  # allocation id -> its allocation message
    ships: dict[str, tuple[datetime, str, tuple]] = field(default_factory=dict)  # allocation -> (time, tracking_no, units)
    deadlines: dict[str, list[datetime]] = field(default_factory=dict)  # allocation -> its ship-by passing untracked (T4)
    answered: set[str] = field(default_factory=set)  # allocations whose intercept was answered, returns answered
    shipped_orders: set[tuple[str, str, str]] = field(default_factory=set)  # orders the shops saw shipped
    asked: dict[str, datetime] = field(default_factory=dict)  # allocation -> when the merchant sent it back (RC6)
    rejected: str | None = None  # the allocation its supplier rejected (RT11)
    forgotten: str | None = None  # the allocation its supplier never shipped (T4)

    @property
    def tracked_at(self) -> dict[str, datetime]:
        return {no: when for when, no, _ in self.ships.values()}

    @property
    def shipped_units(self) -> Counter:
        """(supplier, sku) -> units out."""
        out: Counter = Counter()
        for _, _, units in self.ships.values():
            out.update({(sup, sku): q for sup, sku, q in units})
        return out


class Reactions(DayPlan):
    """The suppliers' and the shops' answers to what the day caused, and this morning's messages."""

    @cached_property
    def by_key(self) -> dict[tuple[str, str, str], PlannedOrder]:
        return {o.key: o for o in self.orders}

    @cached_property
    def delivered(self) -> set[tuple[str, str, str]]:
        return {o.key for o in self.after_delivery}

    def send(self, work: SupplierWork, key: str, at: datetime, subject: str, body: dict[str, Any],
             side: str = "supplier") -> None:
        work.pending[key] = Timed(at, side, (1, key, subject), subject, body)

    def react(self, out: Iterable[tuple[str, dict[str, Any]]], work: SupplierWork) -> None:
        """What each counterpart does about the new REFLOW_OUT messages, in an order of their own
        (REFLOW_OUT's order within a batch is serve's business)."""
        allocations: dict[str, dict[str, Any]] = {}
        intercepts: dict[str, dict[str, Any]] = {}
        shipments: dict[tuple[str, str, str], dict[str, Any]] = {}
        returns: dict[str, tuple[str, dict[str, Any]]] = {}
        for subject, body in out:
            parts = subject.split(".")
            if parts[-1] == "allocation":
                allocations[body["allocation_id"]] = body
            elif parts[-1] == "intercept":
                intercepts.setdefault(body["allocation_id"], body)
            elif parts[-1] == "shipment":
                shipments[(parts[3], parts[4], body["order_id"])] = body
            elif parts[-1] == "return":
                returns[body["return_id"]] = (parts[3], body)
        for aid, a in sorted(allocations.items()):
            work.seen[aid] = a
            if aid not in intercepts:
                self._allocated(aid, a, work)
        for aid, body in sorted(intercepts.items()):
            self._intercepted(aid, body, work)
        for key, body in sorted(shipments.items()):
            self._shipped(key, body, work)
        for rid, (supplier_id, body) in sorted(returns.items()):
            self._take_back(supplier_id, rid, body, work)

    # the suppliers ----------------------------------------------------------------------------

    def _allocated(self, aid: str, a: dict[str, Any], work: SupplierWork) -> None:
        s = SUPPLIER[a["supplier_id"]]
        r = random.Random(f"reflow-demo/{self.seed}/{aid}")
        allocated_at, ship_by = parse_time(a["allocated_at"]), parse_time(a["ship_by"])
        ref = {"supplier_id": s.supplier_id, "allocation_id": aid}
        if (work.rejected is None and s.supplier_id == REJECTER and allocated_at < self.start + timedelta(hours=19)):
            # RT11: the supplier's first allocation of the day it cannot fill; before 19:00, when
            # everything its order went through that day is known (nothing else stops it)
            work.rejected = aid
            when = allocated_at + timedelta(minutes=r.randint(20, 90))
            self.send(work, aid, when, "allocation.rejected", {**ref, "reason": "out_of_stock",
                                                                "note": "仓库盘点：此款已断货", "rejected_at": iso(when)})
            return
        if self.overdue is not None and s.supplier_id == FORGETFUL and allocated_at == self.overdue.placed_at:
            work.forgotten = aid  # T4: never shipped; the clock must pass its ship-by, and the re-route
            work.deadlines[aid] = [ship_by, ship_by + timedelta(hours=REROUTE_OVERDUE_HOURS)]
            return
        x = r.random()
        if x < s.slow + s.late:
            low, high = SLOW_MINUTES if x < s.slow else LATE_MINUTES
            when = ship_by + timedelta(minutes=r.randint(low, high))
            work.deadlines[aid] = [ship_by]  # the reminder comes before the tracking (T4)
        else:
            room = (ship_by - allocated_at).total_seconds() / 60 - 10
            when = allocated_at + timedelta(minutes=r.randint(30, max(31, int(min(room, 20 * 60)))))
        tracking = self._tracking(s, r)
        work.ships[aid] = (when, tracking["tracking_no"], self._units(a))
        self.send(work, aid, when, "tracking.uploaded", {**ref, **tracking, "uploaded_at": iso(when)})

    def _intercepted(self, aid: str, i: dict[str, Any], work: SupplierWork) -> None:
        """Answered after it was asked, never before; instead of the tracking the supplier meant to
        send, unless that is out already (then the engine did not stop it)."""
        if aid in work.answered or aid not in work.seen or aid in work.sent:
            return
        work.answered.add(aid)
        for decided in (work.pending, work.ships, work.deadlines):
            decided.pop(aid, None)
        a = work.seen[aid]
        s = SUPPLIER[a["supplier_id"]]
        r = random.Random(f"reflow-demo/{self.seed}/{aid}/intercept")
        allocated_at, asked, reason = parse_time(a["allocated_at"]), parse_time(i["requested_at"]), i["reason"]
        ref = {"supplier_id": s.supplier_id, "allocation_id": aid}
        x = r.random()
        if x < s.ignores and reason != "overdue":  # shipped anyway: the upload is refused and recorded (I7)
            when = max(allocated_at + timedelta(minutes=r.randint(60, 600)), asked + timedelta(minutes=10))
            self.send(work, aid, when, "tracking.uploaded", {**ref, **self._tracking(s, r), "uploaded_at": iso(when)})
        elif x < s.ignores + s.too_late and not reason.startswith(("review", "overdue")):
            when = max(allocated_at + timedelta(minutes=r.randint(120, 480)), asked + timedelta(minutes=5))
            tracking = self._tracking(s, r)
            work.ships[aid] = (when, tracking["tracking_no"], self._units(a))
            self.send(work, aid, when, "intercept.answered",
                      {**ref, "outcome": "too_late", **tracking, "answered_at": iso(when)})
        else:
            when = asked + timedelta(minutes=r.randint(5, 120))
            self.send(work, aid, when, "intercept.answered", {**ref, "outcome": "stopped", "answered_at": iso(when)})

    def _take_back(self, supplier_id: str, rid: str, body: dict[str, Any], work: SupplierWork) -> None:
        """RC6: the supplier takes back the parcel the merchant sent back."""
        asked = work.asked.get(body["allocation_id"])
        if asked is None or rid in work.answered:
            return
        work.answered.add(rid)
        when = asked + timedelta(minutes=random.Random(f"reflow-demo/{self.seed}/{rid}").randint(120, 480))
        self.send(work, f"return/{rid}", when, "return.answered", {"supplier_id": supplier_id, "return_id": rid,
                                                                   "outcome": "accepted", "answered_at": iso(when)})

    @staticmethod
    def _units(a: dict[str, Any]) -> tuple:
        return tuple((a["supplier_id"], x["supplier_sku_id"], x["qty"]) for x in a["lines"])

    @staticmethod
    def _tracking(s: SupplierSpec, r: random.Random) -> dict[str, str]:
        carrier = r.choice(s.carriers)
        digits = "".join(r.choice("0123456789") for _ in range(12))
        number = {"ZTO": "7" + digits + "1", "YTO": "YT" + digits + "0", "STO": "77" + digits,
                  "YUNDA": "43" + digits[:11], "SF": "SF" + digits + "3", "JD": "JDVA" + digits[:11]}[carrier]
        return {"carrier": carrier, "tracking_no": number}

    # the shops, once parcels are out ----------------------------------------------------------

    def _shipped(self, key: tuple[str, str, str], body: dict[str, Any], work: SupplierWork) -> None:
        """After-sales of delivered parcels (I2); the story's return goes back to its supplier (RC6)."""
        o = self.by_key.get(key)
        tracked = work.tracked_at
        times = [tracked.get(p["tracking_no"]) for p in body["packages"]]
        if o is None or key in work.shipped_orders or not times or not all(times):
            return
        work.shipped_orders.add(key)
        ref = {"platform": o.shop.platform, "shop_id": o.shop.shop_id, "order_id": o.order_id}
        if o is self.returned:
            r = random.Random(f"reflow-demo/{self.seed}/{o.order_id}/return")
            opened = max(times) + timedelta(hours=r.randint(20, 30))  # delivered, and the buyer sends it back
            aftersale_id = f"AS{opened:%Y%m%d}{r.randrange(10**8):08d}"
            self.send(work, f"{o.order_id}/aftersale", opened, "aftersale.opened",
                      {**ref, "aftersale_id": aftersale_id, "kind": "return", "opened_at": iso(opened)}, "shop")
            asked = opened + timedelta(minutes=r.randint(60, 240))  # the merchant sends it back to the supplier
            self.send(work, f"{o.order_id}/return", asked, "return.requested",
                      {**ref, "aftersale_id": aftersale_id, "requested_at": iso(asked)}, "shop")
            allocation = {no: aid for aid, (_, no, _) in work.ships.items()}
            for p in body["packages"]:
                work.asked[allocation[p["tracking_no"]]] = asked
        elif key in self.delivered:
            r = random.Random(f"reflow-demo/{self.seed}/{o.order_id}/aftersale")
            last_moment = self.start + timedelta(days=DAYS_AGO - 1, hours=23)
            opened = min(max(times) + timedelta(minutes=r.randint(240, 1800)), last_moment)
            kind = r.choices(("return", "refund", "exchange"), weights=(5, 3, 2))[0]
            after = {**ref, "aftersale_id": f"AS{opened:%Y%m%d}{r.randrange(10**8):08d}", "kind": kind,
                     "opened_at": iso(opened)}
            if len(o.lines) > 1:
                after["line_id"] = o.lines[0].line_id
            self.send(work, f"{o.order_id}/aftersale", opened, "aftersale.opened", after, "shop")

    # this morning ----------------------------------------------------------------------------

    def morning(self, work: SupplierWork, at: datetime) -> list[Message]:
        """Restock, the clock, the late link and its pull, releases, a manual cancel.

        ``at`` dates the restock and the clock: the broker's time of the last message before the
        morning. The engine ignores a stock report older than what it knows, and the offer's stock
        counts from the broker's time of its publication; the demo's own clock (and to the second)
        could fall before that on a fast run, and the restock would be dropped (issue 19)."""
        m, msgs = self.msg, []
        supplier_id, sku = SCARCE
        initial = self.stock[SCARCE]
        arrived = max(2, initial // 2)
        msgs.append(m("supplier.stock", {
            "supplier_id": supplier_id, "offer_id": OFFER_OF_SKU[SCARCE], "supplier_sku_id": sku,
            "stock": max(0, initial - work.shipped_units[SCARCE]) + arrived, "at": iso_exact(at)}))
        msgs.append(m("clock.tick", {"at": iso_exact(at)}))  # this morning: the clock catches up
        msgs += self._sku_dropped(work)
        shop = next(s for s in SHOPS if (s.platform, s.shop_id) == LATE_LINK[:2])
        msgs.append(m("link.set", link_body(shop, LATE_LINK[2])))
        msgs.append(m("prelink.pull", {"platform": shop.platform, "shop_id": shop.shop_id,
                                        "product_id": product_id(shop.platform, LATE_LINK[2]), "window_days": 30}))
        shop = next(s for s in SHOPS if (s.platform, s.shop_id) == DROP_LINK[:2])  # L11: the merchant mends it
        msgs.append(m("link.set", link_body(shop, DROP_LINK[2], swap={DROP[2]: DROP[3][0]})))
        released = []
        for role in ("review", "held"):
            waiting = [o for o in self.orders if o.role == role]
            for o in waiting[:-1]:  # the last one stays for the merchant to look at
                ref = {"platform": o.shop.platform, "shop_id": o.shop.shop_id, "order_id": o.order_id}
                if role == "review":
                    msgs.append(m("order.review", {**ref, "under_review": False, "reason": "审核通过"}))
                else:
                    msgs.append(m("order.released", ref))
                    released.append(ref)
        # the merchant cancels a released order's allocations by hand: the buyer asked to wait (I5)
        for ref in released[:1]:
            msgs.append(m("allocation.cancel", {**ref, "reason": "商家手动取消：买家要求暂缓发货"}))
        return msgs

    def _sku_dropped(self, work: SupplierWork) -> list[Message]:
        """L11: a supplier republishes an offer with one SKU replaced by a new one (and its price);
        the links using the old SKU break until the merchant points them at the new one."""
        supplier_id, offer_id, dropped, (new_sku, new_spec, new_price) = DROP
        offer = next(o for o in OFFERS if (o.supplier_id, o.offer_id) == (supplier_id, offer_id))
        shipped = work.shipped_units
        skus = [{"supplier_sku_id": sku, "spec": spec,
                 "stock": max(0, self.stock[(supplier_id, sku)] - shipped[(supplier_id, sku)])}
                for sku, spec, _ in offer.skus if sku != dropped]
        skus.append({"supplier_sku_id": new_sku, "spec": new_spec, "stock": 200})
        return [self.msg("supplier.offer", {"supplier_id": supplier_id, "offer_id": offer_id, "title": offer.title,
                                            "on_shelf": True, "skus": skus}),
                self.msg("supplier.price", {"supplier_id": supplier_id, "supplier_sku_id": new_sku, "price": new_price,
                                            "effective_from": iso(self.start - timedelta(days=60))})]
