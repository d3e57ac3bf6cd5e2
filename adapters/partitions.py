"""REFLOW_IN split into lanes, so several routers apply it at once and each shop's facts stay in
order (issue 18). NATS does the splitting; reflow only names the lanes.

A producer may name the shop in the subject, after the contract's subject (an addition to CONTRACT
section 1; the contract's subjects stay valid)::

    reflow.in.order.placed.<platform>.<shop_id>

A partitioned ``REFLOW_IN`` (made by ``reflow serve --partitions N``) stores such a subject with the
shop's partition appended by its subject transform, ``partition(N)`` over platform and shop, so
every message of one shop lands in one partition, in the order the stream took them::

    reflow.in.order.placed.douyin.shop-7      ->  reflow.in.order.placed.douyin.shop-7.2

Lanes, each a durable pull consumer that one router at a time holds (adapters/leases.py):

- ``p0`` ... ``p<N-1>``: the shop form, one lane per partition;
- ``general``: everything else — the contract's subjects as they are (suppliers' stock, prices,
  offers, tracking, intercept answers, rejections, the clock, merchant settings, and a shop's
  messages published without the shop in the subject).

The stream takes only subjects of 1 to 4 tokens after ``reflow.in``: a mistyped longer subject is
refused to its producer at once (no stream answers) instead of lying in the stream unconsumed.
"""

from __future__ import annotations

from typing import Any

from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig, SubjectTransform

from adapters.messages import SUBJECTS

PREFIX = "reflow.in."
GENERAL = "general"
SHOP_FORM = "reflow.in.*.*.*.*"
STREAM_SUBJECTS = ["reflow.in.*", "reflow.in.*.*", "reflow.in.*.*.*", SHOP_FORM]
SHOP_SCOPED = frozenset(s for s, t in SUBJECTS.items()
                        if {"platform", "shop_id"} <= set(t.__struct_fields__))
"""Subjects whose messages concern one shop (they carry platform and shop_id): these may take the
shop form. Suppliers', the clock's and the merchant's messages may not."""


def transform(partitions: int) -> SubjectTransform:
    return SubjectTransform(
        src=SHOP_FORM,
        dest="reflow.in.{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}.{{wildcard(4)}}"
             f".{{{{partition({partitions},3,4)}}}}")


def partitions_of(config: StreamConfig) -> int:
    """How many partitions a stream was made with (0: not partitioned)."""
    tr = config.subject_transform
    if tr is None or tr.src != SHOP_FORM or "partition(" not in (tr.dest or ""):
        return 0
    return int(tr.dest.split("partition(", 1)[1].split(",", 1)[0])


def lanes(partitions: int) -> list[str]:
    return [GENERAL] + [f"p{k}" for k in range(partitions)]


def lane_name(given: str, partitions: int) -> str:
    """``--partition``'s value (``2``, ``p2`` or ``general``) as a lane; ValueError naming it."""
    text = given.strip().lower()
    if text == GENERAL:
        return GENERAL
    number = text.removeprefix("p")
    if not number.isdigit() or int(number) >= partitions:
        raise ValueError(f"--partition: {given!r} is not a partition of 0..{partitions - 1} or 'general'")
    return f"p{int(number)}"


def consumer_name(lane: str) -> str:
    return f"reflow-{lane}"


def consumer_config(lane: str, batch: int, ack_wait: float) -> ConsumerConfig:
    """A lane's durable pull consumer: explicit acks, at most one batch unacknowledged, so a batch
    handed back (its router died) is applied again before anything newer of that lane."""
    filters: dict[str, Any] = (
        {"filter_subjects": STREAM_SUBJECTS[:3]} if lane == GENERAL
        else {"filter_subject": f"{SHOP_FORM}.{lane.removeprefix('p')}"})
    return ConsumerConfig(durable_name=consumer_name(lane), ack_policy=AckPolicy.EXPLICIT,
                          deliver_policy=DeliverPolicy.ALL, ack_wait=ack_wait, max_ack_pending=batch,
                          max_deliver=-1, **filters)


def lane_source(stream_source: str, lane: str) -> str:
    """The name a lane's position is stored under: one per lane of one stream."""
    return f"{stream_source}#{lane}"


def shop_subject(subject: str, platform: str, shop_id: str) -> str:
    """The shop form of a contract subject (what a producer publishes to a partitioned stream)."""
    return f"{subject}.{platform}.{shop_id}"


class NotThisShop(ValueError):
    """A shop-form subject whose shop is not the message's, or a subject that may not take it."""


def plain_subject(subject: str) -> tuple[str, tuple[str, str] | None]:
    """The contract subject of a stored subject, and the (platform, shop_id) it names if it is in
    the shop form (as stored: with its partition token, or as published: without)."""
    tokens = subject.split(".")
    if subject.startswith(PREFIX) and (len(tokens) == 6 or len(tokens) == 7 and tokens[6].isdigit()):
        return ".".join(tokens[:4]), (tokens[4], tokens[5])
    return subject, None


def published_subject(stored: str) -> str:
    """The subject as its producer published it: a partitioned stream's partition token taken off."""
    tokens = stored.split(".")
    if stored.startswith(PREFIX) and len(tokens) == 7 and tokens[6].isdigit():
        return ".".join(tokens[:6])
    return stored


def check_shop(subject: str, shop: tuple[str, str] | None, message: Any) -> None:
    """A message in the shop form concerns that shop: its subject may take the form, and the
    body's platform and shop_id (where it has them) are the subject's. Else the message would be
    applied in another shop's order; it goes to the dead letters instead."""
    if shop is None:
        return
    if subject not in SHOP_SCOPED:
        raise NotThisShop(f"{subject}: not a shop's message; publish it on {subject} without "
                          f"platform and shop in the subject")
    platform, shop_id = shop
    body = (getattr(message, "platform", None), getattr(message, "shop_id", None))
    if body == (None, None):
        return  # allocation.cancel by allocation_id: the subject names the shop
    if (str(body[0]), str(body[1])) != (platform, shop_id):
        raise NotThisShop(f"{subject}: the subject names shop {platform}.{shop_id}, the message's "
                          f"platform and shop_id are {body[0]}.{body[1]}")


def stream_config(name: str, partitions: int, duplicate_window: float, replicas: int) -> StreamConfig:
    from nats.js.api import StorageType

    return StreamConfig(name=name, subjects=list(STREAM_SUBJECTS), storage=StorageType.FILE,
                        duplicate_window=duplicate_window, num_replicas=replicas,
                        subject_transform=transform(partitions))

