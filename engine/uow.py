"""The unit of work: the aggregates one or many commands load, change and save together.

`UnitOfWork.get` loads an aggregate once per unit; later commands of the same unit see the earlier
ones' changes (RT7 within a batch). `checkpoint()` marks where a command starts; `rollback()` takes
back everything changed since, so a refused command leaves no trace in a batch. `collect()` hands
the pending events of every aggregate to the store, in one atomic write.

The loader hands out the application's cached aggregates themselves, not copies (a copy per batch
costs as much as the aggregate is big: a hot offer holds every open reservation). So the unit of
work changes cached objects in place, and whatever is not stored must leave the cache: `rollback`
evicts what a refused command changed before rebuilding it from the store, and `discard` evicts
everything changed when the unit is not stored (a failed write, an error, a dry run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from engine import ids
from engine.allocations import Allocation
from engine.base import Aggregate, Event
from engine.catalog import Offer, Supplier
from engine.errors import NotFound, UnknownAllocation, UnknownOffer, UnknownSupplier
from engine.orders import Order

if TYPE_CHECKING:
    from engine.privacy import Keys
    from engine.values import Buyer

A = TypeVar("A", bound=Aggregate)
Loader = Callable[[type, UUID], Any]
_MISSING: Any = object()


class UnitOfWork:
    def __init__(self, load: Loader, keys: Keys, absent: Iterable[UUID] = (),
                 forget: Callable[[Iterable[UUID]], None] | None = None) -> None:
        self._load = load
        self._forget = forget or (lambda ids_: None)
        self.keys = keys
        """The cipher and token key that seal and mask consumer data (P1, P2)."""
        self.shard = 0
        """Whose deadlines these are: the writer's lane of a partitioned inbound stream (its
        deadlines go to its own agendas, engine/clock.py), 0 for a single writer."""
        self.absent = set(absent)
        """Ids known not to be stored yet (new orders): not looked up one by one."""
        self.loaded: dict[UUID, Aggregate | None] = {}
        self.clear: dict[bytes, Buyer] = {}  # sealed -> buyer, so a command unseals once
        self._marks: dict[UUID, tuple[bool, Aggregate | None, int]] = {}

    # -- loading ----------------------------------------------------------------------------

    def get(self, cls: type[A], id: UUID) -> A | None:  # noqa: A002
        agg = self.loaded.get(id, _MISSING)
        if agg is _MISSING:
            self._marks.setdefault(id, (False, None, 0))
            agg = None if id in self.absent else self._load(cls, id)
            self.loaded[id] = agg
        elif id not in self._marks:
            self._marks[id] = (True, agg, len(agg.pending) if agg is not None else 0)
        return agg  # type: ignore[return-value]

    def get_or_new(self, cls: type[A], id: UUID) -> A:  # noqa: A002
        agg = self.get(cls, id)
        if agg is None:
            agg = cls(id)
            self.loaded[id] = agg
        return agg

    def supplier(self, supplier_id: str) -> Supplier:
        s = self.get(Supplier, ids.supplier_id(supplier_id))
        if s is None:
            raise UnknownSupplier(f"supplier_id: unknown supplier {supplier_id!r}")
        return s

    def offer(self, supplier_id: str, offer_id: str) -> Offer:
        o = self.get(Offer, ids.offer_id(supplier_id, offer_id))
        if o is None:
            raise UnknownOffer(f"offer_id: supplier {supplier_id!r} has no offer {offer_id!r}")
        return o

    def get_offer(self, supplier_id: str, offer_id: str) -> Offer | None:
        return self.get(Offer, ids.offer_id(supplier_id, offer_id))

    def order(self, platform: str, shop_id: str, order_id: str) -> Order:
        o = self.get(Order, ids.order_id(platform, shop_id, order_id))
        if o is None:
            raise NotFound(f"order_id: unknown order {platform}/{shop_id}/{order_id}")
        return o

    def allocation(self, allocation_id: str, rule: str = "") -> Allocation:
        a = self.get(Allocation, ids.allocation_uuid(allocation_id))
        if a is None:
            raise UnknownAllocation(f"allocation_id: unknown allocation {allocation_id!r}", rule)
        return a

    def live(self, order: Order) -> list[Allocation]:
        """The order's live allocations (active, tracked or shipped)."""
        return [self.allocation(a) for a in list(order.allocations)]

    # -- commands within the unit -----------------------------------------------------------

    def checkpoint(self) -> None:
        """A command starts here: `rollback` takes back what it changes from now on."""
        self._marks = {}

    def rollback(self) -> None:
        """Take back every change since the last checkpoint (the command failed, or was a dry run).

        An aggregate changed since is rebuilt from the store plus the events pending before."""
        for id_, (was_loaded, agg, n) in self._marks.items():
            now = self.loaded.get(id_)
            if now is agg and (agg is None or len(agg.pending) == n):
                continue  # only read
            if not was_loaded and (now is None or (not now.pending and now.version)):
                continue  # first loaded by this command and only read (or absent): stays, cache and all
            self._forget((id_,))  # the cached object holds the command's changes
            if not was_loaded:
                self.loaded.pop(id_, None)
            elif agg is None:
                self.loaded[id_] = None
            else:
                self.loaded[id_] = self._rebuild(type(agg), id_, agg.pending[:n])
        self._marks = {}

    def _rebuild(self, cls: type[A], id: UUID, kept: list[Event]) -> A:  # noqa: A002
        agg = (None if id in self.absent else self._load(cls, id)) or cls(id)
        agg.replay_pending(kept)
        return agg

    def changed(self) -> list[UUID]:
        """The aggregates holding changes not stored yet."""
        return [agg.id for agg in self.loaded.values() if agg is not None and agg.pending]

    def discard(self) -> None:
        """The unit will not be stored: evict what it changed from the cache."""
        self._forget(self.changed())

    def collect(self) -> list[Event]:
        """Every pending event of the unit, taken out of its aggregate (to be stored)."""
        return [e for agg in self.loaded.values() if agg is not None for e in agg.collect_events()]
