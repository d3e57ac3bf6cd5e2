"""Export an issued statement by the file's extension: .csv, .parquet or .xlsx.

CSV and Parquet hold one flat table (`rows(statement)`): a `section` column says what each row
is: `line` (a tracked allocation line, RC2), `total`, `post_shipment_aftersale` and `loss_risk`
(listed apart), `credit` (an accepted return, RC6, with `aftersale_id`, `qty` and `amount`) and
`net_total` when there are credits. Parquet also carries the statement's id, period and content hash as file
metadata. XLSX has a `summary` sheet and one sheet per section.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Collection
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import InvalidCommand
from engine.servicelevel import LOCAL
from engine.statements import Statement

COLUMNS = ["section", "allocation_id", "platform", "shop_id", "order_id", "line_id", "offer_id",
           "supplier_sku_id", "product_id", "qty", "unit_price", "amount", "price_tier", "allocated_at",
           "tracked_at", "carrier", "tracking_no", "aftersale_id", "kind", "reason", "at"]
LINE = COLUMNS[1:17]
CREDIT = ["allocation_id", "platform", "shop_id", "order_id", "aftersale_id", "qty", "amount", "reason", "at"]
APART = ["allocation_id", "platform", "shop_id", "order_id", "line_id", "aftersale_id", "kind", "carrier",
         "tracking_no", "reason", "at"]


def rows(statement: Statement) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for ln in statement.lines:
        out.append({"section": "line", **{c: getattr(ln, c) for c in LINE}})
    out.append({"section": "total", "qty": statement.qty, "amount": statement.total})
    for a in statement.apart:
        out.append({"section": a.section, **{c: getattr(a, c) for c in APART}})
    for x in statement.credits:
        out.append({"section": "credit", "reason": f"return {x.return_id}", "at": x.answered_at, **{
            c: getattr(x, c) for c in ("allocation_id", "platform", "shop_id", "order_id", "aftersale_id", "qty",
                                        "amount")}})
    if statement.credits:
        out.append({"section": "net_total", "amount": statement.net_total})
    return [{c: r.get(c) for c in COLUMNS} for r in out]


def summary(statement: Statement) -> dict[str, object]:
    s = statement
    return {"statement_id": s.statement_id, "supplier_id": s.supplier_id, "period_from": s.period_from.isoformat(),
            "period_to": s.period_to.isoformat(), "first_day": _day(s.period_from), "last_day": _day(s.period_to, end=True),
            "issued_at": s.issued_at.isoformat(), "lines": len(s.lines), "qty": s.qty, "total": str(s.total),
            "credits": str(s.credits_total), "net_total": str(s.total if s.net_total is None else s.net_total),
            "content_hash": s.content_hash}


def _day(at: datetime, end: bool = False) -> str:
    """A period bound as the China-time day the CLI speaks of (`period_to` is exclusive)."""
    local = at.astimezone(LOCAL)
    return (local - timedelta(microseconds=1) if end else local).date().isoformat()


def text(value: object) -> str:
    """A CSV cell as `--format csv` prints it: nothing for None, times in China time with their offset."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return (value.astimezone(LOCAL) if value.tzinfo else value).isoformat()
    return str(value)


def check_out(path: str | os.PathLike, kinds: Collection[str] = (".csv", ".parquet", ".xlsx")) -> Path:
    """Refuse an export path before any work (before anything is issued): one of the `kinds` of
    file, no existing file (never overwritten), in a directory that exists (none is created)."""
    path = Path(path)
    if path.suffix.lower() not in kinds:
        *first, last = kinds
        raise InvalidCommand(f"--out: {path.name} must end in {', '.join(first)} or {last}")
    if path.exists():
        raise InvalidCommand(f"--out: {path} exists; reflow does not overwrite it (choose another name)")
    folder = path.parent
    if not folder.is_dir():
        raise InvalidCommand(f"--out: {path}: the directory {folder} does not exist (reflow creates none)")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidCommand(f"--out: {path}: cannot write in {folder}")
    return path


def export_statement(statement: Statement, path: str | os.PathLike) -> Path:
    path = check_out(path)
    try:
        WRITERS[path.suffix.lower()](statement, path)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise InvalidCommand(f"--out: {path}: {exc.strerror or exc}") from None
    return path


def _csv(statement: Statement, path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows(statement):
            w.writerow([text(r[c]) for c in COLUMNS])


def _parquet(statement: Statement, path: Path) -> None:
    data = rows(statement)
    types = {"qty": pa.int64(), "unit_price": pa.decimal128(18, 4), "amount": pa.decimal128(18, 4),
             "allocated_at": pa.timestamp("us", tz="UTC"), "tracked_at": pa.timestamp("us", tz="UTC"),
             "at": pa.timestamp("us", tz="UTC")}
    schema = pa.schema([(c, types.get(c, pa.string())) for c in COLUMNS],
                       metadata={k.encode(): text(v).encode() for k, v in summary(statement).items()})
    table = pa.Table.from_pylist(data, schema=schema)
    pq.write_table(table, path)


def _xlsx(statement: Statement, path: Path) -> None:
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "summary"
    for k, v in summary(statement).items():
        if k in ("period_from", "period_to", "issued_at"):  # China time, like the CLI's days
            v = getattr(statement, k).astimezone(LOCAL).strftime("%Y-%m-%d %H:%M:%S (China time)")
            if k == "period_to":
                v = v.replace("(China time)", "(China time, exclusive)")
        ws.append([k, float(v) if k in ("total", "credits", "net_total") else v])
        if k in ("total", "credits", "net_total"):
            ws.cell(ws.max_row, 2).number_format = MONEY_FORMAT
    sheets = {"line": ("lines", LINE), "post_shipment_aftersale": ("post_shipment_aftersales", APART),
              "loss_risk": ("loss_risks", APART), "credit": ("credits", CREDIT)}
    for section, (title, cols) in sheets.items():
        sheet = wb.create_sheet(title)
        sheet.append([f"{c} (China time)" if c in ("allocated_at", "tracked_at", "at") else c for c in cols])
        for r in rows(statement):
            if r["section"] == section:
                sheet.append([_cell(r[c]) for c in cols])
                for n, c in enumerate(cols, 1):
                    if c in MONEY and r[c] is not None:
                        sheet.cell(sheet.max_row, n).number_format = _money_format(r[c])
    wb.save(path)


MONEY = ("unit_price", "amount")
MONEY_FORMAT = "0.00"


def _money_format(value: object) -> str:
    """2 decimals, as the CLI prints money; up to 4 for a price that really has more (as `money` keeps it)."""
    from decimal import Decimal

    exponent = value.as_tuple().exponent if isinstance(value, Decimal) else -2
    return MONEY_FORMAT if not isinstance(exponent, int) or exponent >= -2 else MONEY_FORMAT + "##"


def _cell(value: object) -> object:
    """Money as numbers (Excel sums them); times in China time, as the CLI's days are (Excel has
    no time zones: the sheets say so in their header)."""
    if isinstance(value, datetime):
        return value.astimezone(LOCAL).replace(tzinfo=None)
    return value


WRITERS = {".csv": _csv, ".parquet": _parquet, ".xlsx": _xlsx}
