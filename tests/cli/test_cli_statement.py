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


def _issued_world(tmp_path: Path) -> str:
    app = open_app(Settings(data_dir=tmp_path))
    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 10}, price="12.50")
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    place(app, "X0", line("L1", "P1", qty=2), at=T0)
    [a] = app.allocations_of(*SHOP, "X0")
    app.upload_tracking("S1", a.allocation_id, "SF", "SF0000000001", at=T0 + timedelta(hours=2))
    app.close()
    return T0.date().isoformat()


def _statements(tmp_path: Path) -> int:
    from engine.statements import StatementIssued

    app = open_app(Settings(data_dir=tmp_path))
    try:
        return sum(1 for n in app.recorder.select_notifications(1, 10**6)
                   if isinstance(app.mapper.to_domain_event(n), StatementIssued))
    finally:
        app.close()


def test_rc2_statement_mistakes_issue_nothing(tmp_path):
    """Issue 14: an unknown supplier issued an empty statement; `--out x.txt` issued the statement
    and then failed, so the retry was refused by RC4; an existing file would be overwritten."""
    day = _issued_world(tmp_path)
    unknown = reflow(tmp_path, "statement", "--supplier", "no-such", "--from", day, "--to", day)
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1 and "no-such" in unknown.stderr
    txt = reflow(tmp_path, "statement", "--supplier", "S1", "--from", day, "--to", day, "--out", str(tmp_path / "x.txt"))
    assert txt.returncode == 1 and "--out" in txt.stderr and txt.stdout == ""
    taken = tmp_path / "report.csv"
    taken.write_text("not a statement\n")
    kept = reflow(tmp_path, "statement", "--supplier", "S1", "--from", day, "--to", day, "--out", str(taken))
    assert kept.returncode == 1 and "--out" in kept.stderr and taken.read_text() == "not a statement\n"
    missing = reflow(tmp_path, "statement", "--supplier", "S1")
    assert missing.returncode == 1 and "--from, --to" in missing.stderr
    assert _statements(tmp_path) == 0
    done = reflow(tmp_path, "statement", "--supplier", "S1", "--from", day, "--to", day, "--out", str(tmp_path / "x.csv"))
    assert done.returncode == 0, done.stderr  # the retry is not refused by RC4: nothing was issued
    assert _statements(tmp_path) == 1


def test_rc5_an_issued_statement_exports_again_by_id_as_numbers_in_china_time(tmp_path):
    from openpyxl import load_workbook

    day = _issued_world(tmp_path)
    done = reflow(tmp_path, "statement", "--supplier", "S1", "--from", day, "--to", day)
    assert done.returncode == 0, done.stderr
    statement_id = done.stdout.split("statement ", 1)[1].split()[0]
    again = reflow(tmp_path, "statement", "--id", statement_id, "--out", str(tmp_path / "st.xlsx"))
    assert again.returncode == 0, again.stderr
    assert _statements(tmp_path) == 1  # exported, not issued again
    book = load_workbook(tmp_path / "st.xlsx")
    summary = {row[0].value: row[1].value for row in book["summary"].iter_rows()}
    assert summary["total"] == 25.0 and summary["period_from"] == f"{day} 00:00:00 (China time)"
    header, first = list(book["lines"].iter_rows(values_only=True))[:2]
    amount = first[header.index("amount")]
    assert isinstance(amount, (int, float)) and amount == 25
    assert "tracked_at (China time)" in header
    assert first[header.index("tracked_at (China time)")].hour == (T0 + timedelta(hours=2)).hour
    unknown = reflow(tmp_path, "statement", "--id", "ST-S1-20000101-9")
    assert unknown.returncode == 1 and "--id" in unknown.stderr
