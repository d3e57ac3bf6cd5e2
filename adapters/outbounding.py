"""serve's outbound process: the publisher of REFLOW_OUT in a child process of its own (issue 17).

Publishing costs CPU per message (the event log read and decoded again, a message built and
encoded, a JetStream publish and its acknowledgement handled by an event loop): about 75 us per
order, which in serve's process shared one interpreter lock with routing. In a child process
(spawned: it shares nothing but the store and the NATS server) it runs on another core, as the
projections do (adapters/projecting.py).

serve wakes it after every stored batch (a `multiprocessing.Semaphore`, no pipe round trip); the child
also looks every half second by itself. It publishes with `adapters.outbound.Publisher`, exactly
as before: from the last position named in REFLOW_OUT, each message's `Nats-Msg-Id` derived from
its store position, so a message is published once however often the child restarts. Supervised:
a child that dies is logged at ERROR and started again after a back-off (1 s doubling to 30 s);
meanwhile messages wait in the event log, none is lost. At serve's exit the child publishes what
is left, reports how many it published, and stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from adapters.bootstrap import Settings, open_app
from adapters.messages import one_line
from adapters.projecting import _exit_with_parent  # the same watch on serve: stop when it is gone

log = logging.getLogger("reflow.serve")


class OutboundFailed(Exception):
    """The outbound process could not start (one line)."""


class Outbound:
    """serve's side of the outbound process. Blocking calls: run them off the event loop."""

    backoff_first, backoff_max, start_timeout = 1.0, 30.0, 120.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ctx = multiprocessing.get_context("spawn")
        self.wake_event = self.ctx.Semaphore(0)
        """A semaphore, not a ``multiprocessing.Event``: an Event's ``set()`` waits for every
        sleeper of its condition to wake, so after a child killed in ``wait()`` it blocked serve's
        event loop for good. Releasing a semaphore never blocks; the child takes all it holds."""
        self.count = self.ctx.Value("q", 0, lock=False)
        self.proc: Any = None
        self.pipe: Any = None
        self.failures = 0
        self.retry_at = 0.0

    @property
    def published(self) -> int:
        return int(self.count.value)

    def wake(self) -> None:
        self.wake_event.release()

    def start(self, *, first: bool = True) -> None:
        mine, theirs = self.ctx.Pipe()
        proc = self.ctx.Process(target=_child_main, name="reflow-outbound",
                                args=(self.settings, os.getpid(), theirs, self.wake_event, self.count),
                                daemon=True)  # never outlives serve, even when serve stops before draining
        proc.start()
        theirs.close()
        reply: tuple = ("failed", "no answer")
        try:
            reply = mine.recv() if mine.poll(self.start_timeout) else ("failed", "not ready in time")
        except (EOFError, OSError):
            proc.join(5)
            reply = ("failed", f"exited at start (exit code {proc.exitcode})")
        if reply[0] == "ready":
            self.proc, self.pipe = proc, mine
            log.info("outbound: publisher process started (pid %d)", proc.pid)
            return
        mine.close()
        _stop(proc)
        if first:
            raise OutboundFailed(f"outbound: the publisher process cannot start: {reply[1]}")
        self._failed(reply[1])

    def check(self) -> None:
        """Start the child again if it died (after the back-off)."""
        if self.proc is not None and self.proc.is_alive():
            self.failures = 0
            return
        if self.proc is not None:
            self.pipe.close()
            self._failed(f"the publisher process (pid {self.proc.pid}) died (exit code {self.proc.exitcode})")
            self.proc = self.pipe = None
        if time.monotonic() >= self.retry_at:
            self.start(first=False)

    def _failed(self, why: str) -> None:
        self.failures += 1
        delay = min(self.backoff_first * 2 ** (self.failures - 1), self.backoff_max)
        self.retry_at = time.monotonic() + delay
        log.error("outbound: %s; starting it again in %.0f s (REFLOW_OUT waits, nothing is lost)",
                  one_line(why), delay)

    def drain(self, timeout: float = 30.0) -> None:
        """Publish what is left, then stop the child."""
        if self.proc is None or not self.proc.is_alive():
            with contextlib.suppress(OutboundFailed):
                self.start(first=True)
        if self.proc is None:
            log.warning("outbound: not fully published at exit; the next start resumes")
            return
        proc, pipe = self.proc, self.pipe
        self.proc = self.pipe = None
        try:
            pipe.send("close")
            self.wake()
            if not (pipe.poll(timeout) and pipe.recv()[0] == "closed"):
                log.warning("outbound: not fully published at exit; the next start resumes")
        except (EOFError, OSError):
            log.warning("outbound: the publisher process stopped early; the next start resumes")
        finally:
            pipe.close()
            _stop(proc)


def _stop(proc: Any) -> None:
    proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join()


def _child_main(settings: Settings, parent: int, pipe: Any, wake: Any, count: Any) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: serve drains, then stops us
    # SIGTERM stops us (multiprocessing's exit sends it to a child left running; a service manager
    # that signals the whole group makes serve's drain start a publisher again for what is left).
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s reflow %(levelname)s %(message)s")
    from adapters import gctune

    try:
        app = open_app(settings)
    except Exception as exc:  # noqa: BLE001 - one line to serve
        pipe.send(("failed", f"cannot open the store: {one_line(str(exc)) or type(exc).__name__}"))
        return
    gctune.tune()
    try:
        asyncio.run(_publish_until_closed(app, settings, pipe, wake, count))
    except (EOFError, OSError):
        os._exit(0)  # serve is gone
    finally:
        app.close()


async def _publish_until_closed(app: Any, settings: Settings, pipe: Any, wake: Any, count: Any) -> None:
    from adapters.broker import ServeError, connect
    from adapters.outbound import Publisher

    try:
        nc = await connect(settings.nats_url)
    except ServeError as exc:
        pipe.send(("failed", str(exc)))
        return
    reader, waiter = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
    publisher = Publisher.in_executor(app, nc.jetstream(), reader)
    loop = asyncio.get_running_loop()
    pipe.send(("ready", os.getpid()))
    closing = False
    before = count.value  # published by earlier children of this serve
    try:
        while True:
            await loop.run_in_executor(waiter, wake.acquire, True, 0.5)
            while wake.acquire(False):  # wakes that came meanwhile: one round publishes for all
                pass
            if pipe.poll():
                closing = pipe.recv() == "close"
            failed = None
            try:
                await publisher.publish_pending()
            except Exception as exc:  # noqa: BLE001 - NATS away: the next round resumes
                failed = one_line(str(exc) or type(exc).__name__)
                log.warning("outbound publish failed (%s); retrying", failed)
            count.value = before + publisher.published  # pages confirmed, also in a round that failed
            if closing:
                pipe.send(("closed", count.value) if failed is None else ("failed", failed))
                return
            if failed is not None:
                await asyncio.sleep(0.5)
    finally:
        with contextlib.suppress(Exception):
            await nc.flush(timeout=5)
        with contextlib.suppress(Exception):
            await nc.close()
        reader.shutdown(wait=False)
        waiter.shutdown(wait=False)
