"""Rule A1: replay a period's decisions against a changed link or policy setting; store nothing."""

from __future__ import annotations

import csv
from datetime import timedelta
from decimal import Decimal

import pyarrow.parquet as pq
import pytest

from replay.export import export_rows
from replay.whatif import Change, replay
from tests.world import SHOP, T0, alt, comp, line, link, offer, place, sku, stored, supplier

H = timedelta(hours=1)
START, END = T0 - H, T0 + 24 * H


@pytest.fixture
def world(app):
    supplier(app, "S1", score=70)
    supplier(app, "S2", score=90)
    supplier(app, "S3", score=80)
    offer(app, "S1", "O1", {"a": 100}, price="6.80")
    offer(app, "S2", "O2", {"b": 3, "c": 100}, price="7.20")
    offer(app, "S3", "O3", {"d": 100}, price="5.00")
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a")), alt(comp("S2", "O2", "b"))))
    link(app, "P2", sku("K1", alt(comp("S2", "O2", "c"))))
    for n in range(3):
        place(app, f"W{n}", line("L1", "P1"), at=T0 + n * H)
    place(app, "OLD", line("L1", "P1"), at=T0 - 2 * H)  # before the period
    return app


def test_A1_without_a_supplier_moves_orders_and_carries_stock_over_and_stores_nothing(world):
    before = stored(world)
    report = replay(world, *SHOP, START, END, Change(without=frozenset({"S1"})))
    assert stored(world) == before
    assert [r.order_id for r in report.rows] == ["W0", "W1", "W2"]
    assert all(r.recorded == "L1: S1/O1/ax1" and r.recorded_cost == Decimal("6.80") for r in report.rows)
    # S2 had 3 units of b when each was decided, but the what-if takes one per order
    assert [r.what_if for r in report.rows] == ["L1: S2/O2/bx1", "L1: S2/O2/bx1", "L1: S2/O2/bx1"]
    report = replay(world, *SHOP, START, END, Change(without=frozenset({"S1"})), product_id="P1")
    assert report.delta == Decimal("1.20")


def test_A1_stock_a_what_if_uses_is_gone_for_later_orders(world):
    place(world, "W3", line("L1", "P1"), at=T0 + 3 * H)
    report = replay(world, *SHOP, START, END, Change(without=frozenset({"S1"})))
    assert [r.what_if for r in report.rows][-1] == "L1: out_of_stock"
    assert report.rows[-1].delta == Decimal("-6.80")


def test_A1_lines_left_unroutable_are_reported_apart_not_as_savings(world):
    """Issue 14: `whatif --without-supplier` counted lines that became unroutable (cost 0) as savings."""
    place(world, "W3", line("L1", "P1"), at=T0 + 3 * H)
    report = replay(world, *SHOP, START, END, Change(without=frozenset({"S1"})))
    [lost] = report.unroutable
    assert (lost.order_id, lost.lines_lost, lost.recorded_cost) == ("W3", 1, Decimal("6.80"))
    assert report.delta == Decimal("1.20")  # the three orders moved to S2, not W3's "saving"


def test_A1_a_new_link_uses_recorded_facts_and_the_store_for_new_sources(world):
    new = (sku("K1", alt(comp("S1", "O1", "a", qty=2)), alt(comp("S3", "O3", "d"))),)
    report = replay(world, *SHOP, START, END, Change(product_id="P1", link=new))
    assert [(r.what_if, r.what_if_cost, r.delta) for r in report.rows] == [
        ("L1: S3/O3/dx1", Decimal("5.00"), Decimal("-1.80"))] * 3
    world.upsert_supplier("S3", "Supplier S3", False, fulfilment_score=80, ship_within_hours=48)
    report = replay(world, *SHOP, START, END, Change(product_id="P1", link=new))  # S3 inactive now
    assert [(r.what_if, r.delta) for r in report.rows] == [("L1: S1/O1/ax2", Decimal("6.80"))] * 3


def test_A1_split_tolerance_change_consolidates_orders(world):
    place(world, "TWO", line("L1", "P1"), line("L2", "P2"), at=T0 + 5 * H)
    report = replay(world, *SHOP, START, END, Change(split_tolerance=Decimal("0.10")))
    [row] = report.changed
    assert row.order_id == "TWO"
    assert (row.recorded, row.what_if) == ("L1: S1/O1/ax1; L2: S2/O2/cx1", "L1: S2/O2/bx1; L2: S2/O2/cx1")
    assert row.delta == Decimal("0.40")


def test_A1_report_exports_to_csv_and_parquet(world, tmp_path):
    report = replay(world, *SHOP, START, END, Change(without=frozenset({"S1"})))
    rows = [r.as_dict() for r in report.rows]
    columns = list(rows[0])
    with (export_rows(rows, columns, tmp_path / "w.csv")).open() as f:
        back = list(csv.DictReader(f))
    assert [b["delta"] for b in back] == ["0.40", "0.40", "0.40"]
    table = pq.read_table(export_rows(rows, columns, tmp_path / "w.parquet"))
    assert table.column("delta").to_pylist() == [Decimal("0.4")] * 3
    from engine.errors import InvalidCommand

    with pytest.raises(InvalidCommand, match="--out"):
        export_rows(rows, columns, tmp_path / "w.xlsx")


def test_A1_rt12_rt13_whatif_with_split_lines_on_and_a_capacity_set(memory_app):
    app = memory_app
    supplier(app, "S1")
    supplier(app, "S2")
    offer(app, "S1", "O1", {"a": 2}, price="5.00")
    offer(app, "S2", "O2", {"b": 2}, price="9.00")
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a")), alt(comp("S2", "O2", "b"))))
    place(app, "BIG", line("L1", "P1", qty=3), at=T0)  # recorded: out of stock (2 and 2, no split)
    for n in range(2):
        place(app, f"W{n}", line("L1", "P1"), at=T0 + (n + 1) * H)  # recorded: both S1
    split = replay(app, *SHOP, START, END, Change(split_lines=True))
    [big] = [r for r in split.rows if r.order_id == "BIG"]
    assert big.recorded == "L1: out_of_stock" and big.what_if == "L1: S1/O1/ax2+S2/O2/bx1"
    assert [r.what_if for r in split.rows if r.order_id != "BIG"] == ["L1: S2/O2/bx1", "L1: out_of_stock"]
    capped = replay(app, *SHOP, START, END, Change(capacity=(("S1", 1),)))
    assert [(r.order_id, r.what_if) for r in capped.rows] == [
        ("BIG", "L1: out_of_stock"), ("W0", "L1: S1/O1/ax1"), ("W1", "L1: S2/O2/bx1")]
    assert capped.change.describe() == "capacity S1 1"
