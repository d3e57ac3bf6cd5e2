"""Write a what-if or pull report as CSV or Parquet, chosen by the file's extension (rule A1)."""

from __future__ import annotations

import csv
import os
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from engine.errors import InvalidCommand


def export_rows(rows: list[dict[str, Any]], columns: list[str], path: str | os.PathLike) -> Path:
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in (".csv", ".parquet"):
        raise InvalidCommand(f"--out: {path.name!r} must end in .csv or .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(columns)
            for r in rows:
                w.writerow([_text(r.get(c)) for c in columns])
    else:
        arrays = {c: _column([r.get(c) for r in rows]) for c in columns}
        pq.write_table(pa.table(arrays), path)
    return path


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _column(values: list[Any]) -> pa.Array:
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, Decimal):
        return pa.array(values, type=pa.decimal128(18, 4))
    if isinstance(sample, datetime):
        return pa.array(values, type=pa.timestamp("us", tz="UTC"))
    if isinstance(sample, (bool, int)):
        return pa.array(values)
    return pa.array([None if v is None else _text(v) for v in values], type=pa.string())
