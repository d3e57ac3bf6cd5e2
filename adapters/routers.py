"""``reflow serve --partitions N``: one of several routers on one partitioned ``REFLOW_IN`` and one
store (issue 18; README "Scaling out").

Each router holds leases (adapters/leases.py) and does what they name:

- ``lane.<lane>``: apply that lane of REFLOW_IN (adapters/partitions.py), batch by batch, exactly as
  a single serve applies the whole stream (adapters/server.py): one atomic write per batch with the
  lane's position, then the acknowledgements. Taking a lane first stores the lane's next epoch
  (adapters/batches.py ``take_lane``): a router that lost the lane and still writes is refused by
  the store. The router holding ``lane.general`` also lets time pass (serve's clock tick).
- ``role.publisher``: run the REFLOW_OUT publisher (adapters/outbounding.py), once for all routers.
- ``role.projections``: keep the analysts' DuckDB file (adapters/projecting.py).

Every second a router renews what it holds and looks at what it does not: it takes its own lanes
(``--partition``) at once, asking for them back if another router holds them, and takes any other
lane or role that has had no holder for ``GRACE_SECONDS`` (its router died, and the lease's TTL
ran out). So a dead router's work moves to the others within seconds: the lease TTL (5 s), the
grace, and for a lane whose router died mid-batch, the consumer's ``ack_wait`` before the server
hands that batch out again (it comes first: at most one batch of a lane is unacknowledged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime

import nats
from nats.aio.client import Client as NATS
from nats.js.errors import NotFoundError

from adapters.batches import IN_STREAM, take_lane
from adapters.bootstrap import Settings
from adapters.broker import ServeError, ensure_partitioned, received_at, source_name
from adapters.leases import Leases
from adapters.messages import one_line
from adapters.outbounding import Outbound
from adapters.partitions import (
    GENERAL,
    SHOP_FORM,
    consumer_config,
    consumer_name,
    lane_source,
    lanes,
)
from adapters.projecting import ProjectionRunFailed, Projections, ProjectionsFailed
from adapters.server import Server
from engine.app import Reflow

log = logging.getLogger("reflow.serve")

ROLES = ("publisher", "projections")
WAKE = "reflow.wake.outbound"
"""A core NATS subject (no stream): a router that stored a batch says so, and the router holding
the publisher publishes at once instead of at its next round."""


class Router(Server):
    RENEW_SECONDS = 1.0
    GRACE_SECONDS = 2.0
    STUCK_SECONDS = 120.0
    """A lane whose loop has not come round for this long (a batch that hangs: nothing in reflow
    should) stops being renewed, so another router takes it and fences this one."""

    def __init__(self, app: Reflow, nc: NATS, *, partitions: int, prefer: list[str] | tuple = (),
                 settings: Settings | None = None, replicas: int = 1, lease_ttl: float = 5.0,
                 batch: int = 256, ack_wait: float = 10.0, clock: str = "wall") -> None:
        super().__init__(app, nc, batch=batch, ack_wait=ack_wait, settings=None, clock=clock)
        self.settings, self.partitions, self.prefer = settings, partitions, set(prefer)
        self.replicas = replicas
        self.leases = Leases(self.js, ttl=lease_ttl, replicas=replicas)
        self.lane_tasks: dict[str, asyncio.Task] = {}
        self.role_tasks: dict[str, asyncio.Task] = {}
        self.handing: set[str] = set()
        self.free_since: dict[str, float] = {}
        self.taken: deque[str] = deque(maxlen=1000)
        """The lanes and roles this router took, in order (the last thousand; its log says it too)."""
        self._published = 0
        self.born = time.monotonic()
        self.progress: dict[str, float] = {}
        """Lane -> when its loop last came round (the watchdog in ``_renewer``)."""

    @property
    def published(self) -> int:
        return self._published + (self.outbound.published if self.outbound is not None else 0)

    SETUP_SECONDS = 60.0

    async def run(self, on_ready: Callable[[], None] | None = None) -> None:
        try:
            deadline = time.monotonic() + self.SETUP_SECONDS
            while True:  # routers starting together on a new cluster: its JetStream API may time out at first
                try:
                    await self._setup()
                    break
                except nats.errors.Error as exc:
                    if "insufficient resources" in str(exc).lower():
                        raise ServeError(f"--replicas {self.replicas}: the NATS cluster cannot keep {self.replicas} "
                                         "copies of a stream (fewer JetStream servers)") from None
                    if time.monotonic() > deadline:
                        raise
                    log.warning("NATS not ready for the routers yet (%s); retrying", one_line(str(exc) or type(exc).__name__))
                    await self._sleep(1.0)
        except BaseException:
            for pool in (self.engine, self.reader):
                pool.shutdown(wait=False)
            raise
        renewer = asyncio.create_task(self._renewer())
        try:
            await self._keep()
            if on_ready:
                on_ready()
            while not self.stop.is_set():
                await self._sleep(self.RENEW_SECONDS)
                if not self.stop.is_set():
                    await self._keep()
        finally:
            self.stop.set()
            self.wake.set()
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await asyncio.gather(*self.lane_tasks.values(), return_exceptions=True)
            await asyncio.gather(*self.role_tasks.values(), return_exceptions=True)
            for name in list(self.leases.held):
                await self.leases.release(name)
            for pool in (self.engine, self.reader):
                pool.shutdown(wait=True)

    async def _setup(self) -> None:
        await self._ensure_stream()
        for lane in lanes(self.partitions):
            try:
                made = (await self.js.consumer_info(IN_STREAM, consumer_name(lane))).config
            except NotFoundError:
                await self.js.add_consumer(IN_STREAM, consumer_config(lane, self.batch, self.ack_wait))
                continue
            if made.max_ack_pending != self.batch or abs((made.ack_wait or 0) - self.ack_wait) > 0.01:
                raise ServeError(
                    f"--batch/--ack-wait: the lanes were made with --batch {made.max_ack_pending} --ack-wait "
                    f"{made.ack_wait:g}; give every router the same (a takeover waits for the lane's ack wait)")
        self.source = await source_name(self.js)
        await self._check_outbound_belongs_here()
        await self.leases.open()

    async def _ensure_stream(self) -> None:
        await ensure_partitioned(self.js, self.partitions, self.replicas)

    # -- leases ---------------------------------------------------------------------------------

    async def _renewer(self) -> None:
        """Renew what is held every second, in a task of its own: a slow look at what is free
        (``_keep``) never delays a renewal. A lost lease stops its lane at the next batch boundary
        (``Leases.holds``), and a role at its next round."""
        while True:
            started = time.monotonic()
            for lane, at in list(self.progress.items()):  # a lane stuck in a batch: another router takes it
                if started - at > self.STUCK_SECONDS and self.leases.holds(f"lane.{lane}"):
                    log.error("lane %s made no progress for %.0f s; letting another router take it (its "
                              "writes from now on are refused)", lane, started - at)
                    self.leases.held.pop(f"lane.{lane}", None)  # not renewed: it expires for the others
            try:
                for name in await self.leases.renew():
                    log.warning("lease %s lost (taken over, or NATS away for %.0f s)", name, self.leases.ttl)
            except Exception as exc:  # noqa: BLE001 - NATS away: held until the TTL says otherwise
                log.warning("leases not renewed (%s); trying again", one_line(str(exc) or type(exc).__name__))
            await asyncio.sleep(max(0.0, self.RENEW_SECONDS - (time.monotonic() - started)))

    async def _keep(self) -> None:
        """One round: let go of what was asked for, take what is free. NATS away or slow (a node
        lost, a leader elected): the next round tries again."""
        try:
            await self._keep_round()
        except nats.errors.Error as exc:  # usual in a new cluster's first seconds (the bucket's replicas)
            level = logging.INFO if time.monotonic() - self.born < 30 else logging.WARNING
            log.log(level, "leases: %s; trying again", one_line(str(exc) or type(exc).__name__))

    async def _keep_round(self) -> None:
        for lane in lanes(self.partitions):
            key = f"lane.{lane}"
            task = self.lane_tasks.get(lane)
            if task is not None and task.done():
                del self.lane_tasks[lane]
                task = None
            if task is not None:
                if lane not in self.prefer and await self.leases.wanted(key):
                    self.handing.add(lane)
                continue
            if (lane in self.prefer or await self._free(key)) and await self.leases.take(key):
                self._took(key)
                await self.leases.unwant(key)
                self.lane_tasks[lane] = asyncio.create_task(self._lane(lane))
            elif lane in self.prefer:
                await self.leases.want(key)
        for role in ROLES:
            key = f"role.{role}"
            task = self.role_tasks.get(role)
            if task is not None and task.done():
                del self.role_tasks[role]
                task = None
            if role == "projections" and self.settings is None:
                continue  # a bare router (tests): no projection file
            if task is None and await self._free(key) and await self.leases.take(key):
                self._took(key)
                self.role_tasks[role] = asyncio.create_task(
                    self._publisher() if role == "publisher" else self._projections())

    def _took(self, key: str) -> None:
        self.taken.append(key)
        self.free_since.pop(key, None)
        log.info("took %s", key)

    async def _free(self, key: str) -> bool:
        """Nobody has held ``key`` for GRACE_SECONDS (so a router that prefers it had its chance)."""
        if await self.leases.holder(key) is not None:
            self.free_since.pop(key, None)
            return False
        first = self.free_since.setdefault(key, time.monotonic())
        return time.monotonic() - first >= self.GRACE_SECONDS

    # -- a lane ---------------------------------------------------------------------------------

    def _still_mine(self, source: str) -> bool:
        return self.leases.holds(f"lane.{source.rsplit('#', 1)[1]}") and source not in self.fenced

    def _keeps(self, lane: str, source: str) -> bool:
        return (not self.stop.is_set() and self.leases.holds(f"lane.{lane}") and lane not in self.handing
                and source not in self.fenced)

    async def _lane(self, lane: str) -> None:
        source = lane_source(self.source, lane)
        sub = None
        try:
            epoch = await asyncio.get_running_loop().run_in_executor(
                self.engine, take_lane, self.app, source, self.source if lane == GENERAL else None)
            sub = await self.js.pull_subscribe_bind(durable=consumer_name(lane), stream=IN_STREAM)
            info = await self.js.consumer_info(IN_STREAM, consumer_name(lane))
            if info.num_ack_pending:  # its last router died mid-batch: the server hands it out again first
                log.warning("lane %s: %d message(s) of its last router unacknowledged; waiting %.0fs",
                            lane, info.num_ack_pending, self.ack_wait)
                await self._sleep(self.ack_wait + 0.5)
            backoff = 0.0
            while self._keeps(lane, source):
                self.progress[lane] = time.monotonic()
                if backoff:
                    await self._sleep(backoff)
                try:
                    msgs = await sub.fetch(self.batch, timeout=1.0)
                except (TimeoutError, nats.errors.TimeoutError):
                    if lane == GENERAL:
                        await self._tick(None)
                    continue
                except Exception as exc:  # noqa: BLE001 - NATS away: keep trying
                    log.warning("lane %s: fetch failed (%s); retrying", lane, one_line(str(exc) or type(exc).__name__))
                    await self._sleep(0.5)
                    continue
                if not msgs:
                    continue
                if not self._keeps(lane, source):  # lost meanwhile: hand the batch to the next holder
                    for m in msgs:
                        with contextlib.suppress(Exception):
                            await m.nak()
                    break
                ok = await self._process(msgs, source, epoch, 0 if lane == GENERAL else int(lane[1:]) + 1)
                with contextlib.suppress(Exception):
                    await self.nc.publish(WAKE, b"")
                backoff = 0.0 if ok else min(max(backoff * 2, 0.5), 10.0)
                if ok and lane == GENERAL:
                    await self._tick(received_at(msgs[-1]) if msgs and msgs[-1].metadata.num_pending else None)
                self.wake.set()
        except Exception as exc:  # noqa: BLE001 - the store or NATS away: let the lane go, take it again later
            log.warning("lane %s: %s: %s; letting it go", lane, type(exc).__name__, one_line(str(exc)))
        finally:
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
            self.handing.discard(lane)
            self.progress.pop(lane, None)
            self.fenced.discard(source)
            await self.leases.release(f"lane.{lane}")
            log.info("lane %s let go", lane)

    async def _tick(self, behind: datetime | None) -> None:
        """Time passes no further than the oldest message some lane has not applied yet (a lane
        catching up, or whose router died and waits for another): a deadline must not pass before
        a shop's earlier `order.shipped` or `cancelled` is applied. Only when every lane is caught
        up does time pass to now (as a single serve's does, adapters/server.py)."""
        if self.clock != "wall" or time.monotonic() - self.last_tick < self.TICK_SECONDS:
            return
        try:
            lagging = await self._lagging()
        except Exception as exc:  # noqa: BLE001 - NATS away: no tick this time
            log.warning("clock tick skipped (%s)", one_line(str(exc) or type(exc).__name__))
            return
        if lagging is not None:
            behind = lagging if behind is None else min(behind, lagging)
        await super()._tick(behind)

    async def _lagging(self) -> datetime | None:
        """The broker time of the oldest message a partition lane has not applied, if any."""
        oldest = None
        for lane in lanes(self.partitions)[1:]:
            info = await self.js.consumer_info(IN_STREAM, consumer_name(lane))
            if info.num_pending or info.num_ack_pending:
                msg = await self.js.get_msg(IN_STREAM, seq=info.ack_floor.stream_seq + 1,
                                            subject=f"{SHOP_FORM}.{lane[1:]}", next=True)
                if msg.time is not None and (oldest is None or msg.time < oldest):
                    oldest = msg.time
        return oldest

    # -- the roles ------------------------------------------------------------------------------

    async def _publisher(self) -> None:
        """REFLOW_OUT's publisher, while this router holds ``role.publisher``."""
        loop = asyncio.get_running_loop()
        out = Outbound(self.settings) if self.settings is not None else None
        woken = None
        try:
            woken = await self.nc.subscribe(WAKE, cb=self._woken)
            if out is not None:
                await loop.run_in_executor(self.reader, out.start)
                self.outbound = out
            await self._outbound_loop(lambda: self.leases.holds("role.publisher"))
        except Exception as exc:  # noqa: BLE001 - cannot start: another router (or this one) tries again
            log.error("publisher: %s", one_line(str(exc) or type(exc).__name__))
        finally:
            try:
                if out is not None and self.outbound is out:
                    await loop.run_in_executor(self.reader, out.drain)
                elif out is None:
                    await asyncio.wait_for(self.publisher.publish_pending(), timeout=30)
            except Exception as exc:  # noqa: BLE001 - whoever publishes next resumes
                log.warning("outbound not fully published (%s); the next publisher resumes", one_line(str(exc)))
            if out is not None:
                self._published += out.published
            if woken is not None:
                with contextlib.suppress(Exception):
                    await woken.unsubscribe()
            self.outbound = None
            await self.leases.release("role.publisher")

    async def _woken(self, msg: object) -> None:
        self.wake.set()

    async def _projections(self) -> None:
        """The analysts' file, while this router holds ``role.projections``."""
        assert self.settings is not None
        proj = Projections(self.settings)
        self.projections = proj
        try:
            await proj.start()
            while not self.stop.is_set() and self.leases.holds("role.projections"):
                started = time.monotonic()
                try:
                    await proj.run_once()
                except ProjectionRunFailed as exc:  # the store away: analysts' views lag, routing goes on
                    log.warning("projections: %s", exc)
                await self._sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        except ProjectionsFailed as exc:  # never silently stale: stop, non-zero
            log.error("%s", exc)
            self.failure = ServeError(str(exc))
            self.stop.set()
        finally:
            with contextlib.suppress(Exception):
                await proj.drain()
            self.projections = None
            await self.leases.release("role.projections")
