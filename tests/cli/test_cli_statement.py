"""`reflow statement` and `reflow rebuild` from the command line (RC2-RC4, CONTRACT section 5)."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from adapters.bootstrap import Settings, open_app
from tests.world import SHOP, T0, alt, comp, line, link, offer, place, sku, supplier


def reflow(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    base = ["--data-dir", str(tmp), "--duckdb", str(tmp / "reflow.duckdb")]
    return subprocess.run([sys.executable, "-m", "adapters.cli", *base, *args],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])


def test_statement_is_issued_exported_and_a_second_too_soon_is_refused(tmp_path):
    app = open_app(Settings(data_dir=tmp_path))
    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 10}, price="12.50")
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    for n in range(3):
        place(app, f"X{n}", line("L1", "P1", qty=2), at=T0 + timedelta(minutes=n))
        [a] = app.allocations_of(*SHOP, f"X{n}")
        app.upload_tracking("S1", a.allocation_id, "SF", f"SF00000000{n}", at=T0 + timedelta(hours=2))
    app.close()

    out = tmp_path / "st.csv"
    day = T0.date().isoformat()
    done = reflow(tmp_path, "statement", "--supplier", "S1", "--from", day, "--to", day, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "total 75.00" in done.stdout  # 3 allocations x 2 units x 12.50
    rows = list(csv.DictReader(out.open()))
    assert sum(1 for r in rows if r.get("section") == "line") == 3

    again = reflow(tmp_path, "statement", "--supplier", "S1", "--from", day, "--to", day)
    assert again.returncode == 1
    assert again.stderr.count("\n") == 1 and "RC4" in again.stderr

    bad = reflow(tmp_path, "statement", "--supplier", "S1", "--from", "yesterday", "--to", day)
    assert bad.returncode != 0 and "--from" in bad.stderr and "Traceback" not in bad.stderr

    rebuilt = reflow(tmp_path, "rebuild")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt" in rebuilt.stdout
