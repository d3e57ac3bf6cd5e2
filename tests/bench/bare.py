"""The raw limit of reflow's stack for the work `reflow serve` does, with no domain logic.

    python -m tests.bench.bare --nats URL --store URL [--batch 256]

A stand-in for serve, run as its own process like serve: the same durable pull consumer on
REFLOW_IN (explicit acks, one batch in flight), and per batch: decode each message with msgspec,
append the same number and size of events as reflow stores for an order to the same event store
in ONE eventsourcing transaction, publish one allocation-sized message per order to REFLOW_OUT
with a `Nats-Msg-Id`, wait for the stream's acks, ack the batch. The events are pre-encoded (a
real order's events, taken once at start), so what is measured is the stack: NATS, msgspec,
eventsourcing's recorder, the store. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import nats
from eventsourcing.persistence import StoredEvent

from adapters.bootstrap import Settings, open_app
from adapters.inbound import handle
from adapters.messages import decode
from adapters.serve import CONSUMER, IN_STREAM, ensure_consumer, ensure_streams
from tests.adapters.natsworld import catalog, order_body


def template() -> tuple[list[tuple[str, bytes]], bytes]:
    """The stored events of one real routed order (topic, state), and its allocation message."""
    with tempfile.TemporaryDirectory() as tmp:
        app = open_app(Settings(data_dir=Path(tmp)))
        try:
            now = datetime.now(UTC)
            for subject, body in catalog():
                handle(app, f"reflow.in.{subject}", json.dumps(body).encode(), now)
            start = app.recorder.max_notification_id()
            handle(app, "reflow.in.order.placed", json.dumps(order_body("T-1"), ensure_ascii=False).encode(), now)
            notes = app.recorder.select_notifications(start + 1, 100)
            events = [(n.topic, bytes(n.state)) for n in notes]
            alloc = next(bytes(n.state) for n in notes if n.topic.endswith("Allocated"))
        finally:
            app.close()
    return events, alloc


async def run(nats_url: str, store: str, batch: int, data_dir: Path) -> None:
    events, out_body = template()
    app = open_app(Settings(store=store, data_dir=data_dir))
    nc = await nats.connect(nats_url, pending_size=64 * 1024 * 1024)
    js = nc.jetstream()
    await ensure_streams(js)
    await ensure_consumer(js, batch, 10.0)
    sub = await js.pull_subscribe_bind(durable=CONSUMER, stream=IN_STREAM)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    seq = 0
    try:
        while not stop.is_set():
            try:
                msgs = await sub.fetch(batch, timeout=1.0)
            except (TimeoutError, nats.errors.TimeoutError):
                continue
            stored, keys = [], []
            for m in msgs:
                message = decode(m.subject, m.data)
                keys.append(getattr(message, "order_id", None) or m.headers.get("Nats-Msg-Id", ""))
                oid = uuid4()
                stored.extend(StoredEvent(originator_id=oid, originator_version=v, topic=t, state=s)
                              for v, (t, s) in enumerate(events, 1))
            await loop.run_in_executor(None, app.recorder.insert_events, stored)
            futures = []
            for key in keys:
                seq += 1
                futures.append(await js.publish_async("reflow.out.supplier.bare.allocation", out_body, headers={
                    "Nats-Msg-Id": f"bare-out-{seq}", "Reflow-Bench-Key": key}))
            await asyncio.gather(*futures)
            for m in msgs:
                await m.ack()
    finally:
        await nc.flush()
        await nc.close()
        app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nats", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=256)
    args = parser.parse_args()
    asyncio.run(run(args.nats, args.store, args.batch, args.data_dir))


if __name__ == "__main__":
    main()
