"""The log anchor (rule A2): the rolling hash of the whole log as a clean `reflow verify` saw it,
kept in the store so a later verify notices a history rewritten below it."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID, uuid5

from engine.base import Aggregate, Event
from engine.ids import NS

ANCHOR_ID = uuid5(NS, "reflow-log-anchor")
GENESIS = bytes(32)


class LogAnchored(Event, frozen=True):
    """A clean `reflow verify` saw `events` notifications up to `up_to`, rolling hash `head`."""

    up_to: int
    events: int
    head: str

    def apply(self, a: LogAnchor) -> None:
        a.up_to, a.events, a.head = self.up_to, self.events, self.head


class LogAnchor(Aggregate):
    def __init__(self, id: UUID) -> None:  # noqa: A002
        super().__init__(id)
        self.up_to = 0
        self.events = 0
        self.head = GENESIS.hex()

    def anchor(self, up_to: int, events: int, head: str, at: datetime) -> None:
        """Rule A2: a clean verify's head, kept in the store so a later verify can compare."""
        self.trigger(LogAnchored, at, up_to=up_to, events=events, head=head)
