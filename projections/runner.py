"""The projection runner: the event store, read in batches, into one DuckDB file for analysts.

Exactly once. The runner reads the notifications after its tracked position, turns the batch into
Arrow tables (one per fact table, `projections.facts`), and in ONE DuckDB transaction appends them
and advances the position. A crash before the commit leaves neither; after it, both. A batch (or
any notification) at or below the stored position is skipped, so re-delivery changes nothing.
Facts are append-only and the views derive state from them (`projections.schema`), so `reflow
rebuild` gives the same rows.

Readers at any time (CONTRACT section 4). DuckDB lets one process hold a database file for
writing, and a reader cannot open a file another process holds for writing. So the runner never
writes the analysts' file. It writes a private working file, `<path>.work`, and *publishes* it
(`projections.publish`): the rows added since the last publish, per fact table, as an immutable
Parquet segment in `<path>.segments/`, then a new small DuckDB file of views over the segments,
renamed atomically onto `<path>`. A reader opening `<path>` gets the old snapshot or the new one,
never half of one; a reader that already has the old one open keeps reading it (the segments it
lists stay at least `Publisher.grace` seconds after they are merged away). A publish costs what
changed, not the size of the projection (segments are merged in tiers, each row rewritten about
log4(rows) times). `run_once` publishes when something changed and at least `publish_interval`
(2 s) passed since the last publish; `catch_up` and `close` publish at the end. With `reflow serve`
calling `run_once` every 1-2 s, what analysts see is at most ~4 s behind the event store.

One writer per file, two locks. A snapshot is only whole if nobody but this runner writes the
working file. (1) Before anything else the runner takes `<path>.lock` with `flock` (exclusive,
non-blocking) and writes its pid and owner there; a second runner on the same file, in any
process, is refused with `ProjectionBusy` naming the holder. flock locks belong to the open file
description, so nothing else the process opens or closes can drop them. (2) DuckDB's own lock on
the working file is a POSIX record lock, which the kernel drops as soon as the process closes
*any* handle of that file: publishing with `shutil.copyfile(work, tmp)` did exactly that, after
which any process (`reflow statement`, a second serve) could open the working file for writing
beside the runner and the next snapshots were torn (issue 19). So the runner never opens another
handle of the working file: publishing reads it through the runner's DuckDB connection.

    runner = ProjectionRunner(app, "reflow-data/reflow.duckdb")
    while serving:
        runner.run_once()   # cheap when nothing is new: one `select_notifications` query
    runner.close()
"""

from __future__ import annotations

import fcntl
import os
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
from eventsourcing.persistence import Notification

from engine.base import decode_event
from projections.facts import HANDLERS, Batch
from projections.publish import SMALL, Publisher
from projections.schema import RUNNER_TABLE, SCHEMA_VERSION, TABLES, VIEWS, ddl
from projections.target import check_target


class ProjectionRefused(RuntimeError):
    """The projection of the analysts' DuckDB file `path` (as given) cannot run, for `reason`; one
    line, ``<path>: <reason>`` (the command line leads with ``--duckdb <path>:`` instead)."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = Path(path), reason

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.path, self.reason)


class ProjectionOutdated(ProjectionRefused):
    """The working file was made by another schema version: run `reflow rebuild`."""


class ProjectionBusy(ProjectionRefused):
    """Another projection runner (or another DuckDB writer) holds the projection; one line."""


class RunnerLock:
    """The exclusive right to run the projection of one DuckDB file: `flock` on `<path>.lock`.

    The lock file holds the holder's pid and owner, for the refusal. It is never deleted (deleting
    a flock file races with the next taker); the kernel releases the lock when its holder exits,
    however it exits."""

    def __init__(self, duckdb_path: str | os.PathLike, owner: str | None = None, *, wait: float = 0.0) -> None:
        self.target = Path(duckdb_path)
        self.path = self.target.with_name(self.target.name + ".lock")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 500, 0).decode(errors="replace").strip()
                    os.close(fd)
                    pid, _, who = holder.partition(" ")
                    named = f"pid {pid} ({who})" if pid.isdigit() else "a process that did not say who it is"
                    raise ProjectionBusy(
                        self.target, f"another projection runner holds it: {named}; one runner per DuckDB "
                        "file: stop that one, or give this one its own --duckdb") from None
                time.sleep(0.1)
            except BaseException:
                os.close(fd)
                raise
        # Never the whole command line: it may carry a store URL with a password.
        self.owner = owner or (Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.owner}\n".encode(), 0)
        self.fd: int | None = fd

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.ftruncate(fd, 0)
            os.close(fd)  # releases the flock


class ProjectionRunner:
    publish_interval = 2.0

    def __init__(self, app: Any, duckdb_path: str | os.PathLike, *, batch: int = 5000,
                 work_path: str | os.PathLike | None = None, publish: bool = True,
                 owner: str | None = None, wait: float = 0.0, runner_lock: RunnerLock | None = None,
                 status: dict[str, Any] | None = None) -> None:
        """Take the runner lock (`ProjectionBusy` naming the holder, after waiting up to `wait`
        seconds; or take over `runner_lock`, already held), open the working file, create or check
        its schema. `status` (restarts, last_error, last_error_at: what serve's supervisor knows)
        goes into the `projection_status` view with this runner's pid and owner."""
        from engine.base import topics_of

        self.app = app
        self.path = Path(duckdb_path)
        self.work_path = Path(work_path) if work_path else self.path.with_name(self.path.name + ".work")
        self.batch = batch
        self.lock = threading.RLock()
        self._publishing = publish
        self._topics = {topic: cls for cls in HANDLERS for topic in topics_of(cls)}
        self._mapper = app.mapper
        self._plain = not (getattr(self._mapper, "cipher", None) or getattr(self._mapper, "compressor", None))
        if publish:
            check_target(self.path)  # serve, rebuild, a statement: never replace a file not reflow's
        self.runner_lock = runner_lock or RunnerLock(self.path, owner, wait=wait)
        self.owner = self.runner_lock.owner
        self.connection: Any = None
        self.publisher: Publisher | None = None
        self._types: dict[str, list[tuple[str, str]]] = {}
        try:
            try:
                self.connection = duckdb.connect(str(self.work_path))
            except duckdb.IOException as e:  # a DuckDB client that is not a runner holds it
                raise ProjectionBusy(self.path, f"another process holds its working file {self.work_path} (is "
                                     f"`reflow serve` running? stop it first): {str(e).splitlines()[0]}") from None
            self._prepare()
            self._record_runner(status or {})
            if publish:
                generation = self.connection.execute(
                    "SELECT value FROM facts.meta WHERE key = 'generation'").fetchone()[0]
                self.publisher = Publisher(self.path, generation)
        except BaseException:
            self._release()
            raise
        self.position = self.connection.execute("SELECT pos FROM facts.position").fetchone()[0]
        # Where the facts are appended: `facts`; `delta` in a working file made for a statement
        # from a published snapshot, whose `facts.*` are views (`projections.private.materialise`).
        found = self.connection.execute("SELECT value FROM facts.meta WHERE key = 'append_to'").fetchone()
        self._append_to = found[0] if found else "facts"
        if publish and self._append_to != "facts":
            self._release()
            raise ProjectionRefused(self.path, f"its working file {self.work_path} is a statement's private copy")
        # Rows per fact table in the working file (append-only): what publish() exports beyond
        # the published ones.
        self._rows = {name: self.connection.execute(f"SELECT count(*) FROM facts.{name}").fetchone()[0]
                      for name in TABLES} if publish else {}
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
                self.path, f"its working file {self.work_path} has projection schema {found[0]}, this reflow "
                f"writes {SCHEMA_VERSION}; run `reflow rebuild`")
        if found is None:
            con.begin()
            for statement in ddl():
                con.execute(statement)
            con.execute("INSERT INTO facts.meta VALUES ('schema_version', ?)", [SCHEMA_VERSION])
            con.execute("INSERT INTO facts.position VALUES (1, 0, 0, NULL)")
            con.execute("INSERT INTO facts.meta VALUES ('generation', ?)", [uuid.uuid4().hex])
            con.commit()
        else:  # views are derived: refresh them, so a view fix needs no rebuild
            con.begin()
            con.execute(RUNNER_TABLE)  # not a fact: added without a rebuild
            for statement in VIEWS:
                con.execute(statement)
            # Which working file the published segments came from (projections.publish); a file
            # made before segments gets one now.
            con.execute("INSERT OR IGNORE INTO facts.meta VALUES ('generation', ?)", [uuid.uuid4().hex])
            con.commit()

    def _record_runner(self, status: dict[str, Any]) -> None:
        """Who runs the projection, and what serve's supervisor knows (`projection_status`)."""
        now = datetime.now(UTC).replace(tzinfo=None)
        at = status.get("last_error_at")
        if isinstance(at, datetime) and at.tzinfo is not None:
            at = at.astimezone(UTC).replace(tzinfo=None)
        self.connection.execute(
            "INSERT OR REPLACE INTO facts.runner VALUES (1, ?, ?, ?, ?, ?, ?)",
            [os.getpid(), self.owner, now, int(status.get("restarts") or 0), status.get("last_error"), at])

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
        tables = batch.tables()
        con.begin()
        try:
            for name, table in tables:
                view = f"_batch_{name}"
                con.register(view, table)
                cols = ", ".join(col for col, _ in TABLES[name])
                con.execute(f"INSERT INTO {self._append_to}.{name} ({cols}) SELECT {cols} FROM {view}")
                con.unregister(view)
            self._set_position(position, batch.events)
            con.commit()
        except BaseException:
            con.rollback()
            raise
        self.position = position
        if self._publishing:
            for name, table in tables:
                self._rows[name] += table.num_rows
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

    def publish(self) -> dict[str, Any]:
        """Publish what changed since the last publish onto the analysts' path, atomically
        (`projections.publish`). Returns what it wrote (files, bytes, rows, merged_rows, seconds)."""
        if not self._publishing:
            self._dirty = False
            return {}
        with self.lock:
            con = self.connection
            small = {name: (self._columns(name), con.execute(f"SELECT * FROM facts.{name} ORDER BY ALL").fetchall())
                     for name in SMALL}
            written = self.publisher.publish(con, dict(self._rows), small)
            self._dirty = False
            self._published_at = time.monotonic()
            return written

    def _columns(self, table: str) -> list[tuple[str, str]]:
        """(name, type) of the columns of `facts.<table>` in the working file."""
        if table not in self._types:
            self._types[table] = self.connection.execute(
                "SELECT column_name, data_type FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = 'facts' AND table_name = ? ORDER BY column_index", [table]).fetchall()
        return self._types[table]

    def close(self) -> None:
        with self.lock:
            if self.connection is None:
                return
            try:
                if self._dirty:
                    self.publish()
            finally:
                self._release()

    def _release(self) -> None:
        """DuckDB first, then the runner lock."""
        try:
            if self.publisher is not None:
                self.publisher.close()
            if self.connection is not None:
                self.connection.close()
        finally:
            self.connection = None
            self.runner_lock.release()

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
