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
from adapters.partitions import NotThisShop, check_shop, plain_subject
from adapters.store import stored_ids
from engine.app import Reflow
from engine.commands import Command
from engine.errors import Conflict, DomainError

IN_STREAM = "REFLOW_IN"
log = logging.getLogger("reflow.serve")



Item = tuple  # (subject, data, received_at[, stream sequence])
DeadLetters = Callable[[list[tuple[int, Outcome]]], None]

EPOCH_SHIFT = 40
SEQ_MASK = (1 << EPOCH_SHIFT) - 1
"""A stored position is ``epoch << 40 | stream sequence``. A serve of one stream writes epoch 0 (the
plain sequence); a router that takes a lane (adapters/routers.py) first stores the next epoch, so
a router that lost the lane and still writes is refused by the store's own check (a position is
stored only if it is greater than the last): the epoch is the lane's fencing token."""


class Fenced(Exception):
    """Another router took this lane: its position was stored with a later epoch."""


def applied_through(app: Reflow, source: str, epoch: int | None = None) -> int:
    """The last stream sequence of ``source`` whose effect is stored; with ``epoch``, Fenced if a
    later epoch holds the source."""
    stored = app.position(source)
    if epoch is not None and stored >> EPOCH_SHIFT > epoch:
        raise Fenced(f"{source}: taken by another router (epoch {stored >> EPOCH_SHIFT}, ours {epoch})")
    return stored & SEQ_MASK


def take_lane(app: Reflow, source: str, inherit: str | None = None) -> int:
    """Store the next epoch of ``source`` (nothing else) and return it: from now on the previous
    holder's writes to it are refused. Read and written holding the store's lock alone, so a write
    of the previous holder already under way is seen, never overwritten with an older sequence.
    ``inherit``: a source whose position a new ``source`` starts from (the whole stream's, when an
    unpartitioned serve's stream is partitioned: its messages are the general lane's)."""
    with app.exclusive():
        stored = app.position(source)
        if not stored and inherit:
            stored = app.position(inherit) & SEQ_MASK
        epoch = (stored >> EPOCH_SHIFT) + 1
        try:
            app.run_batch([], position=(source, epoch << EPOCH_SHIFT | stored & SEQ_MASK))
        except Conflict as exc:
            raise Fenced(f"{source}: taken by another router at the same time") from exc
    return epoch


def apply_batch(app: Reflow, items: list[Item], dead_letters: DeadLetters | None = None,
                source: str = IN_STREAM, epoch: int = 0, shard: int = 0) -> tuple[list[Outcome], BaseException | None]:
    """Apply a batch of messages in order, all stored by one atomic write.

    A refused message is taken back on its own and becomes a dead letter; the rest are stored
    together, with the stream sequence of the batch's last message (``Reflow.position``). A
    message at or below the stored sequence was applied before (its acknowledgement was lost, or
    serve died before sending it): it is acknowledged, not applied again. ``dead_letters`` gets
    the batch's dead letters (index, outcome) before anything is written, so a dead letter is
    never lost to a crash between the write and its publication. If the batch cannot be stored
    as a whole (the store is down, or a message hits an unexpected error), nothing of it is
    stored and it is applied again one message at a time, which stops at the first failure that
    is not the message's fault. ``epoch``: the lane's fencing token (``take_lane``); ``shard``: the
    lane's own agendas for the deadlines it sets (``UnitOfWork.shard``)."""
    try:
        done = applied_through(app, source, epoch) if _sequenced(items) else 0
        fresh = [i for i, item in enumerate(items) if not _sequenced(items) or item[3] > done]
        outcomes = [ALREADY_APPLIED] * len(items)
        if fresh:
            results = _run(app, [items[i] for i in fresh], fresh, dead_letters, source, epoch, shard)
            for i, outcome in zip(fresh, results):
                outcomes[i] = outcome
    except Exception as exc:  # noqa: BLE001 - retried one by one below, which reports it
        log.warning("batch of %d not applied as one (%s: %s); applying one by one",
                    len(items), type(exc).__name__, one_line(str(exc)))
        return apply_each(app, items, dead_letters, source, epoch, shard)
    return outcomes, None


def apply_each(app: Reflow, items: list[Item], dead_letters: DeadLetters | None = None,
               source: str = IN_STREAM, epoch: int = 0, shard: int = 0) -> tuple[list[Outcome], BaseException | None]:
    """Apply messages in order, each its own write; stop at the first failure that is not the
    message's fault."""
    outcomes: list[Outcome] = []
    for i, item in enumerate(items):
        try:
            if _sequenced(items) and item[3] <= applied_through(app, source, epoch):
                outcomes.append(ALREADY_APPLIED)
                continue
            outcomes.extend(_run(app, [item], [i], dead_letters, source, epoch, shard))
        except Exception as exc:  # noqa: BLE001 - reported by the caller, message handed back
            return outcomes, exc
    return outcomes, None


def _sequenced(items: list[Item]) -> bool:
    return bool(items) and len(items[0]) > 3


def _run(app: Reflow, items: list[Item], indexes: list[int], dead_letters: DeadLetters | None,
         source: str, epoch: int = 0, shard: int = 0) -> list[Outcome]:
    """Decode the items, run their commands as one batch, dead-letter what was refused."""
    commands: list[Command | Callable[[], Outcome]] = []
    decoded: list[tuple[str, object] | None] = []
    for stored_subject, data, at, *_ in items:
        subject, shop = plain_subject(stored_subject)  # the shop form (adapters/partitions.py)
        try:
            message = decode(subject, data)
            check_shop(subject, shop, message)
        except BadMessage as bad:
            commands.append(partial(Outcome, bad.reason))
            decoded.append(None)
            continue
        except NotThisShop as bad:
            commands.append(partial(Outcome, str(bad)))
            decoded.append(None)
            continue
        decoded.append((subject, message))
        commands.append(command(message, at))
    candidates = new_order_ids([d[1] for d in decoded if d is not None])
    absent = candidates - stored_ids(app, candidates)
    position = (source, epoch << EPOCH_SHIFT | max(item[3] for item in items)) if _sequenced(items) else None

    def outcomes(results: list[Any]) -> list[Outcome]:
        return [result if isinstance(result, Outcome) else
                refusal(*d, result) if isinstance(result, DomainError) and d is not None else APPLIED
                for d, result in zip(decoded, results)]

    def before_store(results: list[Any]) -> None:
        dead = [(i, o) for i, o in zip(indexes, outcomes(results)) if o.dead]
        if dead and dead_letters is not None:
            dead_letters(dead)

    return outcomes(app.run_batch(commands, absent=absent, position=position, before_store=before_store,
                                  shard=shard))
