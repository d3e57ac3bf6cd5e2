"""The runner: exactly once across a crash, re-delivery a no-op, rebuild equality, readers any time."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from tests.projections.conftest import make_app, rows, snapshot
from tests.projections.seed import seed
from tests.world import line, place

ROOT = Path(__file__).resolve().parents[2]


def test_rebuild_gives_the_same_rows_as_incremental_projection(app, tmp_path):
    seed(app)
    incremental = tmp_path / "inc.duckdb"
    runner = ProjectionRunner(app, incremental, batch=3)
    while runner.run_once():
        pass
    place(app, "LATER", line("L1", "P1"))  # more history after a first pass
    runner.catch_up()
    runner.close()
    rebuilt = tmp_path / "rebuilt.duckdb"
    assert rebuild(app, rebuilt, progress=False) == app.recorder.max_notification_id()
    assert snapshot(incremental) == snapshot(rebuilt)
    assert rows(rebuilt, "SELECT count(*) FROM orders") == [(10,)]


def test_rebuild_replaces_an_existing_projection(sqlite_app, tmp_path):
    seed(sqlite_app)
    path = tmp_path / "reflow.duckdb"
    rebuild(sqlite_app, path, progress=False)
    first = snapshot(path)
    rebuild(sqlite_app, path, progress=True)
    assert snapshot(path) == first


def test_redelivered_notifications_change_nothing(sqlite_app, tmp_path):
    seed(sqlite_app)
    path = tmp_path / "reflow.duckdb"
    runner = ProjectionRunner(sqlite_app, path)
    notes = sqlite_app.recorder.select_notifications(start=1, limit=10_000)
    assert runner.apply(notes) == len(notes)
    before = snapshot_of(runner)
    assert runner.apply(notes) == 0
    assert runner.apply(notes[5:9]) == 0
    assert snapshot_of(runner) == before
    runner.close()


def snapshot_of(runner):
    return {t: runner.connection.execute(f"SELECT count(*) FROM facts.{t}").fetchone() for t in
            ("orders_placed", "allocations", "allocation_events", "line_routes")}


CRASHER = textwrap.dedent("""
    import os, sys
    from tests.projections.conftest import make_app
    from projections.runner import ProjectionRunner
    store, tmp, key, work = sys.argv[1:5]
    app = make_app(store, tmp, key)
    runner = ProjectionRunner(app, work.removesuffix(".work"), batch=7)
    for _ in range(3):
        runner.run_once()
    # Crash in the middle of the 4th batch: its facts are inserted, the position is not yet
    # advanced and nothing is committed.
    ProjectionRunner._set_position = lambda self, *a: os._exit(9)
    runner.run_once()
""")


def test_exactly_once_after_a_crash_between_and_within_batches(sqlite_store, tmp_path):
    from eventsourcing.cipher import AESCipher

    key = AESCipher.create_key(32)
    app = make_app(sqlite_store, tmp_path, key)
    seed(app)
    path = tmp_path / "reflow.duckdb"
    done = subprocess.run([sys.executable, "-c", CRASHER, sqlite_store, str(tmp_path), key, f"{path}.work"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    runner = ProjectionRunner(app, path, batch=7)
    assert runner.position == 21  # three committed batches of 7; the fourth was lost whole
    runner.catch_up()
    runner.close()
    fresh = tmp_path / "fresh.duckdb"
    rebuild(app, fresh, progress=False)
    assert snapshot(path) == snapshot(fresh)
    app.close()


def test_run_once_is_cheap_when_nothing_is_new(sqlite_app, tmp_path):
    seed(sqlite_app)
    runner = ProjectionRunner(sqlite_app, tmp_path / "reflow.duckdb")
    runner.catch_up()
    started = time.perf_counter()
    for _ in range(100):
        assert runner.run_once() == 0
    assert (time.perf_counter() - started) / 100 < 0.01
    runner.close()


def test_run_once_publishes_within_the_freshness_window(sqlite_app, tmp_path):
    path = tmp_path / "reflow.duckdb"
    runner = ProjectionRunner(sqlite_app, path)
    assert rows(path, "SELECT count(*) FROM orders") == [(0,)]  # published at once, empty
    seed(sqlite_app)
    runner.run_once()
    deadline = time.monotonic() + 5
    while rows(path, "SELECT count(*) FROM orders") != [(9,)]:
        assert time.monotonic() < deadline, "analysts' file more than 5 s behind"
        time.sleep(0.2)
        runner.run_once()
    runner.close()


READER = textwrap.dedent("""
    import json, sys, time
    import duckdb
    path, seconds = sys.argv[1], float(sys.argv[2])
    counts, errors, end = [], [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            con = duckdb.connect(path, read_only=True)
            counts.append(con.execute("SELECT count(*) FROM orders").fetchone()[0])
            con.execute("SELECT * FROM supplier_performance").fetchall()
            con.close()
        except Exception as e:
            errors.append(repr(e))
    print(json.dumps({"counts": counts, "errors": errors}))
""")


def test_a_reader_process_opens_and_queries_while_the_writer_runs(sqlite_app, tmp_path):
    seed(sqlite_app)
    for n in range(60):
        place(sqlite_app, f"BULK{n}", line("L1", "P1"))
    path = tmp_path / "reflow.duckdb"
    runner = ProjectionRunner(sqlite_app, path, batch=5)
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), "3"], stdout=subprocess.PIPE, text=True)
    held = __import__("duckdb").connect(str(path), read_only=True)  # an analyst with the old file open
    old = held.execute("SELECT count(*) FROM orders").fetchone()[0]
    while runner.run_once():
        runner.publish()  # as often as possible, to race the reader
        time.sleep(0.01)
    out, _ = reader.communicate(timeout=60)
    result = json.loads(out)
    assert result["errors"] == []
    assert len(result["counts"]) > 10
    assert len(set(result["counts"])) > 1  # it read while the writer was mid-stream
    assert result["counts"] == sorted(result["counts"])  # snapshots only move forward
    assert held.execute("SELECT count(*) FROM orders").fetchone()[0] == old  # still its own snapshot
    held.close()
    runner.close()
    assert rows(path, "SELECT count(*) FROM orders") == [(69,)]


def test_rebuild_refuses_while_another_process_holds_the_projection(sqlite_app, tmp_path):
    import pytest

    from projections.rebuild import ProjectionBusy

    path = tmp_path / "reflow.duckdb"
    ProjectionRunner(sqlite_app, path).close()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(60)", f"{path}.work"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ProjectionBusy, match="reflow serve"):
            rebuild(sqlite_app, path, progress=False)
        assert Path(f"{path}.work").exists()
    finally:
        holder.kill()
        holder.wait()
