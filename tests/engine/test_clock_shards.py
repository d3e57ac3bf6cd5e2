"""The clock's agendas, sharded by shop (issue 18): routers that apply different shops write
different agendas of an hour, and passing time still passes every deadline in due order (T4, RT13
and M2 deadlines all go through engine/clock.py)."""

from __future__ import annotations

from datetime import datetime, timedelta

from engine import ids
from engine.clock import DEADLINES, Agenda, Clock, agenda_uuid, hour_of, on_deadline, schedule, shard_of
from engine.commands import PassTime
from engine.servicelevel import LOCAL

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=LOCAL)
SHOPS = ["douyin/dy-1", "kuaishou/ks-2", "taobao/tb-3"]


def test_t4_each_shops_deadlines_of_an_hour_have_their_own_agenda_and_pass_in_due_order(memory_app):
    passed: list[tuple[str, datetime]] = []

    @on_deadline("test_shard")
    def record(uow, key, due, now):  # noqa: ANN001, ANN202
        passed.append((key, due))

    try:
        assert len({shard_of(s) for s in SHOPS}) == len(SHOPS) and 0 not in {shard_of(s) for s in SHOPS}
        # interleaved due times across three shops, all in the 10:00 hour, plus an unsharded one
        plan = [(SHOPS[i % 3], T0 + timedelta(minutes=5 * i)) for i in range(9)] + [("", T0 + timedelta(minutes=7))]

        def schedule_all(uow):  # noqa: ANN001, ANN202
            for n, (shop, due) in enumerate(plan):
                schedule(uow, due, "test_shard", f"k{n}", T0, shop=shop)

        memory_app.run(schedule_all)
        clock = memory_app.load(Clock, ids.clock_id())
        hour = hour_of(T0)
        assert clock.hours == sorted([(hour, 0)] + [(hour, shard_of(s)) for s in SHOPS])
        for shop in SHOPS:  # each shop's deadlines in its own agenda
            agenda = memory_app.load(Agenda, agenda_uuid((hour, shard_of(shop))))
            assert len(agenda.due) == 3

        assert memory_app.execute(PassTime(at=T0 + timedelta(minutes=22))) == 6
        assert [due for _, due in passed] == sorted(due for _, due in plan if due <= T0 + timedelta(minutes=22))
        assert memory_app.execute(PassTime(at=T0 + timedelta(hours=2))) == 4
        assert [due for _, due in passed] == sorted(due for _, due in plan)
        assert memory_app.load(Clock, ids.clock_id()).hours == []  # every agenda closed once empty
    finally:
        DEADLINES.pop("test_shard", None)
