"""Real processes for the reliability suite: a nats-server that fsyncs every write, ``reflow serve``
as a subprocess, a producer, readers of the three streams, and the checks every scenario ends with
(the order oracle, exactly-once on ``REFLOW_OUT``, projections equal to a rebuild, the P2 scan).

Everything is bounded: each wait has a deadline and fails with what it was waiting for.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

import adapters
from adapters.bootstrap import Settings, open_app
from adapters.natsserver import NatsServer
from adapters.outbound import MSG_ID_PREFIX, TOPICS
from adapters.serve import CONSUMER, IN_STREAM
from engine.app import Reflow
from tests.reliability.workload import Message, Workload, offers, scan

ROOT = Path(adapters.__file__).resolve().parents[1]


def nats_server(tmp: Path, name: str = "nats") -> NatsServer:
    """A private nats-server with the production setting: fsync before every ack."""
    return NatsServer(store_dir=tmp / name, log_file=tmp / f"{name}.log", sync_interval="always")


# -- reflow serve as a process --------------------------------------------------------------------


@dataclass
class Serve:
    """``reflow serve`` subprocesses over one store and one data dir; every start logs to its own file."""

    nats_url: str
    store: str
    data_dir: Path
    batch: int = 128
    ack_wait: float = 2.0
    env: dict[str, str] = field(default_factory=dict)
    procs: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @property
    def settings(self) -> Settings:
        return Settings(store=self.store, nats_url=self.nats_url, data_dir=self.data_dir)

    @property
    def proc(self) -> subprocess.Popen | None:
        return self.procs[-1] if self.procs else None

    def start(self) -> subprocess.Popen:
        log = self.data_dir.parent / f"serve-{self.data_dir.name}-{len(self.procs)}.log"
        cmd = [sys.executable, "-m", "adapters.cli", "--store", self.store, "--nats", self.nats_url,
               "--data-dir", str(self.data_dir), "serve", "--ack-wait", str(self.ack_wait),
               "--batch", str(self.batch)]
        env = {**os.environ, "PYTHONPATH": str(ROOT), **self.env}
        with open(log, "ab") as f:
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        self.logs.append(log)
        return proc

    def kill9(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait: serve drains, publishes and exits 0."""
        proc = self.proc
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"reflow serve did not exit within {timeout}s of SIGTERM; log {self.logs[-1]}") from None

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def log_text(self) -> bytes:
        return b"".join(p.read_bytes() for p in self.logs if p.exists())


# -- the producer and readers ---------------------------------------------------------------------


class Broker:
    """A NATS connection that publishes the workload and reads the streams."""

    def __init__(self, nc: nats.NATS) -> None:
        self.nc, self.js = nc, nc.jetstream()

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(cls, url: str):
        async def quiet(exc: Exception) -> None:
            pass

        nc = await nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.2,
                                error_cb=quiet, pending_size=64 * 1024 * 1024)
        try:
            yield cls(nc)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def wait_for_streams(self, proc: subprocess.Popen | None = None, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"reflow serve exited with {proc.returncode} before it was ready")
            with contextlib.suppress(Exception):
                await self.js.consumer_info(IN_STREAM, CONSUMER)
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"reflow serve did not create {IN_STREAM} and consumer {CONSUMER} in {timeout}s")

    async def publish(self, messages: Iterable[Message | tuple[str, bytes, str]], window: int = 2000,
                      timeout: float = 120) -> int:
        """Publish in order, up to ``window`` acks outstanding; retried across broker restarts."""
        items = [(m.subject, json.dumps(m.body, ensure_ascii=False).encode(), m.msg_id)
                 if isinstance(m, Message) else m for m in messages]
        deadline = time.monotonic() + timeout
        for start in range(0, len(items), window):
            chunk = items[start:start + window]
            while True:
                try:
                    futures = [await self.js.publish_async(f"reflow.in.{s}", d, headers={"Nats-Msg-Id": i})
                               for s, d, i in chunk]
                    await asyncio.wait_for(asyncio.gather(*futures), timeout=30)
                    break
                except Exception:  # noqa: BLE001 - broker away: publish the chunk again (deduplicated)
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.3)
        return len(items)

    async def last_seq(self, stream: str) -> int:
        return (await self.js.stream_info(stream)).state.last_seq

    async def acked(self) -> int:
        info = await self.js.consumer_info(IN_STREAM, CONSUMER)
        return info.ack_floor.stream_seq

    async def settled(self, timeout: float, proc: subprocess.Popen | None = None) -> None:
        """Until serve acknowledged everything in REFLOW_IN."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            with contextlib.suppress(Exception):
                stream = await self.js.stream_info(IN_STREAM)
                info = await self.js.consumer_info(IN_STREAM, CONSUMER)
                last = (info.ack_floor.stream_seq, stream.state.last_seq, info.num_ack_pending)
                if info.ack_floor.stream_seq >= stream.state.last_seq and not info.num_ack_pending:
                    return
            if proc is not None and proc.poll() is not None:
                raise AssertionError(f"reflow serve exited with {proc.returncode} while consuming; at {last}")
            if time.monotonic() > deadline:
                raise AssertionError(f"REFLOW_IN not consumed in {timeout}s: (acked, last, pending) = {last}")
            await asyncio.sleep(0.2)

    async def count(self, stream: str) -> int:
        return (await self.js.stream_info(stream)).state.messages

    async def until_count(self, stream: str, n: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while True:
            got = await self.count(stream)
            if got >= n or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.2)

    async def read(self, stream: str, subject: str = ">") -> list[Any]:
        """Every message of a stream, in order (an ephemeral consumer, acks none)."""
        info = await self.js.stream_info(stream)
        if not info.state.messages:
            return []
        config = ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=DeliverPolicy.ALL,
                                filter_subject=subject, inactive_threshold=30.0)
        sub = await self.js.pull_subscribe(subject, durable=None, stream=stream, config=config)
        out: list[Any] = []
        try:
            while len(out) < info.state.messages:
                try:
                    out.extend(await sub.fetch(1000, timeout=2))
                except (TimeoutError, nats.errors.TimeoutError):
                    break
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        return out


# -- what the store says --------------------------------------------------------------------------


def outbound_notifications(app: Reflow) -> int:
    """How many events of the store become outbound messages."""
    n, position = 0, 0
    while True:
        page = app.recorder.select_notifications(position, 5000, topics=TOPICS, inclusive_of_start=False)
        if not page:
            return n
        n += len(page)
        position = page[-1].id


@dataclass
class Verdict:
    """What a finished run is checked against; every number is reported."""

    orders: int = 0
    inbound: int = 0
    outbound: int = 0
    dead_letters: int = 0
    losses: int = 0
    duplicates: int = 0
    leaks: int = 0
    problems: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < 30:
            self.problems.append(text)

    def check(self) -> None:
        assert not self.problems, "\n".join(self.problems)


def order_state(app: Reflow, wl: Workload) -> dict[str, Any]:
    """Per order: status and each allocation (id, supplier, status, lines, tracking)."""
    state = {}
    for o in wl.orders:
        order = app.order(*o.shop, o.order_id)
        allocs = sorted((a.allocation_id, a.supplier_id, a.status,
                         tuple((al.line_id, al.supplier_sku_id) for al in a.lines), a.tracking_no,
                         a.loss_risks) for a in app.allocations_of(*o.shop, o.order_id))
        state[o.order_id] = (order.status if order else None, allocs)
    return state


def check_orders(app: Reflow, wl: Workload, v: Verdict) -> dict[str, Any]:
    """Every order ended as its fate says: allocated exactly once, intercepts honoured (RT5, I1-I4)."""
    state = order_state(app, wl)
    for o in wl.orders:
        status, allocs = state[o.order_id]
        want_status, want = o.expected()
        got = Counter(a[2] for a in allocs)
        if status != want_status or got != want:
            v.problem(f"order {o.order_id} ({o.fate}): {status} {dict(got)}, expected {want_status} {dict(want)}")
            if sum(got.values()) > sum(want.values()):
                v.duplicates += sum(got.values()) - sum(want.values())
            else:
                v.losses += 1
        if sum(a[5] for a in allocs) != o.loss_risks():
            v.duplicates += 1
            v.problem(f"order {o.order_id}: {sum(a[5] for a in allocs)} loss risks recorded, "
                      f"expected {o.loss_risks()} (I7)")
        live = [a for a in allocs if a[2] in ("active", "tracked", "shipped")]
        covered = Counter(part for a in live for part in a[3])  # (line, supplier SKU): L4 bundles
        if any(c > 1 for c in covered.values()):
            v.duplicates += 1
            v.problem(f"order {o.order_id}: a line's part is in two live allocations: {live}")
        if o.fate in ("address", "bundle"):
            buyer = app.buyer(*o.shop, o.order_id)
            if buyer is None or buyer.address != o.new_buyer["address"]:
                v.problem(f"order {o.order_id}: the newer address did not win (I4)")
    # RT7: stock taken equals what the live allocations hold, never more
    units = wl.expected_units()
    for supplier, offer_id, sku in offers():
        taken = wl.stock - app.offer(supplier, offer_id).available(sku)
        if taken != units[(supplier, sku)]:
            v.problem(f"offer {offer_id}: {taken} units taken, expected {units[(supplier, sku)]} (RT7)")
    return state


async def check_outbound(b: Broker, app: Reflow, wl: Workload, v: Verdict) -> list[Any]:
    """REFLOW_OUT holds every outbound event of the store exactly once, and nothing else."""
    expected = outbound_notifications(app)
    await b.until_count("REFLOW_OUT", expected, timeout=120)
    out = await b.read("REFLOW_OUT")
    v.outbound = len(out)
    ids = Counter(m.headers.get("Nats-Msg-Id") for m in out)
    repeated = {k: n for k, n in ids.items() if n > 1}
    if repeated:
        v.duplicates += sum(n - 1 for n in repeated.values())
        v.problem(f"REFLOW_OUT: {len(repeated)} message ids more than once, e.g. {list(repeated)[:3]}")
    if len(ids) != expected:
        v.losses += max(0, expected - len(ids))
        v.problem(f"REFLOW_OUT: {len(ids)} distinct messages for {expected} outbound events")
    positions = sorted(int(k.removeprefix(MSG_ID_PREFIX)) for k in ids if k)
    if positions != sorted(set(positions)):
        v.problem("REFLOW_OUT: positions repeat")
    kinds = Counter(m.subject.rsplit(".", 1)[1] for m in out)
    want = wl.outbound_expected()
    for kind in ("allocation", "intercept", "shipment"):
        if kinds[kind] != want[kind]:
            v.problem(f"REFLOW_OUT: {kinds[kind]} {kind} messages, expected {want[kind]}")
    per_alloc = Counter((m.subject.rsplit(".", 1)[1], json.loads(m.data)["allocation_id"])
                        for m in out if not m.subject.endswith((".stock", ".shipment")))
    twice = [k for k, n in per_alloc.items() if n > 1]
    if twice:
        v.duplicates += len(twice)
        v.problem(f"REFLOW_OUT: an allocation's message more than once: {twice[:3]}")
    return out


def projection_snapshot(path: Path) -> dict[str, list[tuple]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        views = [r[0] for r in con.execute(
            "SELECT view_name FROM duckdb_views() WHERE NOT internal AND schema_name = 'main'").fetchall()]
        return {name: con.execute(f'SELECT * FROM "{name}" ORDER BY ALL').fetchall() for name in sorted(views)}
    finally:
        con.close()


def check_projections(app: Reflow, settings: Settings, tmp: Path, v: Verdict, *,
                      resume: bool = True) -> dict[str, list[tuple]]:
    """The projections serve built across crashes equal a fresh rebuild from the event store alone.

    With ``resume`` the runner first resumes from serve's working file and catches up (what the
    next ``reflow serve`` does at start), so what is compared is exactly-once across the kills;
    without it the analysts' file exactly as serve left it is compared."""
    from projections.rebuild import rebuild
    from projections.runner import ProjectionRunner

    if resume:
        with ProjectionRunner(app, settings.duckdb_path) as runner:
            runner.catch_up()
    live = projection_snapshot(settings.duckdb_path)
    fresh_path = tmp / "rebuilt.duckdb"
    rebuild(app, fresh_path, progress=False)
    fresh = projection_snapshot(fresh_path)
    for name in sorted(set(live) | set(fresh)):
        a, b = live.get(name, []), fresh.get(name, [])
        if name == "projection_status":  # (position, events, updated_at): the time differs
            a, b = [r[:2] for r in a], [r[:2] for r in b]
        if a != b:
            v.problem(f"projection view {name}: {len(a)} rows live, {len(b)} rebuilt; "
                      f"first difference {next((x for x in (set(a) ^ set(b))), None)}")
    return fresh


def duckdb_text(path: Path) -> bytes:
    """Every row of every table and view of a DuckDB file, as text."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = []
        for schema, name in con.execute(
                "SELECT schema_name, table_name FROM duckdb_tables() UNION ALL "
                "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall():
            for row in con.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall():
                out.append(repr(row))
        return "\n".join(out).encode()
    finally:
        con.close()


def store_files(store: str) -> list[Path]:
    """The SQLite event store's files (the database and its write-ahead log)."""
    from adapters.store import store_env

    env = store_env(store)
    if env["PERSISTENCE_MODULE"] != "eventsourcing.sqlite":
        return []
    db = Path(env["SQLITE_DBNAME"])
    return [p for p in (db, Path(f"{db}-wal")) if p.exists()]


async def check_leaks(b: Broker, wl: Workload, v: Verdict, *, logs: bytes, duckdb_files: list[Path],
                      store: str, out: list[Any] | None = None, dead: list[Any] | None = None,
                      dead_bodies: bool = True) -> dict[str, int]:
    """P2: no consumer data of the run in clear in supplier/shop messages, dead letters, projections,
    logs or the event store. REFLOW_IN (the producers' own copy) must hit: the scan works."""
    tokens, phones = wl.canaries()
    hits: dict[str, int] = collections.defaultdict(int)

    def look(where: str, data: bytes) -> None:
        found = scan(data, tokens, phones)
        if found:
            hits[where] += len(found)

    for m in out if out is not None else await b.read("REFLOW_OUT"):
        look("REFLOW_OUT", m.data + repr(m.headers).encode())
    for m in dead if dead is not None else await b.read("REFLOW_DLQ"):
        look("REFLOW_DLQ headers", repr(m.headers).encode())
        if dead_bodies:
            look("REFLOW_DLQ bodies", m.data)
    look("serve logs", logs)
    for path in duckdb_files:
        look(f"projection {path.name}", duckdb_text(path))
    for path in store_files(store):
        look(f"event store {path.name}", path.read_bytes())
    control = await b.read(IN_STREAM, "reflow.in.order.placed")
    control_hits = sum(len(scan(m.data, tokens, phones)) for m in control[:200])
    assert control_hits > 0 or not control, "the leak scan found nothing even in REFLOW_IN: it is broken"
    v.leaks += sum(hits.values())
    for where, n in hits.items():
        v.problem(f"P2: {n} clear consumer values in {where}")
    return dict(hits)


def run(coro: Any, timeout: float) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(bounded())


def open_store(settings: Settings) -> Reflow:
    return open_app(settings)
