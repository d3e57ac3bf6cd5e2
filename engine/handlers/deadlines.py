"""Time passing (engine/clock.py): the deadlines due by then pass, each setting off what it should
(RT13 a new day for capacity, M2 and L11 an offer's expiry, T4 an allocation's ship-by time)."""

from __future__ import annotations

from engine import overdue, stocksync  # noqa: F401  (their deadlines register)
from engine.clock import pass_time
from engine.commands import PassTime
from engine.handlers.registry import handles
from engine.uow import UnitOfWork


@handles(PassTime)
def pass_time_to(c: PassTime, uow: UnitOfWork) -> int:
    """How many deadlines passed."""
    return pass_time(uow, c.at)
