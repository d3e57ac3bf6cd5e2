"""`reflow serve` and its projection process, as real processes (issue 19, items 4-7): a statement
beside a running serve, the analysts' file readable meanwhile, a second serve on one DuckDB file
refused naming the holder, the projection process restarted after it was killed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from adapters.bootstrap import Settings, open_app
from tests.adapters.natsworld import catalog, client, order_body, run
from tests.adapters.test_serve_process import ROOT, consumer_ready, stop
from tests.projections.test_single_writer import READER
from tests.world import SHOP, T0, alt, comp, line, link, offer, place, sku, supplier

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(180)]


def start_serve(nats_url: str, store: str, data_dir: Path, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "adapters.cli", "--store", store, "--nats", nats_url,
           "--data-dir", str(data_dir), "serve", "--ack-wait", "2", "--batch", "64"]
    with open(log, "ab") as f:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def cli(store: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "adapters.cli", "--store", store, "--data-dir", str(data_dir), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def books(store: str, data_dir: Path) -> None:
    """Supplier S1, priced, with three tracked allocations on T0's day (75.00 in all)."""
    app = open_app(Settings(store=store, data_dir=data_dir))
    try:
        supplier(app, "S1")
        offer(app, "S1", "O1", {"a": 100}, price="12.50")
        link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
        for n in range(3):
            place(app, f"X{n}", line("L1", "P1", qty=2), at=T0 + timedelta(minutes=n))
            [a] = app.allocations_of(*SHOP, f"X{n}")
            app.upload_tracking("S1", a.allocation_id, "SF", f"SF00000000{n}", at=T0 + timedelta(hours=2))
    finally:
        app.close()


def query(path: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


async def until(what: str, check, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except duckdb.Error:
            pass
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


def projection_process(serve_pid: int) -> int:
    """serve's projection process: the child holding a DuckDB file open (not the outbound
    publisher, nor multiprocessing's resource tracker, should there be one)."""
    out = subprocess.run(["pgrep", "-P", str(serve_pid)], capture_output=True, text=True, check=False).stdout
    found = [int(p) for p in out.split()
             if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes() and _holds_duckdb(int(p))]
    assert len(found) == 1, found
    return found[0]


def _holds_duckdb(pid: int) -> bool:
    fds = Path(f"/proc/{pid}/fd")
    try:
        links = [os.readlink(fds / fd) for fd in os.listdir(fds)]
    except (FileNotFoundError, PermissionError):
        return False
    return any(".duckdb" in link for link in links)


def test_statement_beside_running_serve(nats_server, sqlite_store, tmp_path):
    """Items 4 and 7: `reflow statement` while serve runs and orders flow works, and every
    read-only open of the analysts' file meanwhile and in the ten seconds after succeeds."""
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    books(sqlite_store, data_dir)
    path = data_dir / "reflow.duckdb"
    proc = start_serve(nats_server.url, sqlite_store, data_dir, log)

    async def story():
        async with client(nats_server.url) as c:
            await consumer_ready(c, proc)
            await until("serve's first publish", lambda: query(path, "SELECT count(*) FROM orders") == [(3,)])
            await c.send_many(catalog(stock=100_000))
            reader = subprocess.Popen([sys.executable, "-c", READER, str(path), "14"], cwd=ROOT,
                                      stdout=subprocess.PIPE, text=True)
            try:
                flow = asyncio.create_task(c.send_many(
                    [("order.placed", order_body(f"F-{n}")) for n in range(1500)]))
                await asyncio.sleep(1.0)
                day = T0.date().isoformat()
                done = await asyncio.to_thread(cli, sqlite_store, data_dir, "statement", "--supplier", "S1",
                                               "--from", day, "--to", day)
                assert done.returncode == 0, done.stderr
                assert "lines 3  total 75.00" in done.stdout
                await flow
                out, _ = await asyncio.to_thread(reader.communicate, timeout=60)
            finally:
                if reader.poll() is None:
                    reader.kill()
                    reader.wait()
            result = json.loads(out)
            assert result["errors"] == []
            assert result["opens"] >= 5  # each open reads every table: slow on a loaded machine
            assert result["counts"] == sorted(result["counts"])
            [(statement_id,)] = query(path, "SELECT statement_id FROM statements")  # serve's runner took it up
            assert statement_id.startswith("ST-S1-")
            await c.settled(timeout=60)
            assert await asyncio.to_thread(stop, proc) == 0
        assert query(path, "SELECT count(*) FROM orders") == [(3 + 1500,)]

    try:
        run(story, timeout=170)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text()


def test_second_serve_on_one_duckdb_refuses_naming_the_holder(nats_server, sqlite_store, tmp_path):
    """Item 6: two projection runners on one DuckDB file corrupt it; the second serve refuses to
    start, with one line naming the process that holds the file, and the first goes on."""
    data_dir = tmp_path / "data"
    first = start_serve(nats_server.url, sqlite_store, data_dir, tmp_path / "first.log")
    path = data_dir / "reflow.duckdb"

    async def story():
        async with client(nats_server.url) as c:
            await consumer_ready(c, first)
            await c.send_many(catalog())
            await c.send_many([("order.placed", order_body(f"A-{n}")) for n in range(50)])
            await c.settled()
            await until("the first serve's publish", lambda: query(path, "SELECT count(*) FROM orders") == [(50,)])
            holder = projection_process(first.pid)
            second = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "adapters.cli", "--store", sqlite_store, "--nats",
                                 nats_server.url, "--data-dir", str(data_dir), "serve"],
                cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert second.returncode == 1
            [refusal] = [ln for ln in second.stderr.splitlines() if ln.startswith("reflow: ")]
            assert f"pid {holder} (reflow serve, pid {first.pid})" in refusal and str(path) in refusal
            assert "Traceback" not in second.stderr
            await c.send_many([("order.placed", order_body(f"B-{n}")) for n in range(50)])
            await c.settled()
            await until("the first serve going on", lambda: query(path, "SELECT count(*) FROM orders") == [(100,)])
            assert first.poll() is None
            assert await asyncio.to_thread(stop, first) == 0

    try:
        run(story, timeout=170)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


def test_projection_process_restarted_after_kill(nats_server, sqlite_store, tmp_path):
    """Item 5: the projection process killed, serve restarts it, says so in its log and in
    `projection_status`, and the analysts' file catches up; never silently stale."""
    data_dir, log = tmp_path / "data", tmp_path / "serve.log"
    proc = start_serve(nats_server.url, sqlite_store, data_dir, log)
    path = data_dir / "reflow.duckdb"
    killed: list[int] = []

    async def story():
        async with client(nats_server.url) as c:
            await consumer_ready(c, proc)
            await c.send_many(catalog())
            await c.send_many([("order.placed", order_body(f"A-{n}")) for n in range(20)])
            await c.settled()
            await until("serve's publish", lambda: query(path, "SELECT count(*) FROM orders") == [(20,)])
            victim = projection_process(proc.pid)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            await c.send_many([("order.placed", order_body(f"B-{n}")) for n in range(20)])
            await c.settled()
            await until("the analysts' file after the restart",
                        lambda: query(path, "SELECT count(*) FROM orders") == [(40,)])
            [(restarts, last_error, runner_pid)] = query(
                path, "SELECT restarts, last_error, runner_pid FROM projection_status")
            assert restarts == 1 and runner_pid not in (None, victim)
            assert f"pid {victim}" in last_error and "SIGKILL" in last_error
            assert runner_pid == projection_process(proc.pid)
            assert proc.poll() is None
            assert await asyncio.to_thread(stop, proc) == 0

    try:
        run(story, timeout=170)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert f"projection process (pid {killed[0]}) died: killed by signal 9 (SIGKILL); restarting it in 1 s" in text
    assert re.search(r"projection process started \(pid \d+\), restart 1", text), text
    assert "Traceback" not in text


def test_projection_process_failing_again_and_again_stops_serve_non_zero(nats_server, sqlite_store, tmp_path,
                                                                        monkeypatch):
    """Item 5, the other way out: when the projection process cannot be brought back (here another
    runner took the file while it was down), serve stops with one line rather than route on with a
    frozen analysts' file. (serve in this process, with a short back-off; its child is real.)"""
    from adapters.projecting import Projections
    from adapters.serve import ServeError, serve
    from projections.runner import RunnerLock

    monkeypatch.setattr(Projections, "max_failures", 3)  # the back-off stays 1 s, then 2 s
    monkeypatch.setattr(Projections, "lock_wait", 0.0)
    settings = Settings(store=sqlite_store, nats_url=nats_server.url, data_dir=tmp_path / "data")
    taken: list[RunnerLock] = []

    async def story():
        ready = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(serve(settings, handle_signals=False, on_ready=ready.set_result))
        server = await asyncio.wait_for(ready, 30)
        victim = server.projections.proc.pid
        os.kill(victim, signal.SIGKILL)
        await asyncio.to_thread(server.projections.proc.join, 10)  # serve notices within 1 s, waits 1 s more
        taken.append(RunnerLock(settings.duckdb_path, "a test"))
        with pytest.raises(ServeError) as failed:
            await asyncio.wait_for(task, 60)
        message = str(failed.value)
        assert "\n" not in message and "3 times in a row" in message
        assert f"pid {os.getpid()} (a test)" in message

    try:
        run(story, timeout=120)
    finally:
        for lock in taken:
            lock.release()
