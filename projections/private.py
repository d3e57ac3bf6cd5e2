"""A private working file over the published snapshot (for `reflow statement` beside a running
serve): nothing copied, the published segments read through views (projections/publish.py)."""

from __future__ import annotations

import os

import duckdb

from projections.publish import _T, _lit, _read, segments_dir
from projections.schema import TABLES, VIEWS, ddl


def materialise(published: str | os.PathLike, work: str | os.PathLike) -> None:
    """A new working file `work` holding the published snapshot at `published`, for `reflow
    statement` beside a running serve (`projections.statements._opened`), which catches it up from
    the event store. Made in constant time from a small file: each `facts.<table>` there is a view
    over the published file's segments `UNION ALL` a table `delta.<table>`, where that runner
    appends (`append_to` in `facts.meta`). From a whole copy made by an older reflow: its rows,
    copied. Reads `published` read-only; the segments it lists stay at least `Publisher.grace`."""
    con = duckdb.connect(str(work))
    try:
        con.execute(f"ATTACH {_lit(published)} AS published (READ_ONLY)")
        try:
            live = con.execute("SELECT count(*) FROM duckdb_views() WHERE database_name = 'published' "
                               "AND schema_name = 'facts' AND view_name = 'segments'").fetchone()[0]
            segments: dict[str, list[str]] = {t: [] for t in TABLES}
            if live:
                for table, file in con.execute("SELECT table_name, file FROM published.facts.segments "
                                               "ORDER BY file").fetchall():
                    segments[table].append(file)
            con.begin()
            if live:
                folder = segments_dir(published)
                con.execute("CREATE SCHEMA facts")
                con.execute("CREATE SCHEMA delta")
                for statement in ddl()[1:4]:  # meta, position, runner
                    con.execute(statement)
                for table, cols in TABLES.items():
                    body = ", ".join(f"{col} {_T[kind][0]}" for col, kind in cols)
                    con.execute(f"CREATE TABLE delta.{table} ({body})")
                    files = ", ".join(_lit(folder / f) for f in segments[table])
                    names = ", ".join(col for col, _ in cols)
                    con.execute(f"CREATE VIEW facts.{table} AS " + (
                        f"SELECT {names} FROM {_read(files)} UNION ALL " if files else "")
                        + f"SELECT {names} FROM delta.{table}")
                for statement in VIEWS:
                    con.execute(statement)
                con.execute("INSERT INTO facts.meta VALUES ('append_to', 'delta')")
            else:
                for statement in ddl():
                    con.execute(statement)
                for table, cols in TABLES.items():
                    names = ", ".join(col for col, _ in cols)
                    con.execute(f"INSERT INTO facts.{table} ({names}) SELECT {names} FROM published.facts.{table}")
            con.execute("INSERT INTO facts.meta SELECT key, value FROM published.facts.meta "
                        "WHERE key NOT IN ('generation', 'append_to')")
            con.execute("INSERT INTO facts.position SELECT id, pos, events, updated_at FROM published.facts.position")
            con.commit()
        finally:
            con.execute("DETACH published")
    finally:
        con.close()
