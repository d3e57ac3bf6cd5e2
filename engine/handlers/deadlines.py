"""Time passing (engine/clock.py): the deadlines due by then pass, each setting off what it should
(RT13 a new day for capacity, M2 and L11 an offer's expiry, T4 an allocation's ship-by time)."""

from __future__ import annotations

from datetime import timedelta

from engine import overdue, stocksync  # noqa: F401  (their deadlines register)
from engine.clock import pass_time
from engine.commands import PassTime
from engine.errors import InvalidCommand
from engine.handlers.registry import handles
from engine.uow import UnitOfWork

TICK_SKEW = timedelta(minutes=5)


@handles(PassTime)
def pass_time_to(c: PassTime, uow: UnitOfWork) -> int:
    """How many deadlines passed. A producer's tick may not run ahead of the broker's clock: one
    mistyped year would pass every deadline at once (and, with T4 re-routes, undo every order)."""
    if c.received_at is not None and c.at > c.received_at + TICK_SKEW:
        raise InvalidCommand(f"at: {c.at.isoformat()} is ahead of the broker's time {c.received_at.isoformat()}; "
                             "a clock tick may pass only what is due by now", "T4")
    return pass_time(uow, c.at, c.limit)
