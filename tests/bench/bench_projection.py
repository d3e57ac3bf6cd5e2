"""Projection benchmark (not collected by pytest: run it as a script).

    python tests/bench/bench_projection.py                 # 200k events, 10M allocation lines
    python tests/bench/bench_projection.py --quick         # 20k events, 1M allocation lines

1. Catch-up: an event store is filled by the engine itself (orders placed, routed, allocated,
   three in four tracked), then (a) the raw rate of `select_notifications` + `decode_event` over
   every notification and (b) `ProjectionRunner.catch_up()` into a fresh DuckDB file, both in
   events/s, and their ratio.
2. Statements: synthetic facts written straight into DuckDB with `range()` (N allocation lines,
   4 per allocation, 100 suppliers, 1000 SKUs, three price changes per SKU, tiers), then the
   statement query (`projections.statements.compute`) for one supplier over one day and over a
   month, and the `supplier_performance` view over everything.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from engine.base import decode_event  # noqa: E402
from projections.runner import ProjectionRunner  # noqa: E402
from projections.schema import ddl  # noqa: E402
from projections.statements import compute  # noqa: E402


def fill_store(app, events: int, console: Console) -> int:
    from tests.world import T0, alt, comp, line, link, offer, place, sku, supplier

    suppliers, products = 10, 200
    for s in range(suppliers):
        supplier(app, f"S{s}")
    for p in range(products):
        sid = f"S{p % suppliers}"
        offer(app, sid, f"O{p}", {"a": 10**9}, price=f"{5 + p % 7}.50")
        link(app, f"P{p}", sku("K1", alt(comp(sid, f"O{p}", "a"))))
    n = 0
    started = time.perf_counter()
    while (app.recorder.max_notification_id() or 0) < events:
        at = T0 + timedelta(seconds=30 * n)
        p = n % products
        place(app, f"B{n}", line("L1", f"P{p}", qty=1 + n % 3), at=at)
        if n % 4:
            [a] = app.allocations_of("douyin", "dy-shop-1", f"B{n}")
            app.upload_tracking(a.supplier_id, a.allocation_id, "YTO", f"YT{n:010d}", at=at + timedelta(hours=n % 60))
        n += 1
        if n % 2000 == 0:
            console.log(f"{n} orders, {app.recorder.max_notification_id()} events, "
                        f"{time.perf_counter() - started:.0f} s")
    return app.recorder.max_notification_id()


def raw_rate(app, batch: int = 5000) -> tuple[int, float]:
    started, pos, count = time.perf_counter(), 0, 0
    while True:
        notes = app.recorder.select_notifications(start=pos + 1, limit=batch)
        if not notes:
            break
        for n in notes:
            decode_event(n.topic, n.state)
        count += len(notes)
        pos = notes[-1].id
    return count, time.perf_counter() - started


def catch_up_rate(app, path: Path) -> tuple[int, float, float]:
    runner = ProjectionRunner(app, path)
    started = time.perf_counter()
    runner.publish_interval = float("inf")  # measure projection; publish once, timed apart
    count = runner.catch_up()
    elapsed = time.perf_counter() - started
    t = time.perf_counter()
    runner.publish()
    publish = time.perf_counter() - t
    runner.close()
    return count, elapsed, publish


SYNTH = """
INSERT INTO facts.allocations
SELECT uuid(), 'A' || i, 'douyin', 'shop' || (i % 20), 'O' || i, 'm' || (i % 50), 'S' || lpad((i % 100)::VARCHAR, 3, '0'),
  CASE WHEN i % 3 = 0 THEN 'live' ELSE 'douyin' END, 'placed',
  TIMESTAMP '2026-01-01' + to_seconds(i * 86400 * 30 // {allocs}), TIMESTAMP '2026-01-01' + to_seconds(i * 86400 * 30 // {allocs}) + INTERVAL 48 HOUR, i
FROM range({allocs}) t(i);
INSERT INTO facts.allocation_lines
SELECT 'A' || (i // 4), (i % 4)::INT, 'L' || (i % 4), 'OF' || (i % 300), 'K' || (i % 1000), 'P' || (i % 500), (1 + i % 3)::INT,
  5.5, (5.5 * (1 + i % 3)), 1, i // 4 FROM range({lines}) t(i);
INSERT INTO facts.allocation_events
SELECT a.alloc_uuid, a.pos + {allocs}, 'tracked', 'tracked', a.allocated_at + to_seconds((a.pos % 60) * 3600), NULL,
  'YTO', 'YT' || a.pos, (a.pos % 60) > 48, NULL
FROM facts.allocations a WHERE a.pos % 10 <> 0;
INSERT INTO facts.prices
SELECT 'S' || lpad((s % 100)::VARCHAR, 3, '0'), 'K' || k, '', (5 + k % 7 + v)::DECIMAL(18,4),
  TIMESTAMP '2025-12-01' + to_days(v * 15), TIMESTAMP '2025-12-01', s * 10000 + k * 10 + v
FROM range(100) a(s), range(1000) b(k), range(3) c(v);
INSERT INTO facts.suppliers SELECT uuid(), 'S' || lpad(s::VARCHAR, 3, '0'), 'x', true, 48, s FROM range(100) t(s);
"""


def statement_bench(path: Path, lines: int) -> list[tuple[str, float, int]]:
    con = duckdb.connect(str(path))
    for s in ddl():
        con.execute(s)
    t = time.perf_counter()
    con.execute(SYNTH.format(allocs=lines // 4, lines=lines))
    out = [("generate facts", time.perf_counter() - t, lines)]
    utc = UTC
    for label, start, end in [
        ("statement S007, 1 day", datetime(2026, 1, 10, tzinfo=utc), datetime(2026, 1, 11, tzinfo=utc)),
        ("statement S007, 1 month", datetime(2026, 1, 1, tzinfo=utc), datetime(2026, 2, 1, tzinfo=utc)),
    ]:
        t = time.perf_counter()
        rows, apart = compute(con, "S007", start, end)
        out.append((label, time.perf_counter() - t, len(rows)))
    t = time.perf_counter()
    n = len(con.execute("SELECT * FROM supplier_performance").fetchall())
    out.append(("supplier_performance (all)", time.perf_counter() - t, n))
    con.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--store", help="reuse an event store (sqlite:///...) filled by an earlier run")
    args = parser.parse_args()
    if args.quick:
        args.events, args.lines = 20_000, 1_000_000
    console = Console()
    tmp = Path(tempfile.mkdtemp(prefix="reflow-bench-"))
    from eventsourcing.cipher import AESCipher

    from adapters.store import ensure_store, store_env
    from engine.app import Reflow

    env = store_env(args.store or f"sqlite:///{tmp}/events.db", tmp)
    ensure_store(env)
    env["REFLOW_CIPHER_KEY"] = AESCipher.create_key(32)
    app = Reflow(env)
    if not args.store:
        t = time.perf_counter()
        fill_store(app, args.events, console)
        console.log(f"store filled in {time.perf_counter() - t:.0f} s: {env.get('SQLITE_DBNAME')}")
    raw_n, raw_s = raw_rate(app)
    cu_n, cu_s, pub_s = catch_up_rate(app, tmp / "reflow.duckdb")
    size = (tmp / "reflow.duckdb").stat().st_size
    table = Table(title=f"projection catch-up over {raw_n} events (SQLite store)")
    for col in ("measure", "seconds", "events/s", "ratio"):
        table.add_column(col, justify="right")
    table.add_row("select_notifications + decode_event", f"{raw_s:.2f}", f"{raw_n / raw_s:,.0f}", "1.00")
    table.add_row("ProjectionRunner.catch_up", f"{cu_s:.2f}", f"{cu_n / cu_s:,.0f}", f"{(cu_n / cu_s) / (raw_n / raw_s):.2f}")
    table.add_row(f"publish ({size / 1e6:.1f} MB file)", f"{pub_s:.3f}", "", "")
    console.print(table)
    results = statement_bench(tmp / "synthetic.duckdb", args.lines)
    table = Table(title=f"statement query over {args.lines:,} allocation lines (synthetic, DuckDB)")
    for col in ("query", "seconds", "rows"):
        table.add_column(col, justify="right")
    for label, secs, n in results:
        table.add_row(label, f"{secs:.3f}", f"{n:,}")
    console.print(table)
    app.close()


if __name__ == "__main__":
    main()
