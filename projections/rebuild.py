"""`reflow rebuild`: recreate every projection from the event store alone.

The working file is dropped and rebuilt from position 0, then published. Issued statements are
events (`StatementIssued`), so they come back too. Stop `reflow serve` first: its projection
process holds the runner lock, and a rebuild while it runs is refused naming that process,
changing nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb

from projections.runner import ProjectionBusy, ProjectionRunner, RunnerLock
from projections.target import check_target

__all__ = ["ProjectionBusy", "check_target", "rebuild"]


def rebuild(app: Any, duckdb_path: str | os.PathLike, progress: bool = True, *, batch: int = 5000) -> int:
    """Rebuild into a fresh working file and publish it. Returns how many events were read."""
    path = Path(duckdb_path)
    check_target(path)  # before the runner lock: a refusal leaves no file behind
    work = path.with_name(path.name + ".work")
    lock = RunnerLock(path, "reflow rebuild")  # refused, naming the holder, if a runner has it
    try:
        if work.exists():
            try:  # a DuckDB client that is not a runner may hold it too: refuse before deleting
                duckdb.connect(str(work)).close()
            except duckdb.IOException as e:
                raise ProjectionBusy(path, f"another process holds its working file {work} (is `reflow serve` "
                                     f"running? stop it first): {str(e).splitlines()[0]}") from None
        for stale in (work, work.with_name(work.name + ".wal")):
            stale.unlink(missing_ok=True)
    except BaseException:
        lock.release()
        raise
    with ProjectionRunner(app, path, batch=batch, runner_lock=lock) as runner:
        n = runner.catch_up(progress=progress)
        runner.publish()
    return n
