"""``reflow serve``: run the serve loop (adapters/server.py ``Server``; with ``--partitions``, one of
several routers, adapters/routers.py ``Router``) until SIGTERM/SIGINT. The names other modules
import from here (the streams, the consumer, ``Server``) are re-exported."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

import nats

from adapters import gctune
from adapters.batches import IN_STREAM, DeadLetters, Fenced, Item, apply_batch, apply_each  # noqa: F401  (re-exported)
from adapters.bootstrap import Settings, nats_refusal, open_app
from adapters.broker import (  # noqa: F401  (re-exported)
    CONSUMER,
    DLQ_STREAM,
    OUT_STREAM,
    STREAMS,
    ServeError,
    connect,
    dead_letter_id,
    dead_letter_subject,
    ensure_consumer,
    ensure_streams,
    received_at,
    source_name,
)
from adapters.server import Server

log = logging.getLogger("reflow.serve")


async def serve(settings: Settings, *, batch: int = 256, ack_wait: float = 10.0,
                stop: asyncio.Event | None = None, on_ready: Callable[[Server], None] | None = None,
                handle_signals: bool = True, clock: str = "wall", tune_gc: bool = False,
                partitions: int = 0, prefer: list[str] | tuple = (), replicas: int = 1) -> Server:
    """Run until SIGTERM/SIGINT (or ``stop`` is set): drain the in-flight batch, publish, return.
    ``tune_gc``: this process does nothing but serve (``reflow serve``): see adapters/gctune.py.
    ``partitions``: one of several routers on a partitioned REFLOW_IN (adapters/routers.py),
    preferring the lanes ``prefer``; ``replicas``: copies of each stream on a NATS cluster."""
    app = open_app(settings)
    if tune_gc:
        gctune.tune()
    pauses = gctune.Pauses()
    ran = False
    try:
        nc = await connect(settings.nats_url)
        try:
            if partitions:
                from adapters.routers import Router

                server: Server = Router(app, nc, partitions=partitions, prefer=prefer, settings=settings,
                                        replicas=replicas, batch=batch, ack_wait=ack_wait, clock=clock)
            else:
                server = Server(app, nc, batch=batch, ack_wait=ack_wait, settings=settings, clock=clock)
                server.replicas = replicas
            loop = asyncio.get_running_loop()
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.add_signal_handler(sig, server.stop.set)
            if stop is not None:
                asyncio.create_task(_relay(stop, server.stop))
            ran = True
            try:
                await server.run(on_ready=(lambda: on_ready(server)) if on_ready else None)
            except nats.errors.Error as exc:  # e.g. JetStream not enabled: one line naming the option
                raise ServeError(nats_refusal(settings.nats_url, exc, "NATS refused reflow serve")) from None
            if server.failure is not None:
                raise server.failure
            return server
        finally:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=5)  # the last acks and publishes
            with contextlib.suppress(Exception):
                await nc.close()
    finally:
        app.close()
        pauses.close()
        if ran:  # a refusal at start is one line on stderr, nothing before it
            log.info("%s", pauses.line())


async def _relay(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()
