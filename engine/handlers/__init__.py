"""Command handlers by business area: `handle(command, uow)` functions, one per command.

- supply: suppliers, offers and stock, prices, merchants, shops, merchant codes
- linking: links and stock rules (L1-L8, S2), and pull pre-link orders (L10)
- orders: an order's life before the parcel (RT4, I1-I6)
- fulfilment: allocations answered, rejected, cancelled, tracked and shipped (RT11, I5, I7, I8, T1, T2)
- deadlines: time passing (RT13, L11 and M2, T4)
- returns: returns to the supplier (RC6)
"""

from __future__ import annotations

from typing import Any

from engine.commands import Command
from engine.handlers import deadlines, fulfilment, linking, orders, returns, statements, supply  # noqa: F401
from engine.handlers.registry import HANDLERS
from engine.uow import UnitOfWork


def handle(command: Command, uow: UnitOfWork) -> Any:
    """Run one command in the unit of work; what it returns is the command's result."""
    return HANDLERS[type(command)](command, uow)
