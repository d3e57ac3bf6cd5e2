"""Supplier statements (rules RC1-RC5): the statement book of each supplier, and how a statement
is made from its lines.

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

The lines come from the analysts' projection: `issue_statement` reads them through the small
`StatementLines` interface (projections/statements.py implements it over DuckDB), refuses an
unpriced SKU (RC3), and executes `IssueStatement`, whose handler asks the supplier's book for RC4.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from operator import itemgetter
from typing import Any, Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

import msgspec

from engine.base import Aggregate, Event, Value
from engine.catalog import Supplier
from engine.commands import IssueStatement
from engine.errors import DomainError, InvalidCommand, NotFound, UnknownSupplier
from engine.ids import supplier_id as supplier_id_uuid
from engine.servicelevel import LOCAL

MAX_PER_DAY = 3  # rule RC4
MIN_APART = timedelta(minutes=10)  # rule RC4
UTC = UTC
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


class CreditItem(Value, frozen=True):
    """Rule RC6: a return the supplier accepted, credited at the price its lines were settled at."""

    return_id: str
    allocation_id: str
    aftersale_id: str
    platform: str
    shop_id: str
    order_id: str
    answered_at: datetime
    qty: int
    amount: Decimal


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
    credits: tuple[CreditItem, ...] = ()
    """Rule RC6: accepted returns not credited before, listed apart from the lines."""
    credits_total: Decimal = Decimal(0)
    net_total: Decimal | None = None
    """`total - credits_total` (None on a statement without credits: the total)."""


class SupplierStatements(Aggregate):
    """The statements issued to one supplier: the RC4 guard."""

    def __init__(self, id: UUID) -> None:  # noqa: A002
        super().__init__(id)
        self.issued: list[tuple[datetime, str]] = []
        self.credited: set[str] = set()  # returns credited already (RC6)

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

    def issue(self, c: IssueStatement) -> Statement:
        """Rules RC4, RC5: numbered per China-time day, immutable once issued."""
        self.check_may_issue(c.supplier_id, c.at)
        twice = sorted({x.return_id for x in c.content.get("credits", ())} & self.credited)
        if twice:
            raise StatementRefused(f"statement refused: return(s) {', '.join(twice)} were credited on an earlier "
                                   "statement; compute it again", "RC6")
        statement_id = f"ST-{c.supplier_id}-{c.at.astimezone(LOCAL):%Y%m%d}-{self.next_number(c.at)}"
        statement = Statement(statement_id=statement_id, issued_at=c.at, position=c.position, **c.content)
        self.trigger(StatementIssued, c.at, statement=statement)
        return statement


class StatementIssued(Event, frozen=True):
    statement: Statement

    def apply(self, book: SupplierStatements) -> None:
        book.issued.append((self.at, self.statement.statement_id))
        book.credited.update(x.return_id for x in self.statement.credits)


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


def _content(supplier_id: str, start: datetime, end: datetime, rows: list[dict], apart: list[dict],
             credits: list[dict] = ()) -> dict:  # type: ignore[assignment]
    """The statement's content (everything but its id, issue time and position) with its hash (RC5).

    Issue 17: one pass over the lines. What many lines share is converted once: each distinct price
    (and price times quantity) made canonical money once, each distinct time made UTC once. Equal
    non-zero amounts give the same canonical money whatever their scale, and equal times the same UTC
    instant, so the lines, totals and hash are those of converting every line on its own."""
    prices: dict[Decimal, Decimal] = {}
    amounts: dict[tuple[Decimal, int], Decimal] = {}
    times: dict[datetime, datetime] = {}
    lines_: list[StatementLine] = []
    append, line, qty, total = lines_.append, StatementLine, 0, []
    for (allocation_id, platform, shop_id, order_id, line_id, offer_id, sku, product_id, q, price, tier,
         allocated_at, tracked_at, carrier, tracking_no) in map(_LINE_VALUES, rows):
        if price and q:  # money(-0) keeps its sign: zeros are not shared
            unit_price = prices.get(price)
            if unit_price is None:
                unit_price = prices[price] = money(price)
            amount = amounts.get((price, q))
            if amount is None:
                amount = amounts[price, q] = money(price * q)
        else:
            unit_price, amount = money(price), money(price * q)
        allocated = times.get(allocated_at)
        if allocated is None:
            allocated = times[allocated_at] = _aware(allocated_at)
        tracked = times.get(tracked_at)
        if tracked is None:
            tracked = times[tracked_at] = _aware(tracked_at)
        qty += q
        total.append(amount)
        append(line(
            allocation_id=allocation_id, platform=platform, shop_id=shop_id, order_id=order_id, line_id=line_id,
            offer_id=offer_id, supplier_sku_id=sku, product_id=product_id or "", qty=q, unit_price=unit_price,
            amount=amount, price_tier=tier, allocated_at=allocated, tracked_at=tracked, carrier=carrier or "",
            tracking_no=tracking_no or ""))
    lines = tuple(lines_)
    items = tuple(ApartItem(**{**a, "at": _aware(a["at"])}) for a in apart)
    content = dict(supplier_id=supplier_id, period_from=start, period_to=end, lines=lines, apart=items,
                   qty=qty, total=money(sum(total, Decimal(0))))
    if credits:  # only then, so a statement without credits hashes as it always did (RC5)
        items = tuple(CreditItem(**{**x, "answered_at": _aware(x["answered_at"]), "amount": money(x["amount"])})
                      for x in credits)
        content["credits"] = items
        content["credits_total"] = money(sum((x.amount for x in items), Decimal(0)))
        content["net_total"] = money(content["total"] - content["credits_total"])
    content["content_hash"] = content_hash(content)
    return content


_LINE_VALUES = itemgetter("allocation_id", "platform", "shop_id", "order_id", "line_id", "offer_id", "supplier_sku_id",
                          "product_id", "qty", "settlement_price", "price_tier", "allocated_at", "tracked_at",
                          "carrier", "tracking_no")


def content_hash(content: dict) -> str:
    """sha256 over canonical JSON (sorted keys, UTC times, normalised money) of the content."""
    canonical = _canonical.encode({k: v for k, v in content.items() if k != "content_hash"})
    return hashlib.sha256(canonical).hexdigest()


def money(d: Decimal) -> Decimal:
    """Canonical money: 2 decimals unless the price really has more (up to 4)."""
    q = Decimal(d).quantize(_Q4)
    return q.quantize(_Q2) if q == q.quantize(_Q2) else q.normalize()




class StatementLines(Protocol):
    """Where a statement's lines come from (projections/statements.py, over DuckDB)."""

    def catch_up(self) -> int:
        """Bring the lines up to the event store's head; the position reached."""

    def lines(self, supplier_id: str, start: datetime, end: datetime) -> tuple[list[dict], list[dict]]:
        """The allocation lines tracked in the period, each with its `settlement_price` (None when
        unpriced) and `price_tier`; and the items listed apart (RC2)."""

    def credits(self, supplier_id: str) -> list[dict]:
        """Rule RC6: the supplier's accepted returns no statement credited yet, each with `amount`
        (None when a line is unpriced) and `unpriced` (its SKUs without a price)."""


def issue_statement(app: Any, source: StatementLines, supplier_id: str, date_from: date | datetime,
                    date_to: date | datetime, *, at: datetime | None = None) -> Statement:
    """Issue a statement (RC1-RC5) from the lines `source` gives, and store it as an event."""
    at = (at or datetime.now(UTC)).astimezone(UTC)
    start, end = period(date_from, date_to)
    if app.load(Supplier, supplier_id_uuid(supplier_id)) is None:
        raise UnknownSupplier(f"supplier: reflow knows no supplier {supplier_id!r} (no supplier.upserted for it)", "RC2")
    book = app.load(SupplierStatements, statements_uuid(supplier_id))
    if book is not None:
        book.check_may_issue(supplier_id, at)  # refuse early, before any work
    position = source.catch_up()
    rows, apart = source.lines(supplier_id, start, end)
    credits = source.credits(supplier_id)
    unpriced = sorted({r["supplier_sku_id"] for r in rows if r["settlement_price"] is None}
                      | {sku for x in credits for sku in x.pop("unpriced", ())})
    if unpriced:
        raise StatementRefused(
            f"statement refused: supplier {supplier_id} has no settlement price in force when "
            f"allocated for SKU(s) {', '.join(unpriced)}", "RC3", skus=tuple(unpriced))
    return app.execute(IssueStatement(at=at, supplier_id=supplier_id, position=position,
                                      content=_content(supplier_id, start, end, rows, apart, credits)))


def _aware(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def issued(app: Any, statement_id: str) -> Statement:
    """An issued statement by its id (`ST-<supplier>-<China-time day>-<n>`), to export it again."""
    supplier_id = statement_id.removeprefix("ST-").rsplit("-", 2)[0]
    for event in app.events.get(statements_uuid(supplier_id)) if statement_id.startswith("ST-") else ():
        if isinstance(event, StatementIssued) and event.statement.statement_id == statement_id:
            return event.statement
    raise NotFound(f"--id: no statement {statement_id!r} was issued")
