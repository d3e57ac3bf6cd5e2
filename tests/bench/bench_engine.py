"""In-process routing rate of the engine, next to the raw event-store append rate (same run).

    python -m tests.bench.bench_engine [--orders N] [--quick] [--store sqlite|postgres|both]

Engine: `Reflow.place_order` for N orders of 2 lines each over 20 suppliers / 40 offers, each
routed, allocated and reserved in one atomic write. Raw: the same number of writes, each one
`insert_events` of as many events as an order wrote on average, with no domain work.
"""

from __future__ import annotations

import argparse
import secrets
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from uuid import uuid4

import psycopg
from eventsourcing.cipher import AESCipher
from eventsourcing.persistence import StoredEvent

from adapters.store import ensure_store, store_env
from engine.app import Reflow
from engine.values import LineIn
from tests.world import BUYER, T0, alt, comp, link, offer, sku, supplier


def make_app(kind: str, tmp: str) -> tuple[Reflow, callable]:
    if kind == "sqlite":
        url, cleanup = f"sqlite:///{tmp}/bench.db", (lambda: None)
    else:
        db = f"reflow_bench_{secrets.token_hex(4)}"
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
            c.execute(f"CREATE DATABASE {db}")
        url = f"postgresql://postgres@127.0.0.1:5432/{db}"

        def cleanup() -> None:
            with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as c:
                c.execute(f"DROP DATABASE {db} WITH (FORCE)")
    env = store_env(url, tmp)
    ensure_store(env)
    env["REFLOW_CIPHER_KEY"] = AESCipher.create_key(32)
    return Reflow(env), cleanup


def seed(app: Reflow) -> list[str]:
    products = []
    for s in range(20):
        supplier(app, f"S{s}", score=50 + s)
        for o in range(2):
            offer(app, f"S{s}", f"O{s}-{o}", {"a": 10**9, "b": 10**9}, price=f"{10 + s % 7}.{o}0")
    for p in range(50):
        s1, s2 = p % 20, (p * 7 + 3) % 20
        link(app, f"P{p}", sku("K1", alt(comp(f"S{s1}", f"O{s1}-0", "a")), alt(comp(f"S{s2}", f"O{s2}-1", "b"))))
        products.append(f"P{p}")
    return products


def run_engine(app: Reflow, products: list[str], n: int) -> tuple[float, float]:
    start_events = app.recorder.max_notification_id() or 0
    t = time.perf_counter()
    for i in range(n):
        lines = [LineIn(line_id=f"L{j}", product_id=products[(i + j * 13) % len(products)], sku_id="K1",
                        title="t", qty=1, unit_price=Decimal("39.90")) for j in range(2)]
        app.place_order("douyin", "bench", f"B{i}", T0 + timedelta(seconds=i), BUYER, lines)
    elapsed = time.perf_counter() - t
    events = (app.recorder.max_notification_id() or 0) - start_events
    return n / elapsed, events / n


def run_raw(app: Reflow, n: int, per_write: int) -> float:
    payload = b'{"x":"' + b"y" * 600 + b'"}'
    t = time.perf_counter()
    for _ in range(n):
        app.recorder.insert_events([
            StoredEvent(originator_id=uuid4(), originator_version=1, topic="bench:Raw", state=payload)
            for _ in range(per_write)
        ])
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--store", choices=["sqlite", "postgres", "both"], default="both")
    args = ap.parse_args()
    n = 100 if args.quick else args.orders
    kinds = ["sqlite", "postgres"] if args.store == "both" else [args.store]
    rows = []
    for kind in kinds:
        with tempfile.TemporaryDirectory() as tmp:
            app, cleanup = make_app(kind, tmp)
            try:
                products = seed(app)
                rate, per_order = run_engine(app, products, n)
                raw = run_raw(app, n, round(per_order))
                rows.append((kind, n, per_order, rate, raw))
            finally:
                app.close()
                cleanup()
    print(f"{'store':<9} {'orders':>7} {'events/order':>13} {'engine orders/s':>16} "
          f"{'raw writes/s':>13} {'ratio':>6}")
    for kind, n, per_order, rate, raw in rows:
        print(f"{kind:<9} {n:>7} {per_order:>13.1f} {rate:>16.0f} {raw:>13.0f} {rate / raw:>6.2f}")


if __name__ == "__main__":
    main()
