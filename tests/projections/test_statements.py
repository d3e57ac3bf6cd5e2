"""Supplier statements, rule by rule (RC1-RC5), and their export to CSV, Parquet and XLSX."""

from __future__ import annotations

import csv
import subprocess
import sys
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from openpyxl import load_workbook

from engine.servicelevel import LOCAL
from engine.statements import StatementRefused
from projections.export import COLUMNS, export_statement, rows, text
from projections.rebuild import rebuild
from projections.runner import ProjectionRunner
from projections.statements import issue_statement
from tests.projections.conftest import rows as query
from tests.projections.seed import SHOP, H, only, track
from tests.world import EARLIER, T0, alt, comp, line, link, offer, place, sku, supplier

DAY = T0.date()  # 2026-11-02, China time
ISSUE = T0 + 40 * H  # statements are issued at 01:00 two days later (2026-11-04, China time)


@pytest.fixture
def books(app, tmp_path: Path):
    """S1 sells SKU `a` at 10.00, then 12.00 from T0+2h, and 8.00 to gold-tier merchants."""
    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 100, "n": 100}, price={"a": "10.00"})  # `n` has no price
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    link(app, "PN", sku("K1", alt(comp("S1", "O1", "n"))))
    place(app, "X1", line("L1", "P1"), at=T0)
    track(app, "X1", T0 + H)
    app.set_price("S1", "a", Decimal("12.00"), effective_from=T0 + 2 * H, at=T0 + 2 * H)
    place(app, "X2", line("L1", "P1", qty=3), at=T0 + 3 * H)
    track(app, "X2", T0 + 4 * H)
    app.set_merchant_tier("S1", "default", "gold", at=T0 + 5 * H)
    app.set_price("S1", "a", Decimal("8.00"), effective_from=EARLIER, tier="gold", at=T0 + 5 * H)
    place(app, "X3", line("L1", "P1"), at=T0 + 6 * H)
    track(app, "X3", T0 + 7 * H)
    app.open_aftersale(*SHOP, "X1", "AS-X1", "return", at=T0 + 8 * H)  # after tracking: I2
    place(app, "X4", line("L1", "P1"), at=T0)
    app.open_aftersale(*SHOP, "X4", "AS-X4", "refund", at=T0 + H / 2)
    track(app, "X4", T0 + 9 * H)  # after the intercept: I7 loss risk
    place(app, "X5", line("L1", "P1"), at=T0 + 10 * H)
    track(app, "X5", T0 + 26 * H)  # the next day
    place(app, "X6", line("L1", "P1"), at=T0 + 10 * H)  # never tracked
    return app, tmp_path / "reflow.duckdb"


def issue(app, db, day_from=DAY, day_to=DAY, at=ISSUE, supplier_id="S1"):
    return issue_statement(app, db, supplier_id, day_from, day_to, at=at)


def test_rc1_lines_priced_in_force_when_allocated_effective_dated_and_tier(books):
    app, db = books
    st = issue(app, db)
    got = [(ln.order_id, ln.qty, str(ln.unit_price), str(ln.amount), ln.price_tier) for ln in st.lines]
    assert got == [("X1", 1, "10.00", "10.00", ""),       # base price before the change
                   ("X2", 3, "12.00", "36.00", ""),       # the new base price, in force from T0+2h
                   ("X3", 1, "8.00", "8.00", "gold")]     # the merchant's tier price, tier set before


def test_rc1_a_price_set_later_but_effective_earlier_counts(books):
    app, db = books
    place(app, "XN", line("L1", "PN"), at=T0)
    track(app, "XN", T0 + H)
    assert app.allocations_of(*SHOP, "XN")[0].lines[0].unit_cost is None  # unpriced at routing time
    app.set_price("S1", "n", Decimal("3.30"), effective_from=EARLIER, at=T0 + 12 * H)
    st = issue(app, db)
    [xn] = [ln for ln in st.lines if ln.order_id == "XN"]
    assert (xn.supplier_sku_id, str(xn.unit_price)) == ("n", "3.30")


def test_rc1_price_in_force_at_the_allocation_instant_and_the_tier_held_then(app, tmp_path):
    """Issue 17 (each price in force from its time until the next): a new price counts from its
    own instant, a tier price only while the merchant is in that tier and as the tier's own price
    changes, and a tier without prices falls back to the base price."""
    minute = timedelta(minutes=1)
    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 100}, price={"a": "10.00"})
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    app.set_price("S1", "a", Decimal("12.00"), effective_from=T0 + 2 * H, at=T0)
    app.set_price("S1", "a", Decimal("8.00"), effective_from=EARLIER, tier="gold", at=T0)
    app.set_price("S1", "a", Decimal("7.50"), effective_from=T0 + 5 * H, tier="gold", at=T0)
    app.set_merchant_tier("S1", "default", "gold", at=T0 + 4 * H)
    app.set_merchant_tier("S1", "default", "silver", at=T0 + 6 * H)  # no silver prices
    times = [T0 + 2 * H - minute, T0 + 2 * H, T0 + 4 * H - minute, T0 + 4 * H, T0 + 5 * H, T0 + 6 * H]
    for n, at in enumerate(times):
        place(app, f"Y{n}", line("L1", "P1"), at=at)
        track(app, f"Y{n}", at + minute)
    st = issue(app, tmp_path / "reflow.duckdb")
    assert [(ln.order_id, ln.allocated_at, str(ln.unit_price), ln.price_tier) for ln in st.lines] == [
        ("Y0", times[0], "10.00", ""), ("Y1", times[1], "12.00", ""), ("Y2", times[2], "12.00", ""),
        ("Y3", times[3], "8.00", "gold"), ("Y4", times[4], "7.50", "gold"), ("Y5", times[5], "12.00", "")]
    assert str(st.total) == "61.50"


def test_rc2_lines_by_tracking_time_start_in_end_out_too_late_counts_one_supplier_each(app, tmp_path):
    """Issue 17 (the tracked allocations first, then their lines): the period is of tracking times,
    its first instant in and its end out; a `too_late` intercept answer is the tracking (I8); an
    allocation's lines come in their order, and a split order's lines to another supplier go on
    that supplier's statement."""
    supplier(app, "S1")
    supplier(app, "S2")
    offer(app, "S1", "O1", {"a": 100, "b": 100}, price={"a": "10.00", "b": "3.00"})
    offer(app, "S2", "O2", {"c": 100}, price={"c": "7.00"})
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    link(app, "P2", sku("K1", alt(comp("S1", "O1", "b"))))
    link(app, "P3", sku("K1", alt(comp("S2", "O2", "c"))))
    start = T0.replace(hour=0)  # the statement's first instant: DAY, 00:00 China time
    place(app, "Z1", line("L1", "P1"), at=start - 3 * H)  # allocated the day before
    track(app, "Z1", start)
    place(app, "Z2", line("L1", "P1"), at=start + 20 * H)
    track(app, "Z2", start + 24 * H)  # the next day's first instant
    place(app, "Z3", line("L1", "P1"), line("L2", "P2", qty=2), line("L3", "P3"), at=T0)
    track(app, "Z3", T0 + 2 * H)
    track(app, "Z3", T0 + 2 * H, supplier_id="S2")
    place(app, "Z4", line("L1", "P1"), at=T0)
    app.open_aftersale(*SHOP, "Z4", "AS-Z4", "refund", at=T0 + H / 2)  # before tracking: intercepted
    app.answer_intercept("S1", only(app, "Z4").allocation_id, "too_late", "SF", "SF0000000004", at=T0 + H)
    db = tmp_path / "reflow.duckdb"
    st = issue(app, db)
    assert [(ln.order_id, ln.line_id, ln.qty, str(ln.amount), ln.tracked_at) for ln in st.lines] == [
        ("Z1", "L1", 1, "10.00", start), ("Z4", "L1", 1, "10.00", T0 + H),
        ("Z3", "L1", 1, "10.00", T0 + 2 * H), ("Z3", "L2", 2, "6.00", T0 + 2 * H)]
    assert (st.lines[1].carrier, st.lines[1].tracking_no) == ("SF", "SF0000000004")
    assert [(ln.order_id, ln.line_id) for ln in issue(app, db, supplier_id="S2").lines] == [("Z3", "L3")]
    next_day = issue(app, db, DAY + timedelta(days=1), DAY + timedelta(days=1), at=ISSUE + timedelta(minutes=10))
    assert [ln.order_id for ln in next_day.lines] == ["Z2"]

def test_rc2_every_tracked_allocation_in_range_with_totals_and_apart_lists(books):
    app, db = books
    st = issue(app, db)
    assert [ln.order_id for ln in st.lines] == ["X1", "X2", "X3"]  # X4 stopped, X5 next day, X6 untracked
    assert (st.qty, str(st.total)) == (5, "54.00")
    assert [(a.section, a.order_id, a.aftersale_id) for a in st.apart] == [
        ("post_shipment_aftersale", "X1", "AS-X1"), ("loss_risk", "X4", None)]
    assert st.period_from == T0.replace(hour=0).astimezone(st.period_from.tzinfo)
    assert st.period_to - st.period_from == timedelta(days=1)  # --to is an inclusive China-time day


def test_rc2_to_day_is_inclusive(books):
    app, db = books
    st = issue(app, db, DAY, DAY + timedelta(days=1))
    assert [ln.order_id for ln in st.lines] == ["X1", "X2", "X3", "X5"]


def test_rc2_statement_is_projected_into_statements_views(books):
    app, db = books
    st = issue(app, db)
    assert query(db, "SELECT statement_id, supplier_id, lines, total, content_hash FROM statements") == [
        (st.statement_id, "S1", 3, Decimal("54.0000"), st.content_hash)]
    assert query(db, "SELECT count(*) FROM statement_lines") == [(3,)]
    assert query(db, "SELECT section FROM statement_apart ORDER BY seq") == [
        ("post_shipment_aftersale",), ("loss_risk",)]


def test_rc6_a_credit_is_at_the_tier_price_its_lines_were_settled_at(app, tmp_path):
    """Issue 17 (credits priced for the supplier's open returns only): a returned line is credited
    at the merchant's tier price it was settled at, not at the base price nor at a tier price set
    after, and once."""
    supplier(app, "S1")
    offer(app, "S1", "O1", {"a": 100}, price={"a": "10.00"})
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
    app.set_merchant_tier("S1", "default", "gold", at=EARLIER)
    app.set_price("S1", "a", Decimal("8.00"), effective_from=EARLIER, tier="gold", at=EARLIER)
    place(app, "W1", line("L1", "P1", qty=3), at=T0)
    track(app, "W1", T0 + H)
    app.set_price("S1", "a", Decimal("6.00"), effective_from=T0 + 2 * H, tier="gold", at=T0 + 2 * H)
    app.open_aftersale(*SHOP, "W1", "AS-W1", "return", at=T0 + 5 * H)
    [rid] = app.request_return(*SHOP, "W1", "AS-W1", at=T0 + 6 * H)
    app.answer_return("S1", rid, "accepted", at=T0 + 7 * H)
    db = tmp_path / "reflow.duckdb"
    first = issue(app, db)
    assert [(ln.order_id, str(ln.unit_price), ln.price_tier) for ln in first.lines] == [("W1", "8.00", "gold")]
    assert [(c.return_id, c.qty, str(c.amount)) for c in first.credits] == [(rid, 3, "24.00")]
    assert issue(app, db, at=ISSUE + timedelta(minutes=10)).credits == ()

def test_rc3_unpriced_sku_refuses_the_statement_naming_it(books):
    app, db = books
    place(app, "XN", line("L1", "PN"), at=T0)
    track(app, "XN", T0 + H)
    before = app.recorder.max_notification_id()
    with pytest.raises(StatementRefused, match=r"rule RC3: .*SKU\(s\) n$") as refused:
        issue(app, db)
    assert refused.value.skus == ("n",)
    assert app.recorder.max_notification_id() == before  # nothing stored


def test_rc4_fourth_statement_in_a_day_is_refused(books):
    app, db = books
    for minutes in (0, 10, 20):
        issue(app, db, at=ISSUE + timedelta(minutes=minutes))
    with pytest.raises(StatementRefused, match="rule RC4: .*3 statements.*next is allowed at 2026-11-05T00:00:00"
                       r"\+08:00") as refused:
        issue(app, db, at=ISSUE + timedelta(minutes=30))
    assert refused.value.next_allowed == T0.replace(day=5, hour=0)
    issue(app, db, at=T0.replace(day=5, hour=0))  # the next day it is allowed again


def test_rc4_statement_within_ten_minutes_is_refused_with_next_allowed_time(books):
    app, db = books
    first = issue(app, db)
    with pytest.raises(StatementRefused, match="less than 10 minutes ago") as refused:
        issue(app, db, at=ISSUE + timedelta(minutes=9, seconds=59))
    assert refused.value.next_allowed == first.issued_at + timedelta(minutes=10)
    assert "2026-11-04T01:10:00+08:00" in str(refused.value)


def test_rc4_counts_statements_per_supplier(books):
    app, db = books
    supplier(app, "S2")
    issue(app, db)
    issue(app, db, supplier_id="S2")  # another supplier is not held back


def test_rc5_same_range_same_history_same_lines_and_hash(books):
    app, db = books
    first = issue(app, db)
    second = issue(app, db, at=ISSUE + timedelta(minutes=10))
    assert second.statement_id != first.statement_id
    assert (second.lines, second.apart, second.total) == (first.lines, first.apart, first.total)
    assert second.content_hash == first.content_hash and len(first.content_hash) == 64


def test_rc5_issued_statements_are_events_and_survive_rebuild(books):
    app, db = books
    st = issue(app, db)
    place(app, "X7", line("L1", "P1"), at=T0 + 2 * H)  # history moves on; the issued one does not change
    track(app, "X7", T0 + 3 * H)
    rebuild(app, db, progress=False)
    assert query(db, "SELECT statement_id, content_hash, lines FROM statements") == [
        (st.statement_id, st.content_hash, 3)]
    assert issue(app, db, at=ISSUE + timedelta(minutes=10)).content_hash != st.content_hash


def test_statement_with_the_serving_runner(books):
    app, db = books
    with ProjectionRunner(app, db) as runner:
        st = issue(app, runner)
        assert runner.connection.execute("SELECT statement_id FROM statements").fetchall() == [(st.statement_id,)]


def test_statement_while_another_process_holds_the_working_file(books):
    app, db = books
    with ProjectionRunner(app, db) as runner:
        runner.catch_up()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(60)", f"{db}.work"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(duckdb.IOException):
            duckdb.connect(f"{db}.work")
        st = issue(app, db)
        assert [ln.order_id for ln in st.lines] == ["X1", "X2", "X3"]
    finally:
        holder.kill()
        holder.wait()


def test_period_dates_are_china_time_days(books):
    app, db = books
    st = issue(app, db)
    assert st.period_from.astimezone(LOCAL).isoformat() == "2026-11-02T00:00:00+08:00"
    assert st.period_to.astimezone(LOCAL).isoformat() == "2026-11-03T00:00:00+08:00"


# -- exports ------------------------------------------------------------------------------------


@pytest.fixture
def statement(books):
    app, db = books
    return issue(app, db)


def test_export_csv_reads_back_equal(statement, tmp_path):
    path = export_statement(statement, tmp_path / "st.csv")
    with path.open(newline="", encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    assert got == [{c: text(r[c]) for c in COLUMNS} for r in rows(statement)]
    assert [r["section"] for r in got] == ["line", "line", "line", "total", "post_shipment_aftersale", "loss_risk"]
    assert got[3]["amount"] == "54.00"


def test_export_parquet_reads_back_equal(statement, tmp_path):
    path = export_statement(statement, tmp_path / "st.parquet")
    table = pq.read_table(path)
    assert table.to_pylist() == rows(statement)
    assert table.schema.metadata[b"content_hash"].decode() == statement.content_hash
    total = duckdb.sql(f"SELECT sum(amount) FROM read_parquet('{path}') WHERE section = 'line'").fetchall()[0][0]
    assert total == statement.total


def test_export_xlsx_reads_back_equal(statement, tmp_path):
    """Money as numbers Excel can sum, times in China time (issue 14)."""
    path = export_statement(statement, tmp_path / "st.xlsx")
    wb = load_workbook(path)
    summary = {k: v for k, v in wb["summary"].iter_rows(values_only=True)}
    assert (summary["statement_id"], summary["total"], summary["content_hash"]) == (
        statement.statement_id, 54.0, statement.content_hash)
    lines = list(wb["lines"].iter_rows(values_only=True))
    header, body = [h.removesuffix(" (China time)") for h in lines[0]], lines[1:]
    assert [dict(zip(header, r)) for r in body] == [
        {c: xlsx_cell(v) for c, v in r.items() if c in header} for r in rows(statement) if r["section"] == "line"]
    assert len(list(wb["loss_risks"].iter_rows())) == 2


def xlsx_cell(v):
    """Money reads back as a number, a time as China time (Excel has no zones), '' as empty."""
    if isinstance(v, Decimal):
        return float(v) if v != v.to_integral_value() else int(v)
    if hasattr(v, "astimezone"):
        return v.astimezone(LOCAL).replace(tzinfo=None)
    return None if v == "" else v


def test_export_refuses_an_unknown_extension(statement, tmp_path):
    with pytest.raises(ValueError, match=r"\.csv, \.parquet or \.xlsx"):
        export_statement(statement, tmp_path / "st.json")


def test_rc5_content_shares_conversions_without_changing_a_line():
    """Issue 17: `_content` converts each distinct price, amount and time once. Prices equal in value
    but not in scale, signed zeros, 4-decimal prices and times in other zones give the lines, totals
    and hash that converting every line on its own gives."""
    from datetime import UTC, datetime, timezone

    from engine.statements import StatementLine, _content, content_hash, money

    prices = [Decimal(p) for p in ("5.5", "5.50", "5.5000", "0", "-0.00", "1.2345", "1.23450", "10", "-2.50")]
    zones = [None, UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]
    rows = []
    for i in range(72):
        base = datetime(2026, 1, 1) + timedelta(minutes=i % 7)
        allocated = base if zones[i % 4] is None else base.replace(tzinfo=zones[i % 4])
        tracked = base + timedelta(hours=1)
        tracked = tracked if zones[i // 4 % 4] is None else tracked.replace(tzinfo=zones[i // 4 % 4])
        rows.append(dict(allocation_id=f"A{i // 3}", seq=i % 3, line_id=f"L{i}", offer_id="O1", supplier_sku_id="a",
                         product_id=(None, "", "P1")[i % 3], qty=(0, 1, 2, 3, 7)[i % 5], supplier_id="S1",
                         merchant_id="m", allocated_at=allocated, platform="douyin", shop_id="s", order_id=f"X{i}",
                         carrier=(None, "YTO")[i % 2], tracking_no=(None, f"YT{i}")[i % 2], tracked_at=tracked,
                         settlement_price=prices[i % len(prices)], price_tier=("", "gold")[i % 2]))

    def utc(dt):
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)

    start, end = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC)
    expected = tuple(StatementLine(
        allocation_id=r["allocation_id"], platform=r["platform"], shop_id=r["shop_id"], order_id=r["order_id"],
        line_id=r["line_id"], offer_id=r["offer_id"], supplier_sku_id=r["supplier_sku_id"],
        product_id=r["product_id"] or "", qty=r["qty"], unit_price=money(r["settlement_price"]),
        amount=money(r["settlement_price"] * r["qty"]), price_tier=r["price_tier"],
        allocated_at=utc(r["allocated_at"]), tracked_at=utc(r["tracked_at"]),
        carrier=r["carrier"] or "", tracking_no=r["tracking_no"] or "") for r in rows)
    content = _content("S1", start, end, rows, [])
    assert [(str(ln.unit_price), str(ln.amount)) for ln in content["lines"]] == [
        (str(ln.unit_price), str(ln.amount)) for ln in expected]
    assert content["lines"] == expected
    assert (content["qty"], str(content["total"])) == (
        sum(ln.qty for ln in expected), str(money(sum((ln.amount for ln in expected), Decimal(0)))))
    reference = dict(supplier_id="S1", period_from=start, period_to=end, lines=expected, apart=(),
                     qty=content["qty"], total=content["total"])
    assert content["content_hash"] == content_hash(reference)
