"""End-to-end rate of `reflow serve`: orders/s from the first publish on REFLOW_IN until the last
allocation message is on REFLOW_OUT, next to a bare nats-py pull consumer (fetch + ack, no work)
over the same number of messages, on the same machine in the same run.

    python -m tests.bench.bench_e2e            # 5,000 orders, SQLite store
    python -m tests.bench.bench_e2e --quick    # 500
    python -m tests.bench.bench_e2e --store postgresql://postgres@127.0.0.1:5432/test?schema=bench

Not collected by pytest (the file name does not start with test_).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig

from adapters.natsserver import NatsServer
from adapters.serve import CONSUMER, IN_STREAM
from tests.adapters.natsworld import catalog, order_body

ROOT = Path(__file__).resolve().parents[2]


async def publish_all(js, items: list[tuple[str, bytes]], tag: str) -> None:
    futures = []
    for n, (subject, data) in enumerate(items):
        futures.append(await js.publish_async(subject, data, headers={"Nats-Msg-Id": f"{tag}-{n}"}))
    await asyncio.gather(*futures)


async def bare_consumer(url: str, n: int, batch: int) -> float:
    """Publish n order bodies to a stream and consume them with fetch + ack, concurrently."""
    nc = await nats.connect(url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BARE", subjects=["bare.>"], storage=StorageType.FILE))
    await js.add_consumer("BARE", ConsumerConfig(durable_name="bare", ack_policy=AckPolicy.EXPLICIT,
                                                 max_ack_pending=batch))
    sub = await js.pull_subscribe_bind(durable="bare", stream="BARE")
    bodies = [("bare.order.placed", json.dumps(order_body(f"B-{i}"), ensure_ascii=False).encode())
              for i in range(n)]

    async def consume() -> None:
        got = 0
        while got < n:
            try:
                msgs = await sub.fetch(batch, timeout=1)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            for m in msgs:
                await m.ack()
            got += len(msgs)

    t0 = time.perf_counter()
    consumer = asyncio.create_task(consume())
    await publish_all(js, bodies, "bare")
    await consumer
    elapsed = time.perf_counter() - t0
    await nc.close()
    return elapsed


async def end_to_end(url: str, n: int, store: str, data_dir: Path, batch: int) -> tuple[float, float]:
    """Returns (seconds from first publish to last allocation out, seconds to publish)."""
    log = open(data_dir / "serve.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "adapters.cli", "--store", store, "--nats", url, "--data-dir",
         str(data_dir), "serve", "--batch", str(batch)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        for _ in range(200):
            try:
                await js.consumer_info(IN_STREAM, CONSUMER)
                break
            except Exception:  # noqa: BLE001
                await asyncio.sleep(0.1)
        setup = [(f"reflow.in.{s}", json.dumps(b, ensure_ascii=False).encode())
                 for s, b in catalog(stock=10_000_000)]
        await publish_all(js, setup, "setup")
        done, seen = asyncio.Event(), set()
        first = asyncio.Event()

        async def on_allocation(msg) -> None:
            seen.add(msg.headers.get("Nats-Msg-Id"))
            if len(seen) >= 1:
                first.set()
            if len(seen) >= n + 1:  # + the warm-up order
                done.set()

        await nc.subscribe("reflow.out.supplier.*.allocation", cb=on_allocation)
        await publish_all(js, [("reflow.in.order.placed",
                                json.dumps(order_body("warm-up"), ensure_ascii=False).encode())], "warm")
        await asyncio.wait_for(first.wait(), 60)
        orders = [("reflow.in.order.placed", json.dumps(order_body(f"E-{i}"), ensure_ascii=False).encode())
                  for i in range(n)]
        t0 = time.perf_counter()
        await publish_all(js, orders, "e2e")
        published = time.perf_counter() - t0
        await asyncio.wait_for(done.wait(), timeout=max(120, n / 20))
        return time.perf_counter() - t0, published
    finally:
        await nc.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--quick", action="store_true", help="500 orders")
    parser.add_argument("--store", default=None, help="event store URL (default: SQLite in a temp dir)")
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    n = 500 if args.quick else args.n
    with tempfile.TemporaryDirectory(prefix="reflow-bench-") as tmp:
        tmp_path = Path(tmp)
        store = args.store or f"sqlite:///{tmp_path}/events.db"
        with NatsServer(store_dir=tmp_path / "js") as server:
            bare = await bare_consumer(server.url, n, args.batch)
            e2e, published = await end_to_end(server.url, n, store, tmp_path, args.batch)
    kind = store.split(":", 1)[0]
    print(f"\n{n} orders, batch {args.batch}, store {kind}, {os.cpu_count()} CPUs\n")
    print(f"{'pipeline':<52}{'seconds':>10}{'msgs/s':>12}")
    print(f"{'bare nats-py pull consumer (fetch + ack)':<52}{bare:>10.2f}{n / bare:>12.0f}")
    print(f"{'reflow serve: publish -> allocation on REFLOW_OUT':<52}{e2e:>10.2f}{n / e2e:>12.0f}")
    print(f"{'  (of which publishing the orders)':<52}{published:>10.2f}{n / published:>12.0f}")
    print(f"\nreflow serve runs at {bare / e2e:.1%} of the bare consumer's rate "
          f"({e2e / bare:.1f}x slower)")


if __name__ == "__main__":
    asyncio.run(main())
