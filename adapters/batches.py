"""One batch of inbound messages: decoded, turned into engine commands, run in one unit of work
and stored by one atomic write with the stream position (applied once); a refused message becomes
a dead letter on its own (CONTRACT sections 1 and 3)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from adapters.inbound import ALREADY_APPLIED, APPLIED, Outcome, command, new_order_ids, refusal
from adapters.messages import BadMessage, decode, one_line
from adapters.store import stored_ids
from engine.app import Reflow
from engine.commands import Command
from engine.errors import DomainError

IN_STREAM = "REFLOW_IN"
log = logging.getLogger("reflow.serve")



Item = tuple  # (subject, data, received_at[, stream sequence])
DeadLetters = Callable[[list[tuple[int, Outcome]]], None]


def apply_batch(app: Reflow, items: list[Item], dead_letters: DeadLetters | None = None,
                source: str = IN_STREAM) -> tuple[list[Outcome], BaseException | None]:
    """Apply a batch of messages in order, all stored by one atomic write.

    A refused message is taken back on its own and becomes a dead letter; the rest are stored
    together, with the stream sequence of the batch's last message (``Reflow.position``). A
    message at or below the stored sequence was applied before (its acknowledgement was lost, or
    serve died before sending it): it is acknowledged, not applied again. ``dead_letters`` gets
    the batch's dead letters (index, outcome) before anything is written, so a dead letter is
    never lost to a crash between the write and its publication. If the batch cannot be stored
    as a whole (the store is down, or a message hits an unexpected error), nothing of it is
    stored and it is applied again one message at a time, which stops at the first failure that
    is not the message's fault."""
    try:
        done = app.position(source) if _sequenced(items) else 0
        fresh = [i for i, item in enumerate(items) if not _sequenced(items) or item[3] > done]
        outcomes = [ALREADY_APPLIED] * len(items)
        if fresh:
            results = _run(app, [items[i] for i in fresh], fresh, dead_letters, source)
            for i, outcome in zip(fresh, results):
                outcomes[i] = outcome
    except Exception as exc:  # noqa: BLE001 - retried one by one below, which reports it
        log.warning("batch of %d not applied as one (%s: %s); applying one by one",
                    len(items), type(exc).__name__, one_line(str(exc)))
        return apply_each(app, items, dead_letters, source)
    return outcomes, None


def apply_each(app: Reflow, items: list[Item], dead_letters: DeadLetters | None = None,
               source: str = IN_STREAM) -> tuple[list[Outcome], BaseException | None]:
    """Apply messages in order, each its own write; stop at the first failure that is not the
    message's fault."""
    outcomes: list[Outcome] = []
    for i, item in enumerate(items):
        try:
            if _sequenced(items) and item[3] <= app.position(source):
                outcomes.append(ALREADY_APPLIED)
                continue
            outcomes.extend(_run(app, [item], [i], dead_letters, source))
        except Exception as exc:  # noqa: BLE001 - reported by the caller, message handed back
            return outcomes, exc
    return outcomes, None


def _sequenced(items: list[Item]) -> bool:
    return bool(items) and len(items[0]) > 3


def _run(app: Reflow, items: list[Item], indexes: list[int], dead_letters: DeadLetters | None,
         source: str) -> list[Outcome]:
    """Decode the items, run their commands as one batch, dead-letter what was refused."""
    commands: list[Command | Callable[[], Outcome]] = []
    decoded: list[tuple[str, object] | None] = []
    for subject, data, at, *_ in items:
        try:
            message = decode(subject, data)
        except BadMessage as bad:
            commands.append(partial(Outcome, bad.reason))
            decoded.append(None)
            continue
        decoded.append((subject, message))
        commands.append(command(message, at))
    candidates = new_order_ids([d[1] for d in decoded if d is not None])
    absent = candidates - stored_ids(app, candidates)
    position = (source, max(item[3] for item in items)) if _sequenced(items) else None

    def outcomes(results: list[Any]) -> list[Outcome]:
        return [result if isinstance(result, Outcome) else
                refusal(*d, result) if isinstance(result, DomainError) and d is not None else APPLIED
                for d, result in zip(decoded, results)]

    def before_store(results: list[Any]) -> None:
        dead = [(i, o) for i, o in zip(indexes, outcomes(results)) if o.dead]
        if dead and dead_letters is not None:
            dead_letters(dead)

    return outcomes(app.run_batch(commands, absent=absent, position=position, before_store=before_store))
