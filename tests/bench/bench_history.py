"""A batch's cost next to the number of open allocations (issue 17: flat in history).

    python -m tests.bench.bench_history [--open 0,5000,50000] [--rounds 60]

One supplier, one hot offer, one linked product, on a real SQLite event store (file, WAL,
`synchronous=FULL` as serve runs it). The store is first filled, through the engine in process,
with N orders whose allocations stay open (reserved on the hot offer, ship-by deadlines pending on
the clock); then batches of 1 and of 23 new orders (23: what a batch holds at 1,000 orders/s) are
run with `Reflow.run_batch`, each stored in one transaction, and their median wall and CPU time
is printed. Raw limit, same run and store: the same batch's events appended with no domain work.
A batch's cost must not grow with N.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from eventsourcing.persistence import StoredEvent

from engine.commands import PlaceOrder
from tests.world import BUYER, SHOP, T0, alt, comp, line, link, offer, sku, supplier


def open_store(path: Path):
    from adapters.bootstrap import Settings, open_app

    return open_app(Settings(store=f"sqlite:///{path}/events.db", data_dir=path))


def fill(app, n: int, progress=None) -> None:
    supplier(app, "S1")
    offer(app, "S1", "HOT", {"a": 10**9})
    link(app, "P1", sku("K1", alt(comp("S1", "HOT", "a"))))
    for start in range(0, n, 500):
        app.run_batch([PlaceOrder(at=T0, platform=SHOP[0], shop_id=SHOP[1], order_id=f"H{i}", buyer=BUYER,
                                  lines=(line("L1", "P1"),)) for i in range(start, min(n, start + 500))])
        if progress:
            progress(min(n, start + 500))


def measure(app, size: int, rounds: int, tag: str) -> tuple[float, float, float]:
    """(median wall ms, median CPU ms, raw append ms) per batch of `size` new orders."""
    from engine import ids

    walls, cpus, raws = [], [], []
    for r in range(rounds):
        batch = [PlaceOrder(at=T0, platform=SHOP[0], shop_id=SHOP[1], order_id=f"{tag}-{r}-{i}", buyer=BUYER,
                            lines=(line("L1", "P1"),)) for i in range(size)]
        absent = {ids.order_id(SHOP[0], SHOP[1], c.order_id) for c in batch}
        start = app.recorder.max_notification_id() or 0
        w, c = time.perf_counter(), time.process_time()
        app.run_batch(batch, absent=absent)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
        made = app.recorder.select_notifications(start + 1, 10**6, inclusive_of_start=True)
        again = [StoredEvent(originator_id=uuid, originator_version=n.originator_version, topic=n.topic,
                             state=n.state)
                 for n, uuid in zip(made, _fresh_ids(len(made)))]
        w = time.perf_counter()
        app.recorder.insert_events(again)
        raws.append(time.perf_counter() - w)
    med = statistics.median
    return med(walls) * 1e3, med(cpus) * 1e3, med(raws) * 1e3


def _fresh_ids(n: int):
    from uuid import uuid4

    return [uuid4() for _ in range(n)]


def run(open_counts: list[int], rounds: int, log=print) -> list[tuple[int, int, float, float, float]]:
    """Rows of (open allocations, batch size, wall ms, CPU ms, raw append ms)."""
    rows = []
    for n in open_counts:
        with tempfile.TemporaryDirectory(prefix="reflow-history-") as tmp:
            app = open_store(Path(tmp))
            try:
                t = time.perf_counter()
                fill(app, n)
                log(f"  {n:,} open allocations filled in {time.perf_counter() - t:.0f} s")
                measure(app, 23, 5, "warm")
                for size in (1, 23):
                    rows.append((n, size, *measure(app, size, rounds, f"m{size}")))
            finally:
                app.close()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.bench.bench_history", description=__doc__.splitlines()[0])
    ap.add_argument("--open", default="0,50000", help="open allocations before measuring (comma-separated)")
    ap.add_argument("--rounds", type=int, default=60)
    args = ap.parse_args()
    rows = run([int(x) for x in args.open.split(",")], args.rounds)
    print(f"{'open allocations':>16} {'batch':>5} {'wall ms':>8} {'CPU ms':>7} {'raw ms':>7} {'ratio':>6}")
    for n, size, wall, cpu, raw in rows:
        print(f"{n:16,} {size:5} {wall:8.2f} {cpu:7.2f} {raw:7.2f} {raw / wall:6.2f}")


if __name__ == "__main__":
    main()
