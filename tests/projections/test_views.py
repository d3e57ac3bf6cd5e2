"""The analysts' views (CONTRACT section 4) on the seed scenarios, matching the engine's own state."""

from __future__ import annotations

from pathlib import Path

import pytest

from projections.runner import ProjectionRunner
from tests.projections.conftest import rows
from tests.projections.seed import ORDERS, SHOP, seed
from tests.world import allocations

CONTRACT = {
    "orders": "platform, shop_id, order_id, channel, placed_at, status, amount",
    "order_lines": "platform, shop_id, order_id, line_id, product_id, sku_id, qty, unit_price, route_status, "
                   "unroutable_reason",
    "allocations": "allocation_id, platform, shop_id, order_id, supplier_id, status, allocated_at, ship_by, "
                   "link_version, carrier, tracking_no, tracked_at, intercepted_at, intercept_reason",
    "allocation_lines": "allocation_id, line_id, offer_id, supplier_sku_id, qty, unit_cost, amount",
    "supplier_performance": "supplier_id, allocations, tracked, on_time, late, intercepted, loss_risks, "
                            "median_hours_to_tracking",
    "statements": "statement_id, supplier_id, period_from, period_to, issued_at, lines, total, content_hash",
}


@pytest.fixture
def projected(app, tmp_path: Path):
    seed(app)
    path = tmp_path / "reflow.duckdb"
    with ProjectionRunner(app, path, batch=7) as runner:
        runner.catch_up()
    return app, path


def test_contract_views_exist_with_their_columns(projected):
    _, path = projected
    for view, columns in CONTRACT.items():
        found = [d for (d,) in rows(path, f"SELECT column_name FROM (DESCRIBE {view})")]
        assert [c.strip() for c in columns.split(",")] == found[: len(columns.split(","))], view


def test_orders_status_matches_the_engine(projected):
    app, path = projected
    got = dict(rows(path, "SELECT order_id, status FROM orders"))
    assert got == {o: app.order(*SHOP, o).status for o in ORDERS}
    assert set(got.values()) == {"unrouted", "held", "partially_allocated", "allocated", "shipped", "cancelled"}


def test_orders_amount_and_channel_m3(projected):
    _, path = projected
    got = rows(path, "SELECT amount, channel FROM orders WHERE order_id = 'ONTIME'")
    assert [(str(a), c) for a, c in got] == [("59.8000", "douyin")]
    assert rows(path, "SELECT channel FROM orders WHERE order_id = 'POST'") == [("live",)]


def test_order_lines_carry_route_status_and_unroutable_reason(projected):
    _, path = projected
    got = rows(path, "SELECT order_id, line_id, route_status, unroutable_reason FROM order_lines "
                     "WHERE order_id IN ('NOLINK', 'PARTIAL') ORDER BY ALL")
    assert got == [("NOLINK", "L1", "unroutable", "no_link"), ("PARTIAL", "L1", "allocated", None),
                   ("PARTIAL", "L2", "unroutable", "no_link")]


def test_allocations_status_and_tracking_match_the_engine(projected):
    app, path = projected
    got = {r[0]: r[1:] for r in rows(path, "SELECT allocation_id, status, carrier, tracking_no, "
                                           "intercept_reason, supplier_id FROM allocations")}
    expected = {}
    for o in ORDERS:
        for a in allocations(app, o):
            expected[a.allocation_id] = (a.status, a.carrier, a.tracking_no, a.intercept_reason, a.supplier_id)
    assert got == expected
    assert {s for s, *_ in got.values()} == {"active", "intercepted", "cancelled", "shipped"}


def test_allocation_lines_keep_cost_at_routing_time(projected):
    _, path = projected
    got = rows(path, "SELECT l.supplier_sku_id, l.qty, l.unit_cost, l.amount FROM allocation_lines l "
                     "JOIN allocations a USING (allocation_id) WHERE a.order_id = 'TWO' ORDER BY 1")
    assert [(s, q, str(u), str(m)) for s, q, u, m in got] == [
        ("a", 1, "10.0000", "10.0000"), ("b", 2, "4.5000", "9.0000"), ("c", 1, "7.0000", "7.0000")]


def test_t3_supplier_performance_counts_on_time_late_intercepted_loss_risks(projected):
    _, path = projected
    got = rows(path, "SELECT * FROM supplier_performance ORDER BY supplier_id")
    # S1: ONTIME (2 h, on time), LATE (50 h, late), INTERCEPT (intercepted + loss risk), PARTIAL, HELD
    # (cancelled by review), TWO.  S2: POST (1 h), CANCEL (intercepted), TWO.
    assert got == [("S1", 6, 2, 1, 1, 1, 1, 26.0, 1, 0), ("S2", 3, 1, 1, 0, 1, 0, 1.0, 0, 0)]  # ..., cancelled, rejected


def test_m3_supplier_performance_cut_by_channel(projected):
    _, path = projected
    got = rows(path, "SELECT supplier_id, channel, allocations, tracked FROM supplier_performance_by_channel "
                     "WHERE supplier_id = 'S2' ORDER BY ALL")
    assert got == [("S2", "douyin", 2, 0), ("S2", "live", 1, 1)]


def test_i7_loss_risks_view(projected):
    _, path = projected
    got = rows(path, "SELECT supplier_id, order_id, reason FROM loss_risks")
    assert got == [("S1", "INTERCEPT", "tracking after intercepted: aftersale AS-1 (refund)")]


def test_i2_post_shipment_aftersales_view(projected):
    _, path = projected
    got = rows(path, "SELECT order_id, aftersale_id, kind, supplier_id, channel FROM post_shipment_aftersales")
    assert got == [("POST", "AS-2", "return", "S2", "live")]


def test_m3_margins_per_shop_product_supplier_and_channel(projected):
    _, path = projected
    got = rows(path, "SELECT product_id, supplier_id, channel, units, sale_amount, settlement_cost, margin "
                     "FROM margins ORDER BY ALL")
    assert [tuple(str(x) for x in r) for r in got] == [
        ("P1", "S1", "douyin", "5", "149.50", "50.00", "99.50"),  # ONTIME(2) LATE PARTIAL TWO
        ("P2", "S2", "douyin", "1", "29.90", "7.00", "22.90"),
        ("P2", "S2", "live", "1", "19.90", "7.00", "12.90"),
        ("P3", "S1", "douyin", "2", "29.90", "9.00", "20.90"),
    ]


def test_p2_no_view_holds_consumer_personal_data(projected):
    _, path = projected
    text = repr([rows(path, f"SELECT * FROM {t}") for (t,) in rows(
        path, "SELECT table_schema || '.' || table_name FROM information_schema.tables")])
    for secret in ("张三丰", "13812345678", "文三路100号", "8****5678", "张*"):
        assert secret not in text


def test_i5_i8_withheld_released_refunded_and_too_late_orders_match_the_engine(app, tmp_path):
    from tests.projections.seed import seed_lifecycle

    orders = seed_lifecycle(app)
    path = tmp_path / "reflow.duckdb"
    with ProjectionRunner(app, path, batch=5) as runner:
        runner.catch_up()
    assert dict(rows(path, "SELECT order_id, status FROM orders")) == {o: app.order(*SHOP, o).status for o in orders}
    got = dict(rows(path, "SELECT allocation_id, status FROM allocations"))
    assert got == {a.allocation_id: a.status for o in orders for a in allocations(app, o)}
    lines = {(o, ln): (s, r) for o, ln, s, r in rows(path, "SELECT order_id, line_id, route_status, refunded "
                                                          "FROM order_lines")}
    assert lines[("WITHHELD", "L1")] == ("withheld", False)
    assert lines[("RELEASED", "L1")] == ("allocated", False)
    assert lines[("REFUND", "L2")] == ("unroutable", True)
    assert lines[("TOOLATE", "L1")][0] == "allocated"
    assert ("TOOLATE", "S2") in {(o, s) for o, s in rows(path, "SELECT order_id, supplier_id FROM "
                                                                "post_shipment_aftersales")}
