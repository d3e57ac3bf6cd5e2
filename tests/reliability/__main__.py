"""Run the reliability suite as one command and print its figures.

    python -m tests.reliability            # the quick variant (the one CI runs inside pytest)
    python -m tests.reliability --full     # 100,000 orders with 10 kill -9, 100,000 fuzzed messages, ...
    python -m tests.reliability --full -- -k crash      # extra arguments go to pytest

Sizes can be changed one by one with REFLOW_RELIABILITY_<NAME>=N (names in conftest.py's Scale).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    full = "--full" in argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as report:
        path = report.name
    env = {**os.environ, "REFLOW_RELIABILITY": "full" if full else "quick", "REFLOW_RELIABILITY_REPORT": path}
    started = time.monotonic()
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(HERE), *extra],
                           cwd=HERE.parents[1], env=env)
    wall = time.monotonic() - started
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    os.unlink(path)
    print(f"\nreliability suite ({'full' if full else 'quick'}), {wall / 60:.1f} min, pytest exit {code}")
    columns = ["scenario", "faults", "orders", "messages", "outbound", "dead_letters", "losses", "duplicates",
               "leaks", "seconds"]
    print(" | ".join(columns))
    totals = {k: 0 for k in ("faults", "messages", "losses", "duplicates", "leaks")}
    for row in rows:
        print(" | ".join(str(row.get(c, "")) for c in columns))
        for k in totals:
            totals[k] += int(row.get(k) or 0)
    print("total: " + ", ".join(f"{k} {v:,}" for k, v in totals.items()))
    return code


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
