"""`reflow rebuild`: recreate every projection from the event store alone.

The working file is dropped and rebuilt from position 0, then published. Issued statements are
events (`StatementIssued`), so they come back too. Stop `reflow serve` first: it holds the
working file (a rebuild while it runs fails with DuckDB's lock error, changing nothing).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb

from projections.runner import ProjectionRunner


class ProjectionBusy(RuntimeError):
    """The working file is held by another process."""


def rebuild(app: Any, duckdb_path: str | os.PathLike, progress: bool = True, *, batch: int = 5000) -> int:
    """Rebuild into a fresh working file and publish it. Returns how many events were read."""
    path = Path(duckdb_path)
    work = path.with_name(path.name + ".work")
    if work.exists():
        try:  # refuse before deleting anything if another process (reflow serve) holds it
            duckdb.connect(str(work)).close()
        except duckdb.IOException as e:
            raise ProjectionBusy(f"{work}: another process holds the projection (is `reflow serve` "
                                 f"running? stop it first): {str(e).splitlines()[0]}") from None
    for stale in (work, work.with_name(work.name + ".wal")):
        stale.unlink(missing_ok=True)
    with ProjectionRunner(app, path, batch=batch) as runner:
        n = runner.catch_up(progress=progress)
        runner.publish()
    return n
