"""The benchmark suite's quick mode runs end to end (a smoke test: no figure is asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_quick_prints_every_stage_with_its_raw_limit(pg_url):
    base = pg_url.rsplit("/", 1)[0] + "/test"
    done = subprocess.run([sys.executable, "-m", "tests.bench", "--quick", "--pg", base],
                          cwd=ROOT, capture_output=True, text=True, timeout=580, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    for stage in ("bare nats-py pull consumer", "eventsourcing batched append, SQLite",
                  "eventsourcing batched append, PostgreSQL", "DuckDB Arrow insert",
                  "end-to-end routing, sqlite", "end-to-end routing, postgres", "latency p99",
                  "projection catch-up", "statement", "router RSS", "batch of 23, 0 open allocations",
                  "publish after a small change", "event store per full-lifecycle order"):
        assert stage in done.stdout, f"{stage!r} missing from:\n{done.stdout}"
