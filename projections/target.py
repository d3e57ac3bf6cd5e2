"""The analysts' file reflow publishes to: never a file that is not reflow's own."""

from __future__ import annotations

from pathlib import Path

import duckdb


def check_target(path: Path) -> None:
    """Refuse, changing nothing, to replace a file that is not reflow's DuckDB file (one made by a
    projection runner: it has `facts.meta`). A path that does not exist is fine."""
    if not path.exists():
        return
    if not path.is_file():
        why = "is not a file"
    else:
        with open(path, "rb") as f:
            head = f.read(12)
        why = "is not a DuckDB file" if head[8:12] != b"DUCK" else ""
    if not why:
        try:
            with duckdb.connect(str(path), read_only=True) as con:
                found = con.execute(  # a table in the working file and older published files, a view now
                    "SELECT count(*) FROM (SELECT schema_name, table_name FROM duckdb_tables() UNION ALL "
                    "SELECT schema_name, view_name FROM duckdb_views()) WHERE schema_name = 'facts' "
                    "AND table_name = 'meta'").fetchone()[0]
            why = "" if found else "is a DuckDB file without reflow's tables (facts.meta)"
        except duckdb.Error as e:
            why = f"cannot be read to check it is reflow's ({str(e).splitlines()[0]})"
    if why:
        raise ValueError(f"--duckdb {path}: {why}; reflow replaces only its own DuckDB file "
                         "(give --duckdb a new path or reflow's file)")
