"""The application: reflow's commands and queries over the eventsourcing event store.

`Reflow.execute(command)` runs one command (engine/commands.py) through its handler
(engine/handlers/) in a unit of work (engine/uow.py) and saves every changed aggregate in one
atomic write. A write that collides with a concurrent one (another router took the same stock unit
first) is retried on fresh state, so two routers never both take the last unit (rule RT7). A
refused command raises a `DomainError` before anything is written. `run_batch` runs many commands
in one unit of work and one write. The methods named after commands (`place_order`, ...) are
conveniences that build the command and execute it.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import ApplicationRecorder, IntegrityError, Tracking
from eventsourcing.utils import Environment, get_topic

from engine import commands as c
from engine import ids
from engine.allocations import Allocation
from engine.base import Aggregate, MsgspecMapper, NullTranscoder
from engine.catalog import Offer
from engine.conveniences import Conveniences, utcnow  # noqa: F401  (re-exported)
from engine.errors import Conflict, DomainError, InvalidCommand
from engine.handlers import HANDLERS
from engine.linking import Link
from engine.order_events import OrderRouted
from engine.orders import Order
from engine.privacy import Keys
from engine.uow import UnitOfWork
from engine.values import Buyer

A = TypeVar("A", bound=Aggregate)
Position = tuple[str, int]
_LATEST = 2**62


class Reflow(Conveniences, Application):
    """reflow's application service. Commands are values with explicit times."""

    name = "reflow"
    env: ClassVar[dict[str, str]] = {
        "MAPPER_TOPIC": get_topic(MsgspecMapper),
        "TRANSCODER_TOPIC": get_topic(NullTranscoder),
        # Keep recently used aggregates in memory and fast-forward them from the store on each
        # use (one query for the events since), so a busy offer is not replayed from its first
        # event on every order. Bounded (LRU), and always fresh: other routers' writes are read.
        "AGGREGATE_CACHE_MAXSIZE": "20000",
    }
    RETRIES = 30
    CONTENDED_SECONDS = 5.0

    def __init__(self, env: dict[str, str] | None = None, *, default_merchant: str = "default") -> None:
        env = dict(env or {})
        key = env.pop("REFLOW_CIPHER_KEY", None)
        super().__init__(env)
        key = key or os.environ.get("REFLOW_CIPHER_KEY")
        if not key:
            raise InvalidCommand("REFLOW_CIPHER_KEY: a cipher key is needed to seal consumer data")
        self._cipher_key = key
        self.cipher = AESCipher(Environment(env={"CIPHER_KEY": key}))
        self.keys = Keys(self.cipher, key, default_merchant)
        self.token_key = self.keys.token_key
        self.default_merchant = default_merchant
        self.handlers: dict[type, Callable[[Any, UnitOfWork], Any]] = dict(HANDLERS)
        self._local = threading.local()  # the batch's unit of work, per thread
        self._writing = threading.RLock()
        """One unit of work at a time per application: units change cached aggregates in place
        (`_owned`). Other applications and processes still write concurrently (RT7 retries)."""
        self.exclusive: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
        """Held around a retry after a concurrent write: the store's lock shared by every process
        writing it (adapters.store.WriteLock on PostgreSQL), so a batch that lost once runs again
        alone, and several routers sharing a hot aggregate (one best-selling offer) take turns
        instead of undoing each other's work until the retries run out. After a conflict, the
        first attempts take it too for `CONTENDED_SECONDS`: while routers contend, they take turns."""
        self._contended_until = 0.0
        self.conflicts = 0
        """Writes that lost to another writer of the store and ran again (a router's log says how many)."""
        self.sharing: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
        """Held around an ordinary write (the same lock, shared): a write never commits while
        another router runs a retry holding the lock alone, so that retry cannot lose again."""

    def close(self) -> None:
        closing = getattr(self.exclusive, "close", None)
        if closing is not None:
            closing()
        super().close()

    # -- running commands -------------------------------------------------------------------

    def load(self, cls: type[A], id: UUID) -> A | None:  # noqa: A002
        """An aggregate as stored (for queries): read from the store, never from the cache, whose
        aggregates belong to the unit of work running in the engine thread (`_owned`)."""
        try:
            # A version far past any aggregate's: the library then reads the store, not its cache.
            return self.repository.get(id, version=_LATEST, projector_func=cls.project)  # type: ignore[arg-type]
        except AggregateNotFoundError:
            return None

    def _owned(self, cls: type[A], id: UUID) -> A | None:  # noqa: A002
        """The cached aggregate itself, brought up to date with the store (one query for the events
        since), handed to a unit of work without a copy: a batch's cost must not grow with the
        aggregate's size (a hot offer holds every open reservation). The unit of work changes it in
        place, so every path that does not store those changes evicts it (`_forget`)."""
        try:
            return self.repository.get(id, projector_func=cls.project,  # type: ignore[arg-type]
                                       deepcopy_from_cache=False)
        except AggregateNotFoundError:
            return None

    def _forget(self, ids_: Iterable[UUID]) -> None:
        """Drop these aggregates from the cache: they hold changes that were not stored."""
        cache = self.repository.cache
        if cache is not None:
            for id_ in ids_:
                with contextlib.suppress(KeyError):
                    cache.get(id_, evict=True)

    def unit_of_work(self, absent: Iterable[UUID] = ()) -> UnitOfWork:
        return UnitOfWork(self._owned, self.keys, absent, forget=self._forget)

    def execute(self, command: c.Command, dry_run: bool = False) -> Any:
        """Run one command and store what it changed (nothing on a dry run)."""
        handler = self.handlers[type(command)]
        return self.run(lambda uow: handler(command, uow), dry_run=dry_run)

    def run(self, decide: Callable[[UnitOfWork], Any], dry_run: bool = False, shard: int = 0) -> Any:
        """Run `decide` in a unit of work and store what it changed, retrying on a concurrent
        write. Inside `run_batch` it joins the batch's unit of work instead."""
        batch = self._local.__dict__.get("uow")
        if batch is not None:
            batch.checkpoint()
            try:
                result = decide(batch)
            except BaseException:
                batch.rollback()
                raise
            if dry_run:
                batch.rollback()
            else:
                batch.checkpoint()
            return result
        results = self._retrying(lambda uow: [decide(uow)], (), None, store=not dry_run, shard=shard)
        return results[0]

    def run_batch(self, commands: Sequence[c.Command | Callable[[], Any]],
                  refused: tuple[type[BaseException], ...] = (DomainError,),
                  absent: Iterable[UUID] = (), position: Position | None = None,
                  before_store: Callable[[list[Any]], None] | None = None, shard: int = 0) -> list[Any]:
        """Run many commands in one unit of work and save all their events in one atomic write.

        A command that raises one of `refused` is taken back on its own (`UnitOfWork.rollback`)
        and its exception is returned in its place; the others are kept. Any other exception (the
        store is down) is raised and nothing is written. On a concurrent write to the same
        aggregates the whole batch runs again on fresh state (RT7). `absent` names aggregates
        known not to be stored yet (new orders); `position` (source, position) is stored in the
        same transaction, so a batch cannot be applied twice; `before_store` sees the results
        before anything is written (and may stop the write by raising). A command may also be a
        callable that returns a result without touching the store (a refusal found earlier)."""

        def each(uow: UnitOfWork) -> list[Any]:
            results: list[Any] = []
            self._local.uow = uow
            try:
                for command in commands:
                    uow.checkpoint()
                    try:
                        if isinstance(command, c.Command):
                            results.append(self.handlers[type(command)](command, uow))
                        else:
                            results.append(command())
                    except refused as exc:
                        uow.rollback()
                        # without its traceback: the frames it holds (and their aggregates) would
                        # otherwise live on in a reference cycle until a full collection
                        results.append(exc.with_traceback(None))
            finally:
                self._local.uow = None
            if before_store is not None:
                before_store(results)
            return results

        return self._retrying(each, absent, position, shard=shard)

    def _retrying(self, each: Callable[[UnitOfWork], list[Any]], absent: Iterable[UUID],
                  position: Position | None, store: bool = True, shard: int = 0) -> list[Any]:
        absent = set(absent)
        with self._writing:
            for attempt in range(self.RETRIES):
                if attempt:
                    time.sleep(random.uniform(0, 0.002 * attempt))  # jitter: let the other writer finish
                    absent = set()
                alone = attempt or time.monotonic() < self._contended_until
                with self.exclusive() if alone else contextlib.nullcontext():
                    uow = self.unit_of_work(absent)
                    uow.shard = shard
                    try:
                        results = each(uow)
                    except BaseException:
                        uow.discard()
                        raise
                    if not store:
                        uow.discard()
                        return results
                    changed = uow.changed()
                    try:
                        with contextlib.nullcontext() if alone else self.sharing():
                            self._store(uow, position)
                    except IntegrityError:
                        self._forget(changed)
                        if position is not None and self.position(position[0]) >= position[1]:
                            raise Conflict(f"{position[0]} position {position[1]} was stored already") from None
                        self._contended_until = time.monotonic() + self.CONTENDED_SECONDS
                        self.conflicts += 1
                        continue
                    except BaseException:
                        self._forget(changed)
                        raise
                    return results
        raise Conflict("the same aggregates kept changing concurrently; try again")

    def _store(self, uow: UnitOfWork, position: Position | None = None) -> None:
        """Every pending event of the unit in one atomic insert (or nothing), with the position
        reached in the unit's source when one is given."""
        events = uow.collect()
        if events or position is not None:
            tracking = Tracking(application_name=position[0], notification_id=position[1]) if position else None
            self.events.put(events, tracking=tracking)

    def construct_env(self, name: str, env: Any = None) -> Environment:
        """Without ``REFLOW_CIPHER_KEY``: eventsourcing would read it (from ``os.environ``) as this
        application's ``CIPHER_KEY`` and encrypt every stored event whole, so a store's format would
        depend on where its key came from. Whole-record encryption only when ``CIPHER_KEY`` is
        given (``adapters.bootstrap`` does, for a store written that way before)."""
        merged = super().construct_env(name, env)
        merged.pop("REFLOW_CIPHER_KEY", None)
        return merged

    def construct_recorder(self) -> ApplicationRecorder:
        """A process recorder: events and a source's position (`run_batch(position=...)`) are
        written in one transaction, so a message applied once is known as applied."""
        return self.factory.process_recorder()

    def position(self, source: str) -> int:
        """The last position of `source` stored with a batch (0 when none)."""
        return self.recorder.max_tracking_id(source) or 0  # type: ignore[attr-defined]

    # -- queries ----------------------------------------------------------------------------

    def order(self, platform: str, shop_id: str, order_id: str) -> Order | None:
        return self.load(Order, ids.order_id(platform, shop_id, order_id))

    def allocation(self, allocation_id: str) -> Allocation | None:
        return self.load(Allocation, ids.allocation_uuid(allocation_id))

    def allocations_of(self, platform: str, shop_id: str, order_id: str) -> list[Allocation]:
        order = self.order(platform, shop_id, order_id)
        if order is None:
            return []
        every = list(order.allocations) + list(order.ended)
        return [a for a in (self.allocation(x) for x in dict.fromkeys(every)) if a is not None]

    def offer(self, supplier_id: str, offer_id: str) -> Offer | None:
        return self.load(Offer, ids.offer_id(supplier_id, offer_id))

    def link(self, platform: str, shop_id: str, product_id: str) -> Link | None:
        return self.load(Link, ids.link_id(platform, shop_id, product_id))

    def decisions(self, platform: str, shop_id: str, order_id: str) -> list[OrderRouted]:
        """Every routing decision of an order with its recorded inputs (rule RT6)."""
        return [e for e in self.events.get(ids.order_id(platform, shop_id, order_id)) if isinstance(e, OrderRouted)]

    def buyer(self, platform: str, shop_id: str, order_id: str) -> Buyer | None:
        order = self.order(platform, shop_id, order_id)
        return self.keys.unseal(order.sealed) if order and order.sealed else None
