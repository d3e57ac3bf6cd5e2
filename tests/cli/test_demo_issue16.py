"""`reflow demo` after the parcel (issue 16), in the event store (the views and the printed report
are checked by ``issue_16``, called from test_demo's end-to-end test):

- the demo's clock follows its timeline: a tick at T goes out only once every message dated at or
  before T is out, the suppliers' answers included, so the overdue reminders (T4) are exactly the
  parcels untracked at their ship-by (before, a midnight tick sent ahead of the day's trackings
  reminded nearly every parcel of the day);
- one supplier never ships one parcel of a product with two sources: it is reminded at its ship-by
  and, `reroute_overdue_hours` later, intercepted and re-routed to the other source (T4);
- one parcel comes back: the merchant sends it back to its supplier, who accepts it, and the
  supplier's next statement credits it (RC6)."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from typing import Any

import pytest

from adapters.demo import DAYS_AGO, QUICK_ORDERS, DemoDay
from adapters.demo.scenario import FORGETFUL, OVERDUE, PRODUCTS, REROUTE_OVERDUE_HOURS, RETURNED
from engine.servicelevel import LOCAL
from tests.cli.test_demo import play_in_process

DAY = date(2026, 5, 1)
START = datetime(DAY.year, DAY.month, DAY.day, tzinfo=LOCAL)
MORNING = START + timedelta(days=DAYS_AGO, hours=9)
TIMES = ("placed_at", "cancelled_at", "changed_at", "opened_at", "closed_at", "uploaded_at", "answered_at",
         "rejected_at", "requested_at", "at")  # the business time a message carries, if any
OTHER_SOURCE = "shenzhen-acc-07"  # the second source of the black case (scenario.PRODUCTS["case15"])
RETURNS_TO = PRODUCTS[RETURNED[2]].skus[0][2][0][0][0]  # the serum's one supplier


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> tuple[DemoDay, Any, dict, Any]:
    """The quick day of seed 7 through serve's apply path, and the statement of the supplier that
    took the parcel back, issued once the day is over (as the demo does)."""
    from projections.statements import issue_statement

    tmp = tmp_path_factory.mktemp("issue16")
    plan, issued = DemoDay(7, QUICK_ORDERS, DAY), []
    driver, history = play_in_process(tmp, plan, 256, MORNING, after=lambda app: issued.append(issue_statement(
        app, tmp / "reflow.duckdb", RETURNS_TO, DAY, DAY + timedelta(days=DAYS_AGO - 1))))
    return plan, driver, history, issued[0]


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text)


def allocations(history: dict) -> dict[str, list[tuple[str, dict]]]:
    """Allocation id -> its events."""
    return {events[0][1]["allocation_id"]: events for events in history.values() if events[0][0] == "Allocated"}


def first(events: list[tuple[str, dict]], *names: str) -> dict | None:
    return next((e for name, e in events if name in names), None)


def test_t4_a_clock_tick_goes_out_only_after_every_message_dated_at_or_before_it(played):
    _, driver, _, _ = played
    ticks: list[datetime] = []
    for subject, _, body in driver.published:
        fields = json.loads(body)
        if subject == "clock.tick":
            ticks.append(parse(fields["at"]))
            continue
        when = next((parse(fields[f]) for f in TIMES if f in fields), None)
        if when is not None and ticks:
            assert when > ticks[-1], (subject, fields)
    midnights = [START + timedelta(days=k) for k in range(1, DAYS_AGO)]
    assert ticks == sorted(set(ticks)) and set(midnights) <= set(ticks)
    assert ticks[-1] >= START + timedelta(days=DAYS_AGO)  # this morning
    # between the midnights: the half hours just after the ship-by of a parcel tracked late or never
    assert all(t.minute in (0, 30) and t.second == 0 for t in ticks[:-1]) and len(ticks) > len(midnights) + 1


def test_t4_reminded_are_exactly_the_parcels_untracked_at_their_ship_by(played):
    """No parcel tracked (or stopped) by its ship-by was reminded; every one still waiting then was."""
    _, _, history, _ = played
    last_tick = START + timedelta(days=DAYS_AGO - 1)
    reminded, waiting, before = set(), set(), 0
    for aid, events in allocations(history).items():
        ship_by = events[0][1]["ship_by"]
        tracked = first(events, "TrackingUploaded") or first(
            [(n, e) for n, e in events if n == "InterceptAnswered" and e["outcome"] == "too_late"], "InterceptAnswered")
        stopped = first(events, "InterceptRequested", "AllocationCancelled", "AllocationRejected")
        if stopped is not None and stopped["reason"].startswith("review"):
            stopped = {"at": START}  # a platform review carries no time (the broker's, this morning): it came that day
        done = min([x["at"] for x in (tracked, stopped) if x is not None], default=None)
        if first(events, "AllocationOverdue") is not None:
            reminded.add(aid)
            assert tracked is None or tracked["at"] > ship_by, aid  # the defect: tracked in time, yet reminded
        if tracked is not None and tracked["at"] <= ship_by:
            before += 1
        if ship_by < last_tick and (done is None or done > ship_by):
            waiting.add(aid)
    assert before > 200 and len(reminded) > 5
    assert reminded == waiting


def test_t4_a_parcel_never_shipped_is_reminded_then_rerouted_to_the_other_source(played):
    plan, _, history, _ = played
    overdue = [(aid, events) for aid, events in allocations(history).items()
               if any(n == "InterceptRequested" and e["reason"] == "overdue" for n, e in events)]
    [(aid, events)] = overdue
    allocated = events[0][1]
    assert (allocated["supplier_id"], allocated["order_id"]) == (FORGETFUL, plan.overdue.order_id)
    assert [(ln.product, ln.k, ln.qty) for ln in plan.overdue.lines] == [(OVERDUE[2], 0, 1)]
    reminder = first(events, "AllocationOverdue")
    assert reminder["at"] == allocated["ship_by"] and reminder["reminded_at"] == START + timedelta(days=1)
    assert first(events, "TrackingUploaded", "LossRiskRecorded") is None
    [(_, answer)] = [(n, e) for n, e in events if n == "InterceptAnswered"]
    assert answer["outcome"] == "stopped"
    [order] = [events for events in history.values() if events[0][0] == "OrderPlaced"
               and events[0][1]["order_id"] == plan.overdue.order_id]
    [routed] = [e for n, e in order if n == "OrderRouted" and e["trigger"] == "overdue"]
    late = routed["at"] - allocated["ship_by"] - timedelta(hours=REROUTE_OVERDUE_HOURS)
    assert timedelta(0) <= late < timedelta(minutes=30)  # intercepted at the deadline, routed at the tick
    [again] = routed["allocations"]
    assert again["supplier_id"] == OTHER_SOURCE
    assert first(allocations(history)[again["allocation_id"]], "TrackingUploaded") is not None  # shipped after all


def test_rc6_a_returned_parcel_is_sent_back_accepted_and_credited_on_the_next_statement(played):
    plan, _, history, statement = played
    returns = [events for events in history.values() if events[0][0] == "ReturnRequested"]
    [events] = returns
    requested = events[0][1]
    assert (requested["order_id"], requested["supplier_id"]) == (plan.returned.order_id, RETURNS_TO)
    [(_, answered)] = [(n, e) for n, e in events if n == "ReturnAnswered"]
    assert answered["outcome"] == "accepted" and answered["at"] > requested["at"]
    tracked = first(allocations(history)[requested["allocation_id"]], "TrackingUploaded")
    opened = [e for events in history.values() for n, e in events if n == "AftersaleOpened"
              and e.get("aftersale_id") == requested["aftersale_id"]]
    assert [e["kind"] for e in opened] == ["return"] and tracked["at"] < opened[0]["at"] < requested["at"]
    assert requested["at"] < START + timedelta(days=DAYS_AGO)  # all of it in the past: the statement credits it
    [credit] = statement.credits
    assert (credit.return_id, credit.qty) == (requested["return_id"], 1) and credit.amount > 0
    assert statement.net_total == statement.total - credit.amount == statement.total - statement.credits_total


def test_the_issue16_stories_are_the_same_for_the_same_seed():
    first_, again = DemoDay(7, QUICK_ORDERS, DAY), DemoDay(7, QUICK_ORDERS, DAY)
    assert (first_.overdue.order_id, first_.returned.order_id) == (again.overdue.order_id, again.returned.order_id)
    assert [o.order_id for o in first_.after_delivery] == [o.order_id for o in again.after_delivery]
    for o in (first_.overdue, first_.returned):
        assert o.role == "plain" and len(o.lines) == 1 and o.lines[0].qty == 1 and o.placed_at.hour < 15


# -- the demo's views and printed report (test_demo's end-to-end test) ---------------------------


def issue_16(q: Any, out: str, printed: dict[str, list[list[str]]]) -> None:
    """T4 and RC6 once each in the DuckDB views, and the report's lines say so; the reminders are
    those of the parcels really untracked at their ship-by (the demo's clock follows its timeline)."""
    said = dict(re.sub(r"\s+", " ", x).split(" ", 1) for x in re.split(
        r"\n(?=\S)", out.split("After the parcel (issue 16)\n")[1].split("\n\n")[0]))
    assert list(said) == ["T4", "RC6"]
    # T4: reminded exactly the parcels untracked at their ship-by: every late one, and one never shipped
    assert q("SELECT count(*) FROM allocations WHERE reminded_at IS NOT NULL AND tracked_at <= ship_by") == [(0,)]
    assert q("SELECT count(*) FROM allocations WHERE late AND reminded_at IS NULL") == [(0,)]
    [(reminded, late)] = q("SELECT count(reminded_at), count(*) FILTER (WHERE late) FROM allocations")
    [(aid, supplier, ship_by, *order)] = q("""SELECT allocation_id, supplier_id, ship_by, platform, shop_id, order_id
                                              FROM overdue_allocations WHERE rerouted""")
    assert reminded == late + 1 and late > 0 and supplier == FORGETFUL
    assert f"overdue reminders (T4, no tracking by ship-by): {reminded}; re-routed: 1" in out
    [(other, rerouted, allocated_at)] = q("""SELECT supplier_id, allocation_id, allocated_at FROM allocations
                                             WHERE platform = ? AND shop_id = ? AND order_id = ? AND routed_by = 'overdue'""",
                                          *order)
    after = allocated_at - ship_by - timedelta(hours=REROUTE_OVERDUE_HOURS)
    assert other != supplier and timedelta(0) <= after < timedelta(minutes=30)
    assert said["T4"].startswith(f"{supplier} had no tracking for {aid} by ")
    assert said["T4"].endswith(f"re-routed to {other} ({rerouted}) {REROUTE_OVERDUE_HOURS} h later")
    # RC6: one return, accepted, credited on the statement the demo issued
    [(rid, platform, order_id, supplier, credit, statement)] = q(
        "SELECT return_id, platform, order_id, supplier_id, credit, credited_on FROM returns")
    title = f"Statement {statement}"
    assert printed[title][0][0] == supplier
    [(credits, net, total)] = q("SELECT credits, net_total, total FROM statements WHERE statement_id = ?", statement)
    assert credits == credit > 0 and net == total - credit
    assert f"credits {credit:.2f} (1 return taken back), net total {net:.2f}" in out
    assert said["RC6"] == (f"return {rid} ({platform} order {order_id}) accepted by {supplier}, "
                           f"credited {credit:.2f} on {statement}")


