"""After the parcel (issue 16): the overdue watch (T4), with deadlines passed as events by the
clock, also for a router that was down across a deadline, and a replay that gives the same."""

from __future__ import annotations

from datetime import timedelta

import pytest

from engine.allocations import AllocationOverdue, InterceptRequested
from engine.errors import DomainError
from engine.policy import decide
from tests.world import SHOP, T0, events, line, live, order, place, stored, two_sources

H = timedelta(hours=1)


@pytest.fixture
def two(memory_app):
    """A cheap supplier SUP-A and a dearer SUP-B for the same shop SKU."""
    return two_sources(memory_app)


def test_t4_one_reminder_when_the_clock_passes_ship_by_and_tracking_after_it_is_just_late(two):
    place(two, "O1", line("L1", "P1"))  # 09:00, ship by 23:59:59 the same day (T3)
    [a] = live(two, "O1")
    two.pass_time(a.ship_by - timedelta(seconds=1))
    assert events(two, AllocationOverdue) == []
    two.pass_time(a.ship_by + timedelta(minutes=1))
    two.pass_time(a.ship_by + 5 * H)  # again: still one reminder
    [reminder] = events(two, AllocationOverdue)
    assert (reminder.at, reminder.ship_by, reminder.hours_overdue) == (a.ship_by, a.ship_by, 0.0)
    assert two.upload_tracking("SUP-A", a.allocation_id, "STO", "STO1234567", at=a.ship_by + 6 * H) in (
        "tracked", "shipped")
    assert two.allocation(a.allocation_id).status in ("tracked", "shipped")  # late (T3), not a loss risk


def test_t4_a_router_down_across_the_deadline_catches_up_and_says_how_late(two):
    place(two, "O1", line("L1", "P1"))
    [a] = live(two, "O1")
    two.pass_time(a.ship_by + 30 * H)  # the first tick after a day and more down
    [reminder] = events(two, AllocationOverdue)
    assert reminder.at == a.ship_by and reminder.reminded_at == a.ship_by + 30 * H
    assert reminder.hours_overdue == 30.0


def test_t4_reroute_overdue_hours_intercepts_and_reroutes_never_back_and_tracking_after_is_a_loss_risk(two):
    two.set_merchant_settings("default", reroute_overdue_hours=6, at=T0 - H)
    place(two, "O1", line("L1", "P1"))
    [a] = live(two, "O1")
    two.pass_time(a.ship_by + 5 * H)
    assert [x.allocation_id for x in live(two, "O1")] == [a.allocation_id]  # reminded, not yet re-routed
    two.pass_time(a.ship_by + 7 * H)
    stopped = two.allocation(a.allocation_id)
    assert (stopped.status, stopped.intercept_reason) == ("intercepted", "overdue")
    assert [e.reason for e in events(two, InterceptRequested)] == ["overdue"]
    [b] = live(two, "O1")
    # intercepted as of its deadline (ship-by + 6 h), re-routed when the clock got there (+ 7 h)
    assert b.supplier_id == "SUP-B" and b.allocated_at == a.ship_by + 7 * H
    assert stopped.intercepted_at == a.ship_by + 6 * H
    assert two.upload_tracking("SUP-A", a.allocation_id, "STO", "STO7654321", at=a.ship_by + 8 * H) == "loss_risk"
    two.report_stock("SUP-B", "OB", "b1", 0, at=a.ship_by + 9 * H)
    two.open_aftersale(*SHOP, "O1", "AS1", "exchange", at=a.ship_by + 10 * H)  # stops B: waits
    two.close_aftersale(*SHOP, "O1", "AS1", "withdrawn", at=a.ship_by + 11 * H)
    assert live(two, "O1") == [] and order(two, "O1").unroutable == {"L1": "rejected"}  # never back to SUP-A
    for routed in two.decisions(*SHOP, "O1"):
        assert decide(routed.input) == routed.decision  # RT6 across the re-route


def test_t4_a_tracked_or_stopped_allocation_is_never_overdue(two):
    two.set_merchant_settings("default", reroute_overdue_hours=1, at=T0 - H)
    place(two, "O1", line("L1", "P1"))
    place(two, "O2", line("L1", "P1"), at=T0 + timedelta(minutes=1))
    [a1] = live(two, "O1")
    two.upload_tracking("SUP-A", a1.allocation_id, "STO", "STO1111111", at=T0 + H)
    two.cancel_order(*SHOP, "O2", at=T0 + H)
    two.pass_time(a1.ship_by + 3 * H)
    assert events(two, AllocationOverdue) == [] and events(two, InterceptRequested)[0].reason != "overdue"


def test_t4_reroute_overdue_hours_is_whole_hours_or_never(two):
    before = stored(two)
    with pytest.raises(DomainError, match="rule T4: reroute_overdue_hours"):
        two.set_merchant_settings("default", reroute_overdue_hours=-1, at=T0)
    assert stored(two) == before
    two.set_merchant_settings("default", reroute_overdue_hours=3, at=T0)
    two.set_merchant_settings("default", reroute_overdue_hours=0, at=T0 + H)  # null on the wire: never
    place(two, "O1", line("L1", "P1"), at=T0 + 2 * H)
    [a] = live(two, "O1")
    two.pass_time(a.ship_by + 10 * H)
    assert two.allocation(a.allocation_id).status == "active"


def test_t4_verify_re_checks_that_deadlines_passed_as_of_their_due_times(two):
    from replay.verify import verify

    two.set_merchant_settings("default", reroute_overdue_hours=2, at=T0 - H)
    place(two, "O1", line("L1", "P1"))
    [a] = live(two, "O1")
    two.pass_time(a.ship_by + 30 * H)  # down for a day: reminded and re-routed as of their due times
    result = verify(two, anchor=False)
    assert result.ok, result.problem
    # the re-route is made when the clock gets there, so SUP-B gets its own time to ship (no cascade)
    [b] = live(two, "O1")
    assert b.supplier_id == "SUP-B" and b.allocated_at == a.ship_by + 30 * H and b.ship_by > b.allocated_at
    assert [e.at for e in events(two, AllocationOverdue)] == [a.ship_by]


def test_t4_a_producers_tick_may_not_run_ahead_of_the_broker(two):
    from engine.commands import PassTime

    place(two, "O1", line("L1", "P1"))
    before = stored(two)
    with pytest.raises(DomainError, match="rule T4: at: .* is ahead of the broker's time"):
        two.execute(PassTime(at=T0 + 36 * 365 * 24 * H, received_at=T0 + H))  # a mistyped year
    assert stored(two) == before and events(two, AllocationOverdue) == []


def test_t4_a_merchant_cancel_with_the_reason_overdue_excludes_nobody_i5(two):
    place(two, "O1", line("L1", "P1"))
    [a] = live(two, "O1")
    two.cancel_allocation(a.allocation_id, reason="overdue", at=T0 + H)
    two.release_order(*SHOP, "O1", at=T0 + 2 * H)
    assert [x.supplier_id for x in live(two, "O1")] == ["SUP-A"]


def test_t4_catching_up_in_limited_steps_passes_the_same_deadlines_in_the_same_order(two):
    """serve passes a long backlog of deadlines a thousand per unit of work (`PassTime.limit`):
    the earliest first, each as of its due time, and nothing passed twice or skipped."""
    from engine.commands import PassTime

    for n in range(7):
        place(two, f"O{n}", line("L1", "P1"), at=T0 + n * H)
    late = T0 + 80 * H
    steps = []
    while (passed := two.execute(PassTime(at=late, limit=2))) == 2:
        steps.append(passed)
    steps.append(passed)
    assert sum(steps) >= 7 and len(steps) >= 4
    reminders = events(two, AllocationOverdue)
    assert len(reminders) == 7
    assert [r.at for r in reminders] == sorted(r.at for r in reminders)
    assert all(r.at == r.ship_by and r.reminded_at == late for r in reminders)
    assert two.execute(PassTime(at=late, limit=2)) == 0
