"""`reflow serve` as a process: kill -9 mid-stream loses and duplicates nothing; SIGTERM drains
and exits 0."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.bootstrap import Settings, open_app
from adapters.serve import CONSUMER, IN_STREAM
from tests.adapters.natsworld import SHOP, catalog, client, order_body, run

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]


def start_serve(nats_url: str, store: str, data_dir: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "adapters.cli", "--store", store, "--nats", nats_url,
           "--data-dir", str(data_dir), "serve", "--ack-wait", "2", "--batch", "128"]
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


async def consumer_ready(c, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "reflow serve exited early"
        with contextlib.suppress(Exception):
            await c.js.consumer_info(IN_STREAM, CONSUMER)
            return
        await asyncio.sleep(0.1)
    raise TimeoutError("reflow serve did not create its consumer")


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(x) for x in out.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


async def wait_gone(pids: list[int], timeout: float = 45) -> None:
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"processes {[p for p in pids if alive(p)]} outlived serve"
        await asyncio.sleep(0.1)


def test_kill_9_mid_stream_loses_nothing_and_duplicates_nothing(nats_server, sqlite_store, tmp_path):
    n_orders = 2000
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    procs: list[subprocess.Popen] = []

    async def story():
        async with client(nats_server.url) as c:
            procs.append(start_serve(nats_server.url, sqlite_store, data_dir, log))
            await consumer_ready(c, procs[-1])
            await c.send_many(catalog(stock=100_000))
            await c.send_many([("order.placed", order_body(f"K-{n}")) for n in range(n_orders)])
            # Kill it once some allocations are out and many orders are still to come.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                info = await c.js.consumer_info(IN_STREAM, CONSUMER)
                if info.ack_floor.stream_seq > 300:
                    break
                await asyncio.sleep(0.02)
            helpers = children(procs[-1].pid)  # the projection process
            procs[-1].kill()
            procs[-1].wait()
            info = await c.js.consumer_info(IN_STREAM, CONSUMER)
            assert info.num_pending > 0, "serve finished before it could be killed"
            assert helpers, "serve runs its projections in a child process"
            await wait_gone(helpers)  # no orphan keeps the DuckDB file after serve died

            procs.append(start_serve(nats_server.url, sqlite_store, data_dir, log))
            await c.settled(timeout=90)
            out = await c.bodies("REFLOW_OUT", "reflow.out.supplier.*.allocation", at_least=n_orders, timeout=30)
            assert stop(procs[-1]) == 0

        per_allocation = collections.Counter(b["allocation_id"] for b in out)
        assert len(per_allocation) == n_orders
        assert set(per_allocation.values()) == {1}
        app = open_app(Settings(store=sqlite_store, data_dir=data_dir))
        try:
            allocated = [app.allocations_of(*SHOP, f"K-{n}") for n in range(n_orders)]
            assert all(len(a) == 1 for a in allocated)
            assert {a[0].allocation_id for a in allocated} == set(per_allocation)
            assert app.offer("yiwu-case-01", "6541236987").available("4987001") == 100_000 - n_orders
        finally:
            app.close()

    try:
        run(story, timeout=170)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_sigterm_drains_the_batch_in_flight_publishes_and_exits_0(nats_server, sqlite_store, tmp_path):
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    proc = start_serve(nats_server.url, sqlite_store, data_dir, log)

    async def story():
        async with client(nats_server.url) as c:
            await consumer_ready(c, proc)
            await c.send_many(catalog())
            await c.send_many([("order.placed", order_body(f"T-{n}")) for n in range(300)])
            while (await c.js.consumer_info(IN_STREAM, CONSUMER)).ack_floor.stream_seq < 50:
                await asyncio.sleep(0.01)
            assert await asyncio.to_thread(stop, proc) == 0
            info = await c.js.consumer_info(IN_STREAM, CONSUMER)
            assert info.num_ack_pending == 0  # nothing left half done
            acked_orders = info.ack_floor.stream_seq - len(catalog())
            out = await c.bodies("REFLOW_OUT", "reflow.out.supplier.*.allocation")
            assert len(out) == acked_orders  # everything applied was published before exit

    try:
        run(story)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text()
