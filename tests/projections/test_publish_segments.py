"""Publishing by segments (issue 17, "analysts' file copied whole"): a publish writes the rows added
since the last one as Parquet segments and a small file of views, not a copy of the whole file;
readers keep consistent snapshots; segments stay bounded; a crash publishes nothing twice."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import duckdb
import pytest

from projections.publish import FANOUT, Publisher, level_of, segments_dir
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from projections.schema import TABLES
from projections.statements import issue_statement
from tests.projections.conftest import VIEWS, make_app, snapshot
from tests.projections.seed import SHOP, seed, seed_lifecycle
from tests.world import T0, line, place

ROOT = Path(__file__).resolve().parents[2]


def fresh(path: Path, sql: str) -> list[tuple]:
    """Read the analysts' file as it is now. (`duckdb.connect` would hand back a database this
    process still holds open, the file as it was when first opened: DuckDB caches them by path.)"""
    con = duckdb.connect()
    try:
        con.execute(f"ATTACH '{path}' AS analysts (READ_ONLY)")
        con.execute("USE analysts")
        return con.execute(sql).fetchall()
    finally:
        con.close()


def views_of(con) -> dict[str, list[tuple]]:
    return {v: con.execute(f"SELECT * FROM {v} ORDER BY ALL").fetchall() for v in VIEWS}


def listed(path: Path) -> set[str]:
    """The segments the published file at `path` lists."""
    return {f for (f,) in fresh(path, "SELECT file FROM facts.segments")}


def on_disk(path: Path) -> set[str]:
    folder = segments_dir(path)
    return {p.name for p in folder.iterdir()} if folder.is_dir() else set()


def publishing(app, path: Path, **kwargs) -> ProjectionRunner:
    runner = ProjectionRunner(app, path, **kwargs)
    runner.publish_interval = 0  # every run_once that applies something publishes
    return runner


def test_a_reader_holding_the_old_file_reads_the_same_rows_while_segments_are_published_and_merged(
        sqlite_app, tmp_path):
    seed(sqlite_app)
    path = tmp_path / "reflow.duckdb"
    runner = publishing(sqlite_app, path)
    runner.catch_up()
    held = duckdb.connect(str(path), read_only=True)  # an analyst with the file open
    before, files = views_of(held), listed(path)
    merged = 0
    for n in range(40):
        place(sqlite_app, f"N{n}", line("L1", "P1"))
        assert runner.run_once()
        merged += runner.publisher.last["merged_rows"]
    assert merged > 0
    assert files - listed(path), "no segment the reader lists was merged away"
    assert files <= on_disk(path)  # kept for their grace
    assert views_of(held) == before  # the reader's snapshot, whole, after 40 publishes
    assert fresh(path, "SELECT count(*) FROM orders") == [(9 + 40,)]
    # What the grace is for: without it the merged-away segments go at the next publish, and the
    # reader that still lists them cannot read any more.
    runner.publisher.grace = 0
    place(sqlite_app, "LAST", line("L1", "P1"))
    runner.run_once()
    assert not files <= on_disk(path)
    with pytest.raises(duckdb.IOException, match="No files found"):
        views_of(held)
    held.close()
    runner.close()


def test_segment_files_stay_bounded_after_many_publishes(sqlite_app, tmp_path):
    seed(sqlite_app)
    path = tmp_path / "reflow.duckdb"
    runner = publishing(sqlite_app, path)
    runner.publisher.grace = 0
    runner.catch_up()
    added = merged = 0
    for n in range(150):
        place(sqlite_app, f"N{n}", line("L1", "P1"))
        runner.run_once()
        added += runner.publisher.last["rows"]
        merged += runner.publisher.last["merged_rows"]
    # Each row rewritten at most once per level above its first: the merges cost a few times the change.
    assert 0 < merged <= 3 * added
    live = runner.publisher.live
    for table, segs in live.items():
        rows = sum(s.rows for s in segs)
        levels = [s.level for s in segs]
        assert all(levels.count(level) < FANOUT for level in levels), (table, levels)
        assert len(segs) <= (FANOUT - 1) * (level_of(rows) + 1), (table, levels)
        assert len(segs) <= 12  # under 256 rows: levels 0-3, fewer than 4 each; after 150 publishes
    assert on_disk(path) == {s.file for segs in live.values() for s in segs} == listed(path)
    assert fresh(path, "SELECT count(*) FROM orders") == [(159,)]
    runner.close()


def test_published_views_have_the_working_files_columns_and_a_rebuilds_rows(sqlite_app, tmp_path):
    seed_lifecycle(sqlite_app)
    path = tmp_path / "reflow.duckdb"
    runner = publishing(sqlite_app, path, batch=3)  # many small publishes, merged in tiers
    while runner.run_once():
        pass
    place(sqlite_app, "LATER", line("L1", "P1"))
    runner.catch_up()
    work = runner.connection
    names = work.execute("SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal "
                         "UNION ALL SELECT schema_name, table_name FROM duckdb_tables()").fetchall()
    assert len(names) > len(TABLES) + len(VIEWS)
    for schema, name in names:  # names and types (NOT NULL is the working file's alone)
        columns = f"SELECT column_name, column_type FROM (DESCRIBE {schema}.{name})"
        assert fresh(path, columns) == work.execute(columns).fetchall(), name
    every = [v for (s, v) in names if s == "main" and v not in ("overdue_allocations", "projection_status")]
    mine = {v: work.execute(f"SELECT * FROM {v} ORDER BY ALL").fetchall() for v in every}
    runner.close()
    assert {v: fresh(path, f"SELECT * FROM {v} ORDER BY ALL") for v in every} == mine
    rebuilt = tmp_path / "rebuilt.duckdb"
    rebuild(sqlite_app, rebuilt, progress=False)
    assert snapshot(path) == snapshot(rebuilt)
    for name in TABLES:  # the facts themselves, each once
        sql = f"SELECT * EXCLUDE (pos) FROM facts.{name} ORDER BY ALL" if "pos" in dict(TABLES[name]) else \
            f"SELECT count(*) FROM facts.{name}"
        assert fresh(path, sql) == fresh(rebuilt, sql), name


def written(path: Path, before: dict[str, tuple]) -> tuple[int, list[str]]:
    """Bytes and names of the files under the analysts' file and its segments that are new or
    rewritten since `before` (see `files`)."""
    now = files(path)
    changed = sorted(name for name, stat in now.items() if before.get(name) != stat)
    return sum(now[name][2] for name in changed), changed


def files(path: Path) -> dict[str, tuple]:
    out = {}
    for p in [path, *(segments_dir(path).iterdir() if segments_dir(path).is_dir() else [])]:
        st = p.stat()
        out[p.name] = (st.st_ino, st.st_mtime_ns, st.st_size)
    return out


def test_a_publish_after_a_small_change_writes_the_change_not_the_projection(sqlite_app, tmp_path, monkeypatch):
    monkeypatch.setattr(Publisher, "fanout", 10**9)  # no merges: one publish's own writes (merges: above)
    seed(sqlite_app)
    path = tmp_path / "reflow.duckdb"
    runner = ProjectionRunner(sqlite_app, path)
    runner.publish_interval = float("inf")  # published when the test says
    runner.catch_up()

    def one_order(order_id: str) -> tuple[int, list[str]]:
        place(sqlite_app, order_id, line("L1", "P1"))
        runner.run_once()
        before = files(path)
        runner.publish()
        return written(path, before)

    small, small_files = one_order("SMALL")
    runner.close()
    # The projection grows 50 fold: facts of 20,000 orders written straight into the working file.
    with duckdb.connect(f"{path}.work") as con:
        con.execute("INSERT INTO facts.order_keys SELECT uuid(), 'douyin', 'synthetic', 'SYN' || i, 0 "
                    "FROM range(20000) t(i)")
        con.execute("INSERT INTO facts.orders_placed SELECT order_uuid, 'm', 'douyin', TIMESTAMP '2026-01-01', 0 "
                    "FROM facts.order_keys WHERE shop_id = 'synthetic'")
        con.execute("INSERT INTO facts.order_lines SELECT order_uuid, 0, 'L1', 'P1', 'K1', NULL, 1, 9.9, 0 "
                    "FROM facts.order_keys WHERE shop_id = 'synthetic'")
    runner = ProjectionRunner(sqlite_app, path)
    runner.publish_interval = float("inf")
    runner.publish()
    assert fresh(path, "SELECT count(*) FROM orders") == [(10 + 20_000,)]
    published = sum(stat[2] for name, stat in files(path).items() if name != path.name)
    big, big_files = one_order("BIG")
    runner.close()
    assert path.name in small_files and path.name in big_files  # the small file, and new segments:
    new_segments = [n for n in big_files if n != path.name]
    assert len(new_segments) == len(small_files) - 1 <= 8  # one per fact table the order added rows to
    assert big <= 1.5 * small + 65536, (small, big)  # the same, whatever the size of the projection
    assert big * 2 < published + path.stat().st_size, (big, published)
    assert fresh(path, "SELECT count(*) FROM orders") == [(10 + 20_000 + 1,)]


CRASHER = textwrap.dedent("""
    import os, sys
    from tests.projections.conftest import make_app
    from projections import publish
    from projections.runner import ProjectionRunner
    store, tmp, key, path = sys.argv[1:5]
    app = make_app(store, tmp, key)
    runner = ProjectionRunner(app, path)
    runner.publish_interval = 0
    # Die after the new segments are written, before the small file listing them replaces the
    # published one.
    publish.Publisher._small = lambda self, *a, **k: os._exit(9)
    runner.run_once()
""")


def test_a_crash_between_writing_segments_and_publishing_them_counts_nothing_twice(sqlite_store, tmp_path):
    from eventsourcing.cipher import AESCipher

    key = AESCipher.create_key(32)
    app = make_app(sqlite_store, tmp_path, key)
    seed(app)
    path = tmp_path / "reflow.duckdb"
    runner = ProjectionRunner(app, path)
    runner.catch_up()
    runner.close()
    before, files_before = snapshot(path), listed(path)
    for n in range(5):
        place(app, f"N{n}", line("L1", "P1"))
    done = subprocess.run([sys.executable, "-c", CRASHER, sqlite_store, str(tmp_path), key, str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 9, done.stderr
    orphans = on_disk(path) - files_before
    assert orphans and listed(path) == files_before  # written, never published
    assert snapshot(path) == before  # the analysts' file as it was, readable
    runner = ProjectionRunner(app, path)
    runner.publisher.grace = 0
    assert runner.position == app.recorder.max_notification_id()  # the crashed run had committed them
    runner.catch_up()  # publishes what the working file holds beyond the published segments
    assert not orphans & listed(path)
    runner.close()
    assert not orphans & on_disk(path)  # retired at start, deleted at the first publish (grace 0)
    rebuilt = tmp_path / "rebuilt.duckdb"
    rebuild(app, rebuilt, progress=False)
    assert snapshot(path) == snapshot(rebuilt)
    for name in TABLES:
        assert fresh(path, f"SELECT count(*) FROM facts.{name}") == fresh(rebuilt, f"SELECT count(*) FROM facts.{name}")
    assert fresh(path, "SELECT count(*) FROM orders") == [(14,)]
    app.close()


def test_a_publish_that_fails_leaves_the_published_file_and_publishes_all_next_time(sqlite_app, tmp_path, monkeypatch):
    seed(sqlite_app)
    path = tmp_path / "reflow.duckdb"
    runner = publishing(sqlite_app, path)
    runner.catch_up()
    before, disk = snapshot(path), on_disk(path)
    small = Publisher._small

    def full_disk(self, *args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Publisher, "_small", full_disk)
    place(sqlite_app, "N1", line("L1", "P1"))
    with pytest.raises(OSError, match="No space"):
        runner.run_once()
    assert on_disk(path) == disk and snapshot(path) == before  # its segments removed, nothing published
    monkeypatch.setattr(Publisher, "_small", small)
    place(sqlite_app, "N2", line("L1", "P1"))
    runner.run_once()
    assert fresh(path, "SELECT count(*) FROM orders") == [(11,)]
    runner.close()


def test_rebuild_publishes_afresh_and_keeps_the_old_segments_for_readers(sqlite_app, tmp_path):
    seed(sqlite_app)
    path = tmp_path / "reflow.duckdb"
    with ProjectionRunner(sqlite_app, path) as runner:
        runner.catch_up()
    held = duckdb.connect(str(path), read_only=True)
    before, old = views_of(held), listed(path)
    place(sqlite_app, "AFTER", line("L1", "P1"))
    rebuild(sqlite_app, path, progress=False)  # a new working file: a new generation of segments
    assert not old & listed(path) and old <= on_disk(path)
    assert views_of(held) == before
    held.close()
    assert fresh(path, "SELECT count(*) FROM orders") == [(10,)]


def test_a_whole_copy_published_by_an_older_reflow_is_replaced_by_the_small_file(sqlite_app, tmp_path):
    seed(sqlite_app)
    path = tmp_path / "reflow.duckdb"
    with ProjectionRunner(sqlite_app, path) as runner:
        runner.catch_up()
    before = snapshot(path)
    shutil.rmtree(segments_dir(path))
    shutil.copyfile(f"{path}.work", path)  # what reflow published before issue 17
    assert fresh(path, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'facts'") == [(len(TABLES) + 3,)]
    with ProjectionRunner(sqlite_app, path) as runner:
        runner.catch_up()
    assert fresh(path, "SELECT count(*) FROM duckdb_tables()") == [(0,)]  # views only
    assert snapshot(path) == before
    shutil.rmtree(segments_dir(path))  # lost: the next runner publishes everything again
    with ProjectionRunner(sqlite_app, path) as runner:
        runner.catch_up()
    assert snapshot(path) == before


def test_statement_beside_a_runner_starts_from_the_published_segments(sqlite_app, tmp_path):
    """`reflow statement` beside serve: a private working file whose facts are views over the
    published segments plus what it catches up from the store, not a copy of every row."""
    from projections.private import materialise

    seed(sqlite_app)
    path = tmp_path / "reflow.duckdb"
    runner = ProjectionRunner(sqlite_app, path)  # serve's runner: holds the projection
    runner.publish_interval = float("inf")
    runner.catch_up()
    place(sqlite_app, "UNPUBLISHED", line("L1", "P1"), at=T0)  # in the store, not in the analysts' file
    [a] = sqlite_app.allocations_of(*SHOP, "UNPUBLISHED")
    sqlite_app.upload_tracking("S1", a.allocation_id, "YTO", "YT0000000099", at=T0 + timedelta(hours=1))
    st = issue_statement(sqlite_app, path, "S1", T0.date(), T0.date())
    assert "UNPUBLISHED" in {ln.order_id for ln in st.lines}
    private = tmp_path / "private.duckdb"
    materialise(path, private)
    with duckdb.connect(str(private), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'facts' "
                           "AND table_name = 'allocations'").fetchone() == (0,)  # a view over the segments
        assert con.execute("SELECT count(*) FROM orders").fetchone() == (9,)
    runner.close()
