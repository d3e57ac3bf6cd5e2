"""The projection runner: the event store, read in batches, into one DuckDB file for analysts.

Exactly once. The runner reads the notifications after its tracked position, turns the batch into
Arrow tables (one per fact table, `projections.facts`), and in ONE DuckDB transaction appends them
and advances the position. A crash before the commit leaves neither; after it, both. A batch (or
any notification) at or below the stored position is skipped, so re-delivery changes nothing.
Facts are append-only and the views derive state from them (`projections.schema`), so `reflow
rebuild` gives the same rows.

Readers at any time (CONTRACT section 4). DuckDB lets one process hold a database file for
writing, and a reader cannot open a file another process holds for writing. So the runner never
writes the analysts' file. It writes a private working file, `<path>.work`, and *publishes* it:
`CHECKPOINT` (everything committed is in the file, the WAL is empty), copy the file to a temporary
name in the same directory, `os.replace` it onto `<path>`. The rename is atomic: a reader opening
`<path>` gets the old snapshot or the new one, never half of one, and a reader that already has
the old one open keeps reading it (its inode lives on until it closes). `run_once` publishes when
something changed and at least `publish_interval` (2 s) passed since the last publish; `catch_up`
and `close` publish at the end. With `reflow serve` calling `run_once` every 1-2 s, what analysts
see is at most ~4 s behind the event store. The price: each publish copies the whole file (a few
hundred MB/s; a 1 GB projection costs about a second per publish), which is why it is throttled.

    runner = ProjectionRunner(app, "reflow-data/reflow.duckdb")
    while serving:
        runner.run_once()   # cheap when nothing is new: one `select_notifications` query
    runner.close()
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
from eventsourcing.persistence import Notification

from engine.base import decode_event
from projections.facts import HANDLERS, Batch
from projections.schema import SCHEMA_VERSION, TABLES, VIEWS, ddl


class ProjectionOutdated(RuntimeError):
    """The working file was made by another schema version: run `reflow rebuild`."""


class ProjectionRunner:
    publish_interval = 2.0

    def __init__(self, app: Any, duckdb_path: str | os.PathLike, *, batch: int = 5000,
                 work_path: str | os.PathLike | None = None, publish: bool = True) -> None:
        from eventsourcing.utils import get_topic

        self.app = app
        self.path = Path(duckdb_path)
        self.work_path = Path(work_path) if work_path else self.path.with_name(self.path.name + ".work")
        self.batch = batch
        self.lock = threading.RLock()
        self._publishing = publish
        self._topics = {get_topic(cls): cls for cls in HANDLERS}
        self._mapper = app.mapper
        self._plain = not (getattr(self._mapper, "cipher", None) or getattr(self._mapper, "compressor", None))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = duckdb.connect(str(self.work_path))
        self._prepare()
        self.position = self.connection.execute("SELECT pos FROM facts.position").fetchone()[0]
        # A previous process may have committed to the working file after its last publish (it was
        # killed, or stopped between publishes): publish on the first run, so the analysts' file
        # catches up even when nothing new comes.
        self._dirty = self.path.exists()
        self._published_at = 0.0
        if publish and not self.path.exists():
            self.publish()

    def _prepare(self) -> None:
        con = self.connection
        con.execute("CREATE SCHEMA IF NOT EXISTS facts")
        con.execute("CREATE TABLE IF NOT EXISTS facts.meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
        found = con.execute("SELECT value FROM facts.meta WHERE key = 'schema_version'").fetchone()
        if found is not None and found[0] != SCHEMA_VERSION:
            raise ProjectionOutdated(
                f"{self.work_path}: projection schema {found[0]}, this reflow writes {SCHEMA_VERSION}; "
                "run `reflow rebuild`")
        if found is None:
            con.begin()
            for statement in ddl():
                con.execute(statement)
            con.execute("INSERT INTO facts.meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
            con.execute("INSERT INTO facts.position VALUES (1, 0, 0, NULL)")
            con.commit()
        else:  # views are derived: refresh them, so a view fix needs no rebuild
            con.begin()
            for statement in VIEWS:
                con.execute(statement)
            con.commit()

    # -- reading and applying ---------------------------------------------------------------

    def run_once(self) -> int:
        """Apply the next batch; publish if due. Returns how many notifications were consumed."""
        with self.lock:
            notes = self.app.recorder.select_notifications(start=self.position + 1, limit=self.batch)
            n = self.apply(notes) if notes else 0
            if self._dirty and time.monotonic() - self._published_at >= self.publish_interval:
                self.publish()
            return n

    def apply(self, notifications: list[Notification]) -> int:
        """Apply notifications in one transaction; those at or below the position are skipped."""
        with self.lock:
            fresh = [n for n in notifications if n.id > self.position]
            if not fresh:
                return 0
            batch = Batch()
            for n in fresh:
                if n.topic in self._topics:
                    batch.add(n.id, self._decode(n))
            self._commit(batch, fresh[-1].id)
            return len(fresh)

    def _decode(self, n: Notification) -> Any:
        if self._plain:
            return decode_event(n.topic, n.state)
        return self._mapper.to_domain_event(n)

    def _commit(self, batch: Batch, position: int) -> None:
        con = self.connection
        con.begin()
        try:
            for name, table in batch.tables():
                view = f"_batch_{name}"
                con.register(view, table)
                cols = ", ".join(col for col, _ in TABLES[name])
                con.execute(f"INSERT INTO facts.{name} ({cols}) SELECT {cols} FROM {view}")
                con.unregister(view)
            self._set_position(position, batch.events)
            con.commit()
        except BaseException:
            con.rollback()
            raise
        self.position = position
        if batch.events:
            self._dirty = True

    def _set_position(self, position: int, events: int) -> None:
        updated = self.connection.execute(
            "UPDATE facts.position SET pos = ?, events = events + ?, updated_at = now()::TIMESTAMP "
            "WHERE id = 1 AND pos = ? RETURNING pos", [position, events, self.position]).fetchall()
        if len(updated) != 1:
            raise RuntimeError(f"{self.work_path}: the projection position moved under this runner")

    def catch_up(self, progress: bool | None = None) -> int:
        """Apply batches until nothing is new, then publish. Returns how many were consumed."""
        total = 0
        bar = _Progress(self, progress) if progress else None
        try:
            while True:
                n = self.run_once()
                total += n
                if bar:
                    bar.advance(n)
                if n < self.batch:
                    break
        finally:
            if bar:
                bar.stop()
        if self._dirty:
            self.publish()
        return total

    # -- publishing -------------------------------------------------------------------------

    def publish(self) -> None:
        """Copy a consistent snapshot of the working file onto the analysts' path, atomically."""
        if not self._publishing:
            self._dirty = False
            return
        with self.lock:
            self.connection.execute("CHECKPOINT")
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            try:
                shutil.copyfile(self.work_path, tmp)
                os.replace(tmp, self.path)
            finally:
                tmp.unlink(missing_ok=True)
            self._dirty = False
            self._published_at = time.monotonic()

    def close(self) -> None:
        with self.lock:
            if self.connection is None:
                return
            if self._dirty:
                self.publish()
            self.connection.close()
            self.connection = None  # type: ignore[assignment]

    def __enter__(self) -> ProjectionRunner:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class _Progress:
    def __init__(self, runner: ProjectionRunner, progress: Any) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        todo = max((runner.app.recorder.max_notification_id() or 0) - runner.position, 0)
        self.bar = Progress(TextColumn("projecting events"), BarColumn(), MofNCompleteColumn(),
                            TimeRemainingColumn(), transient=False)
        self.task = self.bar.add_task("events", total=todo)
        self.bar.start()

    def advance(self, n: int) -> None:
        self.bar.advance(self.task, n)

    def stop(self) -> None:
        self.bar.stop()
