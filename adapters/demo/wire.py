"""The demo's messages as they go to NATS (JSON bodies on ``reflow.in.*``, each with its own
``Nats-Msg-Id``), the times written on them, and what a stage gives back once serve applied it."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.servicelevel import LOCAL


@dataclass(frozen=True)
class Message:
    subject: str  # without the `reflow.in.` prefix
    body: dict[str, Any]
    msg_id: str


@dataclass(frozen=True)
class Timed:
    """A message of the timeline before it is sent: its business time, who sends it (``shop``: the
    shops and the merchant; ``supplier``), and a key ordering the messages of one time. It becomes
    a ``Message`` (its ``Nats-Msg-Id`` numbered in sending order) when it is sent."""

    at: datetime
    side: str
    key: tuple
    subject: str
    body: dict[str, Any]

    def order(self) -> tuple:
        return (self.at, self.key)


def iso(dt: datetime) -> str:
    """RFC 3339 in China time, as Chinese platforms send it."""
    return dt.astimezone(LOCAL).isoformat(timespec="seconds")


def iso_exact(dt: datetime) -> str:
    """RFC 3339 in China time, to the microsecond: for a time taken from the broker, which the
    engine compares with other broker times (cut to the second it could fall before them)."""
    return dt.astimezone(LOCAL).isoformat(timespec="microseconds")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Applied:
    """What one stage left once serve applied it: the ``REFLOW_OUT`` messages it caused (subject,
    body), in stream order, and the time the broker stored its last message."""

    out: list[tuple[str, dict[str, Any]]]
    last_at: datetime


Stage = Callable[[str, list[Message]], Awaitable[Applied]]
"""Publishes one stage's messages in order, waits until serve applied them and published what
they caused, and says so (``_Producer.stage``; the tests' in-process driver)."""

