"""The benchmark suite: each stage of reflow next to the raw limit of its stack, measured in the
same run on the same machine, as a table.

    python -m tests.bench              # the full run (by hand; several minutes)
    python -m tests.bench --quick      # small sizes; also run by the test suite as a smoke test
    python -m tests.bench --stages e2e,latency --pg postgresql://postgres@127.0.0.1:5432/test

Stages and their raw limits:

- **end to end** (SQLite, PostgreSQL): `reflow serve` as a process, orders/s from the first publish
  on REFLOW_IN to the last allocation on REFLOW_OUT, against `tests.bench.bare`: a process doing
  the same I/O with no domain logic (fetch + ack, msgspec decode, the same events appended in one
  eventsourcing transaction per batch, one message published per order).
- **latency** at a fixed offered load (1,000 orders/s): p50/p99 from publish to allocation out,
  for serve and for the bare pipeline.
- **projection catch-up**: `ProjectionRunner.catch_up` events/s against reading the notification
  log and decoding every event; DuckDB's own Arrow insert rate is shown as a raw row.
- **statement query**: one supplier's month over N allocation lines against DuckDB scanning and
  summing every line.
- **router memory**: serve's RSS after routing a fixed number of new orders on a store that
  already holds H orders, for two sizes of H: it must not grow with H.
- Raw rows: bare nats-py pull consumer (fetch + ack); eventsourcing batched append (SQLite,
  PostgreSQL); notification read + decode; DuckDB Arrow insert.

A PostgreSQL stage creates its own database and drops it afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from uuid import uuid4

import nats

from adapters.natsserver import NatsServer
from adapters.serve import CONSUMER, IN_STREAM
from tests.adapters.natsworld import SHOP, SUPPLIER, catalog, order_body

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Row:
    stage: str
    unit: str
    reflow: float | None
    raw: float | None
    raw_label: str
    higher_is_better: bool = True
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if not self.reflow or not self.raw:
            return None
        return self.reflow / self.raw if self.higher_is_better else self.raw / self.reflow


@dataclass
class Sizes:
    e2e_orders: int
    e2e_orders_pg: int
    latency_seconds: float
    projection_orders: int
    statement_lines: int
    rss_history: tuple[int, int]
    rss_orders: int
    append_orders: int
    latency_rates: tuple[int, ...] = (200, 500, 1000)
    open_allocations: tuple[int, ...] = (0, 50_000)
    history_rounds: int = 60
    publish_orders: tuple[int, ...] = (100_000, 1_000_000)
    bytes_orders: int = 10_000


QUICK = Sizes(e2e_orders=300, e2e_orders_pg=200, latency_seconds=2.0, projection_orders=300,
              statement_lines=40_000, rss_history=(200, 600), rss_orders=200, append_orders=500,
              latency_rates=(1000,), open_allocations=(0, 500), history_rounds=5, publish_orders=(2_000,),
              bytes_orders=300)
FULL = Sizes(e2e_orders=20_000, e2e_orders_pg=10_000, latency_seconds=15.0, projection_orders=40_000,
             statement_lines=10_000_000, rss_history=(100_000, 1_000_000), rss_orders=20_000,
             append_orders=20_000)


# -- helpers ------------------------------------------------------------------------------------


@contextlib.contextmanager
def pg_database(base_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one stage, dropped afterwards."""
    import psycopg
    from psycopg import sql

    head, _, admin_db = base_url.rpartition("/")
    admin_db = admin_db.split("?", 1)[0] or "test"
    user = head.split("://", 1)[1].split("@", 1)[0] or "postgres"
    hostport = head.rsplit("@", 1)[-1]
    host, _, port = hostport.partition(":")
    name = f"reflow_bench_{os.getpid()}_{secrets.token_hex(3)}"

    def admin():
        return psycopg.connect(host=host, port=int(port or 5432), user=user, dbname=admin_db, autocommit=True)

    with admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield f"{head}/{name}"
    finally:
        with admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def order_msg(order_id: str) -> bytes:
    """An order placed now: its allocation's ship-by deadline (T4) lies ahead, as in a live shop.
    (Orders placed long ago would each be overdue at serve's next clock tick: reminders, not routing.)"""
    placed = datetime.now(UTC).isoformat(timespec="seconds")
    return json.dumps(order_body(order_id, placed_at=placed), ensure_ascii=False).encode()


def allocation_key(order_id: str) -> str:
    from engine.ids import new_allocation_id

    return new_allocation_id(SHOP[0], SHOP[1], order_id, SUPPLIER, 0)


class Pipeline:
    """`reflow serve` or the bare pipeline as a process, fed and watched over NATS."""

    def __init__(self, kind: str, store: str, data_dir: Path, batch: int = 256, root: Path = ROOT) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.server = NatsServer(store_dir=data_dir / "js")  # fresh streams for every run
        self.server.start()
        url = self.server.url
        self.kind, self.url, self.store, self.data_dir, self.batch = kind, url, store, data_dir, batch
        if kind == "serve":
            cmd = [sys.executable, "-m", "adapters.cli", "--store", store, "--nats", url,
                   "--data-dir", str(data_dir), "serve", "--batch", str(batch)]
        else:
            cmd = [sys.executable, "-m", "tests.bench.bare", "--store", store, "--nats", url,
                   "--data-dir", str(data_dir), "--batch", str(batch)]
        self.cmd, self.root = cmd, root
        self.log = open(data_dir / f"{kind}.log", "ab")  # noqa: SIM115
        self.proc: subprocess.Popen | None = None
        self.arrived: dict[str, float] = {}
        self.nc = self.js = None

    async def start(self, published_up_to: int = 0) -> None:
        """Start the process; ``published_up_to``: the store's history counts as published (as
        it would be had serve run all along), so serve does not first publish it all."""
        self.nc = await nats.connect(self.url, pending_size=256 * 1024 * 1024)
        self.js = self.nc.jetstream()
        if published_up_to:
            from adapters.outbound import MSG_ID_PREFIX
            from adapters.serve import ensure_streams

            await ensure_streams(self.js)
            await self.js.publish("reflow.out.bench.history", b"{}",
                                  headers={"Nats-Msg-Id": f"{MSG_ID_PREFIX}{published_up_to}"})
        self.proc = subprocess.Popen(self.cmd, cwd=self.root, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        for _ in range(300):
            assert self.proc.poll() is None, f"{self.kind} exited early; see {self.data_dir}"
            with contextlib.suppress(Exception):
                await self.js.consumer_info(IN_STREAM, CONSUMER)
                break
            await asyncio.sleep(0.1)
        await self.nc.subscribe("reflow.out.supplier.*.allocation", cb=self._on_out)
        await self.publish_all([(f"reflow.in.{s}", json.dumps(b, ensure_ascii=False).encode())
                                for s, b in catalog(stock=10**9)], "setup")
        # Warm up (imports, caches, the projection process) before anything is timed.
        await self.publish_all([("reflow.in.order.placed", order_msg(f"warm-up-{i}")) for i in range(500)], "warm")
        await self.settled()
        await asyncio.sleep(2.0)
        self.arrived.clear()

    async def _on_out(self, msg) -> None:
        now = time.perf_counter()
        key = (msg.headers or {}).get("Reflow-Bench-Key")
        if key is None:  # serve: the allocation names the order through its id
            key = json.loads(msg.data)["allocation_id"]
        self.arrived.setdefault(key, now)

    def key(self, order_id: str) -> str:
        return allocation_key(order_id) if self.kind == "serve" else order_id

    async def publish_all(self, items: list[tuple[str, bytes]], tag: str) -> None:
        futures = []
        for subject, data in items:
            futures.append(await self.js.publish_async(subject, data, headers={"Nats-Msg-Id": f"{tag}-{uuid4().hex}"}))
        await asyncio.gather(*futures)

    async def settled(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while True:
            stream = await self.js.stream_info(IN_STREAM)
            info = await self.js.consumer_info(IN_STREAM, CONSUMER)
            if info.ack_floor.stream_seq >= stream.state.last_seq and not info.num_ack_pending:
                return
            assert time.monotonic() < deadline, f"{self.kind} did not keep up"
            await asyncio.sleep(0.05)

    async def wait_out(self, keys: set[str], timeout: float) -> None:
        """Until every one of these orders' allocation is out."""
        deadline = time.monotonic() + timeout
        while not keys.issubset(self.arrived.keys()):
            assert self.proc.poll() is None, f"{self.kind} exited; see {self.data_dir}"
            assert time.monotonic() < deadline, f"{self.kind}: {len(keys - self.arrived.keys())} orders not out"
            await asyncio.sleep(0.005)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.nc.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.server.stop()


@contextlib.contextmanager
def baseline_tree(rev: str | None) -> Iterator[Path | None]:
    """The source tree of an older build (`git archive` of `rev`), to run its serve beside this one
    in the same run (same venv: `python -m adapters.cli` from that directory imports its code)."""
    if not rev:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="reflow-baseline-") as tmp:
        try:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", rev],
                                     check=True, capture_output=True).stdout
        except (subprocess.CalledProcessError, FileNotFoundError) as exc:  # a shallow clone, no git
            print(f"bench: no old build {rev} to compare with ({exc}); skipped", file=sys.stderr)
            yield None
            return
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


# -- stages -------------------------------------------------------------------------------------


async def throughput(kind: str, store: str, data_dir: Path, n: int, prefix: str, root: Path = ROOT) -> float:
    """Orders/s from the first publish until every order's allocation is out."""
    p = Pipeline(kind, store, data_dir, root=root)
    try:
        await p.start()
        items = [("reflow.in.order.placed", order_msg(f"{prefix}-{i}")) for i in range(n)]
        keys = {p.key(f"{prefix}-{i}") for i in range(n)}
        t0 = time.perf_counter()
        await p.publish_all(items, prefix)
        await p.wait_out(keys, timeout=max(120, n / 50))
        return n / (time.perf_counter() - t0)
    finally:
        await p.close()


async def latency(kind: str, store: str, data_dir: Path, rate: float, seconds: float,
                  prefix: str, root: Path = ROOT) -> tuple[float, float, float, str]:
    """p50, p99 (ms) from publish to allocation out at a fixed offered load; achieved rate; serve's
    garbage-collector pauses over its run ("" for the bare pipeline)."""
    p = Pipeline(kind, store, data_dir, root=root)
    try:
        await p.start()
        n = int(rate * seconds)
        sent: dict[str, float] = {}
        futures = []
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            order_id = f"{prefix}-{i}"
            sent[p.key(order_id)] = time.perf_counter()
            futures.append(await p.js.publish_async("reflow.in.order.placed", order_msg(order_id),
                                                    headers={"Nats-Msg-Id": f"{prefix}-{i}"}))
        achieved = n / (time.perf_counter() - t0)
        await asyncio.gather(*futures)
        await p.wait_out(set(sent), timeout=max(60, seconds * 4))
        lat = sorted((p.arrived[k] - t) * 1000 for k, t in sent.items())
        result = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))], achieved
    finally:
        await p.close()
    return (*result, gc_pauses(data_dir / f"{kind}.log"))


def gc_pauses(log: Path) -> str:
    """serve's last "gc pauses:" log line (adapters/gctune.py), shortened: collections, longest."""
    import re

    lines = [ln for ln in log.read_text(errors="replace").splitlines() if "gc pauses:" in ln] if log.exists() else []
    if not lines:
        return ""
    found = re.findall(r"gen(\d) (\d+) x, total (\d+) ms, longest ([\d.]+) ms", lines[-1])
    count = sum(int(c) for _, c, _, _ in found)
    full = next((int(c) for g, c, _, _ in found if g == "2"), 0)
    longest = max((float(x) for *_, x in found), default=0.0)
    return f"GC {count} pauses ({full} full), longest {longest:.0f} ms"


async def bare_consumer(url: str, n: int, batch: int = 256) -> float:
    from tests.bench.bench_e2e import bare_consumer as run

    return n / await run(url, n, batch)


def raw_append(store: str, data_dir: Path, orders: int, batch: int = 256) -> float:
    """eventsourcing's batched append: a real order's events, `batch` orders per transaction."""
    from eventsourcing.persistence import StoredEvent

    from adapters.bootstrap import Settings, open_app
    from tests.bench.bare import template

    events, _ = template()
    app = open_app(Settings(store=store, data_dir=data_dir))
    try:
        batches = []
        for start in range(0, orders, batch):
            stored = []
            for _ in range(min(batch, orders - start)):
                oid = uuid4()
                stored.extend(StoredEvent(originator_id=oid, originator_version=v, topic=t, state=s)
                              for v, (t, s) in enumerate(events, 1))
            batches.append(stored)
        t0 = time.perf_counter()
        for stored in batches:
            app.recorder.insert_events(stored)
        return orders / (time.perf_counter() - t0)
    finally:
        app.close()


def fill(app, orders: int, *, prefix: str = "H", tracked: float = 0.95,
         progress: Callable[[int], None] | None = None) -> None:
    """Route `orders` orders through the engine in batches, most of them shipped (tracked), as a
    merchant's history would be."""
    from tests.world import T0, alt, comp, line, link, offer, place, sku, supplier

    if app.offer("S0", "O0") is None:
        for s in range(10):
            supplier(app, f"S{s}")
        for p in range(200):
            sid = f"S{p % 10}"
            offer(app, sid, f"O{p}", {"a": 10**9}, price=f"{5 + p % 7}.50")
            link(app, f"P{p}", sku("K1", alt(comp(sid, f"O{p}", "a"))))
    from engine.ids import new_allocation_id

    every = int(1 / (1 - tracked)) if tracked < 1 else 0
    for start in range(0, orders, 500):
        commands = []
        for n in range(start, min(orders, start + 500)):
            at = T0 + timedelta(seconds=n)
            product = n % 200
            commands.append(partial(place, app, f"{prefix}{n}", line("L1", f"P{product}", qty=1 + n % 3), at=at))
            if not every or n % every:
                alloc = new_allocation_id("douyin", "dy-shop-1", f"{prefix}{n}", f"S{product % 10}", 0)
                commands.append(partial(app.upload_tracking, f"S{product % 10}", alloc, "YTO",
                                        f"YT{prefix}{n:09d}", at=at + timedelta(hours=20)))
        app.run_batch(commands)
        if progress:
            progress(min(orders, start + 500))


def store_bytes(data_dir: Path, orders: int) -> tuple[float, float]:
    """(SQLite file bytes per order, stored event bytes per order) for orders placed, routed,
    allocated, tracked and shipped (`fill` with every order tracked), after a checkpoint."""
    import sqlite3

    from adapters.bootstrap import Settings, open_app

    path = data_dir / "events.db"
    app = open_app(Settings(store=f"sqlite:///{path}", data_dir=data_dir))
    try:
        fill(app, 200)  # the world and a first few orders: not counted
        con = sqlite3.connect(path)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size0 = path.stat().st_size
        state0 = con.execute("SELECT coalesce(sum(length(state)), 0) FROM stored_events").fetchone()[0]
        fill(app, orders, prefix="B", tracked=1.0)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        state1 = con.execute("SELECT coalesce(sum(length(state)), 0) FROM stored_events").fetchone()[0]
        size1 = path.stat().st_size
        con.close()
    finally:
        app.close()
    return (size1 - size0) / orders, (state1 - state0) / orders


def projection(data_dir: Path, orders: int) -> tuple[float, float, int]:
    """(catch-up events/s, raw read+decode events/s, events)."""
    from adapters.bootstrap import Settings, open_app
    from tests.bench.bench_projection import catch_up_rate, raw_rate

    app = open_app(Settings(data_dir=data_dir))
    try:
        fill(app, orders)
        count, raw_s = raw_rate(app)
        events, catch_s, _ = catch_up_rate(app, data_dir / "bench.duckdb")
        return events / catch_s, count / raw_s, events
    finally:
        app.close()


def duckdb_arrow_insert(rows: int = 1_000_000) -> float:
    import duckdb
    import pyarrow as pa

    table = pa.table({"id": pa.array(range(rows)), "name": pa.array([f"A{i:016d}" for i in range(rows)]),
                      "qty": pa.array([i % 7 for i in range(rows)], pa.int32()),
                      "amount": pa.array([i * 0.5 for i in range(rows)])})
    con = duckdb.connect()
    con.execute("CREATE TABLE t (id BIGINT, name VARCHAR, qty INT, amount DOUBLE)")
    t0 = time.perf_counter()
    con.register("src", table)
    con.execute("BEGIN")
    con.execute("INSERT INTO t SELECT * FROM src")
    con.execute("COMMIT")
    return rows / (time.perf_counter() - t0)


def statement(data_dir: Path, lines: int) -> tuple[float, float, float]:
    """(statement lines for one supplier's month, s; DuckDB summing every line, s; the statement
    issued: lines, credits, content hash, stored event, s)."""
    import duckdb

    from tests.bench.bench_projection import statement_bench

    path = data_dir / "statement.duckdb"
    results = dict((label, seconds) for label, seconds, _ in statement_bench(path, lines))
    con = duckdb.connect(str(path))
    t0 = time.perf_counter()
    con.execute("SELECT count(*), sum(amount), sum(qty) FROM facts.allocation_lines").fetchall()
    raw = time.perf_counter() - t0
    con.close()
    return results["statement S007, 1 month"], raw, results["statement issued, 1 month"]


async def rss(data_dir: Path, history: int, orders: int, progress) -> float:
    """serve's RSS (MB) after routing `orders` new orders on a store already holding `history`."""
    from adapters.bootstrap import Settings, open_app

    store = f"sqlite:///{data_dir}/events.db"
    app = open_app(Settings(store=store, data_dir=data_dir))
    try:
        fill(app, history, progress=progress)
        stored = app.recorder.max_notification_id() or 0
    finally:
        app.close()
    p = Pipeline("serve", store, data_dir)
    try:
        await p.start(published_up_to=stored)
        items = [("reflow.in.order.placed", order_msg(f"R-{i}")) for i in range(orders)]
        await p.publish_all(items, "rss")
        await p.wait_out({p.key(f"R-{i}") for i in range(orders)}, timeout=max(120, orders / 50))
        await p.settled()
        return rss_mb(p.proc.pid)
    finally:
        await p.close()


# -- the run ------------------------------------------------------------------------------------

STAGES = ("raw", "e2e", "latency", "history", "publish", "bytes", "projection", "statement", "rss")


BASELINE = "b97f35f"
"""The main before issue 17 (speed), whose serve the end-to-end stage runs beside this one."""


async def run(sizes: Sizes, stages: tuple[str, ...], pg: str | None, console,
              baseline_rev: str | None = BASELINE) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="reflow-bench-") as tmp, \
            baseline_tree(baseline_rev if "e2e" in stages else None) as baseline:
        tmp_path = Path(tmp)
        n = 0

        def fresh() -> Path:
            nonlocal n
            n += 1
            d = tmp_path / f"run{n}"
            d.mkdir()
            return d

        if "raw" in stages:
            console.log("raw: bare nats-py consumer")
            with NatsServer(store_dir=fresh() / "js") as server:
                bare = await bare_consumer(server.url, sizes.e2e_orders)
            rows.append(Row("bare nats-py pull consumer (fetch + ack)", "msgs/s", None, bare, "raw"))
            d = fresh()
            console.log("raw: eventsourcing batched append (SQLite)")
            rows.append(Row("eventsourcing batched append, SQLite", "orders/s", None,
                            raw_append(f"sqlite:///{d}/raw.db", d, sizes.append_orders), "raw"))
            if pg:
                console.log("raw: eventsourcing batched append (PostgreSQL)")
                with pg_database(pg) as db:
                    rows.append(Row("eventsourcing batched append, PostgreSQL", "orders/s", None,
                                    raw_append(db, fresh(), sizes.append_orders), "raw"))
            console.log("raw: DuckDB Arrow insert")
            rows.append(Row("DuckDB Arrow insert (1 transaction)", "rows/s", None,
                            duckdb_arrow_insert(200_000 if sizes is QUICK else 2_000_000), "raw"))
        if "e2e" in stages:
            for kind, count in (("sqlite", sizes.e2e_orders), ("postgres", sizes.e2e_orders_pg)):
                if kind == "postgres" and not pg:
                    continue
                console.log(f"end to end, {kind}: {count} orders")
                with contextlib.ExitStack() as stack:
                    dirs = [fresh() for _ in range(3)]
                    if kind == "sqlite":
                        s1, s2, s3 = (f"sqlite:///{d}/events.db" for d in dirs)
                    else:
                        s1, s2, s3 = (stack.enter_context(pg_database(pg)) for _ in dirs)
                    bare = await throughput("bare", s2, dirs[1], count, f"b{n}")
                    mine = await throughput("serve", s1, dirs[0], count, f"s{n}")
                    old = (await throughput("serve", s3, dirs[2], count, f"o{n}", root=baseline)
                           if baseline else None)
                rows.append(Row(f"end-to-end routing, {kind} ({count} orders)", "orders/s", mine, bare,
                                "bare pipeline (same I/O, no domain logic)",
                                note=f"{mine / old:.2f}x the old build" if old else ""))
                if old:
                    rows.append(Row(f"  the old build ({baseline_rev}), {kind}", "orders/s", old, bare,
                                    "bare pipeline"))
        if "latency" in stages:
            for rate in sizes.latency_rates:
                console.log(f"latency at {rate:,} orders/s")
                d1, d2 = fresh(), fresh()
                b50, b99, _, _ = await latency("bare", f"sqlite:///{d2}/events.db", d2, rate,
                                               sizes.latency_seconds, f"lb{n}")
                s50, s99, achieved, gcs = await latency("serve", f"sqlite:///{d1}/events.db", d1, rate,
                                                        sizes.latency_seconds, f"ls{n}")
                rows.append(Row(f"latency p50 at {rate:,} orders/s, SQLite", "ms", s50, b50, "bare pipeline",
                                higher_is_better=False))
                rows.append(Row(f"latency p99 at {rate:,} orders/s, SQLite", "ms", s99, b99, "bare pipeline",
                                higher_is_better=False, note=f"offered {achieved:.0f}/s; {gcs}"))
        if "history" in stages:
            from tests.bench.bench_history import run as history_run

            console.log(f"batch cost with {', '.join(f'{h:,}' for h in sizes.open_allocations)} open allocations")
            for open_, size, wall, cpu, raw in history_run(list(sizes.open_allocations), sizes.history_rounds,
                                                           log=console.log):
                rows.append(Row(f"batch of {size}, {open_:,} open allocations", "ms", wall, raw,
                                "the same events appended", higher_is_better=False,
                                note=f"CPU {cpu:.2f} ms"))
        if "publish" in stages:
            from tests.bench.bench_projection import publish_bench

            for stored in sizes.publish_orders:
                console.log(f"analysts' file publish with {stored:,} orders stored")
                r = publish_bench(stored, workdir=fresh())
                rows.append(Row(f"publish after a small change, {stored:,} orders", "s",
                                r["new_publish_s_median"], r["old_publish_s_median"],
                                "the whole-file copy it replaced", higher_is_better=False,
                                note=f"{r['new_publish_bytes_median'] / 1e6:.2f} MB written vs "
                                     f"{r['old_publish_bytes_median'] / 1e6:.1f} MB"))
        if "bytes" in stages:
            console.log(f"event-store bytes per full-lifecycle order ({sizes.bytes_orders:,} orders)")
            total, state = store_bytes(fresh(), sizes.bytes_orders)
            rows.append(Row("event store per full-lifecycle order, SQLite", "bytes", total, None, "",
                            higher_is_better=False, note=f"of which event JSON {state:,.0f} bytes"))
        if "projection" in stages:
            console.log(f"projection catch-up over {sizes.projection_orders} orders")
            mine, raw, events = projection(fresh(), sizes.projection_orders)
            rows.append(Row(f"projection catch-up ({events} events)", "events/s", mine, raw,
                            "notification read + decode"))
        if "statement" in stages:
            console.log(f"statement over {sizes.statement_lines} lines")
            mine, raw, issued = statement(fresh(), sizes.statement_lines)
            rows.append(Row(f"statement, 1 supplier x 1 month ({sizes.statement_lines:,} lines)", "s", mine, raw,
                            "DuckDB sum over every line", higher_is_better=False))
            rows.append(Row("  the same statement issued (hash, event stored)", "s", issued, raw,
                            "DuckDB sum over every line", higher_is_better=False))
        if "rss" in stages:
            for history in sizes.rss_history:
                console.log(f"router RSS with {history:,} orders stored")
                mb = await rss(fresh(), history, sizes.rss_orders,
                               progress=lambda k, h=history: k % 50_000 == 0 and console.log(f"  filled {k:,}/{h:,}"))
                rows.append(Row(f"router RSS, {history:,} orders stored", "MB", mb, None,
                                "", higher_is_better=False, note=f"after routing {sizes.rss_orders:,} more"))
    return rows


def table(rows: list[Row], title: str):
    from rich.table import Table

    t = Table(title=title)
    for col, just in (("stage", "left"), ("reflow", "right"), ("raw limit", "right"), ("ratio", "right"),
                      ("unit", "left"), ("raw is", "left"), ("note", "left")):
        t.add_column(col, justify=just)

    def fmt(v: float | None) -> str:
        if v is None:
            return "-"
        return f"{v:,.0f}" if v >= 100 else f"{v:,.2f}"

    for r in rows:
        ratio = r.ratio
        t.add_row(r.stage, fmt(r.reflow), fmt(r.raw), f"{ratio:.2f}" if ratio is not None else "-",
                  r.unit, r.raw_label, r.note)
    return t


def main(argv: list[str] | None = None) -> int:
    import argparse

    from rich.console import Console

    parser = argparse.ArgumentParser(prog="python -m tests.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    parser.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated, of {', '.join(STAGES)}")
    parser.add_argument("--pg", default="postgresql://postgres@127.0.0.1:5432/test",
                        help="PostgreSQL server (a database is created and dropped); '' to skip")
    parser.add_argument("--rss-history", default=None, metavar="N,M",
                        help="orders stored before the two RSS measurements (full: 100000,1000000)")
    parser.add_argument("-n", "--orders", type=int, default=None, help="orders for the end-to-end stage")
    parser.add_argument("--baseline", default=BASELINE, metavar="REV",
                        help=f"an older build whose serve the e2e stage also runs (default {BASELINE}; '' to skip)")
    args = parser.parse_args(argv)
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    unknown = set(stages) - set(STAGES)
    if unknown:
        parser.error(f"--stages: unknown {', '.join(sorted(unknown))}")
    sizes = QUICK if args.quick else FULL
    if args.rss_history:
        sizes = dataclasses.replace(sizes, rss_history=tuple(int(x) for x in args.rss_history.split(",")))
    if args.orders:
        sizes = dataclasses.replace(sizes, e2e_orders=args.orders, e2e_orders_pg=args.orders // 2)
    console = Console(stderr=True)
    started = time.perf_counter()
    rows = asyncio.run(run(sizes, stages, args.pg or None, console, args.baseline or None))
    out = Console(width=200)
    cpu = os.cpu_count()
    out.print(table(rows, f"reflow benchmarks ({'quick' if args.quick else 'full'}, {cpu} CPUs, "
                          f"{datetime.now(UTC):%Y-%m-%d}, {time.perf_counter() - started:.0f} s)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
