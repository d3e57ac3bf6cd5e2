"""One writer per DuckDB file, across processes (issue 19, items 4, 6 and 7).

A projection runner runs in a process of its own here (as in `reflow serve`), applying and
publishing while this process writes orders into the store, opens the files, issues statements.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from adapters.bootstrap import Settings, open_app
from projections.rebuild import ProjectionBusy, rebuild
from projections.runner import ProjectionRunner
from projections.statements import issue_statement
from tests.projections.conftest import snapshot
from tests.world import SHOP, T0, alt, comp, line, link, offer, place, sku, supplier

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]

# A projection runner process: catches up, publishes, then applies and publishes as often as it can
# until the stop file appears.
RUNNER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from adapters.bootstrap import Settings, open_app
    from projections.runner import ProjectionRunner
    data_dir, path, stop = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    app = open_app(Settings(data_dir=data_dir))
    runner = ProjectionRunner(app, path)
    runner.publish_interval = 0.05
    runner.catch_up()
    runner.publish()
    print("ready", flush=True)
    end = time.monotonic() + 90
    while not stop.exists() and time.monotonic() < end:
        runner.run_once()
        time.sleep(0.02)
    runner.close()
    app.close()
    print("closed", flush=True)
""")

# An analyst: opens the published file read-only, again and again, and reads every view.
READER = textwrap.dedent("""
    import json, sys, time
    import duckdb
    path, seconds = sys.argv[1], float(sys.argv[2])
    opens, counts, statements, errors, end = 0, [], 0, [], time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            con = duckdb.connect(path, read_only=True)
            try:
                for schema, name in con.execute(
                        "SELECT schema_name, table_name FROM duckdb_tables() UNION ALL "
                        "SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal").fetchall():
                    con.execute(f'SELECT * FROM "{schema}"."{name}"').fetchall()
                counts.append(con.execute("SELECT count(*) FROM orders").fetchone()[0])
                statements = con.execute("SELECT count(*) FROM statements").fetchone()[0]
            finally:
                con.close()
            opens += 1
        except Exception as e:
            errors.append(str(e).splitlines()[0])
        time.sleep(0.05)
    print(json.dumps({"opens": opens, "counts": counts, "statements": statements, "errors": errors}))
""")


SUPPLIERS = ("S1", "S2", "S3")


def books(data_dir: Path) -> None:
    """Suppliers S1-S3, priced, each with three tracked allocations on T0's day (orders X0-X2 of
    product P1 go to S1, Y0-Y2 of P2 to S2, Z0-Z2 of P3 to S3)."""
    app = open_app(Settings(data_dir=data_dir))
    try:
        for s, (n, prefix) in zip(SUPPLIERS, enumerate("XYZ", 1)):
            supplier(app, s)
            offer(app, s, f"O{n}", {"a": 10_000}, price="12.50")
            link(app, f"P{n}", sku("K1", alt(comp(s, f"O{n}", "a"))))
            for i in range(3):
                place(app, f"{prefix}{i}", line("L1", f"P{n}", qty=2), at=T0 + timedelta(minutes=i))
                [a] = app.allocations_of(*SHOP, f"{prefix}{i}")
                app.upload_tracking(s, a.allocation_id, "SF", f"SF{n}0000000{i}", at=T0 + timedelta(hours=2))
    finally:
        app.close()


class RunnerProcess:
    def __init__(self, data_dir: Path, path: Path) -> None:
        self.stop_file = data_dir / "stop-runner"
        self.proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(data_dir), str(path), str(self.stop_file)],
                                     cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        assert line == "ready", self.proc.stderr.read()

    def close(self) -> str:
        self.stop_file.touch()
        try:
            out, err = self.proc.communicate(timeout=60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.returncode == 0 and "closed" in out, err
        return err


@pytest.fixture
def world(tmp_path: Path):
    data_dir = tmp_path / "data"
    books(data_dir)
    path = data_dir / "reflow.duckdb"
    holder = RunnerProcess(data_dir, path)
    app = open_app(Settings(data_dir=data_dir))
    try:
        yield app, path, holder
    finally:
        app.close()
        if holder.proc.poll() is None:
            holder.close()


def keep_ordering(app, n: int, prefix: str = "F") -> None:
    for i in range(n):
        place(app, f"{prefix}{i}", line("L1", "P1"), at=T0 + timedelta(hours=5))
        time.sleep(0.02)


def test_runner_keeps_duckdb_lock_on_its_working_file_after_publishing(world):
    """The root of items 4, 6 and 7: publishing copied the working file with a second handle,
    and closing it dropped the runner process's POSIX locks, DuckDB's lock among them."""
    app, path, _ = world
    keep_ordering(app, 10)  # the runner commits and publishes again and again
    with pytest.raises(duckdb.IOException, match="lock"):
        duckdb.connect(f"{path}.work")


def test_second_projection_runner_refuses_naming_the_holder(world):
    app, path, holder = world
    keep_ordering(app, 5)
    with pytest.raises(ProjectionBusy) as refused:
        ProjectionRunner(app, path)
    message = str(refused.value)
    assert "\n" not in message
    assert f"pid {holder.proc.pid}" in message and str(path) in message
    with pytest.raises(ProjectionBusy, match=f"pid {holder.proc.pid}"):
        rebuild(app, path, progress=False)
    assert Path(f"{path}.work").exists()  # the rebuild refused before deleting anything
    assert holder.close() == ""
    ProjectionRunner(app, path).close()  # the holder gone, the next runner starts


def test_statement_beside_a_running_projection_runner(world, tmp_path):
    """Item 4: issuing statements while the runner (serve's) runs and orders flow works; the
    running runner projects them; its file ends equal to a rebuild (nothing torn)."""
    app, path, holder = world
    day = T0.date()
    issued = []
    for n, s in enumerate(SUPPLIERS, 1):
        keep_ordering(app, 5, f"{s}-")
        st = issue_statement(app, path, s, day, day)
        assert sorted(ln.order_id for ln in st.lines) == [f"{'XYZ'[n - 1]}{i}" for i in range(3)]
        assert str(st.total) == "75.00"
        issued.append((st.statement_id,))
    deadline = time.monotonic() + 10  # the running runner picks the StatementIssued events up
    while True:
        with duckdb.connect(str(path), read_only=True) as con:
            if con.execute("SELECT statement_id FROM statements ORDER BY 1").fetchall() == sorted(issued):
                break
        assert time.monotonic() < deadline, "the statements never reached the analysts' file"
        time.sleep(0.2)
    assert holder.close() == ""
    rebuilt = tmp_path / "rebuilt.duckdb"
    rebuild(app, rebuilt, progress=False)
    assert snapshot(path) == snapshot(rebuilt)


def test_published_file_opens_read_only_during_statement(world):
    """CONTRACT section 4: any client opens the analysts' file read-only at any time, also while a
    statement is issued beside the running writer (seen: 38 of 50 opens failed with `No more data
    remaining in MetadataReader` in the ten seconds after a statement)."""
    app, path, holder = world
    reader = subprocess.Popen([sys.executable, "-c", READER, str(path), "8"], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        day = T0.date()
        for s in SUPPLIERS:  # each statement beside the runner, the runner publishing meanwhile
            keep_ordering(app, 20, f"{s}-")
            issue_statement(app, path, s, day, day)
        keep_ordering(app, 40, "B")  # the runner goes on publishing after the statements
        out, _ = reader.communicate(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    result = json.loads(out)
    assert result["errors"] == []
    assert result["opens"] >= 5  # each open reads every table: slow on a loaded machine
    assert result["counts"] == sorted(result["counts"])  # snapshots only move forward
    assert result["statements"] == len(SUPPLIERS)
    assert holder.close() == ""
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM orders").fetchone()[0] == 9 + 3 * 20 + 40
