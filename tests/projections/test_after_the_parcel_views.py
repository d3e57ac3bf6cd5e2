"""Issue 16 in the analysts' views (CONTRACT section 6): `overdue_allocations` (T4)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from projections.runner import ProjectionRunner
from tests.projections.conftest import rows
from tests.world import T0, allocations, alt, comp, line, link, offer, place, sku, supplier

H = timedelta(hours=1)


def project(app, path: Path) -> None:
    with ProjectionRunner(app, path, batch=5) as runner:
        runner.catch_up()


def test_t4_overdue_allocations_view(app, tmp_path: Path):
    supplier(app, "SUP-A")
    supplier(app, "SUP-B")
    offer(app, "SUP-A", "OA", {"a1": 10})
    offer(app, "SUP-B", "OB", {"b1": 10}, price="12.00")
    link(app, "P1", sku("K1", alt(comp("SUP-A", "OA", "a1")), alt(comp("SUP-B", "OB", "b1"))))
    app.set_merchant_settings("default", reroute_overdue_hours=4, at=T0 - H)
    place(app, "O1", line("L1", "P1"))
    place(app, "O2", line("L1", "P1"), at=T0 + timedelta(minutes=1))
    [a1], [a2] = allocations(app, "O1"), allocations(app, "O2")
    app.pass_time(a1.ship_by + 2 * H)  # both reminded, 2 h late
    app.upload_tracking("SUP-A", a2.allocation_id, "STO", "STO2222222", at=a1.ship_by + 3 * H)  # late, T3
    app.pass_time(a1.ship_by + 5 * H)  # O1 re-routed at ship_by + 4 h
    path = tmp_path / "reflow.duckdb"
    project(app, path)
    got = rows(path, "SELECT allocation_id, order_id, hours_overdue, rerouted, reminded_at FROM overdue_allocations "
                     "ORDER BY allocation_id")
    assert [(a, o, h, r) for a, o, h, r, _ in got] == [(a1.allocation_id, "O1", 4.0, True)]
    assert got[0][4] is not None
    [b] = [a for a in allocations(app, "O1") if a.status == "active"]
    assert b.supplier_id == "SUP-B"
    assert rows(path, f"SELECT intercept_reason FROM allocations WHERE allocation_id = '{a1.allocation_id}'") == [
        ("overdue",)]


def test_t4_hours_overdue_are_never_negative_when_reflows_clock_runs_ahead_of_now(app, tmp_path: Path):
    from datetime import UTC, datetime

    supplier(app, "SUP-A")
    offer(app, "SUP-A", "OA", {"a1": 10})
    link(app, "P1", sku("K1", alt(comp("SUP-A", "OA", "a1"))))
    ahead = datetime.now(UTC) + timedelta(days=3)  # ticks driven by a producer, ahead of the wall clock
    place(app, "F1", line("L1", "P1"), at=ahead)
    [a] = allocations(app, "F1")
    app.pass_time(a.ship_by + 5 * H)
    path = tmp_path / "reflow.duckdb"
    project(app, path)
    assert rows(path, "SELECT hours_overdue FROM overdue_allocations") == [(5.0,)]
