"""`reflow demo` shows each rule of issue 15 once, in the event store (the views and the printed
report are checked in test_demo's end-to-end test): a supplier rejects an allocation and its lines
go to another supplier (RT11), a bulk order's line is split between two sources (RT12), the
factory's evening sale reaches its daily capacity and the last lines wait for the next day (RT13),
and an offer drops a SKU a link uses, breaking the link until the merchant mends it (L11)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import date, datetime, timedelta

import pytest

from adapters.demo import DAYS_AGO, QUICK_ORDERS, Applied, DemoDay, product_id
from adapters.demo.scenario import BULK_QTY, DROP, DROP_LINK, FACTORY, REJECTER
from adapters.demo.stories import wrap
from engine.servicelevel import LOCAL
from tests.cli.test_demo import play_in_process

DAY = date(2026, 5, 1)
START = datetime(DAY.year, DAY.month, DAY.day, tzinfo=LOCAL)


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoDay, dict]:
    plan = DemoDay(7, QUICK_ORDERS, DAY)
    _, history = play_in_process(tmp_path_factory.mktemp("issue15"), plan, 256,
                                 START + timedelta(days=DAYS_AGO, hours=9))
    return plan, history


def named(history: dict, *names: str) -> list[tuple[str, dict]]:
    return [(name, e) for events in history.values() for name, e in events if name in names]


def routed(history: dict, order_id: str) -> list[dict]:
    """The order's routing decisions, in order."""
    [events] = [events for events in history.values() if events[0][0] == "OrderPlaced"
                and events[0][1]["order_id"] == order_id]
    return [e for name, e in events if name == "OrderRouted"]


def test_rt11_one_supplier_rejects_one_allocation_and_its_lines_go_to_another(played):
    _, history = played
    [events] = [events for events in history.values() if any(name == "AllocationRejected" for name, _ in events)]
    allocation = next(e for name, e in events if name == "Allocated")
    rejected = next(e for name, e in events if name == "AllocationRejected")
    assert rejected["reason"] == "out_of_stock" and allocation["supplier_id"] == REJECTER
    assert not any(name == "TrackingUploaded" for name, _ in events)
    [decision] = [e for e in routed(history, allocation["order_id"]) if e["trigger"] == "rejected"]
    assert decision["allocations"] and all(a["supplier_id"] != REJECTER for a in decision["allocations"])
    assert decision["at"] == rejected["at"]  # at once


def test_rt12_the_bulk_line_is_split_between_two_sources(played):
    plan, history = played
    splits = [e for _, e in named(history, "OrderRouted") if any(ln["parts"] for ln in e["decision"]["lines"])]
    assert splits == routed(history, plan.bulk.order_id)
    [split] = splits
    [line] = split["decision"]["lines"]
    units = sorted(p["units"] for p in line["parts"])
    assert sum(units) == BULK_QTY and len(units) == 2 and max(units) < BULK_QTY
    assert len({a["supplier_id"] for a in split["allocations"]}) == 2


def test_rt13_the_factory_stays_within_its_capacity_and_the_last_lines_wait_for_the_next_day(played):
    plan, history = played
    assert plan.capacity is not None and len(plan.flash) >= 3
    factory = defaultdict(int)
    for _, e in named(history, "CapacityUsed"):
        factory[e["day"]] += e["units"]
    assert factory == {DAY: plan.capacity, DAY + timedelta(days=1): 2}  # the day full, the rest the next day
    last = plan.flash[-1]
    first, then = routed(history, last.order_id)
    assert [ln["unroutable"] for ln in first["decision"]["lines"]] == ["capacity_reached"] * 2
    assert then["trigger"] == "reroute:new_day" and then["at"] == START + timedelta(days=1)
    assert [a["supplier_id"] for a in then["allocations"]] == [FACTORY]
    for o in plan.flash[:-1]:
        [placed] = routed(history, o.order_id)
        assert [a["supplier_id"] for a in placed["allocations"]] == [FACTORY]


def test_l11_the_dropped_sku_breaks_the_link_once_and_the_merchant_mends_it(played):
    _, history = played
    health = [e for _, e in named(history, "LinkHealthChanged")]
    assert [e["status"] for e in health] == ["broken", "healthy"]
    supplier_id, offer_id, dropped, _ = DROP
    assert health[0]["product_id"] == product_id(DROP_LINK[0], DROP_LINK[2])
    assert [(m["supplier_id"], m["offer_id"], m["supplier_sku_id"], m["why"]) for m in health[0]["missing"]] == [
        (supplier_id, offer_id, dropped, "sku_dropped")]


def test_the_demo_ticks_its_own_clock_at_each_midnight_and_in_the_morning(played):
    """And between the midnights when a ship-by passes (T4; test_demo_issue16 checks the order)."""
    _, history = played
    plan = DemoDay(7, QUICK_ORDERS, DAY)
    morning = START + timedelta(days=DAYS_AGO, hours=9)
    ticks: list[datetime] = []
    asyncio.run(plan.play(lambda title, messages: _ticks(ticks, messages, morning)))
    midnights = [START + timedelta(days=k) for k in range(1, DAYS_AGO)]
    assert ticks == sorted(set(ticks)) and set(midnights) <= set(ticks) and ticks[-1] == morning
    assert history  # the same day, played for real in the fixture


async def _ticks(ticks: list[datetime], messages: list, morning: datetime) -> Applied:
    """A stage that applies nothing: REFLOW_OUT says nothing, so nobody answers; the clock still runs."""
    ticks += [datetime.fromisoformat(m.body["at"]) for m in messages if m.subject == "clock.tick"]
    return Applied(out=[], last_at=morning)


def test_a_report_line_fits_80_columns():
    text = ("L11  link douyin/5598917214131599847/159984702 broken at 00:47 (yiwu-case-01 SKU 4988102 "
            "dropped), mended at 00:47")
    lines = wrap(text).splitlines()
    assert len(lines) == 2 and all(len(x) <= 80 for x in lines) and lines[1].startswith("     ")


def test_the_stories_are_the_same_for_the_same_seed():
    first, again = DemoDay(7, QUICK_ORDERS, DAY), DemoDay(7, QUICK_ORDERS, DAY)
    assert first.capacity == again.capacity
    assert [o.order_id for o in first.flash] == [o.order_id for o in again.flash]
    assert first.bulk.order_id == again.bulk.order_id
