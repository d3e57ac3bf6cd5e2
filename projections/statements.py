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


# Rule RC2: the supplier's allocations whose last tracking (a `too_late` intercept answer counts as
# one, rule I8) falls in the period, one row each, in statement order. The supplier's allocations
# are found first and only their tracking events are read (issue 17).
_TRACKED = """
    WITH mine AS (
      SELECT alloc_uuid, pos, allocation_id, supplier_id, merchant_id, allocated_at, platform, shop_id, order_id
      FROM facts.allocations WHERE supplier_id = $supplier),
    tracked AS (
      SELECT alloc_uuid, arg_max({'carrier': carrier, 'tracking_no': tracking_no, 'at': event_at}, pos) AS t
      FROM facts.allocation_events
      WHERE alloc_uuid IN (SELECT alloc_uuid FROM mine)
        AND (kind = 'tracked' OR (kind = 'answered' AND outcome = 'too_late'))
      GROUP BY alloc_uuid)
    SELECT m.* EXCLUDE (alloc_uuid), t.t.carrier AS carrier, t.t.tracking_no AS tracking_no, t.t['at'] AS tracked_at
    FROM tracked t JOIN mine m USING (alloc_uuid)
    WHERE t.t['at'] >= $start AND t.t['at'] < $end
    ORDER BY tracked_at, allocation_id"""

# Rule RC1: the lines of those allocations (registered as `_HEADS`, numbered `k` in statement
# order), each at the price in force when allocated, the supplier's prices only. An allocation's
# lines are facts of its `Allocated` event and carry its position (projections.facts._allocated):
# joined on that integer, which DuckDB filters the scan of every line with, not on the allocation id.
_HEADS = "reflow_statement_allocations"
_PRICED = ("SELECT k, seq, line_id, offer_id, supplier_sku_id, product_id, qty, settlement_price, price_tier "
           "FROM ({}) ORDER BY k, seq")
_AL = f"""
    WITH al AS (
      SELECT h.k, l.seq, l.line_id, l.offer_id, l.supplier_sku_id, l.product_id, l.qty,
        h.supplier_id, h.merchant_id, h.allocated_at
      FROM {_HEADS} h JOIN facts.allocation_lines l USING (pos))"""

# A statement line's keys, in the order the single query before issue 17 gave its columns.
_LINE = ("allocation_id", "seq", "line_id", "offer_id", "supplier_sku_id", "product_id", "qty", "supplier_id",
         "merchant_id", "allocated_at", "platform", "shop_id", "order_id", "carrier", "tracking_no", "tracked_at",
         "settlement_price", "price_tier")


def compute(con: Any, supplier_id: str, start: datetime, end: datetime) -> tuple[list[dict], list[dict]]:
    """The statement's rows from the projection (RC1, RC2), in a stable order: by tracking time,
    allocation and line; then the post-shipment after-sales and the loss risks, listed apart.

    Issue 17: two queries, the allocations tracked in the period (one row each), then their lines,
    priced, both fetched as Arrow; each line's dict is a copy of its allocation's with the line's
    values set, so what the lines of an allocation share is converted to Python once. The items
    apart are looked for only when the period has any (the views over every allocation are not
    read: `post_shipment_aftersales` alone took most of the time at 10M lines)."""
    from projections.schema import priced

    params = {"supplier": supplier_id, "start": _naive(start), "end": _naive(end)}
    cur = con.cursor()  # a connection of its own: the caller's may hold an unfinished result
    try:
        heads = cur.sql(_TRACKED, params=params).to_arrow_table()
        lines: list[dict] = []
        if heads.num_rows:
            import pyarrow as pa

            heads = heads.append_column("k", pa.array(range(heads.num_rows), pa.int64()))
            cur.register(_HEADS, heads)
            priced_lines = cur.sql(_PRICED.format(priced(_AL, "$supplier")),
                                   params={"supplier": supplier_id}).to_arrow_table()
            cur.unregister(_HEADS)
            lines = _rows(heads, priced_lines)
        aftersales, risks = cur.execute(_ANY_APART, {"start": params["start"], "end": params["end"]}).fetchone()
        apart = [dict(section="post_shipment_aftersale", at=r["opened_at"], **{
            k: r[k] for k in ("allocation_id", "platform", "shop_id", "order_id", "line_id", "aftersale_id", "kind")})
            for r in (_dicts(cur.execute(_AFTERSALES, params)) if aftersales else [])]
        apart += [dict(section="loss_risk", at=r["recorded_at"], **{
            k: r[k] for k in ("allocation_id", "platform", "shop_id", "order_id", "carrier", "tracking_no", "reason")})
            for r in (_dicts(cur.execute(_LOSS_RISKS, params)) if risks else [])]
    finally:
        cur.close()
    return lines, apart


def _rows(heads: Any, priced_lines: Any) -> list[dict]:
    """One dict per priced line, keyed as `_LINE`: a copy of its allocation's row with the line's
    values set (a dict copied and filled costs about half of one built from 18 pairs)."""
    of_allocation = [name for name in _LINE if name in heads.column_names]
    template = dict.fromkeys(_LINE)
    bases = []
    for values in zip(*map(_pylist, heads.select(of_allocation).columns)):
        base = template.copy()
        base.update(zip(of_allocation, values))
        bases.append(base)
    rows = []
    append = rows.append
    for k, seq, line_id, offer_id, sku, product_id, qty, price, tier in zip(*map(_pylist, priced_lines.columns)):
        row = bases[k].copy()
        row["seq"], row["line_id"], row["offer_id"], row["supplier_sku_id"] = seq, line_id, offer_id, sku
        row["product_id"], row["qty"], row["settlement_price"], row["price_tier"] = product_id, qty, price, tier
        append(row)
    return rows


def _pylist(column: Any) -> list:
    """An Arrow column as the Python values DuckDB's own rows hold (a TIMESTAMP a naive datetime, a
    DECIMAL a Decimal of its scale), made fast: times parsed from their ISO text in C, money
    converted once per distinct amount."""
    import pyarrow as pa

    if pa.types.is_timestamp(column.type):
        parse = datetime.fromisoformat
        return [None if text is None else parse(text) for text in column.cast(pa.string()).to_pylist()]
    if pa.types.is_decimal(column.type):
        encoded = column.combine_chunks().dictionary_encode()
        amounts = encoded.dictionary.to_pylist() + [None]
        return [amounts[i] for i in encoded.indices.fill_null(len(amounts) - 1).to_pylist()]
    return column.to_pylist()


# Whether the period has any item to list apart at all: most have none, and the lists below are
# then not looked for over the supplier's allocations.
_ANY_APART = """
    SELECT EXISTS (SELECT 1 FROM facts.aftersales WHERE post_shipment AND opened_at >= $start AND opened_at < $end),
      EXISTS (SELECT 1 FROM facts.allocation_events WHERE kind = 'loss_risk' AND event_at >= $start AND event_at < $end)"""

# Rule RC2 (I2): the post-shipment after-sales opened in the period on the supplier's allocations
# tracked by then; the rows of the `post_shipment_aftersales` view for the supplier and period,
# found from the after-sales of the period rather than from every allocation's state.
_AFTERSALES = """
    WITH s AS (
      SELECT * FROM facts.aftersales WHERE post_shipment AND opened_at >= $start AND opened_at < $end),
    refs AS (
      SELECT r.order_uuid, r.line_id, a.alloc_uuid, a.allocation_id, a.supplier_id
      FROM facts.alloc_refs r JOIN facts.allocations a USING (allocation_id)
      WHERE a.supplier_id = $supplier AND r.order_uuid IN (SELECT order_uuid FROM s)),
    tracked AS (
      SELECT alloc_uuid, arg_max({'at': event_at}, pos)['at'] AS tracked_at
      FROM facts.allocation_events
      WHERE alloc_uuid IN (SELECT alloc_uuid FROM refs)
        AND (kind = 'tracked' OR (kind = 'answered' AND outcome = 'too_late'))
      GROUP BY alloc_uuid),
    shipped AS (
      SELECT refs.order_uuid, refs.line_id, refs.allocation_id, refs.supplier_id, t.tracked_at
      FROM refs JOIN tracked t USING (alloc_uuid) WHERE t.tracked_at IS NOT NULL),
    closed AS (
      SELECT order_uuid, aftersale_id, arg_max(outcome, pos) AS outcome, arg_max(closed_at, pos) AS closed_at
      FROM facts.aftersales_closed WHERE order_uuid IN (SELECT order_uuid FROM s) GROUP BY order_uuid, aftersale_id)
    SELECT DISTINCT k.platform, k.shop_id, k.order_id, s.aftersale_id, s.kind, s.line_id, s.opened_at,
      c.closed_at, c.outcome, sh.allocation_id, sh.supplier_id, p.channel
    FROM s
    JOIN facts.order_key k USING (order_uuid)
    LEFT JOIN facts.orders_placed p USING (order_uuid)
    LEFT JOIN closed c USING (order_uuid, aftersale_id)
    JOIN shipped sh ON sh.order_uuid = s.order_uuid AND (s.line_id IS NULL OR sh.line_id = s.line_id)
      AND sh.tracked_at <= s.opened_at
    ORDER BY opened_at, aftersale_id, allocation_id"""

# Rule RC2 (I7): the loss risks recorded in the period on the supplier's allocations (the
# `loss_risks` view's rows for them).
_LOSS_RISKS = """
    SELECT a.allocation_id, a.platform, a.shop_id, a.order_id, e.carrier, e.tracking_no, e.reason,
      e.event_at AS recorded_at
    FROM facts.allocation_events e JOIN facts.allocations a USING (alloc_uuid)
    WHERE e.kind = 'loss_risk' AND a.supplier_id = $supplier AND e.event_at >= $start AND e.event_at < $end
    ORDER BY recorded_at, allocation_id, tracking_no"""


def credits(con: Any, supplier_id: str) -> list[dict]:
    """Rule RC6: the supplier's accepted returns that no statement credited yet, oldest first: the
    `returns` view's rows for them, with the settlement prices of their allocations' lines only
    (issue 17: the view prices every allocation line to credit a few)."""
    from projections.schema import priced, return_amounts

    # Issue 17: most suppliers have no return at all; the lines are then not priced to find none.
    if not con.execute(_ANY_RETURN, {"supplier": supplier_id}).fetchone()[0]:
        return []
    settled = priced(_RETURNED, "SELECT supplier_id FROM al")
    sql = _CREDITS.format(settled=settled, amounts=return_amounts("open", "settled"))
    return _dicts(con.execute(sql, {"supplier": supplier_id}))


_ANY_RETURN = "SELECT EXISTS (SELECT 1 FROM facts.returns WHERE supplier_id = $supplier)"

_CREDITS = """
    WITH r AS (
      SELECT * FROM facts.returns WHERE supplier_id = $supplier),
    ans AS (
      SELECT return_uuid, arg_max(outcome, pos) AS outcome, arg_max(answered_at, pos) AS answered_at
      FROM facts.return_answers WHERE return_uuid IN (SELECT return_uuid FROM r) GROUP BY return_uuid),
    open AS (
      SELECT r.*, a.answered_at FROM r JOIN ans a USING (return_uuid)
      LEFT JOIN facts.statement_credits c USING (return_id)
      WHERE a.outcome = 'accepted' AND c.statement_id IS NULL),
    settled AS ({settled}),
    {amounts}
    SELECT o.return_id, o.allocation_id, o.aftersale_id, o.platform, o.shop_id, o.order_id, o.answered_at, m.qty,
      CASE WHEN m.unpriced = 0 THEN CAST(m.amount AS DECIMAL(18,4)) END AS amount,
      coalesce(m.unpriced_skus, []) AS unpriced
    FROM open o LEFT JOIN amounts m USING (return_id)
    ORDER BY answered_at, return_id"""

# The lines of the allocations of those returns, as the `settlement_lines` view has them.
_RETURNED = """
    WITH al AS (
      SELECT l.allocation_id, l.seq, l.offer_id, l.supplier_sku_id, a.supplier_id, a.merchant_id, a.allocated_at
      FROM facts.allocation_lines l JOIN facts.allocations a USING (allocation_id)
      WHERE l.allocation_id IN (SELECT allocation_id FROM open))"""


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

    from projections.private import materialise
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
        if path.exists():  # a published snapshot (views over segments): its facts, in a working file
            materialise(path, tmp / "work.duckdb")
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
