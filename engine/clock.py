"""Time passing without a message: deadlines kept in order, and passed as events (RT13, L11, T4).

reflow's clock moves only with `PassTime` commands: serve runs one every few seconds, with the
broker time of the last message it applied while it catches up on a backlog, and with its own
clock once it has caught up (`reflow.in.clock.tick` does the same from a producer, and the demo
ticks its own timeline). Passing time to `at` passes, in due order, every deadline due at or before
`at`, each as of its own due time, and stores what that sets off as events like any other. So a
replay of the log gives the same history, and a router that was down catches up when it starts.

Deadlines are kept per China-time hour of their due time (`Agenda`), sorted, and the clock keeps
the hours that still hold some (`Clock.hours`), so passing time reads only the agendas that have
deadlines due: nothing scans all allocations or offers, and an idle clock costs one read.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable
from datetime import datetime, time, timedelta

from engine import ids
from engine.base import Aggregate, Event
from engine.servicelevel import LOCAL, china_day
from engine.uow import UnitOfWork

Deadline = tuple[datetime, str, str]
"""(due, kind, key): what falls due when, and for what (a supplier, an offer, an allocation)."""

DEADLINES: dict[str, Callable[[UnitOfWork, str, datetime, datetime], None]] = {}
"""What passing each kind of deadline sets off: `fn(uow, key, due, now)`, `now` the time the clock
reached when it passed (at or after `due`)."""


def on_deadline(kind: str) -> Callable:
    def register(fn: Callable[[UnitOfWork, str, datetime, datetime], None]) -> Callable:
        DEADLINES[kind] = fn
        return fn

    return register


def next_day_start(at: datetime) -> datetime:
    """The start of the next China-time day (RT13)."""
    return datetime.combine(china_day(at) + timedelta(days=1), time(0, 0), LOCAL)


Entry = tuple[datetime, int]
"""(hour, shard): one agenda. The shard is the writer's (`UnitOfWork.shard`): routers that scale
out each apply their own lanes of the inbound stream (issue 18) and keep the deadlines they set in
their own agendas of the hour, so no two routers' batches write the same one (only passing time,
one router's work, writes them all). With one agenda per hour, every batch of every router wrote
it, and they could only take turns. A single writer uses shard 0 (one agenda per hour, as before).
A shard opened for an hour while that hour is being passed waits for the next tick."""


def agenda_uuid(entry: Entry):  # noqa: ANN201
    hour, shard = entry
    return ids.agenda_id(hour.isoformat() if not shard else f"{hour.isoformat()}#{shard}")


class Clock(Aggregate):
    """The one clock: the agendas (hour in China time by the due time, and shard) that hold
    deadlines not passed yet, in order. Written only when an agenda gets its first deadline or
    loses its last."""

    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.hours: list[Entry] = []

    def open(self, entry: Entry, at: datetime) -> None:
        if entry not in self.hours:
            if entry[1]:
                self.trigger(AgendaShardOpened, at, hour=entry[0], shard=entry[1])
            else:
                self.trigger(AgendaOpened, at, hour=entry[0])

    def close(self, entry: Entry, at: datetime) -> None:
        if entry in self.hours:
            if entry[1]:
                self.trigger(AgendaShardClosed, at, hour=entry[0], shard=entry[1])
            else:
                self.trigger(AgendaClosed, at, hour=entry[0])


class AgendaOpened(Event, frozen=True):
    hour: datetime

    def apply(self, c: Clock) -> None:
        bisect.insort(c.hours, (self.hour, 0))


class AgendaClosed(Event, frozen=True):
    hour: datetime

    def apply(self, c: Clock) -> None:
        c.hours.remove((self.hour, 0))


class AgendaShardOpened(Event, frozen=True):
    hour: datetime
    shard: int

    def apply(self, c: Clock) -> None:
        bisect.insort(c.hours, (self.hour, self.shard))


class AgendaShardClosed(Event, frozen=True):
    hour: datetime
    shard: int

    def apply(self, c: Clock) -> None:
        c.hours.remove((self.hour, self.shard))


class Agenda(Aggregate):
    """The deadlines due in one hour (China time), in due order."""

    def __init__(self, id):  # noqa: A002
        super().__init__(id)
        self.due: list[Deadline] = []
        """A heap (`heapq`): `due[0]` is the first due. An hour's agenda can hold every allocation
        made before the day's cut-off (their ship-by is 23:59:59), so no O(n) insert or removal."""
        self.waiting: set[Deadline] = set()

    def schedule(self, deadline: Deadline, at: datetime) -> None:
        if deadline not in self.waiting:
            self.trigger(DeadlineSet, at, due=deadline[0], kind=deadline[1], key=deadline[2])

    def next_by(self, at: datetime) -> Deadline | None:
        """The first deadline due at or before `at`, if any."""
        return self.due[0] if self.due and self.due[0][0] <= at else None

    def pass_(self, deadline: Deadline) -> None:
        self.trigger(DeadlinePassed, deadline[0], due=deadline[0], kind=deadline[1], key=deadline[2])

    def end(self, at: datetime) -> None:
        """The clock closes this agenda (it is empty): written to the agenda too, so a router
        scheduling into it at the same moment conflicts, retries, and opens it again."""
        self.trigger(AgendaEnded, at)


class AgendaEnded(Event, frozen=True):
    def apply(self, a: Agenda) -> None:
        pass


class DeadlineSet(Event, frozen=True):
    due: datetime
    kind: str
    key: str

    def apply(self, a: Agenda) -> None:
        deadline = (self.due, self.kind, self.key)
        heapq.heappush(a.due, deadline)
        a.waiting.add(deadline)


class DeadlinePassed(Event, frozen=True):
    due: datetime
    kind: str
    key: str

    def apply(self, a: Agenda) -> None:
        deadline = (self.due, self.kind, self.key)
        if a.due and a.due[0] == deadline:
            heapq.heappop(a.due)  # the first, in practice
        elif deadline in a.waiting:
            a.due.remove(deadline)
            heapq.heapify(a.due)
        a.waiting.discard(deadline)


def hour_of(at: datetime) -> datetime:
    """The China-time hour a moment falls in: the key of its agenda."""
    return at.astimezone(LOCAL).replace(minute=0, second=0, microsecond=0)


def schedule(uow: UnitOfWork, due: datetime, kind: str, key: str, at: datetime) -> None:
    """Keep a deadline (one already due passes at the next tick), in the writer's agenda of its
    hour. Every handler of a deadline is idempotent (it checks the state it acts on), so a deadline
    set again after it passed is harmless."""
    entry = (hour_of(due), uow.shard)
    uow.get_or_new(Clock, ids.clock_id()).open(entry, at)
    uow.get_or_new(Agenda, agenda_uuid(entry)).schedule((due, kind, key), at)


def pass_time(uow: UnitOfWork, at: datetime, limit: int | None = None) -> int:
    """Pass every deadline due at or before `at` (at most `limit`, the earliest), in due order, each
    as of its due time; how many."""
    clock = uow.get(Clock, ids.clock_id())
    n = 0
    while clock is not None and clock.hours and clock.hours[0][0] <= at:
        hour = clock.hours[0][0]
        agendas = {e: uow.get(Agenda, agenda_uuid(e)) for e in clock.hours if e[0] == hour}
        while True:  # the hour's shards merged: the first due of all of them, each time
            due = [(d, e) for e, a in agendas.items() if a is not None and (d := a.next_by(at)) is not None]
            if not due or (limit is not None and n >= limit):
                break
            deadline, entry = min(due)
            agendas[entry].pass_(deadline)
            DEADLINES[deadline[1]](uow, deadline[2], deadline[0], at)
            n += 1
        later = False
        for entry, agenda in agendas.items():
            if agenda is not None and agenda.due:
                later = True  # the rest of this shard is due after `at` (or beyond the limit)
            else:
                if agenda is not None:
                    agenda.end(at)
                clock.close(entry, at)
        if later:
            break
    return n
