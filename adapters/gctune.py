"""The garbage collector in a long-running router process (issue 17).

CPython frees almost everything by reference counting; its cycle collector only finds reference
cycles, yet a full (generation 2) collection walks every tracked object the process holds: the
aggregate cache, the interned ids, the loaded modules. In serve that walk grew with the heap (48 to
166 ms within 20 s) and every order at or above p99 overlapped one. reflow's domain makes next to
no cycles (events and values are frozen structs kept out of the collector, `gc=False`), so:

- `tune()` moves what the process built before serving (modules, the app, its caches as warmed
  up) out of the collector's sight (`gc.freeze`), and raises the thresholds so that young
  collections run every 50,000 allocations instead of 700 and a full one after 100 of them;
- `Pauses` measures every collection (count, total and longest pause per generation), which serve
  logs at exit and the benchmark reads back.

`REFLOW_GC=default` keeps CPython's own settings (to compare).
"""

from __future__ import annotations

import gc
import os
import time
from dataclasses import dataclass, field

THRESHOLDS = (50_000, 20, 100)


def tune() -> bool:
    """Freeze what exists and raise the thresholds, unless ``REFLOW_GC=default``. Whether it did."""
    if os.environ.get("REFLOW_GC", "").lower() == "default":
        return False
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    return True


@dataclass
class Pauses:
    """Every collection of the garbage collector, by generation: how many, total and longest."""

    count: list[int] = field(default_factory=lambda: [0, 0, 0])
    total: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    longest: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    _started: float = 0.0

    def __post_init__(self) -> None:
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        g = info.get("generation", 0)
        pause = time.perf_counter() - self._started
        self.count[g] += 1
        self.total[g] += pause
        self.longest[g] = max(self.longest[g], pause)

    def close(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def line(self) -> str:
        """One line for the log (the benchmark parses it)."""
        return "gc pauses: " + ", ".join(
            f"gen{g} {self.count[g]} x, total {self.total[g] * 1e3:.0f} ms, longest {self.longest[g] * 1e3:.1f} ms"
            for g in range(3))
