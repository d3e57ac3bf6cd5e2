"""Write a what-if or pull report as CSV or Parquet, chosen by the file's extension (rule A1).

The path is checked first (``check_out``, before any work): `.csv` or `.parquet`, a file that does
not exist yet, in a directory that exists; nothing is ever overwritten and no directory is made.
CSV cells are as ``--format csv`` prints them (times in China time with their offset); Parquet
keeps times as typed UTC timestamps and money as decimals.
"""

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
from projections.export import check_out as _check_out
from projections.export import text as _text

KINDS = (".csv", ".parquet")


def check_out(path: str | os.PathLike) -> Path:
    """Refuse a report path before any work: `.csv` or `.parquet`, new, in an existing directory."""
    return _check_out(path, KINDS)


def export_rows(rows: list[dict[str, Any]], columns: list[str], path: str | os.PathLike) -> Path:
    path = check_out(path)
    try:
        if path.suffix.lower() == ".csv":
            with path.open("x", newline="", encoding="utf-8") as f:  # "x": never over a file made meanwhile
                w = csv.writer(f)
                w.writerow(columns)
                for r in rows:
                    w.writerow([_text(r.get(c)) for c in columns])
        else:
            arrays = {c: _column([r.get(c) for r in rows]) for c in columns}
            pq.write_table(pa.table(arrays), path)
    except FileExistsError:
        raise InvalidCommand(f"--out: {path} exists; reflow does not overwrite it (choose another name)") from None
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise InvalidCommand(f"--out: {path}: {exc.strerror or exc}") from None
    return path


def _column(values: list[Any]) -> pa.Array:
    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, Decimal):
        return pa.array(values, type=pa.decimal128(18, 4))
    if isinstance(sample, datetime):
        return pa.array(values, type=pa.timestamp("us", tz="UTC"))
    if isinstance(sample, (bool, int)):
        return pa.array(values)
    return pa.array([None if v is None else _text(v) for v in values], type=pa.string())
