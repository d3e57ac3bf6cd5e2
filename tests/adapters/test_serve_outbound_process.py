"""`reflow serve` publishing REFLOW_OUT from a supervised child process (adapters/outbounding.py),
and its garbage collector settings (adapters/gctune.py), as real processes: the publisher killed
mid-stream is restarted and nothing is lost or published twice; SIGTERM drains and leaves no child
behind; the exit log reports the collector's pauses, and REFLOW_GC=default still serves."""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters import gctune
from adapters.serve import CONSUMER, IN_STREAM, OUT_STREAM
from tests.adapters.natsworld import catalog, client, order_body, run
from tests.adapters.test_serve_process import ROOT, alive, children, consumer_ready, stop, wait_gone
from tests.adapters.test_serve_projections import _holds_duckdb

SERVE = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(180)]


def serve_test(fn):
    for mark in SERVE:
        fn = mark(fn)
    return fn

ALLOCATIONS = "reflow.out.supplier.*.allocation"
STARTED = re.compile(r"outbound: publisher process started \(pid (\d+)\)")


def start_serve(nats_url: str, store: str, data_dir: Path, log: Path,
                env: dict[str, str] | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "adapters.cli", "--store", store, "--nats", nats_url,
           "--data-dir", str(data_dir), "serve", "--ack-wait", "2", "--batch", "64"]
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ, **(env or {})})


def outbound_candidates(serve_pid: int) -> list[int]:
    """serve's children that are neither the projection process (it holds the DuckDB file open)
    nor multiprocessing's resource tracker."""
    found = []
    for pid in children(serve_pid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"resource_tracker" not in cmdline and not _holds_duckdb(pid) and alive(pid):
            found.append(pid)
    return found


async def outbound_process(serve_pid: int, log: Path, *, not_pid: int | None = None, timeout: float = 30) -> int:
    """The outbound publisher's pid: the one child of serve that is neither the projection process
    nor the resource tracker, and the pid serve's log names as the publisher it started."""
    deadline = time.monotonic() + timeout
    while True:
        found = outbound_candidates(serve_pid)
        named = [int(p) for p in STARTED.findall(log.read_text())]
        if len(found) == 1 and found[0] != not_pid and named and named[-1] == found[0]:
            return found[0]
        assert time.monotonic() < deadline, f"no outbound process found: children {found}, log names {named}"
        await asyncio.sleep(0.1)


async def allocation_messages(c, at_least: int, timeout: float = 60) -> list:
    return await c.messages(OUT_STREAM, ALLOCATIONS, at_least=at_least, timeout=timeout)


def kill_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()


@serve_test
def test_outbound_process_killed_is_restarted_and_nothing_is_lost_or_doubled(nats_server, sqlite_store, tmp_path):
    """kill -9 of the publisher child while orders flow: serve goes on, says so at ERROR, starts a
    new publisher (a new pid) by itself, and every order, sent before or after the kill, gets
    exactly one allocation message in REFLOW_OUT, all while serve still runs (not at its exit)."""
    before, after = 1500, 300
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    proc = start_serve(nats_server.url, sqlite_store, data_dir, log)
    killed: list[int] = []

    async def story():
        async with client(nats_server.url) as c:
            await consumer_ready(c, proc)
            victim = await outbound_process(proc.pid, log)
            await c.send_many(catalog(stock=100_000))
            await c.send_many([("order.placed", order_body(f"B-{n}")) for n in range(before)])
            deadline = time.monotonic() + 60  # kill it once some allocations are out, mid-stream
            while (await c.js.stream_info(OUT_STREAM)).state.messages < 50:
                assert time.monotonic() < deadline, "serve published nothing"
                await asyncio.sleep(0.01)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            await c.send_many([("order.placed", order_body(f"A-{n}")) for n in range(after)])

            successor = await outbound_process(proc.pid, log, not_pid=victim)
            assert successor != victim and not alive(victim)
            await c.settled(timeout=90)
            out = await allocation_messages(c, before + after)
            assert proc.poll() is None, "serve stopped when its publisher died"

            ids = collections.Counter(m.headers["Nats-Msg-Id"] for m in await c.messages(OUT_STREAM))
            stream = (await c.js.stream_info(OUT_STREAM)).state
            assert await asyncio.to_thread(stop, proc) == 0

        per_allocation = collections.Counter(m.data for m in out)
        bodies = [json.loads(m.data) for m in out]
        allocation_ids = collections.Counter(b["allocation_id"] for b in bodies)
        assert len(out) == before + after, "one allocation message per order, none lost, none doubled"
        assert len(allocation_ids) == before + after and set(allocation_ids.values()) == {1}
        assert set(per_allocation.values()) == {1}
        assert set(ids.values()) == {1} and stream.messages == len(ids) == stream.last_seq

    try:
        run(story, timeout=170)
    finally:
        kill_all([proc])
    text = log.read_text()
    assert re.search(rf"reflow ERROR outbound: the publisher process \(pid {killed[0]}\) died \(exit code -9\); "
                     r"starting it again in 1 s", text), text
    assert len(STARTED.findall(text)) >= 2
    assert "Traceback" not in text


@serve_test
def test_outbound_process_killed_while_waiting_to_be_woken_does_not_freeze_serve(nats_server, sqlite_store,
                                                                                  tmp_path):
    """kill -9 of an idle publisher (asleep, waiting for serve's wake-up): serve must not block
    on waking a dead child. It goes on consuming, restarts the publisher, publishes the orders
    sent after the kill, and still stops on SIGTERM with exit 0. (A multiprocessing.Event froze
    serve's event loop here: its set() waits for the killed sleeper to wake.)"""
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    proc = start_serve(nats_server.url, sqlite_store, data_dir, log)
    killed: list[int] = []

    async def story():
        async with client(nats_server.url) as c:
            await consumer_ready(c, proc)
            await c.send_many(catalog(stock=100_000))
            await c.send_many([("order.placed", order_body(f"B-{n}")) for n in range(20)])
            await c.settled()
            assert len(await allocation_messages(c, 20)) == 20
            for round_ in range(2):  # idle: the publisher sleeps in its wait for a wake-up
                await asyncio.sleep(1.0)
                victim = await outbound_process(proc.pid, log, not_pid=killed[-1] if killed else None)
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)
                await c.send_many([("order.placed", order_body(f"A{round_}-{n}")) for n in range(20)])
                await c.settled(timeout=30)  # serve's event loop still runs
                out = await allocation_messages(c, 40 + 20 * round_, timeout=30)
                assert len(out) == 40 + 20 * round_
                assert len({json.loads(m.data)["allocation_id"] for m in out}) == len(out)
            await outbound_process(proc.pid, log, not_pid=killed[-1])
            assert await asyncio.to_thread(stop, proc) == 0

    try:
        run(story, timeout=120)
    finally:
        kill_all([proc])
    text = log.read_text()
    for victim in killed:
        assert f"reflow ERROR outbound: the publisher process (pid {victim}) died (exit code -9)" in text, text
    assert "Traceback" not in text


@serve_test
def test_sigterm_after_a_burst_publishes_every_allocation_and_leaves_no_child_behind(nats_server, sqlite_store,
                                                                                     tmp_path):
    """SIGTERM right after a burst: serve finishes the batch in flight, its publisher child publishes
    the allocation of every order applied before it stops, serve exits 0 and reports that count, and
    none of serve's children (publisher, projection process, resource tracker) outlives it."""
    n_orders = 1500
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    proc = start_serve(nats_server.url, sqlite_store, data_dir, log)

    async def story():
        async with client(nats_server.url) as c:
            await consumer_ready(c, proc)
            await outbound_process(proc.pid, log)
            await c.send_many(catalog(stock=100_000))
            await c.send_many([("order.placed", order_body(f"T-{n}")) for n in range(n_orders)])
            while (await c.js.consumer_info(IN_STREAM, CONSUMER)).ack_floor.stream_seq < 100:
                await asyncio.sleep(0.005)
            helpers = children(proc.pid)
            assert len(helpers) >= 2, helpers  # the publisher and the projection process at least
            assert await asyncio.to_thread(stop, proc) == 0
            await wait_gone(helpers, timeout=15)

            info = await c.js.consumer_info(IN_STREAM, CONSUMER)
            assert info.num_ack_pending == 0
            applied = info.ack_floor.stream_seq - len(catalog())
            assert 0 < applied
            out = await c.messages(OUT_STREAM, ALLOCATIONS)
            assert len(out) == applied, "every allocation of an applied order published before exit"
            total = (await c.js.stream_info(OUT_STREAM)).state.messages
            return applied, total

    try:
        applied, total = run(story, timeout=170)
    finally:
        kill_all([proc])
    text = log.read_text()
    assert f"stopped: {applied + len(catalog())} applied, 0 dead-lettered, {total} published" in text, text
    assert "not fully published" not in text
    assert "Traceback" not in text


@serve_test
def test_serve_logs_gc_pauses_at_exit_and_serves_with_reflow_gc_default(nats_server, sqlite_store, tmp_path):
    """The exit log names the collector's pauses per generation, with tuned settings and with
    REFLOW_GC=default (CPython's own), which still routes and publishes every order."""
    data_dir = tmp_path / "data"
    for mode, env in (("tuned", {}), ("default", {"REFLOW_GC": "default"})):
        log = tmp_path / f"serve-{mode}.log"
        proc = start_serve(nats_server.url, sqlite_store, data_dir, log, env=env)
        prefix = f"{mode.upper()}-"

        async def story(proc=proc, prefix=prefix):
            async with client(nats_server.url) as c:
                await consumer_ready(c, proc)
                await c.send_many(catalog(stock=100_000))
                await c.send_many([("order.placed", order_body(f"{prefix}{n}")) for n in range(100)])
                await c.settled(timeout=60)
                bodies = [json.loads(m.data)
                          for m in await allocation_messages(c, 100 if prefix == "TUNED-" else 200)]
                assert proc.poll() is None
                assert await asyncio.to_thread(stop, proc) == 0
                return bodies

        try:
            bodies = run(story, timeout=120)
        finally:
            kill_all([proc])
        assert len(bodies) == (100 if mode == "tuned" else 200)
        assert len({b["allocation_id"] for b in bodies}) == len(bodies)
        text = log.read_text()
        assert re.search(r"reflow INFO gc pauses: gen0 \d+ x, total \d+ ms, longest [\d.]+ ms, "
                         r"gen1 \d+ x, .*, gen2 \d+ x, ", text), text
        assert "Traceback" not in text


def test_tune_freezes_and_raises_thresholds_unless_reflow_gc_default(monkeypatch):
    """tune() moves the heap out of the collector's sight and raises the thresholds; with
    REFLOW_GC=default it changes nothing and says so."""
    saved = gc.get_threshold()
    try:
        monkeypatch.setenv("REFLOW_GC", "default")
        gc.set_threshold(700, 10, 10)
        frozen = gc.get_freeze_count()
        assert gctune.tune() is False
        assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == frozen

        monkeypatch.delenv("REFLOW_GC")
        assert gctune.tune() is True
        assert gc.get_threshold() == gctune.THRESHOLDS and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)


def test_pauses_counts_every_collection_by_generation_and_stops_when_closed():
    pauses = gctune.Pauses()
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
        assert pauses.count[0] >= 1 and pauses.count[2] >= 2
        assert pauses.longest[2] <= pauses.total[2]
        assert pauses.line().startswith(f"gc pauses: gen0 {pauses.count[0]} x, total ")
    finally:
        pauses.close()
    seen = list(pauses.count)
    gc.collect(2)
    assert pauses.count == seen and pauses._callback not in gc.callbacks
