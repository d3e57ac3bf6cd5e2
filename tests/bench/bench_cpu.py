"""Engine CPU per order, in memory, next to the raw cost of storing the same events (same run).

    python -m tests.bench.bench_cpu [--orders N] [--rounds R]

Engine: `Reflow.run_batch` of `PlaceOrder` commands (two lines each, over 10 suppliers and 20
linked products), in batches of 256, on eventsourcing's in-memory store, so no disk or network is
in the figure: what the domain costs (decode nothing, route, record the decision, reserve, seal,
chain and encode the events). Raw: the same events, already made, appended in the same batches to
a fresh in-memory store (the mapper's encoding and the recorder, no domain work). CPU time
(`time.process_time`), best and median of the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time

from eventsourcing.cipher import AESCipher

from engine.app import Reflow
from engine.commands import PlaceOrder
from tests.world import BUYER, SHOP, T0, alt, comp, line, link, offer, sku, supplier

BATCH = 256


def world() -> Reflow:
    app = Reflow({"PERSISTENCE_MODULE": "eventsourcing.popo", "REFLOW_CIPHER_KEY": AESCipher.create_key(32)})
    for s in range(10):
        supplier(app, f"S{s}")
        offer(app, f"S{s}", f"O{s}", {"a": 10**8, "b": 10**8})
    for p in range(20):
        link(app, f"P{p}", sku("K1", alt(comp(f"S{p % 10}", f"O{p % 10}", "a")),
                               alt(comp(f"S{(p + 1) % 10}", f"O{(p + 1) % 10}", "b"))))
    return app


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.bench_cpu", description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=2048)
    ap.add_argument("--rounds", type=int, default=6)
    args = ap.parse_args()
    app = world()
    engine, raw = [], []
    for r in range(args.rounds):
        orders = [PlaceOrder(at=T0, platform=SHOP[0], shop_id=SHOP[1], order_id=f"X{r}-{i}", buyer=BUYER,
                             lines=(line("L1", f"P{i % 20}"), line("L2", f"P{(i + 7) % 20}")))
                  for i in range(args.orders)]
        start = app.recorder.max_notification_id() or 0
        t = time.process_time()
        for b in range(0, len(orders), BATCH):
            app.run_batch(orders[b:b + BATCH])
        engine.append((time.process_time() - t) / len(orders))
        made = [app.mapper.to_domain_event(n) for n in
                app.recorder.select_notifications(start + 1, 10**9, inclusive_of_start=True)]
        fresh = Reflow({"PERSISTENCE_MODULE": "eventsourcing.popo", "REFLOW_CIPHER_KEY": app._cipher_key})
        per_batch = max(1, len(made) * BATCH // len(orders))
        t = time.process_time()
        for b in range(0, len(made), per_batch):
            fresh.events.put(made[b:b + per_batch])
        raw.append((time.process_time() - t) / len(orders))
    e, w = min(engine), min(raw)
    print(f"{'':28} {'engine':>10} {'raw store':>10} {'ratio':>6}")
    print(f"{'CPU per order, best (us)':28} {e * 1e6:10.0f} {w * 1e6:10.0f} {w / e:6.2f}")
    print(f"{'CPU per order, median (us)':28} {statistics.median(engine) * 1e6:10.0f} "
          f"{statistics.median(raw) * 1e6:10.0f} {statistics.median(raw) / statistics.median(engine):6.2f}")
    print(f"{args.rounds} rounds of {args.orders} two-line orders, batches of {BATCH}, in memory")


if __name__ == "__main__":
    main()
