"""Publishing the analysts' file: Parquet segments of the new facts, and a small DuckDB file of views.

The projection runner writes a private working file (`<path>.work`, `projections.runner`); readers
open `<path>`. A publish costs what changed since the last one, not the size of the projection:

1. **Segments.** The `facts.*` tables are append-only (INSERT only, never updated or deleted), so
   the rows of a table not yet published are those at row ids `>= published` (its count of published
   rows). Each publish writes them, per table that has any, as one immutable Parquet file (zstd:
   smaller than the working file) in `<path>.segments/`, under a temporary name, renamed into place.
2. **The small file.** `<path>` is a small DuckDB file of views only: each `facts.<table>` is a
   view over `read_parquet([...])` of an explicit list of that table's segments (absolute paths, no
   globs); `facts.meta`, `facts.position`, `facts.runner` (copied from the working file) and
   `facts.segments` (the manifest of live segments) are views over their rows, written out as literals (a table of
   one row would cost DuckDB blocks of 256 KB); the analysts' views are the same SQL as in the
   working file (`projections.schema.VIEWS`), on top. Each publish makes a new one under a
   temporary name (a copy of the last one with the changed views replaced; from scratch at a
   runner's first publish) and `os.replace`s it onto `<path>`: a reader opening `<path>` gets the
   old set of segments or the new one, never half. The rename is the commit point: segments written
   by a publish that did not get that far are listed by no published file (after a crash they are
   retired, see 4), and their rows are published again.
3. **Compaction, tiered.** A segment of `rows` rows has level `floor(log4(rows))`. When a table has
   `FANOUT` (4) live segments of one level, they are merged into one, of a higher level (it holds at
   least 4 times as many rows). So a table has fewer than 4 segments per level (at most about
   `3 * (log4(rows) + 1)`), each row is rewritten at most `log4(rows)` times, and a big segment is
   only merged with others as big as itself: the amortised cost of a publish is proportional to the
   rows it adds (times log4 of the table's size), whatever the size of the projection.
4. **Grace.** Merged-away segments are *retired*: deleted `grace` seconds (10 minutes) after the
   first published file that no longer lists them. A reader that opened an earlier small file can
   finish its queries meanwhile; a connection kept open longer than that across compactions may
   find a segment gone (DuckDB then says the file does not exist): reconnect. Nothing is retired
   while nothing is published. The manifest lists the live segments only: a runner starting
   retires every other file it finds in the directory (its grace starts again then).

The working file is never opened a second time (issue 19: closing any handle of it would drop
DuckDB's lock): segments are read from it through the runner's own connection.

Each working file has a random `generation` (in `facts.meta`, copied into the small file). A runner
whose working file is not the generation of the published segments (`reflow rebuild` made a new
one, or the working file was lost) retires them all and publishes its facts afresh.

The views hold absolute paths: the data directory must not be moved while readers have the file
open or while no runner runs; the next runner to start (serve, rebuild) publishes with the new paths.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb

from projections.schema import _T, TABLES, VIEWS

FANOUT = 4
GRACE = 600.0

# The working file's small tables, copied whole into each small file (`SMALL`), and the manifest:
# views over literal rows there (a table, even of one row, would cost DuckDB blocks of 256 KB).
SMALL = ("meta", "position", "runner")
_SEGMENT_COLUMNS = [("table_name", "VARCHAR"), ("file", "VARCHAR"), ("level", "INTEGER"), ("rows", "BIGINT")]


def level_of(rows: int) -> int:
    level = 0
    while rows >= FANOUT ** (level + 1):
        level += 1
    return level


@dataclass(frozen=True)
class Segment:
    table: str
    file: str  # its name in the segments directory
    rows: int
    retired_at: float | None = None  # time.time() of the first published file that no longer lists it

    @property
    def level(self) -> int:
        return level_of(self.rows)


def segments_dir(path: str | os.PathLike) -> Path:
    path = Path(os.path.abspath(path))
    return path.with_name(path.name + ".segments")


class Publisher:
    """Publishes a runner's working file to `path` (module docstring). Not thread-safe: the runner
    calls it under its lock."""

    fanout = FANOUT
    grace = GRACE

    def __init__(self, path: str | os.PathLike, generation: str) -> None:
        self.path = Path(os.path.abspath(path))
        self.dir = segments_dir(self.path)
        self.generation = generation
        self.live: dict[str, list[Segment]] = {t: [] for t in TABLES}
        self.retired: list[Segment] = []
        self.seq = 0
        self.based = False  # `path` is a small file this publisher made: the next is a copy, changed
        self.last: dict[str, Any] = {}  # what the last publish wrote (files, bytes, rows, merged rows)
        self._io: Any = None
        self._small_rows: dict[str, list[tuple]] = {}  # as in the published file
        self._load()

    # -- state --------------------------------------------------------------------------------

    def published(self, table: str) -> int:
        """Rows of `table` published: every one is in exactly one live segment."""
        return sum(s.rows for s in self.live[table])

    def files(self) -> list[Segment]:
        return [s for segs in self.live.values() for s in segs] + self.retired

    def _load(self) -> None:
        """The live segments of the published file, if they are this working file's generation.
        Every other file in the directory is retired now (never deleted at once: a reader may be
        using it): merged-away segments awaiting their grace when the last runner stopped,
        segments of another generation, segments written by a publish that never got published."""
        now = time.time()
        found = _manifest(self._connection(), self.path)
        if found is not None and found[0] == self.generation:
            for s in found[1]:
                if s.table in self.live:
                    self.live[s.table].append(s)
        for table, segs in self.live.items():  # a file gone (the directory deleted): publish the table afresh
            if not all((self.dir / s.file).is_file() for s in segs):
                self.live[table] = []
        known = {s.file for s in self.files()}
        if self.dir.is_dir():
            for p in sorted(self.dir.iterdir()):
                if p.name.startswith("."):  # a temporary of a publish that did not finish
                    p.unlink(missing_ok=True)
                elif p.name not in known and p.is_file():
                    self.retired.append(Segment(p.name.split("-", 1)[0], p.name, 0, now))
        self.seq = max((_seq(s.file) for s in self.files()), default=0)

    # -- publishing -----------------------------------------------------------------------------

    def publish(self, con: Any, counts: dict[str, int],
                small: dict[str, tuple[list[tuple[str, str]], list[tuple]]]) -> dict[str, Any]:
        """Publish: `counts` is each fact table's row count in the working file (`con`), `small`
        the columns (name, type) and rows of each of the `SMALL` tables. Returns (and keeps in
        `last`) what it wrote."""
        started = time.perf_counter()
        self.last = {"files": 0, "bytes": 0, "rows": 0, "merged_rows": 0}
        live = {t: list(segs) for t, segs in self.live.items()}
        retiring: list[Segment] = []
        written: list[Path] = []
        changed: set[str] = set()
        try:
            for table, total in counts.items():
                done = sum(s.rows for s in live[table])
                if total == done:
                    continue
                if total < done:  # not the working file those segments came from: publish it afresh
                    retiring += live[table]
                    live[table], done = [], 0
                    changed.add(table)
                    if not total:
                        continue
                seg = self._write(con, table, f"SELECT * FROM facts.{table} WHERE rowid >= {done}", total - done,
                                  written)
                self.last["rows"] += seg.rows
                live[table].append(seg)
                changed.add(table)
                self._compact(table, live[table], retiring, written)
            stamp = time.time()
            retired = self.retired + [replace(s, retired_at=stamp) for s in retiring]
            self._small(live, changed, small)
        except BaseException:
            for p in written:  # listed by no published file
                p.unlink(missing_ok=True)
            raise
        self.live, self.retired = live, retired
        self._sweep(stamp)
        self.last["seconds"] = time.perf_counter() - started
        return self.last

    def _write(self, con: Any, table: str, select: str, expect: int | None, written: list[Path]) -> Segment:
        """`select` (run on `con`) as a new segment of `table`, under a temporary name, then renamed."""
        self.dir.mkdir(exist_ok=True)
        self.seq += 1
        name = f"{table}-{self.seq:09d}.parquet"
        tmp = self.dir / f".{name}.tmp"
        try:
            n = con.execute(f"COPY ({select}) TO {_lit(tmp)} (FORMAT parquet, COMPRESSION zstd)").fetchone()[0]
            if expect is not None and n != expect:
                raise RuntimeError(f"{self.path}: publishing facts.{table}: {n} new rows, expected {expect} "
                                   "(the working file's table is not append-only?); run `reflow rebuild`")
            size = tmp.stat().st_size
            os.replace(tmp, self.dir / name)
        finally:
            tmp.unlink(missing_ok=True)
        written.append(self.dir / name)
        self.last["files"] += 1
        self.last["bytes"] += size
        return Segment(table, name, n)

    def _compact(self, table: str, segs: list[Segment], retiring: list[Segment], written: list[Path]) -> None:
        """While `fanout` live segments share a level, merge the oldest `fanout` of the lowest such
        level into one (of a higher level). `segs` is changed in place, oldest first."""
        while True:
            levels: dict[int, list[Segment]] = {}
            for s in segs:
                levels.setdefault(s.level, []).append(s)
            full = sorted(level for level, group in levels.items() if len(group) >= self.fanout)
            if not full:
                return
            group = levels[full[0]][: self.fanout]
            files = ", ".join(_lit(self.dir / s.file) for s in group)
            merged = self._write(self._connection(), table, f"SELECT * FROM {_read(files)}",
                                 sum(s.rows for s in group), written)
            self.last["merged_rows"] += merged.rows
            segs[:] = [s for s in segs if s not in group] + [merged]
            retiring += group

    def _small(self, live: dict[str, list[Segment]], changed: set[str],
               small: dict[str, tuple[list[tuple[str, str]], list[tuple]]]) -> None:
        """The small file of views, made under a temporary name and renamed onto `path`."""
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        fresh = not self.based or not self.path.is_file()
        if not fresh:
            shutil.copyfile(self.path, tmp)  # the last small file, ours (the runner lock): changed below
        io = self._connection()
        try:
            io.execute(f"ATTACH {_lit(tmp)} AS published")
            try:
                io.execute("USE published")
                io.begin()
                try:
                    if fresh:
                        io.execute("CREATE SCHEMA facts")
                        for table in TABLES:
                            io.execute(self._view(table, live[table]))
                        for name, (columns, rows) in small.items():
                            io.execute(values_view(name, columns, rows))
                        io.execute(values_view("segments", _SEGMENT_COLUMNS, []))
                        for statement in VIEWS:
                            io.execute(statement)
                    else:
                        for table in sorted(changed):
                            io.execute(self._view(table, live[table]))
                        for name, (columns, rows) in small.items():
                            if self._small_rows.get(name) != rows:
                                io.execute(values_view(name, columns, rows))
                    if fresh or changed:
                        manifest = [(s.table, s.file, s.level, s.rows) for segs in live.values() for s in segs]
                        io.execute(values_view("segments", _SEGMENT_COLUMNS, manifest))
                    io.commit()
                except BaseException:
                    io.rollback()
                    raise
            finally:
                io.execute("USE memory")
                io.execute("DETACH published")
            size = tmp.stat().st_size
            os.replace(tmp, self.path)
        except BaseException:
            self.based = False
            raise
        finally:
            tmp.unlink(missing_ok=True)
        self.based = True
        self._small_rows = {name: rows for name, (_, rows) in small.items()}
        self.last["files"] += 1
        self.last["bytes"] += size
        self.last["small_bytes"] = size

    def _view(self, table: str, segs: list[Segment]) -> str:
        if not segs:
            cols = ", ".join(f"CAST(NULL AS {_T[kind][0]}) AS {col}" for col, kind in TABLES[table])
            return f"CREATE OR REPLACE VIEW facts.{table} AS SELECT {cols} LIMIT 0"
        files = ", ".join(_lit(self.dir / s.file) for s in segs)
        return f"CREATE OR REPLACE VIEW facts.{table} AS SELECT * FROM {_read(files)}"

    def _sweep(self, now: float) -> None:
        """Delete the retired segments whose grace is over."""
        keep = []
        for s in self.retired:
            if s.retired_at is not None and s.retired_at + self.grace <= now:
                (self.dir / s.file).unlink(missing_ok=True)
            else:
                keep.append(s)
        self.retired = keep

    def _connection(self) -> Any:
        """An in-memory DuckDB connection of the publisher's own: merges, the small file."""
        if self._io is None:
            self._io = duckdb.connect()
        return self._io

    def close(self) -> None:
        if self._io is not None:
            io, self._io = self._io, None
            io.close()


def values_view(name: str, columns: list[tuple[str, str]], rows: list[tuple]) -> str:
    """`facts.<name>` as a view over literal rows, each column cast to its type."""
    cols = ", ".join(f"CAST(c{i} AS {kind}) AS {col}" for i, (col, kind) in enumerate(columns))
    if not rows:
        nulls = ", ".join(f"NULL AS c{i}" for i in range(len(columns)))
        return f"CREATE OR REPLACE VIEW facts.{name} AS SELECT {cols} FROM (SELECT {nulls}) LIMIT 0"
    values = ", ".join("(" + ", ".join(_literal(v) for v in row) + ")" for row in rows)
    names = ", ".join(f"c{i}" for i in range(len(columns)))
    return f"CREATE OR REPLACE VIEW facts.{name} AS SELECT {cols} FROM (VALUES {values}) AS v({names})"


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return _lit(value.isoformat(sep=" ") if hasattr(value, "isoformat") else str(value))


def _read(files: str) -> str:
    return f"read_parquet([{files}], hive_partitioning = false, union_by_name = false)"


def _lit(path: str | os.PathLike) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _seq(name: str) -> int:
    digits = name.rsplit("-", 1)[-1].split(".", 1)[0]
    return int(digits) if digits.isdigit() else 0


def _manifest(io: Any, path: Path) -> tuple[str | None, list[Segment]] | None:
    """(generation, live segments) of the published small file at `path`; None if there is none, or it
    is not one (a whole copy made by an older reflow) or cannot be read. Read through `io` with
    ATTACH: `duckdb.connect` would return a database this process may hold open since before the
    last publish (DuckDB caches them by path), the old file."""
    if not path.is_file():
        return None
    try:
        io.execute(f"ATTACH {_lit(path)} AS current (READ_ONLY)")
    except duckdb.Error:
        return None
    try:
        if not io.execute("SELECT count(*) FROM duckdb_views() WHERE database_name = 'current' "
                          "AND schema_name = 'facts' AND view_name = 'segments'").fetchone()[0]:
            return None
        found = io.execute("SELECT value FROM current.facts.meta WHERE key = 'generation'").fetchone()
        rows = io.execute("SELECT table_name, file, rows FROM current.facts.segments").fetchall()
    except duckdb.Error:
        return None
    finally:
        io.execute("DETACH current")
    return (found[0] if found else None), [Segment(*row) for row in rows]
