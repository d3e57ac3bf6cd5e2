"""Several ``reflow serve --partitions N`` processes on one store and one NATS (cluster): what
``reflow demo --routers N``, the fault tests and the scaling benchmark start (issue 18).

Router ``i`` prefers partition ``i`` (``--partition i``); with fewer routers than partitions, the
others take the rest. Each writes its log to ``<log_dir>/router-<i>.log``. ``kill(i)`` is a
``kill -9``; ``start(i)`` starts it again, as a service manager would.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from adapters.bootstrap import Settings
from adapters.partitions import consumer_name, lanes

IN_STREAM = "REFLOW_IN"


class RoutersFailed(RuntimeError):
    """A router exited when it should not have (its log's tail says why)."""


class Routers:
    def __init__(self, count: int, settings: Settings, log_dir: Path, *, partitions: int | None = None,
                 replicas: int = 1, batch: int = 256, ack_wait: float = 10.0, clock: str = "wall") -> None:
        self.count, self.settings, self.log_dir = count, settings, Path(log_dir)
        self.partitions = partitions or count
        self.replicas, self.batch, self.ack_wait, self.clock = replicas, batch, ack_wait, clock
        self.procs: list[subprocess.Popen | None] = [None] * count

    def command(self, i: int) -> list[str]:
        s = self.settings
        words = [sys.executable, "-m", "adapters.cli", "serve", "--nats", s.nats_url, "--data-dir", str(s.data_dir),
                 "--partitions", str(self.partitions), "--partition", str(i % self.partitions),
                 "--replicas", str(self.replicas), "--batch", str(self.batch), "--ack-wait", f"{self.ack_wait:g}",
                 "--clock", self.clock]
        if s.store:
            words += ["--store", s.store]
        if s.duckdb:
            words += ["--duckdb", str(s.duckdb)]
        return words

    def log(self, i: int) -> Path:
        return self.log_dir / f"router-{i}.log"

    def start(self, i: int | None = None) -> Routers:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for k in range(self.count) if i is None else [i]:
            with open(self.log(k), "ab") as out:
                self.procs[k] = subprocess.Popen(self.command(k), stdout=out, stderr=subprocess.STDOUT,
                                                 stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    def kill(self, i: int) -> None:
        """kill -9 router ``i`` and the children it started (publisher, projections), as a lost
        machine would lose them."""
        proc = self.procs[i]
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                import os

                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.procs[i] = None

    def check(self) -> None:
        """Raise if a router that should run has exited."""
        for i, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is not None:
                tail = self.log(i).read_text(errors="replace").strip().splitlines()[-5:]
                raise RoutersFailed(f"router {i} exited ({proc.returncode}): " + " | ".join(tail))

    def stop(self, timeout: float = 90.0) -> list[int | None]:
        """SIGTERM every router (they finish their batch, publish, hand their leases back)."""
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = []
        for i, proc in enumerate(self.procs):
            if proc is None:
                codes.append(None)
                continue
            try:
                codes.append(proc.wait(timeout))
            except subprocess.TimeoutExpired:
                self.kill(i)
                codes.append(-9)
        return codes

    async def holders(self, js: Any) -> dict[str, int | None]:
        """Lease -> the router (index) holding it; None: held by a process not started here. Each
        lease is read by its key (a listing of the bucket is a watch that may time out while the
        cluster is busy); a lease that cannot be read now is left out."""
        from nats.js.errors import KeyNotFoundError

        from adapters.leases import BUCKET

        kv = await js.key_value(BUCKET)
        pids = {proc.pid: i for i, proc in enumerate(self.procs) if proc is not None}
        out: dict[str, int | None] = {}
        for key in [f"lane.{lane}" for lane in lanes(self.partitions)] + ["role.publisher", "role.projections"]:
            for attempt in range(3):
                try:
                    holder = (await kv.get(key)).value.decode()
                    out[key] = pids.get(int(holder.split(":")[1]))
                    break
                except KeyNotFoundError:
                    break
                except Exception:  # noqa: BLE001 - a timeout on a busy cluster: read it again
                    await asyncio.sleep(0.2 * (attempt + 1))
        return out

    async def ready(self, js: Any, timeout: float = 60.0) -> None:
        """Until every lane and role has a holder, and each running router holds its own partition."""
        wanted = [f"lane.{lane}" for lane in lanes(self.partitions)] + ["role.publisher", "role.projections"]
        deadline = time.monotonic() + timeout
        while True:
            self.check()
            with contextlib.suppress(Exception):
                held = await self.holders(js)
                own = all(held.get(f"lane.p{i % self.partitions}") == i
                          for i, proc in enumerate(self.procs) if proc is not None)
                if all(k in held for k in wanted) and own:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"routers not ready in {timeout:.0f}s; logs in {self.log_dir}")
            await asyncio.sleep(0.2)

    async def pending(self, js: Any) -> int:
        """Messages of REFLOW_IN not yet applied (and acknowledged) by some lane."""
        total = 0
        for lane in lanes(self.partitions):
            info = await js.consumer_info(IN_STREAM, consumer_name(lane))
            total += info.num_pending + info.num_ack_pending
        return total

    async def settled(self, js: Any, timeout: float = 120.0, check: bool = True) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if check:
                self.check()
            with contextlib.suppress(Exception):
                if await self.pending(js) == 0:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"routers did not apply REFLOW_IN in {timeout:.0f}s; logs in {self.log_dir}")
            await asyncio.sleep(0.1)

    def __enter__(self) -> Routers:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
