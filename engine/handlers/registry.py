"""One registry from command type to the function that handles it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from engine.commands import Command
from engine.uow import UnitOfWork

Handler = Callable[[Any, UnitOfWork], Any]
HANDLERS: dict[type[Command], Handler] = {}
H = TypeVar("H", bound=Handler)


def handles(command: type[Command]) -> Callable[[H], H]:
    """Register the decorated function as the handler of `command`."""

    def register(fn: H) -> H:
        if command in HANDLERS:
            raise TypeError(f"{command.__name__} has a handler already: {HANDLERS[command].__name__}")
        HANDLERS[command] = fn
        return fn

    return register
