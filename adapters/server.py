"""The serve loop (``reflow serve``, adapters/serve.py): consume REFLOW_IN, route, dead-letter, publish
REFLOW_OUT, feed projections.

One batch at a time, in stream order:

1. fetch up to ``batch`` messages from the durable pull consumer ``reflow``;
2. apply them one after the other in the engine thread, and store everything they decided in one
   atomic write (a refused message is taken back on its own and goes to the dead letters); the
   event loop stays free meanwhile and tells the server the batch is in progress;
3. publish the dead letters of the batch, all at once, and wait for the server to store them;
4. acknowledge every message whose effect is stored (applied, or dead-lettered);
5. wake the outbound publisher and the projection runner, which run beside the next batch;
6. every 10 s, let time pass (``PassTime``, engine/clock.py) so due deadlines pass as events
   (not with ``clock="messages"``: then only ``reflow.in.clock.tick`` moves time).

A message that fails for a reason that is not its own (the store is down) stops the batch: it
and the rest are handed back (nak) in order and reflow waits a little before fetching again.
The consumer allows at most one batch unacknowledged (``max_ack_pending = batch``), so after a
crash the unacknowledged batch is delivered again before anything newer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import nats
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from adapters.batches import IN_STREAM, Fenced, apply_batch
from adapters.bootstrap import Settings
from adapters.broker import (
    CONSUMER,
    OUT_STREAM,
    ServeError,
    dead_letter_id,
    dead_letter_subject,
    ensure_consumer,
    ensure_streams,
    received_at,
    source_name,
)
from adapters.inbound import ALREADY_APPLIED, Outcome
from adapters.messages import one_line
from adapters.outbound import Publisher
from adapters.outbounding import Outbound, OutboundFailed
from adapters.partitions import partitions_of, published_subject
from adapters.projecting import ProjectionRunFailed, Projections, ProjectionsFailed
from engine.app import Reflow
from engine.commands import PassTime

log = logging.getLogger("reflow.serve")

class Server:
    """The serve loop over one app and one NATS connection."""

    TICK_SECONDS = 10.0

    def __init__(self, app: Reflow, nc: NATS, *, batch: int = 256, ack_wait: float = 10.0,
                 settings: Settings | None = None, clock: str = "wall") -> None:
        self.app, self.nc, self.js = app, nc, nc.jetstream()
        self.batch, self.ack_wait = batch, ack_wait
        self.replicas = 1  # copies of each stream it makes, on a NATS cluster
        self.clock = clock  # "wall": serve's own ticks; "messages": only reflow.in.clock.tick moves time
        self.last_tick = 0.0
        self.engine = ThreadPoolExecutor(1, thread_name_prefix="reflow-engine")
        self.reader = ThreadPoolExecutor(1, thread_name_prefix="reflow-outbound")
        self.publisher = Publisher.in_executor(app, self.js, self.reader)
        self.outbound = Outbound(settings) if settings is not None else None
        """REFLOW_OUT's publisher in a process of its own (adapters/outbounding.py); without
        settings (a bare Server in tests) ``publisher`` publishes from this process."""
        self.projections = Projections(settings) if settings is not None else None
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()
        self.applied = self.dead = self.repeated = 0
        self.source = IN_STREAM
        self.fenced: set[str] = set()
        """Sources another router took over (their writes were refused by a later epoch)."""
        self.failure: ServeError | None = None
        """Why serve stopped by itself (the projections failed for good); serve() raises it."""

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        await ensure_streams(self.js, replicas=self.replicas)
        partitions = partitions_of((await self.js.stream_info(IN_STREAM)).config)
        if partitions:
            for pool in (self.engine, self.reader):
                pool.shutdown(wait=False)
            raise ServeError(f"--partitions: {IN_STREAM} is partitioned into {partitions} (made by routers): "
                             f"start reflow serve with --partitions {partitions}")
        await ensure_consumer(self.js, self.batch, self.ack_wait)
        sub = await self.js.pull_subscribe_bind(durable=CONSUMER, stream=IN_STREAM)
        self.source = await source_name(self.js)
        try:
            await self._check_outbound_belongs_here()
        except ServeError:
            for pool in (self.engine, self.reader):
                pool.shutdown(wait=False)
            raise
        if self.projections is not None:  # before consuming: refuse to start, one line, if it cannot run
            try:
                await self.projections.start()
            except BaseException as exc:
                for pool in (self.projections.thread, self.engine, self.reader):
                    pool.shutdown(wait=False)
                if isinstance(exc, ProjectionsFailed):
                    raise ServeError(str(exc)) from None
                raise
        if self.outbound is not None:
            try:
                await asyncio.get_running_loop().run_in_executor(self.reader, self.outbound.start)
            except OutboundFailed as exc:
                if self.projections is not None:
                    await self.projections.drain()
                for pool in (self.engine, self.reader):
                    pool.shutdown(wait=False)
                raise ServeError(str(exc)) from None
        background = [asyncio.create_task(self._outbound_loop()),
                      asyncio.create_task(self._projection_loop())]
        backoff = 0.0
        try:  # from here on, whatever happens, the finally drains both child processes
            await self._after_crash()
            if on_ready:
                on_ready()
            while not self.stop.is_set():
                if backoff:
                    await self._sleep(backoff)
                try:
                    msgs = await sub.fetch(self.batch, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    await self._tick(None)
                    continue
                except Exception as exc:  # noqa: BLE001 - NATS away: keep trying
                    log.warning("fetch failed (%s); retrying", one_line(str(exc) or type(exc).__name__))
                    await self._sleep(0.5)
                    continue
                ok = await self._process(msgs)
                backoff = 0.0 if ok else min(max(backoff * 2, 0.5), 10.0)
                if ok:
                    await self._tick(received_at(msgs[-1]) if msgs and msgs[-1].metadata.num_pending else None)
                self.wake.set()
        finally:
            self.stop.set()
            self.wake.set()
            await asyncio.gather(*background, return_exceptions=True)
            await self._drain()

    async def _tick(self, behind: datetime | None) -> None:
        """Let time pass, at most every ``TICK_SECONDS``: to the broker time of the last message applied
        while a backlog remains (``behind``), so deadlines pass in order with the messages, else to now."""
        if self.clock != "wall" or time.monotonic() - self.last_tick < self.TICK_SECONDS:
            return
        self.last_tick = time.monotonic()
        at = behind or datetime.now(UTC)
        try:
            passed = await asyncio.get_running_loop().run_in_executor(self.engine, self._pass_time, at)
        except Exception as exc:  # noqa: BLE001 - the store is away: the next tick tries again
            log.warning("clock tick failed (%s); will retry", one_line(str(exc) or type(exc).__name__))
            self.last_tick, passed = 0.0, 0
        if passed:
            log.info("clock: %d deadline(s) passed by %s", passed, at.isoformat(timespec="seconds"))
            self.wake.set()

    PASS_LIMIT = 1000

    def _pass_time(self, at: datetime) -> int:
        """In the engine thread: pass what is due by `at`, a thousand deadlines per unit of work (a
        store catching up on a long history would otherwise load all of it in one)."""
        passed = 0
        while (n := self.app.execute(PassTime(at=at, limit=self.PASS_LIMIT))) == self.PASS_LIMIT:
            passed += n
        return passed + n

    async def _after_crash(self) -> None:
        """A previous run died with a batch unacknowledged: wait until the server hands it back
        (after ack_wait), so it is applied again before anything newer."""
        info = await self.js.consumer_info(IN_STREAM, CONSUMER)
        if info.num_ack_pending:
            log.warning("%d message(s) of a previous run unacknowledged; waiting %.0fs for them",
                        info.num_ack_pending, self.ack_wait)
            await self._sleep(self.ack_wait + 0.5)

    async def _process(self, msgs: list[Msg], source: str | None = None, epoch: int = 0, shard: int = 0) -> bool:
        """Apply, dead-letter and acknowledge one batch of ``source`` (a lane's, adapters/routers.py;
        by default the stream's); False if some of it was handed back."""
        items = [(m.subject, m.data, received_at(m), m.metadata.sequence.stream) for m in msgs]
        loop = asyncio.get_running_loop()

        def dead_letters(dead: list[tuple[int, Outcome]]) -> None:
            """In the engine thread, before the batch is written: publish its dead letters and
            wait until the server stored every one (else nothing is written; the batch is
            handed back and comes again)."""
            pairs = [(msgs[i], o) for i, o in dead]
            stored = asyncio.run_coroutine_threadsafe(self._dead_letter(pairs), loop).result(timeout=60)
            if len(stored) != len(pairs):
                raise ConnectionError(f"{len(pairs) - len(stored)} dead letter(s) not stored")

        work = loop.run_in_executor(self.engine, apply_batch, self.app, items, dead_letters,
                                    source or self.source, epoch, shard)
        keepalive = asyncio.create_task(self._keep_in_progress(msgs, source or self.source))
        try:
            outcomes, failure = await work
        finally:
            keepalive.cancel()
        for m in msgs[: len(outcomes)]:
            await m.ack()  # applied, dead-lettered, or applied before: its effect is stored
        self.applied += sum(1 for o in outcomes if not o.dead and o is not ALREADY_APPLIED)
        self.repeated += sum(1 for o in outcomes if o is ALREADY_APPLIED)
        self.dead += sum(1 for o in outcomes if o.dead)
        if isinstance(failure, Fenced):
            log.warning("%s; handing its batch back", failure)
            self.fenced.add(source or self.source)
        elif failure is not None:
            log.error("could not apply %s (will retry): %s: %s", msgs[len(outcomes)].subject,
                      type(failure).__name__, one_line(str(failure)))
        if failure is not None:
            for m in msgs[len(outcomes):]:
                await m.nak()
            return False
        return True

    async def _check_outbound_belongs_here(self) -> None:
        """REFLOW_OUT names the store position of each message it holds. If it holds positions this
        store does not have, it was filled from another store (a wiped data directory, a move to
        PostgreSQL, a second trial on a shared broker): publishing would silently skip this store's
        messages up to there, so refuse to start, in one line."""
        published = await self.publisher.resume_position()
        head = await asyncio.get_running_loop().run_in_executor(
            self.reader, lambda: self.app.recorder.max_notification_id() or 0)
        if published > head:
            raise ServeError(
                f"{OUT_STREAM} already holds messages up to store position {published}, but this store has "
                f"{head} events: the stream was filled from another store. Run this store against its own "
                f"NATS server or account, or delete {OUT_STREAM} if that store is gone")

    async def _dead_letter(self, dead: list[tuple[Msg, Outcome]]) -> set[int]:
        """Publish the dead letters together; the ids of those the server stored."""
        if not dead:
            return set()
        futures = []
        for m, o in dead:
            subject = published_subject(m.subject)  # as its producer sent it, to publish again once fixed
            log.info("dead letter: %s", o.error)
            headers = {"Reflow-Error": o.error, "Reflow-Subject": subject,
                       "Nats-Msg-Id": dead_letter_id(m)}
            futures.append(await self.js.publish_async(dead_letter_subject(subject), m.data,
                                                       headers=headers))
        results = await asyncio.gather(*futures, return_exceptions=True)
        for (m, _), r in zip(dead, results):
            if isinstance(r, BaseException):
                log.warning("dead letter for %s not stored (%s); will retry", m.subject, type(r).__name__)
        return {id(m) for (m, _), r in zip(dead, results) if not isinstance(r, BaseException)}

    def _still_mine(self, source: str) -> bool:
        return True

    async def _keep_in_progress(self, msgs: list[Msg], source: str) -> None:
        """Tell the server a long batch is being worked on, so it is not redelivered meanwhile
        (while the batch's source is still this serve's: a router that lost a lane stops)."""
        while True:
            await asyncio.sleep(self.ack_wait / 3)
            if not self._still_mine(source):
                return
            for m in msgs:
                with contextlib.suppress(Exception):
                    await m.in_progress()

    async def _outbound_loop(self, keeps: Callable[[], bool] = lambda: True) -> None:
        """Publish after every wake (a stored batch) or second, until serve stops or ``keeps()``
        says otherwise (a router that lost the publisher's lease)."""
        while not self.stop.is_set() and keeps():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=1.0)
            self.wake.clear()
            try:
                if self.outbound is not None:
                    self.outbound.wake()
                    await asyncio.get_running_loop().run_in_executor(self.reader, self.outbound.check)
                else:
                    await self.publisher.publish_pending()
            except Exception as exc:  # noqa: BLE001 - NATS away: the next round resumes
                log.warning("outbound publish failed (%s); retrying", one_line(str(exc) or type(exc).__name__))
                await self._sleep(0.5)

    async def _projection_loop(self) -> None:
        if self.projections is None:
            return
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                await self.projections.run_once()
            except ProjectionsFailed as exc:  # never silently stale: stop, non-zero
                log.error("%s", exc)
                self.failure = ServeError(str(exc))
                self.stop.set()
                return
            except ProjectionRunFailed as exc:  # the store away: analysts' views lag, routing goes on
                log.warning("projections: %s", exc)
            except Exception as exc:  # noqa: BLE001
                log.warning("projections: %s: %s", type(exc).__name__, one_line(str(exc)))
            await self._sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    async def _drain(self) -> None:
        """After the last batch: publish what it caused, bring the projections up to date."""
        try:
            if self.outbound is not None:
                await asyncio.get_running_loop().run_in_executor(self.reader, self.outbound.drain)
            else:
                await asyncio.wait_for(self.publisher.publish_pending(), timeout=30)
        except Exception as exc:  # noqa: BLE001 - published on the next start instead
            log.warning("outbound not fully published at exit (%s); the next start resumes",
                        one_line(str(exc) or type(exc).__name__))
        if self.projections is not None:
            try:
                await self.projections.drain()
            except Exception as exc:  # noqa: BLE001
                log.warning("projections: %s: %s", type(exc).__name__, one_line(str(exc)))
        for pool in (self.engine, self.reader):
            pool.shutdown(wait=True)

    @property
    def published(self) -> int:
        """Messages published to REFLOW_OUT by this serve."""
        return self.outbound.published if self.outbound is not None else self.publisher.published

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)
