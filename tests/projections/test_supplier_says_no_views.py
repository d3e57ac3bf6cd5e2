"""Issue 15 in the analysts' views (CONTRACT section 6): rejected allocations (RT11), waiting
reasons `rejected` and `capacity_reached` (RT13), and the `link_health` view (L11)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from projections.runner import ProjectionRunner
from tests.projections.conftest import rows
from tests.world import SHOP, T0, allocations, alt, comp, line, link, offer, place, sku, supplier


def project(app, path: Path) -> None:
    with ProjectionRunner(app, path, batch=5) as runner:
        runner.catch_up()


def test_rt11_rt13_l11_views(app, tmp_path: Path):
    supplier(app, "SUP-A")
    supplier(app, "SUP-B", daily_capacity=1)
    offer(app, "SUP-A", "OA", {"a1": 10})
    offer(app, "SUP-B", "OB", {"b1": 10}, price="12.00")
    link(app, "P1", sku("K1", alt(comp("SUP-A", "OA", "a1")), alt(comp("SUP-B", "OB", "b1"))))
    place(app, "O1", line("L1", "P1"))
    place(app, "O2", line("L1", "P1"), at=T0 + timedelta(minutes=1))
    [a1] = allocations(app, "O1")
    app.reject_allocation("SUP-A", a1.allocation_id, "sku_changed", at=T0 + timedelta(minutes=5))  # O1 -> SUP-B
    [a2] = allocations(app, "O2")
    app.reject_allocation("SUP-A", a2.allocation_id, "other", at=T0 + timedelta(minutes=6))  # B is at capacity
    place(app, "O3", line("L1", "P1"), at=T0 + timedelta(minutes=7))  # A's SKU withdrawn, B at capacity
    path = tmp_path / "reflow.duckdb"
    project(app, path)

    status = dict(rows(path, "SELECT allocation_id, status FROM allocations"))
    assert status[a1.allocation_id] == status[a2.allocation_id] == "rejected"
    assert rows(path, "SELECT stopped_as, intercept_reason FROM allocations "
                      f"WHERE allocation_id = '{a1.allocation_id}'") == [("rejected", "sku_changed")]
    reasons = dict(rows(path, "SELECT order_id, coalesce(unroutable_reason, route_status) FROM order_lines"))
    assert reasons == {"O1": "allocated", "O2": "rejected", "O3": "capacity_reached"}
    assert rows(path, "SELECT supplier_id, rejected FROM supplier_performance ORDER BY 1") == [
        ("SUP-A", 2), ("SUP-B", 0)]
    [(product, sku_id, state, missing)] = rows(
        path, "SELECT product_id, sku_id, status, missing FROM link_health")
    assert (product, sku_id, state) == ("P1", "K1", "broken")
    assert json.loads(missing) == [{"supplier_id": "SUP-A", "offer_id": "OA", "supplier_sku_id": "a1",
                                    "why": "sku_changed"}]

    offer(app, "SUP-A", "OA", {"a1": 10}, price=None, at=T0 + timedelta(hours=1))  # mended
    app.pass_time(T0 + timedelta(days=1))  # RT13: a new day, O2 routes (to SUP-B; SUP-A rejected it)
    project(app, path)
    assert rows(path, "SELECT status FROM link_health") == [("healthy",)]
    assert dict(rows(path, "SELECT order_id, route_status FROM order_lines")) == {
        "O1": "allocated", "O2": "allocated", "O3": "allocated"}
    suppliers = dict(rows(path, "SELECT order_id, supplier_id FROM allocations WHERE status = 'active'"))
    assert suppliers == {"O1": "SUP-B", "O2": "SUP-B", "O3": "SUP-A"}
    assert SHOP == ("douyin", "dy-shop-1")


def test_rt12_rt11_an_order_whose_split_line_lost_a_part_is_partially_allocated(app, tmp_path: Path):
    for s, o, k, stock in (("SUP-A", "OA", "a1", 2), ("SUP-B", "OB", "b1", 3)):
        supplier(app, s)
        offer(app, s, o, {k: stock})
    link(app, "P1", sku("K1", alt(comp("SUP-A", "OA", "a1")), alt(comp("SUP-B", "OB", "b1"))))
    app.set_merchant_settings("default", split_lines=True, at=T0 - timedelta(hours=1))
    place(app, "S1", line("L1", "P1", qty=5))
    b = next(a for a in allocations(app, "S1") if a.supplier_id == "SUP-B")
    app.reject_allocation("SUP-B", b.allocation_id, "other", at=T0 + timedelta(minutes=5))
    assert app.order(*SHOP, "S1").status == "partially_allocated"  # SUP-A's 2 units still go
    path = tmp_path / "reflow.duckdb"
    project(app, path)
    assert rows(path, "SELECT status FROM orders") == [("partially_allocated",)]
