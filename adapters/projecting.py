"""serve's projection process: the projection runner in a child process of its own, supervised.

Projecting decodes every event again and builds Arrow batches for DuckDB; in serve's process it
would share one interpreter lock with routing. In a child process (spawned, so it shares nothing
but the store and the files) it runs on the other core. The child opens its own app on the same
store and runs ``ProjectionRunner.run_once`` each time serve asks, over a pipe.

Supervised (issue 19, never silently stale): serve starts the child before it consumes anything
and refuses to start (one line) if the child cannot open the projection, e.g. another runner holds
the file (the line names it). If the child dies later, serve logs it at ERROR and starts a new one
after a back-off (1 s, doubling to 30 s; reset by a successful run), which resumes from the
position stored in the working file and publishes at once. The restarts and the last failure are
in the log and in the ``projection_status`` view. After ``max_failures`` failures in a row (the
child dies, or cannot start, each time) serve stops with a non-zero exit, for its supervisor to
restart it.
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
from datetime import UTC, datetime
from typing import Any

from adapters.bootstrap import Settings, open_app
from adapters.messages import one_line

log = logging.getLogger("reflow.serve")


class ProjectionsFailed(Exception):
    """The projection process cannot run (another runner holds the file, the file needs a rebuild,
    or it failed too often in a row): serve stops, non-zero, rather than leave the analysts'
    file silently stale."""


class Projections:
    """serve's side of the projection process (module docstring); its blocking work runs in a
    thread of its own, never in serve's event loop."""

    backoff_first, backoff_max, max_failures = 1.0, 30.0, 8
    start_timeout, lock_wait = 120.0, 5.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="reflow-projections")
        self.proc: Any = None
        self.pipe: Any = None
        self.restarts = 0
        self.failures = 0  # in a row
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        self.retry_at = 0.0

    # -- asyncio side ---------------------------------------------------------------------------

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.thread, self._start)

    async def run_once(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.thread, self._run_once)

    async def drain(self) -> None:
        """At serve's exit: a last run (starting the child again if it is down), then close it,
        which publishes."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.thread, self._drain)
        finally:
            self.thread.shutdown(wait=True)

    # -- in the supervisor thread ---------------------------------------------------------------

    def _start(self, *, first: bool = True) -> None:
        ctx = multiprocessing.get_context("spawn")
        mine, theirs = ctx.Pipe()
        status = {"restarts": self.restarts, "last_error": self.last_error, "last_error_at": self.last_error_at}
        proc = ctx.Process(target=_child_main, name="reflow-projections",
                           args=(self.settings, os.getpid(), theirs, status, self.lock_wait))
        try:
            proc.start()
        except OSError as exc:  # no process to be had (out of memory, process limit)
            mine.close()
            theirs.close()
            reason = f"projections: cannot start the projection process: {one_line(str(exc))}"
            if first:
                raise ProjectionsFailed(reason) from None
            self._failed(reason, "could not restart the projection process")
            return
        theirs.close()  # the child's end lives in the child only: its death is EOF here
        reply: tuple = ("failed", "no answer")
        try:
            if mine.poll(self.start_timeout):
                reply = mine.recv()
            else:
                reply = ("failed", f"not ready after {self.start_timeout:.0f} s")
        except (EOFError, OSError):
            proc.join(5)
            reply = ("failed", f"the projection process exited at start ({_exit_text(proc)})")
        if reply[0] == "ready":
            self.proc, self.pipe = proc, mine
            log.info("projections: projection process started (pid %d)%s", proc.pid,
                     f", restart {self.restarts}" if self.restarts else "")
            return
        mine.close()
        proc.join(10)
        if proc.is_alive():
            proc.kill()
            proc.join()
        reason = reply[1] if reply[1].startswith("--") else f"projections: {reply[1]}"  # the option first
        if first:
            raise ProjectionsFailed(reason)
        self._failed(reason, "could not restart the projection process")

    def _run_once(self) -> None:
        if self.proc is None:
            if time.monotonic() < self.retry_at:
                return
            self.restarts += 1
            self._start(first=False)
            if self.proc is None:
                return
        try:
            self.pipe.send("run")
            reply = self.pipe.recv()
        except (EOFError, OSError):
            self._died()
            return
        self.failures = 0
        if reply[0] == "error":  # the child is fine; the store may be away: the next round resumes
            raise ProjectionRunFailed(reply[1])

    def _died(self) -> None:
        proc, self.proc = self.proc, None
        self.pipe.close()
        self.pipe = None
        proc.join(10)
        self._failed(f"projections: the projection process (pid {proc.pid}) died: {_exit_text(proc)}",
                     "the projection process died")

    def _failed(self, reason: str, what: str) -> None:
        """Record a failure of the child; schedule the next start, or give up."""
        self.last_error, self.last_error_at = one_line(reason), datetime.now(UTC)
        self.failures += 1
        if self.failures >= self.max_failures:
            raise ProjectionsFailed(f"projections: {what} {self.failures} times in a row, the last time: "
                                    f"{self.last_error}; stopping so that a supervisor restarts reflow serve")
        delay = min(self.backoff_first * 2 ** (self.failures - 1), self.backoff_max)
        self.retry_at = time.monotonic() + delay
        log.error("%s; restarting it in %.0f s (restart %d; the analysts' file is not updated meanwhile)",
                  self.last_error, delay, self.restarts + 1)

    def _drain(self) -> None:
        if self.proc is None and self.failures < self.max_failures:
            try:
                self.restarts += 1
                self._start(first=False)
            except ProjectionsFailed:
                pass
        if self.proc is None:
            log.error("projections: the analysts' file could not be brought up to date at exit (%s)",
                      self.last_error)
            return
        try:
            self._run_once()
        except Exception as exc:  # noqa: BLE001 - the close below publishes what is there
            log.warning("projections: %s", one_line(str(exc)))
        if self.proc is None:
            return
        proc, pipe = self.proc, self.pipe
        self.proc = self.pipe = None
        try:
            pipe.send("close")
            if pipe.poll(60):
                pipe.recv()
        except (EOFError, OSError):
            pass
        finally:
            pipe.close()
        proc.join(30)
        if proc.is_alive():
            log.error("projections: the projection process did not stop; killing it")
            proc.kill()
            proc.join()


class ProjectionRunFailed(Exception):
    """One run of the projection failed in the child (which lives on); logged, retried."""


def _exit_text(proc: Any) -> str:
    code = proc.exitcode
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _child_main(settings: Settings, parent: int, pipe: Any, status: dict, lock_wait: float) -> None:
    """The projection process: open the app and the runner, then run when asked, until told to
    close or serve is gone."""
    # Ctrl-C and a service manager's SIGTERM reach the whole group; serve drains, then stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    from projections.runner import ProjectionRefused, ProjectionRunner

    try:
        app = open_app(settings)
    except Exception as exc:  # noqa: BLE001 - one line to serve (a StoreError leads with --store)
        why = one_line(str(exc)) or type(exc).__name__
        pipe.send(("failed", why if why.startswith("--") else f"cannot open the store: {why}"))
        return
    try:
        runner = ProjectionRunner(app, settings.duckdb_path, owner=f"reflow serve, pid {parent}",
                                  wait=lock_wait, status=status)
    except Exception as exc:  # noqa: BLE001 - ProjectionBusy, ProjectionOutdated, ...: one line to serve
        app.close()
        pipe.send(("failed", one_line(f"--duckdb {exc.path}: {exc.reason}" if isinstance(exc, ProjectionRefused)
                                      else str(exc)) or type(exc).__name__))
        return
    from adapters import gctune

    gctune.tune()
    try:
        pipe.send(("ready", os.getpid()))
        while True:
            command = pipe.recv()
            if command == "close":
                try:
                    runner.close()
                    app.close()
                finally:
                    pipe.send(("closed", None))
                return
            try:
                reply = ("ok", runner.run_once())
            except Exception as exc:  # noqa: BLE001 - reported by serve, which asks again
                reply = ("error", f"{type(exc).__name__}: {one_line(str(exc))}")
            pipe.send(reply)
    except (EOFError, OSError):
        os._exit(0)  # serve is gone: stop at once (see _exit_with_parent)


def _exit_with_parent(parent: int) -> None:
    """serve was killed (kill -9 leaves no time to stop us): stop too. A projection batch cut off
    here is not committed, and the next runner redoes it from the stored position."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
