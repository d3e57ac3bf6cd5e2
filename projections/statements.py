"""Statement lines over the analysts' DuckDB projection (the `StatementLines` of
engine/statements.py, which holds the rules RC1-RC5 and the statement book).

`compute` selects a supplier's tracked allocation lines in a period with the settlement price in
force when each was allocated (RC1: the merchant's tier price wins over the base price), and the
post-shipment after-sales and loss risks listed apart (RC2). `issue_statement(app, runner_or_db,
...)` issues a statement from a running `ProjectionRunner` or from the analysts' file.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from engine import statements as book
from engine.errors import InvalidCommand
from engine.statements import Statement

UTC = UTC


class _Lines:
    """`StatementLines` over a projection runner."""

    def __init__(self, runner: Any) -> None:
        self.runner = runner

    def catch_up(self) -> int:
        self.runner.catch_up()
        return self.runner.position

    def lines(self, supplier_id: str, start: datetime, end: datetime) -> tuple[list[dict], list[dict]]:
        with self.runner.lock:
            return compute(self.runner.connection, supplier_id, start, end)

    def credits(self, supplier_id: str) -> list[dict]:
        with self.runner.lock:
            return credits(self.runner.connection, supplier_id)


class EmptyStatement(InvalidCommand):
    """The supplier has no tracked allocation line in the period: nothing was issued (no RC4 slot used)."""


class _NotEmpty(_Lines):
    """`_Lines` that refuses a period without lines, before the statement is issued."""

    def lines(self, supplier_id: str, start: datetime, end: datetime) -> tuple[list[dict], list[dict]]:
        rows, apart = super().lines(supplier_id, start, end)
        self._empty = None if rows else (f"no tracked allocations for supplier {supplier_id} in {_period(start, end)}"
                                         + (f" ({len(apart)} items listed apart)" if apart else ""))
        return rows, apart

    def credits(self, supplier_id: str) -> list[dict]:
        found = super().credits(supplier_id)
        if self._empty and not found:  # a statement of credits alone (RC6) is not empty
            raise EmptyStatement(f"{self._empty}; nothing issued")
        return found


def issue_statement(app: Any, runner_or_db: Any, supplier_id: str, date_from: date | datetime,
                    date_to: date | datetime, *, at: datetime | None = None, allow_empty: bool = True) -> Statement:
    """Issue a statement (RC1-RC5) and store it as an event. `runner_or_db` is a running
    `ProjectionRunner` (e.g. `reflow serve`'s) or the analysts' DuckDB path. Unless `allow_empty`,
    a period without lines raises `EmptyStatement` and issues nothing."""
    book.period(date_from, date_to)  # a bad period is refused before any work
    with _opened(app, runner_or_db) as runner:
        lines = _Lines(runner) if allow_empty else _NotEmpty(runner)
        statement = book.issue_statement(app, lines, supplier_id, date_from, date_to, at=at)
        runner.catch_up()
    return statement


def _period(start: datetime, end: datetime) -> str:
    """`[start, end)` as the CLI speaks of it: China-time days when it is whole days, else times."""
    from datetime import timedelta

    from engine.servicelevel import LOCAL

    first, last = start.astimezone(LOCAL), end.astimezone(LOCAL)
    if first.time() == last.time() == datetime.min.time():
        return f"{first.date()} .. {(last - timedelta(days=1)).date()} (China time)"
    return f"{first:%Y-%m-%d %H:%M:%S} .. {last:%Y-%m-%d %H:%M:%S} (China time, the end excluded)"


def compute(con: Any, supplier_id: str, start: datetime, end: datetime) -> tuple[list[dict], list[dict]]:
    """The statement's rows from the projection (RC1, RC2), in a stable order."""
    from projections.schema import priced

    s, e = _naive(start), _naive(end)
    sql = priced("""
    WITH tracked AS (
      SELECT ev.alloc_uuid, arg_max({'carrier': ev.carrier, 'tracking_no': ev.tracking_no, 'at': ev.event_at}, ev.pos) AS t
      FROM facts.allocation_events ev JOIN facts.allocations a USING (alloc_uuid)
      WHERE a.supplier_id = $supplier AND (ev.kind = 'tracked' OR (ev.kind = 'answered' AND ev.outcome = 'too_late'))
      GROUP BY ev.alloc_uuid),
    al AS (
      SELECT l.allocation_id, l.seq, l.line_id, l.offer_id, l.supplier_sku_id, l.product_id, l.qty,
        a.supplier_id, a.merchant_id, a.allocated_at, a.platform, a.shop_id, a.order_id,
        t.t.carrier AS carrier, t.t.tracking_no AS tracking_no, t.t['at'] AS tracked_at
      FROM tracked t JOIN facts.allocations a USING (alloc_uuid)
      JOIN facts.allocation_lines l USING (allocation_id)
      WHERE t.t['at'] >= $start AND t.t['at'] < $end)""") + " ORDER BY tracked_at, allocation_id, seq"
    params = {"supplier": supplier_id, "start": s, "end": e}
    lines = _dicts(con.execute(sql, params))
    aftersales = _dicts(con.execute(
        """SELECT * FROM post_shipment_aftersales WHERE supplier_id = $supplier
           AND opened_at >= $start AND opened_at < $end ORDER BY opened_at, aftersale_id, allocation_id""", params))
    risks = _dicts(con.execute(
        """SELECT * FROM loss_risks WHERE supplier_id = $supplier AND recorded_at >= $start
           AND recorded_at < $end ORDER BY recorded_at, allocation_id, tracking_no""", params))
    apart = [dict(section="post_shipment_aftersale", at=r["opened_at"], **{
        k: r[k] for k in ("allocation_id", "platform", "shop_id", "order_id", "line_id", "aftersale_id", "kind")})
        for r in aftersales]
    apart += [dict(section="loss_risk", at=r["recorded_at"], **{
        k: r[k] for k in ("allocation_id", "platform", "shop_id", "order_id", "carrier", "tracking_no", "reason")})
        for r in risks]
    return lines, apart


def credits(con: Any, supplier_id: str) -> list[dict]:
    """Rule RC6: the supplier's accepted returns that no statement credited yet, oldest first."""
    rows = _dicts(con.execute(
        """SELECT return_id, allocation_id, aftersale_id, platform, shop_id, order_id, answered_at, qty,
             credit AS amount, coalesce(unpriced_skus, []) AS unpriced
           FROM returns WHERE supplier_id = $supplier AND status = 'accepted' AND credited_on IS NULL
           ORDER BY answered_at, return_id""", {"supplier": supplier_id}))
    return rows


@contextmanager
def _opened(app: Any, runner_or_db: Any) -> Iterator[Any]:
    """The caller's runner; or a runner of our own on the path, when no other runner has it (it
    publishes the statement to the analysts' file itself); or, when another process runs the
    projection (`reflow serve`), a private copy of the published snapshot, caught up from the event
    store to its head. The statement is then computed at the store's head, as the serving runner
    would compute it, however far its last publish lags; the serving runner picks the issued
    statement up from the store like any event. The working file of the other process is never
    opened (issue 19: one writer per file)."""
    import duckdb

    from projections.runner import ProjectionBusy, ProjectionRunner  # noqa: I001 (runner imports facts)

    if isinstance(runner_or_db, ProjectionRunner):
        yield runner_or_db
        return
    path = Path(runner_or_db)
    tmp = None
    try:
        runner = ProjectionRunner(app, path, owner="reflow statement")
    except (ProjectionBusy, duckdb.IOException):
        tmp = Path(tempfile.mkdtemp(prefix="reflow-statement-"))
        if path.exists():  # a published snapshot: replaced atomically, never written in place
            shutil.copyfile(path, tmp / "work.duckdb")
        runner = ProjectionRunner(app, tmp / "snapshot.duckdb", work_path=tmp / "work.duckdb", publish=False,
                                  owner="reflow statement (private copy)")
    try:
        yield runner
    finally:
        runner.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _dicts(cursor: Any) -> list[dict]:
    cols = [d[0] for d in cursor.description]
    return [dict(zip(cols, row)) for row in cursor.fetchall()]


def _naive(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None)


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
