"""How reflow's routers scale out (issue 18): 1, 2, 3 ``reflow serve --partitions 3`` processes on
one PostgreSQL store and one partitioned REFLOW_IN, next to the store's raw commit rate.

    python -m tests.bench.bench_routers [--orders 20000] [--routers 1,2,3] [--rate 300] [--seconds 15]
                                        [--shops 24] [--pg postgresql://postgres@127.0.0.1:5432/test]
                                        [--format table|csv|json]

For each router count n, on a fresh PostgreSQL database and a fresh single-node NATS server (one
node: the routers are measured, not NATS replication), always with 3 partitions (the same lanes;
with n=1 one router holds them all):

1. setup: the supplier, an offer with unlimited stock and its price (the contract's subjects, lane
   ``general``), then one link per shop in the shop form (``reflow.in.link.set.<platform>.<shop>``),
   then a few hundred warm-up orders; each step waited for until every lane applied it;
2. throughput: N orders round-robin over the shops, in the shop form, published as fast as
   possible (publish_async in chunks); orders/s = N / (first publish .. every lane's consumer has
   nothing pending or unacknowledged). How long until the last allocation was on REFLOW_OUT too;
3. latency: orders paced at a fixed offered rate; per order, publish .. its allocation on REFLOW_OUT
   (``reflow.out.supplier.<id>.allocation``, seen by an ordered consumer made before publishing).

Raw limit: eventsourcing's batched append of the same orders' events on PostgreSQL (``suite.raw_append``).
Progress goes to stderr; the table (or CSV / JSON) to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nats
from nats.js.api import DeliverPolicy

from adapters.bootstrap import Settings, open_app
from adapters.natsserver import NatsServer
from adapters.partitions import shop_subject
from adapters.routerprocs import IN_STREAM, Routers
from engine.ids import new_allocation_id
from tests.adapters.natsworld import OFFER, SUPPLIER, catalog, order_body, single_link
from tests.bench.suite import pg_database, raw_append

PARTITIONS = 3
OUT_STREAM = "REFLOW_OUT"
OUT_ALLOCATIONS = "reflow.out.supplier.*.allocation"
PG = "postgresql://postgres@127.0.0.1:5432/test"
CHUNK = 1000
STARTED = time.perf_counter()


def say(text: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.0f}s] {text}", file=sys.stderr, flush=True)


@dataclass
class Result:
    routers: int
    orders: int
    applied_s: float
    orders_per_s: float
    out_s: float
    """first publish .. the last of these orders' allocations on REFLOW_OUT"""
    publish_s: float
    """first .. last publish acknowledged by the stream"""
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    offered_per_s: float | None = None
    latency_orders: int = 0
    allocations: int = 0
    lanes: dict[str, int] = field(default_factory=dict)
    lane_p50_ms: dict[str, float] = field(default_factory=dict)
    """the latency step's p50 per lane: a lane held by a router without the publisher waits for it"""
    exit_codes: list[int | None] = field(default_factory=list)
    cpu_ms_per_order: dict[str, float] = field(default_factory=dict)
    """CPU time (user + system) per order of the throughput step, by kind of process."""


TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _children(pid: int) -> list[int]:
    """Every child process, whichever of its threads started it."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except FileNotFoundError:
            continue
    return out


def cpu_snapshot(routers: Routers, nats_pid: int) -> dict[str, float]:
    """CPU seconds so far: the routers (their engine), their children (the REFLOW_OUT publisher and
    the projections), nats-server, every postgres process of the machine, and this client."""
    mains = [p.pid for p in routers.procs if p is not None]
    postgres = [int(d.name) for d in Path("/proc").iterdir() if d.name.isdigit()
                and (d / "comm").exists() and (d / "comm").read_text().strip() == "postgres"]
    return {"routers": sum(_cpu_of(p) for p in mains),
            "publisher+projections": sum(_cpu_of(c) for p in mains for c in _children(p)),
            "postgres": sum(_cpu_of(p) for p in postgres), "nats": _cpu_of(nats_pid),
            "client": _cpu_of(os.getpid())}


def shops(count: int) -> list[tuple[str, str]]:
    platforms = ("douyin", "kuaishou")
    return [(platforms[i % 2], f"{platforms[i % 2][:2]}-b{i}") for i in range(count)]


OFFERS = 1
"""How many suppliers (each with its own offer) the shops are spread over (``--offers``): 1 puts
every order on one best-selling offer, which every router must write (the worst case); as many
as shops leaves the routers nothing to share but the store."""


def supplier_of(shop_index: int) -> tuple[str, str]:
    """(supplier, offer) that shop ``shop_index`` sells from."""
    k = shop_index % OFFERS
    return (SUPPLIER, OFFER) if OFFERS == 1 else (f"{SUPPLIER}-{k}", f"{OFFER}{k}")


def supply_messages(stock: int) -> list[tuple[str, dict]]:
    """The catalog's supplier, offer and price, once per supplier."""
    out = []
    for k in range(OFFERS):
        supplier, offer = supplier_of(k)
        for subject, body in catalog(stock=stock):
            if subject.startswith("link."):
                continue
            body = {**body, "supplier_id": supplier}
            if "offer_id" in body:
                body["offer_id"] = offer
            out.append((subject, body))
    return out


def order_item(prefix: str, i: int, shop: tuple[str, str]) -> tuple[str, bytes, str, str]:
    """(subject, body, Nats-Msg-Id, the allocation id it should make) of one order placed now."""
    order_id = f"{prefix}-{i}"
    body = order_body(order_id, placed_at=datetime.now(UTC).isoformat(timespec="seconds"))
    body.update(platform=shop[0], shop_id=shop[1])
    subject = shop_subject("reflow.in.order.placed", *shop)
    return (subject, json.dumps(body, ensure_ascii=False).encode(), order_id,
            new_allocation_id(shop[0], shop[1], order_id, supplier_of(int(shop[1].rsplit("b", 1)[1]))[0], 0))


async def publish(js: Any, items: list[tuple[str, bytes, str]]) -> None:
    for start in range(0, len(items), CHUNK):
        futures = [await js.publish_async(s, d, headers={"Nats-Msg-Id": m}) for s, d, m in items[start:start + CHUNK]]
        await asyncio.gather(*futures)


async def count_out(js: Any) -> int:
    info = await js.stream_info(OUT_STREAM, subjects_filter=OUT_ALLOCATIONS)
    return sum((info.state.subjects or {}).values())


async def wait_out(js: Any, routers: Routers, expected: int, timeout: float) -> int:
    """Until REFLOW_OUT holds ``expected`` allocations (the publisher caught up); how many it holds."""
    deadline = time.monotonic() + timeout
    while (got := await count_out(js)) < expected:
        routers.check()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{got} of {expected} allocations on {OUT_STREAM} after {timeout:.0f}s; "
                               f"logs in {routers.log_dir}")
        await asyncio.sleep(0.05)
    return got


async def shop_lanes(js: Any) -> dict[tuple[str, str], str]:
    """Each shop's lane, as the stream's transform put its link.set."""
    info = await js.stream_info(IN_STREAM, subjects_filter="reflow.in.link.set.*.*.*")
    return {(t[4], t[5]): f"p{t[6]}" for t in (s.split(".") for s in info.state.subjects or {})}


async def lane_split(js: Any) -> dict[str, int]:
    """Orders stored per partition (the stream's transform appended it to the subject)."""
    info = await js.stream_info(IN_STREAM, subjects_filter="reflow.in.order.placed.*.*.*")
    split: Counter[str] = Counter()
    for subject, count in (info.state.subjects or {}).items():
        split[f"p{subject.rsplit('.', 1)[1]}"] += count
    return dict(sorted(split.items()))


async def run_routers(n: int, args: argparse.Namespace, work: Path) -> Result:
    shop_list = shops(args.shops)
    with pg_database(args.pg) as db, NatsServer(store_dir=work / "js", log_file=work / "nats.log") as server:
        settings = Settings(store=db, nats_url=server.url, data_dir=work / "data")
        open_app(settings).close()  # the store and its key, once, before the routers start together
        routers = Routers(n, settings, work / "logs", partitions=PARTITIONS, batch=args.batch)
        nc = await nats.connect(server.url, pending_size=256 * 1024 * 1024)
        js = nc.jetstream()
        try:
            routers.start()
            await routers.ready(js, timeout=120)
            say(f"{n} router(s): ready; catalog and {len(shop_list)} shops' links")
            supply = [(f"reflow.in.{s}", json.dumps(b).encode(), f"setup-{k}")
                      for k, (s, b) in enumerate(supply_messages(10**9))]
            await publish(js, supply)
            await routers.settled(js)
            links = []
            for index, (platform, shop_id) in enumerate(shop_list):
                body = single_link()
                body.update(platform=platform, shop_id=shop_id)
                supplier, offer = supplier_of(index)
                for component in body["skus"][0]["alternatives"][0]["components"]:
                    component.update(supplier_id=supplier, offer_id=offer)
                links.append((shop_subject("reflow.in.link.set", platform, shop_id),
                              json.dumps(body, ensure_ascii=False).encode(), f"link-{platform}-{shop_id}"))
            await publish(js, links)
            await routers.settled(js)

            warm = max(len(shop_list), min(600, args.orders // 5))
            say(f"{n} router(s): warming up with {warm} orders")
            await publish(js, [order_item("warm", i, shop_list[i % len(shop_list)])[:3] for i in range(warm)])
            await routers.settled(js, timeout=300)
            await wait_out(js, routers, warm, timeout=300)
            await asyncio.sleep(1.0)

            say(f"{n} router(s): throughput, {args.orders} orders")
            items = [order_item("t", i, shop_list[i % len(shop_list)]) for i in range(args.orders)]
            cpu0 = cpu_snapshot(routers, server.proc.pid)
            t0 = time.perf_counter()
            await publish(js, [it[:3] for it in items])
            published = time.perf_counter() - t0
            await routers.settled(js, timeout=max(300, args.orders / 20))
            applied = time.perf_counter() - t0
            await wait_out(js, routers, warm + args.orders, timeout=max(300, args.orders / 20))
            out = time.perf_counter() - t0
            cpu1 = cpu_snapshot(routers, server.proc.pid)
            result = Result(n, args.orders, applied, args.orders / applied, out, published)
            result.cpu_ms_per_order = {k: 1000 * (cpu1[k] - cpu0[k]) / args.orders for k in cpu0}
            say(f"{n} router(s): {result.orders_per_s:,.0f} orders/s applied ({applied:.1f} s; publish "
                f"{published:.1f} s; all allocations out at {out:.1f} s)")

            if args.seconds > 0 and args.rate > 0:
                say(f"{n} router(s): latency at {args.rate:g} orders/s for {args.seconds:g} s")
                await asyncio.sleep(1.0)
                await latency(js, routers, args, shop_list, result)
                say(f"{n} router(s): p50 {result.p50_ms:.0f} ms, p99 {result.p99_ms:.0f} ms "
                    f"(offered {result.offered_per_s:.0f}/s)")
            result.allocations = await wait_out(js, routers, warm + args.orders + result.latency_orders, timeout=120)
            result.lanes = await lane_split(js)
        finally:
            result_codes = routers.stop()
            await nc.close()
    if any(c not in (0, None) for c in result_codes):
        say(f"{n} router(s): exit codes {result_codes}; logs in {work / 'logs'}")
    result.exit_codes = result_codes
    return result


async def latency(js: Any, routers: Routers, args: argparse.Namespace, shop_list: list[tuple[str, str]],
                  result: Result) -> None:
    count = int(args.rate * args.seconds)
    items = [order_item("l", i, shop_list[i % len(shop_list)]) for i in range(count)]
    lane_of = await shop_lanes(js)
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}

    async def seen(msg: Any) -> None:
        arrived.setdefault(json.loads(msg.data)["allocation_id"], time.perf_counter())

    sub = await js.subscribe(OUT_ALLOCATIONS, stream=OUT_STREAM, cb=seen, ordered_consumer=True,
                             deliver_policy=DeliverPolicy.NEW)
    try:
        futures = []
        t0 = time.perf_counter()
        for i, (subject, data, msg_id, key) in enumerate(items):
            delay = t0 + i / args.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[key] = time.perf_counter()
            futures.append(await js.publish_async(subject, data, headers={"Nats-Msg-Id": msg_id}))
        result.offered_per_s = count / (time.perf_counter() - t0)
        await asyncio.gather(*futures)
        deadline = time.monotonic() + max(60, args.seconds * 4)
        while not sent.keys() <= arrived.keys():
            routers.check()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(sent.keys() - arrived.keys())} of {count} latency orders' allocations "
                                   f"not on {OUT_STREAM}; logs in {routers.log_dir}")
            await asyncio.sleep(0.01)
    finally:
        await sub.unsubscribe()
    lat = sorted((arrived[k] - t) * 1000 for k, t in sent.items())
    result.p50_ms, result.p99_ms = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    result.max_ms, result.latency_orders = lat[-1], count
    by_lane: dict[str, list[float]] = {}
    for i, (*_, key) in enumerate(items):
        by_lane.setdefault(lane_of.get(shop_list[i % len(shop_list)], "?"), []).append((arrived[key] - sent[key]) * 1000)
    result.lane_p50_ms = {lane: sorted(v)[len(v) // 2] for lane, v in sorted(by_lane.items())}


# -- output -------------------------------------------------------------------------------------


def records(results: list[Result], raw: float | None) -> list[dict[str, Any]]:
    one = next((r.orders_per_s for r in results if r.routers == 1), None)
    rows = []
    for r in results:
        speedup = r.orders_per_s / one if one else None
        rows.append({**asdict(r), "speedup": speedup, "efficiency": speedup / r.routers if speedup else None,
                     "vs_raw": r.orders_per_s / raw if raw else None, "raw_pg_append_per_s": raw,
                     "partitions": PARTITIONS, "cpus": os.cpu_count()})
    return rows


def fmt(v: float | None, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(rows: list[dict[str, Any]], raw: float | None, args: argparse.Namespace, wall: float) -> str:
    cpus = os.cpu_count()
    lines = [f"reflow routers: {PARTITIONS} partitions, PostgreSQL, 1 NATS node, {args.orders:,} orders",
             f"over {args.shops} shops; {cpus} CPUs; {datetime.now(UTC):%Y-%m-%d}; {wall:.0f} s", ""]
    head = f"{'routers':>7} {'orders/s':>9} {'vs 1':>6} {'per rtr':>8} {'vs raw':>7} {'p50 ms':>7} {'p99 ms':>7}"
    lines += [head, "-" * len(head)]
    for r in rows:
        speedup = fmt(r["speedup"], ".2f") + ("x" if r["speedup"] else "")
        lines.append(f"{r['routers']:>7} {r['orders_per_s']:>9,.0f} {speedup:>6} {fmt(r['efficiency'], '.0%'):>8} "
                     f"{fmt(r['vs_raw'], '.2f'):>7} {fmt(r['p50_ms'], ',.0f'):>7} {fmt(r['p99_ms'], ',.0f'):>7}")
    lines += ["", f"raw PostgreSQL append (eventsourcing, batch {args.batch}): {fmt(raw, ',.0f')} orders/s"]
    for r in rows:
        lanes = " ".join(f"{k} {v:,}" for k, v in r["lanes"].items())
        p50s = ", ".join(f"{k} {v:,.0f}" for k, v in r["lane_p50_ms"].items()) or "-"
        lines += [f"{r['routers']} router(s), exit codes {r['exit_codes']}:",
                  f"  applied {r['orders']:,} in {r['applied_s']:.2f} s (published in {r['publish_s']:.2f} s)",
                  f"  last allocation out at {r['out_s']:.2f} s = {r['orders'] / r['out_s']:,.0f} orders/s end to end",
                  f"  latency: {r['latency_orders']:,} orders at {fmt(r['offered_per_s'], ',.0f')}/s, "
                  f"max {fmt(r['max_ms'], ',.0f')} ms",
                  f"  latency p50 ms by lane: {p50s}",
                  f"  orders by lane: {lanes}; {r['allocations']:,} allocations out"]
        cpu = r["cpu_ms_per_order"]
        if cpu:
            lines += ["  CPU ms per order: " + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items()),
                      f"    = {sum(cpu.values()):.2f} ms in all: {1000 / max(sum(cpu.values()), 1e-9):,.0f} orders "
                      f"per CPU-second; one core of routing alone: {1000 / max(cpu['routers'], 1e-9):,.0f}/s"]
    lines += ["", "notes:",
              "- orders/s: first publish until no lane's consumer has anything pending or",
              "  unacknowledged. vs 1: speed-up over 1 router; per rtr: speed-up / routers;",
              "  vs raw: orders/s / the raw PostgreSQL append rate (the store's commit limit).",
              "- p50/p99: publish .. the order's allocation on REFLOW_OUT, at the offered rate.",
              "- one NATS node: the routers are measured, not replication. NATS, PostgreSQL,",
              f"  the routers and this client share the machine's {cpus} CPUs.",
              "- one router also runs the REFLOW_OUT publisher, one the DuckDB projections;",
              ("  every order allocates from the same supplier offer (one hot offer)." if OFFERS == 1 else
               f"  the shops sell from {OFFERS} suppliers' offers (shop i from offer i mod {OFFERS}).")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.bench_routers", description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=20_000, help="orders for the throughput step")
    parser.add_argument("--routers", default="1,2,3", help="router counts to run, comma-separated")
    parser.add_argument("--rate", type=float, default=300.0, help="offered orders/s for the latency step")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of the latency step (0: skip)")
    parser.add_argument("--shops", type=int, default=24)
    parser.add_argument("--offers", type=int, default=1,
                        help="suppliers (one offer each) the shops are spread over; 1: one hot offer")
    parser.add_argument("--batch", type=int, default=256, help="routers' --batch and the raw append's")
    parser.add_argument("--pg", default=PG, help="PostgreSQL server (a database is created and dropped per run)")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs) afterwards")
    args = parser.parse_args(argv)
    global OFFERS
    OFFERS = max(1, args.offers)
    counts = [int(x) for x in args.routers.split(",") if x.strip()]
    if not counts or any(c < 1 for c in counts):
        parser.error("--routers: positive counts, e.g. 1,2,3")
    work = Path(tempfile.mkdtemp(prefix="reflow-bench-routers-"))
    say(f"work directory {work}; {os.cpu_count()} CPUs")
    ok = False
    try:
        say(f"raw: eventsourcing batched append on PostgreSQL, {args.orders} orders")
        with pg_database(args.pg) as db:
            (work / "raw").mkdir()
            raw = raw_append(db, work / "raw", args.orders, args.batch)
        say(f"raw: {raw:,.0f} orders/s")
        results = [asyncio.run(run_routers(n, args, work / f"routers{n}")) for n in counts]
        ok = True
    finally:
        if ok and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"logs kept in {work}")
    rows = records(results, raw)
    if args.format == "json":
        print(json.dumps({"cpus": os.cpu_count(), "partitions": PARTITIONS, "raw_pg_append_per_s": raw,
                          "runs": rows}, indent=2))
    elif args.format == "csv":
        out = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        out.writeheader()
        for r in rows:
            out.writerow({k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in r.items()})
    else:
        print(table(rows, raw, args, time.perf_counter() - STARTED))
    return 0


if __name__ == "__main__":
    sys.exit(main())
