"""Leases in a NATS KV bucket with a TTL: which router holds which lane of REFLOW_IN, and which
one runs the outbound publisher and the projections (issue 18).

A lease is a key of the bucket ``REFLOW_LEASES`` whose value names its holder. ``take`` creates it
(the server refuses a second create, so one router wins); the holder renews it every second with
an update that names the revision it last wrote (a holder that was replaced is refused); the
bucket's TTL removes the key of a router that died, and another takes it. ``want`` leaves a note
that a router would like a lease back (its preferred lane, after a restart); the holder hands it
over at its next batch boundary.

A lease is only as good as the clock of the process holding it: a router that stalls longer than
the TTL may still believe it holds a lane. For the lanes, the store refuses such a router's writes
(adapters/batches.py, the lane's epoch); for the publisher, ``Nats-Msg-Id`` makes a second
publication of a message a duplicate the server drops; the projection file is DuckDB's, which one
process at a time may write.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
import uuid

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

log = logging.getLogger("reflow.serve")

BUCKET = "REFLOW_LEASES"


def owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Leases:
    def __init__(self, js: JetStreamContext, owner: str | None = None, *, ttl: float = 5.0,
                 replicas: int = 1) -> None:
        self.js, self.owner, self.ttl, self.replicas = js, owner or owner_name(), ttl, replicas
        self.kv: KeyValue | None = None
        self.held: dict[str, tuple[int, float]] = {}
        """name -> (revision last written, monotonic time it was written)."""

    async def open(self) -> None:
        try:
            self.kv = await self.js.key_value(BUCKET)
            self.ttl = (await self.kv.status()).ttl or self.ttl  # the bucket's, set by its maker
        except BucketNotFoundError:
            self.kv = await self.js.create_key_value(KeyValueConfig(
                bucket=BUCKET, ttl=self.ttl, history=1, replicas=self.replicas, storage=StorageType.FILE))

    def holds(self, name: str) -> bool:
        """Held, and renewed recently enough that no other router can have taken it yet."""
        entry = self.held.get(name)
        return entry is not None and time.monotonic() - entry[1] < self.ttl * 0.8

    async def take(self, name: str) -> bool:
        assert self.kv is not None
        started = time.monotonic()
        try:
            revision = await self.kv.create(name, self.owner.encode())
        except KeyWrongLastSequenceError:
            return False
        self.held[name] = (revision, started)
        return True

    async def renew(self) -> list[str]:
        """Renew every lease held; the names of those lost (replaced, or not renewed in time)."""
        assert self.kv is not None
        lost = []
        for name, (revision, _) in list(self.held.items()):
            started = time.monotonic()
            try:
                renewed = await self.kv.update(name, self.owner.encode(), last=revision)
            except KeyWrongLastSequenceError:
                renewed = await self._still_ours(name)  # an earlier renewal whose answer was lost?
                if renewed is None:
                    lost.append(name)
                    continue
            except Exception as exc:  # noqa: BLE001 - NATS away: held until the TTL says otherwise
                log.debug("lease %s not renewed: %s", name, exc)
                if not self.holds(name):
                    lost.append(name)
                continue
            if self.held.get(name, (None,))[0] == revision:  # not released meanwhile
                self.held[name] = (renewed, started)
        for name in lost:
            self.held.pop(name, None)
        return lost

    async def _still_ours(self, name: str) -> int | None:
        """The revision of ``name`` if its holder is this owner (renewed under another revision)."""
        assert self.kv is not None
        try:
            entry = await self.kv.get(name)
        except Exception:  # noqa: BLE001 - gone (expired), or NATS away
            return None
        return entry.revision if entry.value == self.owner.encode() else None

    async def holder(self, name: str) -> str | None:
        assert self.kv is not None
        try:
            entry = await self.kv.get(name)
        except KeyNotFoundError:
            return None
        return entry.value.decode() if entry.value else None

    async def want(self, name: str) -> None:
        """Ask for ``name``: its holder hands it over (``wanted``)."""
        assert self.kv is not None
        await self.kv.put(f"want.{name}", self.owner.encode())

    async def wanted(self, name: str) -> bool:
        """Another router asked for ``name``."""
        who = await self.holder(f"want.{name}")
        return who is not None and who != self.owner

    async def unwant(self, name: str) -> None:
        assert self.kv is not None
        try:
            await self.kv.delete(f"want.{name}")
        except Exception:  # noqa: BLE001 - it expires anyway
            pass

    async def release(self, name: str) -> None:
        """Give a lease up now (a router stopping, or handing a lane back)."""
        entry = self.held.pop(name, None)
        if entry is None or self.kv is None:
            return
        try:
            await self.kv.delete(name, last=entry[0])
        except KeyWrongLastSequenceError:  # renewed meanwhile: delete it if it is still ours
            revision = await self._still_ours(name)
            if revision is not None:
                with contextlib.suppress(Exception):
                    await self.kv.delete(name, last=revision)
        except Exception:  # noqa: BLE001 - NATS away: the TTL frees it
            pass
