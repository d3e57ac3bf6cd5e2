"""Time passing without a message: deadlines kept in order, and passed as events (RT13, L11, T4).

reflow's clock moves only with `PassTime` commands: serve runs one every few seconds, with the
broker time of the last message it applied while it catches up on a backlog, and with its own
clock once it has caught up (`reflow.in.clock.tick` does the same from a producer, and the demo
ticks its own timeline). Passing time to `at` passes, in due order, every deadline due at or before
`at`, each as of its own due time, and stores what that sets off as events like any other. So a
replay of the log gives the same history, and a router that was down catches up when it starts.

Deadlines are kept per China-time day of their due time (`Agenda`), sorted, and the clock knows the
first day that may still hold some (`Clock.day`), so passing time reads only the agendas of the
days from that day to `at`: nothing scans all allocations or offers.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from datetime import date, datetime, time, timedelta

from engine import ids
from engine.base import Aggregate, Event
from engine.servicelevel import LOCAL, china_day
from engine.uow import UnitOfWork

Deadline = tuple[datetime, str, str]
"""(due, kind, key): what falls due when, and for what (a supplier, an offer, an allocation)."""

DEADLINES: dict[str, Callable[[UnitOfWork, str, datetime, datetime], None]] = {}
"""What passing each kind of deadline sets off: `fn(uow, key, due, now)`, `now` the time the clock
reached when it passed (`due` when it passes at once on being set)."""


def on_deadline(kind: str) -> Callable:
    def register(fn: Callable[[UnitOfWork, str, datetime, datetime], None]) -> Callable:
        DEADLINES[kind] = fn
        return fn

    return register


def next_day_start(at: datetime) -> datetime:
    """The start of the next China-time day (RT13)."""
    return datetime.combine(china_day(at) + timedelta(days=1), time(0, 0), LOCAL)


class Clock(Aggregate):
    """The one clock: the first China-time day whose agenda may hold deadlines not passed yet."""

    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.day: date | None = None

    def reach(self, day: date, at: datetime) -> None:
        self.trigger(ClockReached, at, day=day)


class ClockReached(Event, frozen=True):
    """Every deadline due before this China-time day has passed."""

    day: date

    def apply(self, c: Clock) -> None:
        c.day = self.day


class Agenda(Aggregate):
    """The deadlines due on one China-time day, in due order."""

    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.due: list[Deadline] = []
        self.passed: set[Deadline] = set()

    def schedule(self, deadline: Deadline, at: datetime) -> None:
        if deadline not in self.passed and deadline not in self.due:
            self.trigger(DeadlineSet, at, due=deadline[0], kind=deadline[1], key=deadline[2])

    def due_by(self, at: datetime) -> list[Deadline]:
        return [d for d in self.due if d[0] <= at]

    def pass_(self, deadline: Deadline) -> None:
        self.trigger(DeadlinePassed, deadline[0], due=deadline[0], kind=deadline[1], key=deadline[2])


class DeadlineSet(Event, frozen=True):
    due: datetime
    kind: str
    key: str

    def apply(self, a: Agenda) -> None:
        bisect.insort(a.due, (self.due, self.kind, self.key))


class DeadlinePassed(Event, frozen=True):
    due: datetime
    kind: str
    key: str

    def apply(self, a: Agenda) -> None:
        deadline = (self.due, self.kind, self.key)
        if deadline in a.due:
            a.due.remove(deadline)
        a.passed.add(deadline)


def schedule(uow: UnitOfWork, due: datetime, kind: str, key: str, at: datetime) -> None:
    """Keep a deadline; one due on a day the clock has passed already is passed at once."""
    clock = uow.get_or_new(Clock, ids.clock_id())
    day = china_day(due)
    if clock.day is None:
        clock.reach(min(day, china_day(at)), at)
    if day < clock.day:  # type: ignore[operator]
        DEADLINES[kind](uow, key, due, max(due, at))
        return
    uow.get_or_new(Agenda, ids.agenda_id(day.isoformat())).schedule((due, kind, key), at)


def pass_time(uow: UnitOfWork, at: datetime) -> int:
    """Pass every deadline due at or before `at`, in due order; how many passed."""
    clock = uow.get(Clock, ids.clock_id())
    if clock is None or clock.day is None:
        return 0
    last, day, n = china_day(at), clock.day, 0
    while day <= last:
        agenda = uow.get(Agenda, ids.agenda_id(day.isoformat()))
        while agenda is not None and agenda.due_by(at):
            deadline = agenda.due_by(at)[0]
            agenda.pass_(deadline)
            DEADLINES[deadline[1]](uow, deadline[2], deadline[0], at)
            n += 1
        day += timedelta(days=1)
    if last > clock.day:
        clock.reach(last, at)
    return n
