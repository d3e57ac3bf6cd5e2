"""serve's side of NATS: the connection, the streams and the durable consumer, and the names of
messages (dead letters, the stream's position) that serve derives from what it received."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from adapters.batches import IN_STREAM
from adapters.bootstrap import nats_refusal
from adapters.messages import one_line

log = logging.getLogger("reflow.serve")

OUT_STREAM, DLQ_STREAM = "REFLOW_OUT", "REFLOW_DLQ"
CONSUMER = "reflow"
HOUR = 3600.0
STREAMS = {
    IN_STREAM: "reflow.in.>",
    OUT_STREAM: "reflow.out.>",
    DLQ_STREAM: "reflow.dlq.>",
}
DUPLICATE_WINDOW = {IN_STREAM: 2 * HOUR, OUT_STREAM: 24 * HOUR, DLQ_STREAM: 24 * HOUR}


class ServeError(Exception):
    """serve cannot start (no NATS server, a stream configured otherwise); one line."""


def servers(url: str) -> list[str]:
    """``--nats`` may name several servers of a cluster, comma-separated: nats-py takes a list."""
    return [u.strip() for u in url.split(",") if u.strip()] or [url]


async def connect(url: str, *, attempts: int = 3) -> NATS:
    """Connect, failing after a few attempts; once connected, reconnect forever."""

    async def quiet(exc: Exception) -> None:  # nats-py would print a traceback per retry
        log.debug("nats: %s", one_line(str(exc) or type(exc).__name__))

    async def disconnected() -> None:
        if not nc_box or not nc_box[0].is_closed:
            log.warning("NATS connection lost; reconnecting")

    async def reconnected() -> None:
        log.warning("NATS connection back")

    nc_box: list[NATS] = []
    try:
        nc = await nats.connect(
            servers(url), connect_timeout=2, reconnect_time_wait=0.5, max_reconnect_attempts=attempts,
            error_cb=quiet, disconnected_cb=disconnected, reconnected_cb=reconnected,
            pending_size=64 * 1024 * 1024,
        )
    except Exception as exc:  # noqa: BLE001 - any failure to connect is one line for the user
        raise ServeError(nats_refusal(url, exc)) from None
    nc.options["max_reconnect_attempts"] = -1
    nc_box.append(nc)
    return nc


async def ensure_streams(js: JetStreamContext, replicas: int = 1) -> None:
    """Create REFLOW_IN, REFLOW_OUT and REFLOW_DLQ (file storage, ``replicas`` copies on a
    cluster) where missing."""
    for name, subject in STREAMS.items():
        try:
            await js.stream_info(name)
            continue
        except NotFoundError:
            pass
        await js.add_stream(StreamConfig(
            name=name, subjects=[subject], storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW[name], num_replicas=replicas,
        ))


async def ensure_consumer(js: JetStreamContext, batch: int, ack_wait: float) -> None:
    """The durable pull consumer ``reflow``: explicit acks, one batch in flight at most."""
    config = ConsumerConfig(
        durable_name=CONSUMER, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
        ack_wait=ack_wait, max_ack_pending=batch, max_deliver=-1, filter_subject=STREAMS[IN_STREAM],
    )
    await js.add_consumer(IN_STREAM, config)


async def source_name(js: JetStreamContext) -> str:
    """The name the position in REFLOW_IN is stored under: the stream and when it was created.

    Several serves may share one store, each with its own REFLOW_IN (its own NATS server or
    account), and a stream deleted and made again starts its sequence from 1: each such stream
    keeps a position of its own."""
    created = (await js.stream_info(IN_STREAM)).created
    if not created:
        return IN_STREAM
    return f"{IN_STREAM}@{created.isoformat() if hasattr(created, 'isoformat') else created}"


def dead_letter_id(msg: Msg) -> str:
    """Derived from the original's id, so a redelivered bad message is dead-lettered once."""
    original = (msg.headers or {}).get("Nats-Msg-Id")
    if original:
        return f"dlq-{original}"
    return f"dlq-{IN_STREAM}-{msg.metadata.sequence.stream}"


def dead_letter_subject(subject: str) -> str:
    return "reflow.dlq." + subject.removeprefix("reflow.")


def received_at(msg: Msg) -> datetime:
    try:
        return msg.metadata.timestamp
    except Exception:  # noqa: BLE001 - not a JetStream message
        return datetime.now(UTC)


async def ensure_partitioned(js: JetStreamContext, partitions: int, replicas: int) -> None:
    """A partitioned REFLOW_IN (made if missing; a stream an unpartitioned serve made is
    partitioned once that serve's consumer is gone), REFLOW_OUT and REFLOW_DLQ."""
    from adapters.partitions import STREAM_SUBJECTS, partitions_of, stream_config, transform

    try:
        info = await js.stream_info(IN_STREAM)
    except NotFoundError:
        await js.add_stream(stream_config(IN_STREAM, partitions, DUPLICATE_WINDOW[IN_STREAM], replicas))
    else:
        made = partitions_of(info.config)
        if made and made != partitions:
            raise ServeError(f"--partitions: {IN_STREAM} was made with {made} partitions; start every "
                             f"router with --partitions {made}")
        if not made:  # made by a serve of the whole stream: partition it, if that serve is gone
            try:
                await js.consumer_info(IN_STREAM, CONSUMER)
            except NotFoundError:
                pass
            else:
                raise ServeError(
                    f"--partitions: {IN_STREAM} is consumed whole by an unpartitioned reflow serve (consumer "
                    f"{CONSUMER}): stop it, let it finish, delete that consumer (nats consumer rm {IN_STREAM} "
                    f"{CONSUMER}), then start the routers")
            info.config.subjects = list(STREAM_SUBJECTS)
            info.config.subject_transform = transform(partitions)
            await js.update_stream(info.config)
    await ensure_streams(js, replicas=replicas)
