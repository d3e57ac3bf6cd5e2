"""Supplier statements (rules RC1-RC5): issued into the event store, projected into DuckDB.

A statement for `(supplier, from, to)` lists every allocation of that supplier whose tracking came
back in the period (an upload, T1, or a `too_late` intercept answer, I8: a shipped parcel is never
lost from the books), each line priced at the settlement price in force when it was allocated
(RC1: the `PriceSet` history; the merchant's tier price at allocation time wins over the base
price; a price set later but effective earlier counts). Post-shipment after-sales (I2) and loss
risks (I7) that happened in the period are listed apart (RC2). A SKU without a price refuses the
statement, naming the SKUs (RC3). At most 3 statements per supplier per China-time day, at least
10 minutes apart (RC4). Issued, a statement is a `StatementIssued` event of the supplier's
`SupplierStatements` aggregate: immutable, kept by `reflow rebuild`, with a sha256 `content_hash`
over the canonical JSON of its content (everything but its id, issue time and position), so the
same range from the same history gives the same lines and the same hash (RC5). The per-supplier
aggregate makes RC4 safe against two issuers racing: the second write conflicts and is re-checked.

Periods: `date` arguments are China-time days, both inclusive (`--from 2026-11-01 --to 2026-11-30`
is November); `datetime` arguments are exact instants, the end excluded. Either way the stored
period is the half-open instant range `[period_from, period_to)`.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec

from engine.base import Aggregate, Event, Value
from engine.errors import DomainError, InvalidCommand
from engine.servicelevel import LOCAL

MAX_PER_DAY = 3  # rule RC4
MIN_APART = timedelta(minutes=10)  # rule RC4
UTC = timezone.utc
_Q4, _Q2 = Decimal("0.0001"), Decimal("0.01")
_canonical = msgspec.json.Encoder(order="sorted", decimal_format="string")


class StatementRefused(DomainError):
    rule = "RC4"

    def __init__(self, message: str, rule: str = "", *, next_allowed: datetime | None = None,
                 skus: tuple[str, ...] = ()) -> None:
        super().__init__(message, rule)
        self.next_allowed = next_allowed
        self.skus = skus


class StatementLine(Value, frozen=True):
    allocation_id: str
    platform: str
    shop_id: str
    order_id: str
    line_id: str
    offer_id: str
    supplier_sku_id: str
    product_id: str
    qty: int
    unit_price: Decimal
    amount: Decimal
    price_tier: str
    allocated_at: datetime
    tracked_at: datetime
    carrier: str
    tracking_no: str


class ApartItem(Value, frozen=True):
    """Listed apart (RC2): a post-shipment after-sale (I2) or a loss risk (I7)."""

    section: str  # post_shipment_aftersale | loss_risk
    allocation_id: str | None
    platform: str
    shop_id: str
    order_id: str
    at: datetime
    line_id: str | None = None
    aftersale_id: str | None = None
    kind: str | None = None
    carrier: str | None = None
    tracking_no: str | None = None
    reason: str | None = None


class Statement(Value, frozen=True):
    statement_id: str
    supplier_id: str
    period_from: datetime
    period_to: datetime
    issued_at: datetime
    position: int
    """The event-store position the statement was computed at."""
    lines: tuple[StatementLine, ...]
    apart: tuple[ApartItem, ...]
    qty: int
    total: Decimal
    content_hash: str


class SupplierStatements(Aggregate):
    """The statements issued to one supplier: the RC4 guard."""

    def __init__(self, id: UUID) -> None:  # noqa: A002
        super().__init__(id)
        self.issued: list[tuple[datetime, str]] = []

    def check_may_issue(self, supplier_id: str, at: datetime) -> None:
        """Rule RC4: at most 3 a China-time day, at least 10 minutes apart."""
        day = at.astimezone(LOCAL).date()
        today = [t for t, _ in self.issued if t.astimezone(LOCAL).date() == day]
        last = max((t for t, _ in self.issued), default=None)
        reasons, next_allowed = [], None
        if len(today) >= MAX_PER_DAY:
            reasons.append(f"{supplier_id} already has {len(today)} statements on {day} (China time)")
            next_allowed = datetime.combine(day + timedelta(days=1), time(0), LOCAL)
        if last is not None and at < last + MIN_APART:
            reasons.append(f"the last one was issued at {last.astimezone(LOCAL).isoformat()}, "
                           f"less than {MIN_APART.seconds // 60} minutes ago")
            next_allowed = max(next_allowed or last + MIN_APART, last + MIN_APART)
        if next_allowed is not None:
            raise StatementRefused(
                f"statement refused: {'; '.join(reasons)}; the next is allowed at "
                f"{next_allowed.astimezone(LOCAL).isoformat()}", next_allowed=next_allowed)

    def next_number(self, at: datetime) -> int:
        day = at.astimezone(LOCAL).date()
        return 1 + sum(1 for t, _ in self.issued if t.astimezone(LOCAL).date() == day)


class StatementIssued(Event, frozen=True):
    statement: Statement

    def apply(self, book: SupplierStatements) -> None:
        book.issued.append((self.at, self.statement.statement_id))


def statements_uuid(supplier_id: str) -> UUID:
    return uuid5(NAMESPACE_URL, f"reflow:statements:{supplier_id}")


def period(date_from: date | datetime, date_to: date | datetime) -> tuple[datetime, datetime]:
    """China-time days, both inclusive; or exact instants, the end excluded (module docstring)."""
    def bound(d: date | datetime, end: bool) -> datetime:
        if isinstance(d, datetime):
            if d.tzinfo is None:
                raise InvalidCommand(f"period: {d.isoformat()} has no time zone", "RC2")
            return d.astimezone(UTC)
        day = d + timedelta(days=1) if end else d
        return datetime.combine(day, time(0), LOCAL).astimezone(UTC)

    start, end = bound(date_from, False), bound(date_to, True)
    if end <= start:
        raise InvalidCommand(f"period: --to {date_to} is before --from {date_from}", "RC2")
    return start, end


def issue_statement(app: Any, runner_or_db: Any, supplier_id: str, date_from: date | datetime,
                    date_to: date | datetime, *, at: datetime | None = None) -> Statement:
    """Issue a statement (RC1-RC5) and store it as an event. `runner_or_db` is a running
    `ProjectionRunner` (e.g. `reflow serve`'s) or the analysts' DuckDB path."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    start, end = period(date_from, date_to)
    book_id = statements_uuid(supplier_id)
    book = app.load(SupplierStatements, book_id)
    if book is not None:
        book.check_may_issue(supplier_id, at)  # refuse early, before any work
    with _opened(app, runner_or_db) as runner:
        runner.catch_up()
        position = runner.position
        with runner.lock:
            lines, apart = compute(runner.connection, supplier_id, start, end)
        unpriced = sorted({ln["supplier_sku_id"] for ln in lines if ln["settlement_price"] is None})
        if unpriced:
            raise StatementRefused(
                f"statement refused: supplier {supplier_id} has no settlement price in force when "
                f"allocated for SKU(s) {', '.join(unpriced)}", "RC3", skus=tuple(unpriced))
        content = _content(supplier_id, start, end, lines, apart)

        def cmd(w: Any) -> Statement:
            book = w.get_or_new(SupplierStatements, book_id)
            book.check_may_issue(supplier_id, at)
            number = book.next_number(at)
            statement_id = f"ST-{supplier_id}-{at.astimezone(LOCAL):%Y%m%d}-{number}"
            statement = Statement(statement_id=statement_id, issued_at=at, position=position, **content)
            book.trigger(StatementIssued, at, statement=statement)
            return statement

        statement = app.run(cmd)
        runner.catch_up()
    return statement


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


def _content(supplier_id: str, start: datetime, end: datetime, rows: list[dict], apart: list[dict]) -> dict:
    lines = tuple(StatementLine(
        allocation_id=r["allocation_id"], platform=r["platform"], shop_id=r["shop_id"], order_id=r["order_id"],
        line_id=r["line_id"], offer_id=r["offer_id"], supplier_sku_id=r["supplier_sku_id"],
        product_id=r["product_id"] or "", qty=r["qty"], unit_price=money(r["settlement_price"]),
        amount=money(r["settlement_price"] * r["qty"]), price_tier=r["price_tier"],
        allocated_at=_aware(r["allocated_at"]), tracked_at=_aware(r["tracked_at"]),
        carrier=r["carrier"] or "", tracking_no=r["tracking_no"] or "",
    ) for r in rows)
    items = tuple(ApartItem(**{**a, "at": _aware(a["at"])}) for a in apart)
    content = dict(supplier_id=supplier_id, period_from=start, period_to=end, lines=lines, apart=items,
                   qty=sum(ln.qty for ln in lines), total=money(sum((ln.amount for ln in lines), Decimal(0))))
    content["content_hash"] = content_hash(content)
    return content


def content_hash(content: dict) -> str:
    """sha256 over canonical JSON (sorted keys, UTC times, normalised money) of the content."""
    canonical = _canonical.encode({k: v for k, v in content.items() if k != "content_hash"})
    return hashlib.sha256(canonical).hexdigest()


def money(d: Decimal) -> Decimal:
    """Canonical money: 2 decimals unless the price really has more (up to 4)."""
    q = Decimal(d).quantize(_Q4)
    return q.quantize(_Q2) if q == q.quantize(_Q2) else q.normalize()


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

    from projections.runner import ProjectionBusy, ProjectionRunner

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
