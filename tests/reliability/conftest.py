"""Sizes of the reliability suite and where its figures go.

The quick variant runs in the normal ``python -m pytest`` (CI). The full one is
``python -m tests.reliability --full`` (or ``REFLOW_RELIABILITY=full python -m pytest tests/reliability``).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

import pytest


@dataclass(frozen=True)
class Scale:
    name: str
    crash_orders: int  # kill -9 run
    kills: int
    delivery_orders: int  # duplicates / out of order
    restart_orders: int  # NATS and PostgreSQL restarts
    fuzz_in_process: int  # hostile messages straight into the engine
    fuzz_over_nats: int  # hostile messages through NATS and reflow serve
    race_units: int  # last stock units two serve processes fight over
    race_orders: int


QUICK = Scale("quick", crash_orders=1200, kills=3, delivery_orders=150, restart_orders=300,
              fuzz_in_process=3000, fuzz_over_nats=1500, race_units=60, race_orders=200)
FULL = Scale("full", crash_orders=100_000, kills=10, delivery_orders=2000, restart_orders=5000,
             fuzz_in_process=100_000, fuzz_over_nats=20_000, race_units=500, race_orders=2000)


def current_scale() -> Scale:
    name = os.environ.get("REFLOW_RELIABILITY", "quick")
    if name not in ("quick", "full"):
        raise ValueError(f"REFLOW_RELIABILITY={name!r}: use quick or full")
    base = FULL if name == "full" else QUICK
    # One size can be overridden for a run by hand, e.g. REFLOW_RELIABILITY_CRASH_ORDERS=20000.
    changes = {}
    for key in asdict(base):
        value = os.environ.get(f"REFLOW_RELIABILITY_{key.upper()}")
        if value and key != "name":
            changes[key] = int(value)
    return Scale(**{**asdict(base), **changes})


@pytest.fixture(scope="session")
def scale() -> Scale:
    return current_scale()


@pytest.fixture
def figures(request):
    """Record a test's figures (faults, messages, losses, duplicates, leaks) for the report."""
    started = time.monotonic()
    recorded: dict = {}

    def record(**values) -> None:
        recorded.update(values)

    yield record
    path = os.environ.get("REFLOW_RELIABILITY_REPORT")
    if path and recorded:
        recorded = {"test": request.node.name, "seconds": round(time.monotonic() - started, 1), **recorded}
        with open(path, "a") as f:
            f.write(json.dumps(recorded) + "\n")
