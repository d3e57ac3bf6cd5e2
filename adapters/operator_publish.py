"""The operator commands' broker side (CONTRACT section 6): publish inbound messages with fresh
``Nats-Msg-Id`` headers, wait until ``reflow serve`` applied them, and find the dead letter of any
it refused.

The write commands (``release``, ``cancel``, ``link set``) never write the event store: they
publish the inbound message, so serve, the one writer, applies it in stream order with everything
else. "Applied" is read from the store (serve stores ``REFLOW_IN``'s sequence with every batch, in
the same transaction as its events: ``Reflow.position``) or, for ``reflow publish``, which needs
no store, from the consumer's acknowledged floor (serve acknowledges only what it stored). A
refused message has its dead letter on ``REFLOW_DLQ`` before its batch is stored, with
``Nats-Msg-Id: dlq-<the id we published>``, so once applied it is there or nowhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from adapters.batches import IN_STREAM
from adapters.partitions import (
    GENERAL,
    SHOP_SCOPED,
    consumer_name,
    lane_source,
    partitions_of,
    plain_subject,
    shop_subject,
)

DLQ_STREAM = "REFLOW_DLQ"
CONSUMER = "reflow"
Applied = Callable[[str, int], bool]
"""(position source, REFLOW_IN sequence) -> stored by serve yet? Runs in a worker thread."""


@dataclass
class Sent:
    """One published message and what became of it."""

    subject: str
    msg_id: str
    seq: int
    applied: bool = False
    error: str | None = None
    """``Reflow-Error`` of its dead letter: serve refused it."""
    stored: str = ""
    """The subject REFLOW_IN stored it under (a partitioned stream appends the shop's partition)."""
    lane: str = ""
    """The lane of a partitioned REFLOW_IN that applies it ("" when the stream is not partitioned)."""

    def line(self) -> str:
        return f"{self.subject} (REFLOW_IN seq {self.seq}, Nats-Msg-Id {self.msg_id})"


class NotApplied(Exception):
    """Published, but serve did not apply it in time (not running, or far behind): it stays queued."""

    def __init__(self, sent: list[Sent], waited: float) -> None:
        self.sent = sent
        first = sent[0].line() + (f" and {len(sent) - 1} more" if len(sent) > 1 else "")
        super().__init__(f"published {first}, but reflow serve has not applied it within {waited:g} s "
                         "(is it running?); it stays queued in REFLOW_IN and is applied when serve runs")


def new_msg_id() -> str:
    return f"reflow-cli-{uuid.uuid4().hex}"


def body(fields: dict[str, Any]) -> bytes:
    """A message body as producers write it: JSON, UTF-8, optional fields left out."""
    return json.dumps({k: v for k, v in fields.items() if v is not None}, ensure_ascii=False).encode()


def send(nats_url: str, messages: list[tuple[str, bytes]], *, wait: float, applied: Applied | None = None) -> list[Sent]:
    """Publish ``messages`` (subject, body) in order; unless ``wait`` is 0, wait up to ``wait``
    seconds until serve applied them and mark the ones it dead-lettered. Raises ``NotApplied``
    on timeout, ``ConnectionError`` when the broker or ``REFLOW_IN`` is not there."""
    return asyncio.run(_send(nats_url, messages, wait, applied))


async def _send(url: str, messages: list[tuple[str, bytes]], wait: float, applied: Applied | None) -> list[Sent]:
    import nats
    from nats.errors import Error as NatsError
    from nats.js.errors import NoStreamResponseError, NotFoundError

    from adapters.bootstrap import nats_label, nats_refusal
    from adapters.broker import servers
    from adapters.serve import source_name

    async def quiet(exc: Exception) -> None:  # nats-py would print a traceback per retry
        pass

    try:
        nc = await nats.connect(servers(url), connect_timeout=2, max_reconnect_attempts=2, reconnect_time_wait=0.5,
                                error_cb=quiet)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is one line
        raise ConnectionError(nats_refusal(url, exc)) from None
    try:
        js = nc.jetstream(timeout=5)
        try:
            await js.stream_info(IN_STREAM)
        except NotFoundError:
            raise ConnectionError(f"{nats_label(url)}: no stream {IN_STREAM} there: reflow serve creates it when "
                                  "it first starts; nothing published") from None
        partitioned = partitions_of((await js.stream_info(IN_STREAM)).config)
        source = await source_name(js)
        dlq_from = await _last_seq(js, DLQ_STREAM)
        sent = []
        for subject, data in messages:
            if partitioned:  # a shop's message in the shop form: applied in order with the shop's others
                subject = _shop_form(subject, data)
            msg_id = new_msg_id()
            try:
                ack = await js.publish(subject, data, headers={"Nats-Msg-Id": msg_id}, timeout=5)
            except NoStreamResponseError:
                raise ConnectionError(f"{nats_label(url)}: no stream took {subject}") from None
            one = Sent(subject, msg_id, ack.seq, stored=subject)
            if partitioned:
                one.stored = (await js.get_msg(IN_STREAM, seq=ack.seq)).subject or subject
                one.lane = f"p{one.stored.rsplit('.', 1)[1]}" if plain_subject(one.stored)[1] else GENERAL
            sent.append(one)
        if wait <= 0 or not sent:
            return sent
        started = time.monotonic()
        last: dict[str, int] = {}
        for one in sent:
            last[one.lane] = max(last.get(one.lane, 0), one.seq)
        for lane, seq in last.items():
            while not await _applied(js, lane_source(source, lane) if lane else source, seq, applied,
                                     consumer_name(lane) if lane else CONSUMER):
                if time.monotonic() - started > wait:
                    raise NotApplied(sent, wait)
                await asyncio.sleep(0.1)
        errors = await _dead_letters(js, dlq_from, {s.subject for s in sent}, {f"dlq-{s.msg_id}" for s in sent})
        for s in sent:
            s.applied = True
            s.error = errors.get(f"dlq-{s.msg_id}")
        return sent
    except NatsError as exc:  # a timeout, the server gone: one line naming the option
        raise ConnectionError(nats_refusal(url, exc, "NATS failed")) from None
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def _shop_form(subject: str, data: bytes) -> str:
    """``subject`` with the message's platform and shop, if it is a shop's message that names them."""
    if subject not in SHOP_SCOPED:
        return subject
    try:
        fields = json.loads(data)
    except ValueError:
        return subject  # serve dead-letters it, naming what is wrong
    platform, shop = (fields.get("platform"), fields.get("shop_id")) if isinstance(fields, dict) else (None, None)
    if isinstance(platform, str) and isinstance(shop, str) and platform and shop and \
            not set(platform + shop) & set(".*> \t\r\n"):
        return shop_subject(subject, platform, shop)
    return subject


async def _applied(js: Any, source: str, seq: int, applied: Applied | None, consumer: str = CONSUMER) -> bool:
    if applied is not None:
        return await asyncio.to_thread(applied, source, seq)
    from nats.js.errors import NotFoundError

    try:
        info = await js.consumer_info(IN_STREAM, consumer)
    except NotFoundError:
        return False
    return info.ack_floor.stream_seq >= seq


async def _last_seq(js: Any, stream: str) -> int:
    from nats.js.errors import NotFoundError

    try:
        return (await js.stream_info(stream)).state.last_seq
    except NotFoundError:
        return 0


async def _dead_letters(js: Any, after: int, subjects: set[str], ids: set[str]) -> dict[str, str]:
    """``Nats-Msg-Id`` -> ``Reflow-Error`` of the dead letters among ``ids`` stored after ``after``."""
    from nats.js.errors import NotFoundError

    from adapters.serve import dead_letter_subject

    found: dict[str, str] = {}
    for subject in sorted(subjects):
        seq = after + 1
        while len(found) < len(ids):
            try:
                msg = await js.get_msg(DLQ_STREAM, seq=seq, subject=dead_letter_subject(subject), next=True)
            except NotFoundError:
                break
            headers = msg.headers or {}
            if headers.get("Nats-Msg-Id") in ids:
                found[headers["Nats-Msg-Id"]] = headers.get("Reflow-Error") or "refused"
            seq = (msg.seq or seq) + 1
    return found
