"""Projection benchmark (not collected by pytest: run it as a script).

    python tests/bench/bench_projection.py                 # 200k events, 10M allocation lines
    python tests/bench/bench_projection.py --quick         # 20k events, 1M allocation lines
    python tests/bench/bench_projection.py --publish 100000 1000000   # publish cost only (3.)

1. Catch-up: an event store is filled by the engine itself (orders placed, routed, allocated,
   three in four tracked), then (a) the raw rate of `select_notifications` + `decode_event` over
   every notification and (b) `ProjectionRunner.catch_up()` into a fresh DuckDB file, both in
   events/s, and their ratio.
2. Statements: synthetic facts written straight into DuckDB with `range()` (N allocation lines,
   4 per allocation, 100 suppliers, 1000 SKUs, three price changes per SKU, tiers), then the
   statement query (`projections.statements.compute`) for one supplier over one day and over a
   month, the month's statement issued (`engine.statements.issue_statement`: lines, credits,
   content, hash, event stored), and the `supplier_performance` view over everything.
3. Publishing (`publish_bench`, issue 17): a working file holding N orders (synthetic facts written
   straight into it, `SYNTH_ORDERS`, after a real catch-up), then rounds of a small real change
   (orders placed and tracked through the engine, applied by the runner) each published twice: as
   reflow publishes (`ProjectionRunner.publish`: Parquet segments + a small file of views) and as
   it did before (CHECKPOINT, the whole working file copied, `os.replace`d): seconds and bytes
   written per publish, disk used, and what an analyst's query and `reflow statement`'s private
   copy cost on each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
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
    seconds, n = _issued(con, path.parent, datetime(2026, 1, 1, tzinfo=utc), datetime(2026, 2, 1, tzinfo=utc))
    out.append(("statement issued, 1 month", seconds, n))
    t = time.perf_counter()
    n = len(con.execute("SELECT * FROM supplier_performance").fetchall())
    out.append(("supplier_performance (all)", time.perf_counter() - t, n))
    con.close()
    return out


def _issued(con, workdir: Path, start: datetime, end: datetime) -> tuple[float, int]:
    """What `reflow statement` costs once its projection is caught up: S007's statement issued
    (`engine.statements.issue_statement`: the lines and credits computed, RC3 checked, the content
    and its hash made, the `StatementIssued` event stored in a fresh encrypted SQLite store).
    (seconds, lines)"""
    from eventsourcing.cipher import AESCipher

    from adapters.store import ensure_store, store_env
    from engine.app import Reflow
    from engine.statements import issue_statement
    from projections.statements import credits
    from tests.world import supplier

    class Lines:  # the synthetic facts are not the store's: nothing to catch up
        def catch_up(self) -> int:
            return 0

        def lines(self, supplier_id, start, end):
            return compute(con, supplier_id, start, end)

        def credits(self, supplier_id):
            return credits(con, supplier_id)

    store = Path(tempfile.mkdtemp(prefix="statement-store-", dir=workdir))
    env = store_env(f"sqlite:///{store}/events.db", store)
    ensure_store(env)
    app = Reflow({**env, "REFLOW_CIPHER_KEY": AESCipher.create_key(32)})
    try:
        supplier(app, "S007")
        t = time.perf_counter()
        statement = issue_statement(app, Lines(), "S007", start, end, at=datetime(2026, 2, 2, tzinfo=UTC))
        return time.perf_counter() - t, len(statement.lines)
    finally:
        app.close()
        shutil.rmtree(store, ignore_errors=True)


# N orders of one line each, routed and allocated, three in four tracked: the rows the engine's
# events give per order (see projections.facts), with synthetic ids and positions.
SYNTH_ORDERS = """
CREATE TEMP TABLE synth_ids AS SELECT i, uuid() AS o, uuid() AS a FROM range({orders}) t(i);
INSERT INTO facts.order_keys SELECT o, 'douyin', 'shop' || (i % 20), 'SO' || i, i FROM synth_ids;
INSERT INTO facts.orders_placed SELECT o, 'm' || (i % 50), CASE WHEN i % 3 = 0 THEN 'live' ELSE 'douyin' END,
  TIMESTAMP '2026-01-01' + to_seconds(i * 30), i FROM synth_ids;
INSERT INTO facts.order_lines SELECT o, 0, 'L1', 'P' || (i % 200), 'K1', NULL, (1 + i % 3)::INT, 29.9, i
  FROM synth_ids;
INSERT INTO facts.line_routes SELECT o, 'L1', i, 'allocated', NULL, TIMESTAMP '2026-01-01' + to_seconds(i * 30)
  FROM synth_ids;
INSERT INTO facts.alloc_refs SELECT o, 'SA' || i, 'S' || (i % 10), 'L1', i FROM synth_ids;
INSERT INTO facts.allocations SELECT a, 'SA' || i, 'douyin', 'shop' || (i % 20), 'SO' || i, 'm' || (i % 50),
  'S' || (i % 10), 'douyin', 'placed', TIMESTAMP '2026-01-01' + to_seconds(i * 30),
  TIMESTAMP '2026-01-03' + to_seconds(i * 30), i FROM synth_ids;
INSERT INTO facts.allocation_lines SELECT 'SA' || i, 0, 'L1', 'O' || (i % 200), 'a', 'P' || (i % 200),
  (1 + i % 3)::INT, 5.5, 5.5 * (1 + i % 3), 1, i FROM synth_ids;
INSERT INTO facts.allocation_events SELECT a, i, 'tracked', 'tracked', TIMESTAMP '2026-01-01' + to_seconds(i * 30 + 72000),
  NULL, 'YTO', 'YT' || lpad(i::VARCHAR, 10, '0'), false, NULL FROM synth_ids WHERE i % 4 <> 0;
DROP TABLE synth_ids;
"""


def _world(app) -> None:
    from tests.world import alt, comp, link, offer, sku, supplier

    for s in range(10):
        supplier(app, f"S{s}")
    for p in range(20):
        sid = f"S{p % 10}"
        offer(app, sid, f"O{p}", {"a": 10**9}, price=f"{5 + p % 7}.50")
        link(app, f"P{p}", sku("K1", alt(comp(sid, f"O{p}", "a"))))


def _change(app, start: int, orders: int) -> None:
    """`orders` real orders placed, allocated and tracked through the engine."""
    from tests.world import SHOP, T0, line, place

    for n in range(start, start + orders):
        at = T0 + timedelta(minutes=n)
        place(app, f"C{n}", line("L1", f"P{n % 20}", qty=1 + n % 3), at=at)
        [a] = app.allocations_of(*SHOP, f"C{n}")
        app.upload_tracking(a.supplier_id, a.allocation_id, "YTO", f"YTC{n:010d}", at=at + timedelta(hours=5))


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else 0


def _old_publish(runner, fd: int, target: Path) -> tuple[float, int]:
    """The publish before issue 17: CHECKPOINT, the whole working file copied to a temporary name
    beside `target` (from a descriptor kept open), `os.replace`d onto it. (seconds, bytes)"""
    started = time.perf_counter()
    runner.connection.execute("CHECKPOINT")
    size = os.fstat(fd).st_size
    tmp = target.with_name(f".{target.name}.tmp")
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        done = 0
        while done < size:
            n = os.copy_file_range(fd, out, size - done, done, done)
            if not n:
                break
            done += n
    finally:
        os.close(out)
    os.replace(tmp, target)
    return time.perf_counter() - started, size


def _query_seconds(path: Path, sql: str, times: int = 3) -> float:
    best = float("inf")
    for _ in range(times):
        con = duckdb.connect(str(path), read_only=True)
        try:
            started = time.perf_counter()
            con.execute(sql).fetchall()
            best = min(best, time.perf_counter() - started)
        finally:
            con.close()
    return best


def publish_bench(orders: int, *, rounds: int = 12, change: int = 5, console: Console | None = None,
                  workdir: Path | None = None) -> dict:
    """Publish cost after a small change (`change` real orders, placed and tracked) with `orders`
    orders stored, the new way and the old way, alternately, `rounds` times; disk used; the
    analysts' query and `reflow statement`'s private copy on each. Returns the figures (seconds,
    bytes) and prints them when given a console. The store is filled in process: the real world
    (10 suppliers, 20 products) and the change go through the engine; the N stored orders are
    synthetic facts written straight into the runner's working file (`SYNTH_ORDERS`)."""
    from eventsourcing.cipher import AESCipher

    from adapters.store import ensure_store, store_env
    from engine.app import Reflow
    from projections.private import materialise
    from projections.publish import segments_dir

    log = console.log if console else (lambda *a: None)
    tmp = Path(tempfile.mkdtemp(prefix="reflow-publish-", dir=workdir))
    env = store_env(f"sqlite:///{tmp}/events.db", tmp)
    ensure_store(env)
    env["REFLOW_CIPHER_KEY"] = AESCipher.create_key(32)
    app = Reflow(env)
    path, old = tmp / "reflow.duckdb", tmp / "old.duckdb"
    work = path.with_name(path.name + ".work")
    out: dict = {"orders": orders, "rounds": rounds, "change_orders": change}
    try:
        _world(app)
        runner = ProjectionRunner(app, path)
        runner.catch_up()
        started = time.perf_counter()
        runner.connection.execute(SYNTH_ORDERS.format(orders=orders))
        runner.connection.execute("CHECKPOINT")
        log(f"{orders:,} synthetic orders written in {time.perf_counter() - started:.1f} s")
        runner.close()
        runner = ProjectionRunner(app, path)  # counts the rows again
        runner.publish_interval = float("inf")  # publish only when the bench says so
        first = runner.publish()
        out["first_publish_s"], out["first_publish_bytes"] = first["seconds"], first["bytes"]
        fd = os.open(work, os.O_RDONLY)
        try:
            out["first_old_publish_s"], _ = _old_publish(runner, fd, old)
            new_s, new_b, new_files, new_merged, old_s, old_b = [], [], [], [], [], []
            for r in range(rounds):
                _change(app, r * change, change)
                while runner.run_once():
                    pass
                for which in ((0, 1) if r % 2 else (1, 0)):  # alternate who goes first
                    if which == 0:
                        done = runner.publish()
                        new_s.append(done["seconds"])
                        new_b.append(done["bytes"])
                        new_files.append(done["files"])
                        new_merged.append(done["merged_rows"])
                    else:
                        secs, size = _old_publish(runner, fd, old)
                        old_s.append(secs)
                        old_b.append(size)
        finally:
            os.close(fd)
        live = [s for segs in runner.publisher.live.values() for s in segs]
        seg_dir = segments_dir(path)
        out.update(
            new_publish_s_median=statistics.median(new_s), new_publish_s_max=max(new_s),
            new_publish_bytes_median=statistics.median(new_b), new_publish_bytes_mean=statistics.mean(new_b),
            new_publish_files_median=statistics.median(new_files), new_merged_rows_total=sum(new_merged),
            old_publish_s_median=statistics.median(old_s), old_publish_s_max=max(old_s),
            old_publish_bytes_median=statistics.median(old_b),
            work_bytes=work.stat().st_size, small_file_bytes=path.stat().st_size,
            live_segments=len(live), live_segment_bytes=sum((seg_dir / s.file).stat().st_size for s in live),
            segment_dir_bytes=_tree_bytes(seg_dir), old_published_bytes=old.stat().st_size)
        runner.close()
        sql = "SELECT status, count(*), sum(amount) FROM orders GROUP BY ALL"
        out["query_new_s"], out["query_old_s"] = _query_seconds(path, sql), _query_seconds(old, sql)
        priv = tmp / "private"
        priv.mkdir()
        started = time.perf_counter()
        materialise(path, priv / "new.duckdb")
        out["private_copy_new_s"] = time.perf_counter() - started
        started = time.perf_counter()
        shutil.copyfile(old, priv / "old.duckdb")
        out["private_copy_old_s"] = time.perf_counter() - started
    finally:
        app.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if console:
        console.print(publish_table([out]))
    return out


def publish_table(results: list[dict]) -> Table:
    mb = 1e6
    table = Table(title="publishing the analysts' file after a small change: segments (new) vs whole copy (old)")
    for col in ("orders", "measure", "new", "old"):
        table.add_column(col, justify="right")
    for r in results:
        n = f"{r['orders']:,}"
        table.add_row(n, f"publish, s (median of {r['rounds']}; max)",
                      f"{r['new_publish_s_median']:.3f} ({r['new_publish_s_max']:.3f})",
                      f"{r['old_publish_s_median']:.3f} ({r['old_publish_s_max']:.3f})")
        table.add_row(n, "bytes written per publish, MB (median; new: mean with merges)",
                      f"{r['new_publish_bytes_median'] / mb:.2f} ({r['new_publish_bytes_mean'] / mb:.2f})",
                      f"{r['old_publish_bytes_median'] / mb:.1f}")
        table.add_row(n, "files written per publish (median); rows merged in all",
                      f"{r['new_publish_files_median']:.0f}; {r['new_merged_rows_total']:,}", "1")
        table.add_row(n, "first publish after start, s", f"{r['first_publish_s']:.2f}", f"{r['first_old_publish_s']:.2f}")
        table.add_row(n, "disk: working file + published, MB",
                      f"{r['work_bytes'] / mb:.1f} + {r['segment_dir_bytes'] / mb:.1f} segments "
                      f"({r['live_segments']} live, {r['live_segment_bytes'] / mb:.1f} MB) + {r['small_file_bytes'] / mb:.2f}",
                      f"{r['work_bytes'] / mb:.1f} + {r['old_published_bytes'] / mb:.1f} (+ the same again while copying)")
        table.add_row(n, "analyst query (orders by status), s", f"{r['query_new_s']:.3f}", f"{r['query_old_s']:.3f}")
        table.add_row(n, "statement beside serve: private copy, s", f"{r['private_copy_new_s']:.2f}",
                      f"{r['private_copy_old_s']:.2f}")
    return table


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--store", help="reuse an event store (sqlite:///...) filled by an earlier run")
    parser.add_argument("--publish", type=int, nargs="+", metavar="ORDERS",
                        help="only the publish benchmark (3.), at these numbers of stored orders")
    parser.add_argument("--rounds", type=int, default=12, help="publish benchmark: rounds of a small change")
    args = parser.parse_args()
    if args.publish:
        console = Console(width=150)
        results = [publish_bench(n, rounds=args.rounds, console=console) for n in args.publish]
        if len(results) > 1:
            console.print(publish_table(results))
        return
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
