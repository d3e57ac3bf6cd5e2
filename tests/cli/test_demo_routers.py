"""``reflow demo --routers 3`` (issue 18): the day through three router processes on a three-node
NATS cluster and one PostgreSQL schema, as a person would start it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from adapters.bootstrap import Settings, open_app
from adapters.demo import QUICK_ORDERS
from tests.cli.test_demo import tables

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.postgres, pytest.mark.timeout(400)]
ROOT = Path(__file__).resolve().parents[2]


def reflow(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    return subprocess.run([sys.executable, "-m", "adapters.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env)


def test_the_demo_through_three_routers_applies_the_whole_day_once(tmp_path, pg_store):
    data = tmp_path / "demo"
    done = reflow("demo", "--quick", "--routers", "3", "--store", pg_store, "--data-dir", str(data))
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    assert "3 routers on 3 partitions" in out
    assert "1 dead-lettered" in out  # the producer bug the demo plants, nothing else
    by_status = {r[0]: r[1:] for r in tables(out)["Orders by status"]}
    assert sum(int(v[0]) for s, v in by_status.items() if s != "total") == QUICK_ORDERS
    assert int(by_status["shipped"][0]) > QUICK_ORDERS // 2
    logs = {i: (data / "logs" / f"router-{i}.log").read_text() for i in range(3)}
    for i, text in logs.items():
        assert f"took lane.p{i}" in text, f"router {i} never held its own partition"
        assert "stopped:" in text  # each drained and stopped on SIGTERM
    # one projection runner kept the file, and it matches the store: every allocation, once
    app = open_app(Settings(store=pg_store, data_dir=data))
    try:
        stored = sum(len(app.allocations_of(*key)) for key in _orders(data / "reflow.duckdb"))
    finally:
        app.close()
    con = duckdb.connect(str(data / "reflow.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM allocations").fetchone()[0] == stored > 0
    finally:
        con.close()


def test_the_demo_refuses_routers_without_a_postgresql_store_and_makes_nothing(tmp_path):
    data = tmp_path / "demo"
    done = reflow("demo", "--quick", "--routers", "3", "--data-dir", str(data), timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "reflow: --routers: the routers share one PostgreSQL store; give --store postgresql://..."]
    assert not data.exists()


def _orders(path: Path) -> list[tuple[str, str, str]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT platform, shop_id, order_id FROM orders").fetchall()
    finally:
        con.close()
