"""The clock's agendas, one per hour and writer (issue 18): routers that apply different lanes of
the inbound stream keep the deadlines they set in their own agendas of an hour, so they never write
the same agenda, and passing time still passes every deadline in due order (T4, RT13 and M2
deadlines all go through engine/clock.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from engine import ids
from engine.clock import DEADLINES, Agenda, Clock, agenda_uuid, hour_of, on_deadline, schedule
from engine.commands import PassTime
from engine.servicelevel import LOCAL

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=LOCAL)


def test_t4_each_writers_deadlines_of_an_hour_have_their_own_agenda_and_pass_in_due_order(memory_app):
    passed: list[tuple[str, datetime]] = []

    @on_deadline("test_shard")
    def record(uow, key, due, now):  # noqa: ANN001, ANN202
        passed.append((key, due))

    try:
        # interleaved due times from three routers' lanes (shards 1-3) and a single writer (0),
        # all in the 10:00 hour
        plan = [(1 + i % 3, T0 + timedelta(minutes=5 * i)) for i in range(9)] + [(0, T0 + timedelta(minutes=7))]
        for n, (shard, due) in enumerate(plan):
            memory_app.run(lambda uow, n=n, due=due: schedule(uow, due, "test_shard", f"k{n}", T0), shard=shard)
        clock = memory_app.load(Clock, ids.clock_id())
        hour = hour_of(T0)
        assert clock.hours == [(hour, 0), (hour, 1), (hour, 2), (hour, 3)]
        for shard in (1, 2, 3):  # each writer's deadlines in its own agenda
            assert len(memory_app.load(Agenda, agenda_uuid((hour, shard))).due) == 3
        assert len(memory_app.load(Agenda, agenda_uuid((hour, 0))).due) == 1
        assert agenda_uuid((hour, 0)) == ids.agenda_id(hour.isoformat())  # a single writer's, as before

        assert memory_app.execute(PassTime(at=T0 + timedelta(minutes=22))) == 6
        assert [due for _, due in passed] == sorted(due for _, due in plan if due <= T0 + timedelta(minutes=22))
        assert memory_app.execute(PassTime(at=T0 + timedelta(hours=2))) == 4
        assert [due for _, due in passed] == sorted(due for _, due in plan)
        assert memory_app.load(Clock, ids.clock_id()).hours == []  # every agenda closed once empty
    finally:
        DEADLINES.pop("test_shard", None)


def test_t4_passing_time_with_a_limit_closes_the_agendas_it_emptied_in_the_same_write(memory_app):
    """A limited pass (serve passes a thousand at a time) that empties an agenda closes it in the
    same write, and marks the agenda itself: a router scheduling into it at that moment then
    conflicts and retries (the Clock alone would not tell), so no deadline is left in a closed one."""
    passed: list[str] = []

    @on_deadline("test_limit")
    def record(uow, key, due, now):  # noqa: ANN001, ANN202
        passed.append(key)

    try:
        memory_app.run(lambda uow: schedule(uow, T0 + timedelta(minutes=1), "test_limit", "k1", T0), shard=2)
        before = memory_app.load(Agenda, agenda_uuid((hour_of(T0), 2))).version
        assert memory_app.execute(PassTime(at=T0 + timedelta(minutes=5), limit=1)) == 1
        assert passed == ["k1"]
        assert memory_app.load(Clock, ids.clock_id()).hours == []
        assert memory_app.load(Agenda, agenda_uuid((hour_of(T0), 2))).version == before + 2  # passed, ended
    finally:
        DEADLINES.pop("test_limit", None)
