"""Replay benchmark (a script run by hand; pytest does not collect it): pull pre-link orders among a
large stored history, and a full `verify`, each beside the raw rate of reading the notification log.

    python -m tests.bench.bench_replay                       # 1,000,000 orders, 10,000 pending
    python -m tests.bench.bench_replay --orders 100000       # smaller
    python -m tests.bench.bench_replay --keep /tmp/replay-bench  # keep (or reuse) the store there

How the history is built quickly. Routing a million orders through the engine would take 20 to 60
minutes on this 2-core machine, so the orders are written without routing, in big batches straight into the
application's recorder (`app.recorder.insert_events`, 20,000 events per write) through its own
mapper (`app.mapper.to_stored_event`). The events are the real ones and carry a real hash chain:
each is made by `Aggregate.trigger` on in-memory aggregates (so every `prev` is right). Suppliers,
offers, prices and links are made by the engine itself first. Per routed order: `OrderPlaced`
(buyer sealed with the app's cipher; 1,000 distinct buyers cycled), `OrderRouted` (one line, two
candidate alternatives with their facts, the decision made by the real policy `decide`),
`Allocated` and `StockReserved` (on one of 40 offers): 4 events, the same as the engine writes.
The pending orders are for one product that has no link yet, spread through the history and all
inside the 30-day window: `OrderPlaced`, `OrderRouted` (no_link) and `LinesParked` on the product's
`Backlog`, as the engine writes them. Then the product is linked by the engine and pulled.

Measured, in one run: (1) raw read: `recorder.select_notifications` (5,000 a page) + `decode_event`
of every notification, events/s; (2) the pull (`replay.prelink.pull`, real routing, 32 orders per
unit of work), orders/s, and how long finding its candidates took (one `Backlog` aggregate read);
(3) `replay.verify.verify` over everything (bytes, chain, references, RT6 re-run of every
decision), events/s and orders/s; (4) the raw read again (the page cache is warm for both).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.table import Table

from engine import ids
from engine.allocations import Allocation, AllocLine
from engine.backlog import Backlog, Parked
from engine.catalog import Offer
from engine.orders import Order
from engine.policy import CandidateFacts, ComponentFacts, LineFacts, RoutingInput, decide
from engine.privacy import mask, recipient_token, seal
from engine.servicelevel import ship_by
from engine.values import AllocRef, Buyer, LineIn, SkuQty
from tests.bench.bench_projection import raw_rate

SHOP = ("douyin", "bench-shop")
PRE = "P-PRE"
BATCH_EVENTS = 20_000
PULL_AT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SPAN = timedelta(days=20)


def open_store(path: Path):
    from eventsourcing.cipher import AESCipher

    from adapters.store import ensure_store, store_env
    from engine.app import Reflow

    path.mkdir(parents=True, exist_ok=True)
    key_file = path / "bench.key"
    if not key_file.exists():
        key_file.write_text(AESCipher.create_key(32))
    env = store_env(f"sqlite:///{path}/events.db", path)
    ensure_store(env)
    env["REFLOW_CIPHER_KEY"] = key_file.read_text()
    return Reflow(env)


def seed_catalog(app) -> dict:
    from tests.world import alt, comp, link, offer, sku, supplier

    for s in range(20):
        supplier(app, f"S{s}", score=50 + s)
        for o in range(2):
            offer(app, f"S{s}", f"O{s}-{o}", {"a": 10**9, "b": 10**9}, price=f"{10 + s % 7}.{o}0")
    products = {}
    for p in range(50):
        s1, s2 = p % 20, (p * 7 + 3) % 20
        link(app, f"P{p}", sku("K1", alt(comp(f"S{s1}", f"O{s1}-0", "a")), alt(comp(f"S{s2}", f"O{s2}-1", "b"))),
             shop=SHOP)
        products[f"P{p}"] = ((f"S{s1}", f"O{s1}-0", "a", Decimal(f"{10 + s1 % 7}.00"), 50 + s1),
                             (f"S{s2}", f"O{s2}-1", "b", Decimal(f"{10 + s2 % 7}.10"), 50 + s2))
    supplier(app, "SP", score=88)
    offer(app, "SP", "OP", {"a": 10**9}, price="8.80")
    return products


class Writer:
    """Events made with `Aggregate.trigger` on in-memory aggregates, written in big batches."""

    def __init__(self, app, console: Console) -> None:
        self.app, self.console = app, console
        self.pending: list = []
        self.written = 0
        self.offers: dict[str, Offer] = {}

    def add(self, *aggregates) -> None:
        for agg in aggregates:
            self.pending += agg.collect_events()
        if len(self.pending) >= BATCH_EVENTS:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            to_stored = self.app.mapper.to_stored_event
            self.app.recorder.insert_events([to_stored(e) for e in self.pending])
            self.written += len(self.pending)
            self.pending = []

    def offer(self, supplier_id: str, offer_id: str) -> Offer:
        key = f"{supplier_id}/{offer_id}"
        if key not in self.offers:
            self.offers[key] = self.app.load(Offer, ids.offer_id(supplier_id, offer_id))
        return self.offers[key]


def build(app, orders: int, pending: int, console: Console) -> None:
    products = seed_catalog(app)
    names = sorted(products)
    buyers = []
    for b in range(1000):
        buyer = Buyer(name=f"张{b}", phone=f"138{b:08d}", province="浙江省", city="杭州市", district="西湖区",
                      address=f"文三路{b}号")
        buyers.append((buyer, seal(app.cipher, buyer), mask(buyer)))
    decisions: dict[str, tuple[RoutingInput, object]] = {}
    w = Writer(app, console)
    backlog = Backlog(ids.backlog_id(*SHOP, PRE))
    every = max(orders // max(pending, 1), 1)
    started = time.perf_counter()
    made_pending = 0
    for i in range(orders):
        at = PULL_AT - SPAN + SPAN * (i / orders)
        buyer, sealed, recipient = buyers[i % len(buyers)]
        product = names[i % len(names)]
        order_id = f"H{i}"
        order = Order(ids.order_id(*SHOP, order_id))
        line = LineIn(line_id="1", product_id=product, sku_id="K1", title=f"Product {product}", qty=1,
                      unit_price=Decimal("39.90"))
        order.place(at, platform=SHOP[0], shop_id=SHOP[1], order_id=order_id, merchant_id="default",
                      lines=(line,), region=buyer.region, sealed_buyer=sealed, channel=SHOP[0])
        if product not in decisions:
            cands = tuple(
                CandidateFacts(index=k, components=(ComponentFacts(
                    supplier_id=s, offer_id=o, supplier_sku_id=sk, qty=1, need=1, supplier_active=True,
                    on_shelf=True, available=10**9, unit_cost=cost, score=score),))
                for k, (s, o, sk, cost, score) in enumerate(products[product]))
            inp = RoutingInput(at=at, province=buyer.province, lines=(LineFacts(
                line_id="1", qty=1, candidates=cands, link_version=1, matched_by="sku"),))
            decisions[product] = (inp, decide(inp))
        inp, decision = decisions[product]
        chosen = products[product][decision.lines[0].chosen]
        supplier_id, offer_id, sku_id, cost, _ = chosen
        allocation_id = ids.new_allocation_id(*SHOP, order_id, supplier_id, 0)
        order.record_route(inp, decision, (AllocRef(allocation_id=allocation_id, supplier_id=supplier_id, line_ids=("1",)),),
                           "placed", at)
        alloc = Allocation(ids.allocation_uuid(allocation_id))
        alloc.allocate(at, allocation_id=allocation_id, platform=SHOP[0], shop_id=SHOP[1],
                      order_id=order_id, merchant_id="default", supplier_id=supplier_id,
                      lines=(AllocLine(line_id="1", offer_id=offer_id, supplier_sku_id=sku_id, title=f"Offer {offer_id}",
                                       spec=f"spec {sku_id}", qty=1, unit_cost=cost, amount=cost, product_id=product,
                                       link_version=1),),
                      recipient=recipient, recipient_token=recipient_token(app.token_key, f"{SHOP}/{order_id}", sealed),
                      ship_by=ship_by(at, 48), channel=SHOP[0], trigger="placed")
        offer = w.offer(supplier_id, offer_id)
        offer.reserve(allocation_id, (SkuQty(supplier_sku_id=sku_id, qty=1),), at)
        w.add(order, alloc, offer)
        if made_pending < pending and i % every == 0:
            made_pending += 1
            pend = Order(ids.order_id(*SHOP, f"W{i}"))
            wline = LineIn(line_id="1", product_id=PRE, sku_id="K1", title="Pre-link product", qty=1,
                           unit_price=Decimal("59.00"))
            pend.place(at, platform=SHOP[0], shop_id=SHOP[1], order_id=f"W{i}", merchant_id="default",
                         lines=(wline,), region=buyer.region, sealed_buyer=sealed, channel=SHOP[0])
            no_link = RoutingInput(at=at, province=buyer.province,
                                   lines=(LineFacts(line_id="1", qty=1, candidates=()),))
            pend.record_route(no_link, decide(no_link), (), "placed", at)
            backlog.park(SHOP[0], SHOP[1], PRE, Parked(order_id=f"W{i}", reason="no_link", placed_at=at))
            w.add(pend, backlog)
        if (i + 1) % 100_000 == 0:
            rate = (i + 1) / (time.perf_counter() - started)
            console.log(f"{i + 1:,} orders, {w.written + len(w.pending):,} events, {rate:,.0f} orders/s")
    w.flush()
    console.log(f"built {orders:,} orders + {made_pending:,} pending in {time.perf_counter() - started:.0f} s")


def main() -> None:
    from replay.prelink import candidates, pull
    from replay.verify import verify
    from tests.world import alt, comp, link, sku

    parser = argparse.ArgumentParser()
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--pending", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="build the store here (or reuse the one there)")
    args = parser.parse_args()
    console = Console(width=150)
    path = args.keep or Path(tempfile.mkdtemp(prefix="reflow-replay-bench-"))
    app = open_store(path)
    if not (app.recorder.max_notification_id() or 0):
        build(app, args.orders, args.pending, console)
    else:
        console.log(f"reusing {path}/events.db")
    events = app.recorder.max_notification_id()
    size = os.path.getsize(path / "events.db") / 1e9
    console.log(f"store: {events:,} events, {size:.1f} GB")

    raw1_n, raw1_s = raw_rate(app)
    console.log(f"raw read: {raw1_n:,} in {raw1_s:.1f} s")
    t = time.perf_counter()
    todo, _ = candidates(app, *SHOP, PRE, 30, PULL_AT)
    find_s = time.perf_counter() - t
    console.log(f"candidates: {len(todo):,} in {find_s:.2f} s")
    link(app, PRE, sku("K1", alt(comp("SP", "OP", "a"))), at=PULL_AT - timedelta(minutes=5), shop=SHOP)
    t = time.perf_counter()
    report = pull(app, *SHOP, PRE, at=PULL_AT)
    pull_s = time.perf_counter() - t
    console.log(f"pull: {len(report.routed):,} routed ({report.allocated:,} allocated) in {pull_s:.1f} s")
    t = time.perf_counter()
    again = pull(app, *SHOP, PRE, at=PULL_AT)
    again_s = time.perf_counter() - t
    result = verify(app, anchor=False)
    assert result.ok, result.problem.line()
    console.log(f"verify: {result.events:,} events in {result.seconds:.1f} s, {result.decisions:,} decisions")
    raw2_n, raw2_s = raw_rate(app)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    raw = max(raw1_n / raw1_s, raw2_n / raw2_s)
    orders_in_store = result.decisions
    table = Table(title=f"replay over {args.orders:,} orders ({result.events:,} events, {size:.1f} GB SQLite), "
                        f"peak RSS {peak:.1f} GB")
    for col in ("measure", "count", "seconds", "rate", "raw read rate", "ratio"):
        table.add_column(col, justify="right")
    table.add_row("raw read + decode (1st)", f"{raw1_n:,} events", f"{raw1_s:.1f}", f"{raw1_n / raw1_s:,.0f} ev/s", "", "")
    table.add_row("raw read + decode (2nd)", f"{raw2_n:,} events", f"{raw2_s:.1f}", f"{raw2_n / raw2_s:,.0f} ev/s", "", "")
    table.add_row("pull: find candidates (Backlog)", f"{len(todo):,} orders", f"{find_s:.2f}", "", "", "")
    if report.routed:  # (a reused store was pulled already)
        table.add_row("pull pre-link (route, store)", f"{len(report.routed):,} orders", f"{pull_s:.1f}",
                      f"{len(report.routed) / pull_s:,.0f} orders/s", f"{raw:,.0f} ev/s",
                      f"{len(report.routed) / pull_s / raw:.3f}")
    table.add_row("second pull (nothing to do)", f"{len(again.routed)} orders", f"{again_s:.2f}", "", "", "")
    table.add_row("verify (all checks, RT6 re-run)", f"{result.events:,} events", f"{result.seconds:.1f}",
                  f"{result.events / result.seconds:,.0f} ev/s", f"{raw:,.0f} ev/s",
                  f"{result.events / result.seconds / raw:.2f}")
    table.add_row("verify, per order", f"{orders_in_store:,} decisions", f"{result.seconds:.1f}",
                  f"{orders_in_store / result.seconds:,.0f} orders/s", "", "")
    console.print(table)
    app.close()


if __name__ == "__main__":
    main()
