"""`reflow statement` and `reflow rebuild` from the command line (RC2-RC4, CONTRACT section 5)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from adapters.bootstrap import Settings, open_app
from tests.world import SHOP, T0, alt, comp, line, link, offer, place, sku, supplier


def reflow(tmp: Path, *args: str, columns: int = 80) -> subprocess.CompletedProcess:
    """The CLI as a subprocess, its tables `columns` wide (80: what a terminal-less run gets)."""
    base = ["--data-dir", str(tmp), "--duckdb", str(tmp / "reflow.duckdb")]
    env = {**{k: v for k, v in os.environ.items() if k != "LINES"}, "COLUMNS": str(columns)}
    return subprocess.run([sys.executable, "-m", "adapters.cli", *base, *args], env=env,
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])


def fits(out: str, width: int = 80) -> str:
    """`out`, once every line of it is shown to be at most `width` characters."""
    wide = [x for x in out.splitlines() if len(x) > width]
    assert wide == [], wide
    return out


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
    nowhere = reflow(tmp_path, "statement", "--supplier", "S1", "--from", day, "--to", day,
                     "--out", str(tmp_path / "no-dir" / "x.csv"))
    assert nowhere.returncode == 1 and "--out" in nowhere.stderr and not (tmp_path / "no-dir").exists()
    (tmp_path / "a-file").write_text("")
    under_a_file = reflow(tmp_path, "statement", "--supplier", "S1", "--from", day, "--to", day,
                          "--out", str(tmp_path / "a-file" / "x.csv"))
    assert under_a_file.returncode == 1 and under_a_file.stderr.startswith("reflow: --out")
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
    assert (summary["first_day"], summary["last_day"]) == (day, day)
    header, first = list(book["lines"].iter_rows(values_only=True))[:2]
    amount = first[header.index("amount")]
    assert isinstance(amount, (int, float)) and amount == 25
    assert "tracked_at (China time)" in header
    assert first[header.index("tracked_at (China time)")].hour == (T0 + timedelta(hours=2)).hour
    unknown = reflow(tmp_path, "statement", "--id", "ST-S1-20000101-9")
    assert unknown.returncode == 1 and "--id" in unknown.stderr


# Ids as long as real ones: 19-digit shop order ids, 17-character allocation ids, long SKUs.
LONG_SUPPLIER, LONG_OFFER, LONG_SKUS = "SUP-HANGZHOU-0001", "OFFER-771200450001", ("SKU-RED-XL-000001", "SKU-BLU-XL-000002")


def test_statement_at_80_columns_keeps_ids_whole_and_prints_csv_and_json(tmp_path):
    """Issue 14: at 80 columns the table cut order and allocation ids; `--format csv|json` for scripts."""
    app = open_app(Settings(data_dir=tmp_path))
    supplier(app, LONG_SUPPLIER)
    offer(app, LONG_SUPPLIER, LONG_OFFER, {k: 100 for k in LONG_SKUS}, price="6.80")
    link(app, "P-3560012345678", sku("K1", alt(*(comp(LONG_SUPPLIER, LONG_OFFER, k) for k in LONG_SKUS))))
    orders = [f"692123456789012345{n}" for n in range(3)]
    for n, order_id in enumerate(orders):
        place(app, order_id, line("L1", "P-3560012345678", qty=2), at=T0 + timedelta(minutes=n))
        [a] = app.allocations_of(*SHOP, order_id)
        app.upload_tracking(LONG_SUPPLIER, a.allocation_id, "SF", f"SF14000000000{n}", at=T0 + timedelta(hours=2))
    allocation_ids = {o: app.allocations_of(*SHOP, o)[0].allocation_id for o in orders}
    app.close()
    day = T0.date().isoformat()

    shown = reflow(tmp_path, "statement", "--supplier", LONG_SUPPLIER, "--from", day, "--to", day)
    assert shown.returncode == 0, shown.stderr
    table = fits(shown.stdout).splitlines()
    for order_id, allocation_id in allocation_ids.items():  # one table line a component, both ids whole on it
        rows = [x for x in table if allocation_id in x]
        assert len(rows) == 2 and all(order_id in x for x in rows), table
    assert all(k in shown.stdout for k in LONG_SKUS) and "total 81.60" in shown.stdout  # 3 x 2 x 2 x 6.80
    statement_id = shown.stdout.split("statement ", 1)[1].split()[0]

    as_csv = reflow(tmp_path, "statement", "--id", statement_id, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(as_csv.stdout.splitlines()))  # nothing but the csv on stdout
    assert [r["section"] for r in rows] == ["line"] * 6 + ["total"]
    assert {r["allocation_id"] for r in rows[:6]} == set(allocation_ids.values())
    assert rows[0]["unit_price"] == "6.80" and rows[0]["tracked_at"].endswith("+08:00") and rows[-1]["amount"] == "81.60"

    out = tmp_path / "again.csv"
    as_json = reflow(tmp_path, "statement", "--id", statement_id, "--format", "json", "--out", str(out))
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["summary"]["statement_id"] == statement_id and data["summary"]["total"] == "81.60"
    assert data["summary"]["period_from"] == f"{day}T00:00:00+08:00"
    assert len(data["rows"]) == 7 and {r["order_id"] for r in data["rows"][:6]} == set(orders)
    assert {r["supplier_sku_id"] for r in data["rows"][:6]} == set(LONG_SKUS)
    assert f"written {out}" in as_json.stderr and out.exists()
