"""The event-sourcing base: msgspec events, small mutable aggregates, and the mapper that stores them.

Events are `msgspec.Struct`s named in the past tense; each knows how to `apply` itself to its
aggregate. Aggregates collect pending events and are saved by the eventsourcing `Application`.
`MsgspecMapper` stores events as msgspec JSON, decoding each with its own type, so `Decimal`,
`datetime`, `UUID` and nested structs round-trip exactly (a generic transcoder would turn
`Decimal` into `str`).

Tamper evidence (rule A2) is a hash chain per aggregate: every event carries `prev`, the digest of
the event before it in the same aggregate (None for an aggregate's first event, and absent from
events stored before the chain existed). The digest is sha256 over the topic and the event's JSON
*as stored*: for an event made in this process that is its encoding (`chain_digest`); for one
loaded from the store the mapper notes the stored bytes (`stored_digest`), so an event written
before a field was added (and so encoded without it) still links. `Aggregate.trigger` sets `prev`,
so routers writing different aggregates never wait on each other, and concurrent writers of one
aggregate are already serialised by its version (optimistic concurrency).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any, ClassVar, Self, TypeVar
from uuid import UUID

import msgspec
from eventsourcing.persistence import (
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import get_topic, resolve_topic


class Event(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A business fact. Immutable, so it can never be part of a reference cycle: ``gc=False``
    keeps the (many) events held by cached aggregates out of the garbage collector's scans."""

    originator_id: UUID
    originator_version: int
    at: datetime
    """When the business fact happened (not when it was stored)."""
    prev: str | None = None
    """Rule A2: hex `chain_digest` of the previous event of the same aggregate (None for the first)."""

    def apply(self, aggregate: Any) -> None:  # pragma: no cover - every event overrides
        raise NotImplementedError(type(self).__name__)


class Value(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """Base of immutable value objects carried inside events."""


TAgg = TypeVar("TAgg", bound="Aggregate")


class Aggregate:
    """A small mutable aggregate: `trigger` makes an event, applies it and keeps it pending."""

    created: ClassVar[type[Event]]

    def __init__(self, id: UUID) -> None:
        self.id = id
        self.version = 0
        self._pending: list[Event] = []
        self._head: str | Event | None = None
        """Rule A2: the digest of the last event stored or loaded (or that event, saved by this
        process, whose digest is its encoding's). The next event carries the digest of the last
        pending event, or this one when none is pending, as `prev`."""

    def trigger(self, cls: type[Event], at: datetime, **fields: Any) -> Event:
        if self._pending:
            prev = _pending_digest(self._pending[-1])
        else:  # the last event stored or loaded (its encoding is not wanted again)
            prev = chain_digest(self._head) if isinstance(self._head, Event) else self._head
        event = cls(originator_id=self.id, originator_version=self.version + 1, at=at, prev=prev, **fields)
        event.apply(self)
        self.version = event.originator_version
        self._pending.append(event)
        return event

    def __deepcopy__(self, memo: dict) -> Self:
        """A copy for a command (the library copies cached aggregates before handing them out).

        Aggregate state holds only immutable values (frozen structs, tuples, str, int, Decimal,
        datetime) inside dicts, sets and lists, so copying the containers one level down is a
        full copy, and far cheaper than `copy.deepcopy` walking every value."""
        clone = object.__new__(type(self))
        for name, value in self.__dict__.items():
            if isinstance(value, dict):
                value = {k: (list(v) if isinstance(v, list) else v) for k, v in value.items()}
            elif isinstance(value, (set, list)):
                value = type(value)(value)
            clone.__dict__[name] = value
        return clone

    def replay_pending(self, events: list[Event]) -> None:
        """Apply events made earlier in this unit of work again, and keep them pending."""
        for event in events:
            event.apply(self)
            self.version = event.originator_version
        self._pending = list(events)

    def collect_events(self) -> list[Event]:
        pending, self._pending = self._pending, []
        if pending:
            self._head = pending[-1]
        return pending

    @property
    def pending(self) -> list[Event]:
        return self._pending

    @classmethod
    def project(cls, aggregate: Self | None, events: Iterable[Event]) -> Self | None:
        last = None
        for event in events:
            if aggregate is None:
                aggregate = cls(event.originator_id)
            event.apply(aggregate)
            aggregate.version = event.originator_version
            last = event
        if last is not None:
            aggregate._head = stored_digest(last)
        return aggregate


_encoder = msgspec.json.Encoder(decimal_format="string")


MOVED: dict[str, str] = {
    **{f"engine.catalog:{name}": f"engine.merchants:{name}" for name in (
        "PriceSet", "MerchantSettingsChanged", "ShopRegistered", "CodeRegistered",
        "ProductUsesSupplier", "ProductLeftSupplier")},
    **{f"engine.orders:{name}": f"engine.allocations:{name}" for name in (
        "Allocated", "InterceptRequested", "AllocationCancelled", "InterceptAnswered",
        "TrackingUploaded", "LossRiskRecorded", "AllocationShipped")},
    **{f"engine.orders:{name}": f"engine.backlog:{name}" for name in ("LinesParked", "LinesUnparked")},
    **{f"engine.orders:{name}": f"engine.order_events:{name}" for name in (
        "OrderReferenced", "OrderPlaced", "OrderRouted", "OrderHeld", "OrderReleased", "ReviewChanged",
        "AllocationEnded", "ShippedDespiteIntercept", "AftersaleOpened", "AftersaleClosed",
        "AddressChanged", "OrderCancelled", "OrderShipped", "OrderShippedElsewhere")},
    "projections.statements:StatementIssued": "engine.statements:StatementIssued",
    "replay.verify:LogAnchored": "engine.anchor:LogAnchored",
}
"""Topics of events stored before their class moved to another module: they still load, and keep
their stored topic (and so their chain digest, A2)."""


@cache
def _decoder(topic: str) -> tuple[type, msgspec.json.Decoder]:
    cls = resolve_topic(MOVED.get(topic, topic))
    return cls, msgspec.json.Decoder(cls)


@cache
def _topic(cls: type) -> str:
    return get_topic(cls)


def topics_of(cls: type) -> tuple[str, ...]:
    """Every topic events of this class are stored under: its own, and those it had before it moved."""
    own = _topic(cls)
    return (own, *sorted(old for old, new in MOVED.items() if new == own))


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(topic: str, state: bytes) -> Event:
    return _decoder(topic)[1].decode(state)


def topic_of(event: Event) -> str:
    return _topic(type(event))


def digest_bytes(topic: str, state: bytes) -> str:
    """Rule A2: the chain digest of an event stored as `state` (its canonical JSON) under `topic`."""
    return hashlib.sha256(topic.encode() + b"\n" + state).hexdigest()


def chain_digest(event: Event) -> str:
    """Rule A2: sha256 over the event's topic and its msgspec JSON, as the mapper stores it."""
    return digest_bytes(_topic(type(event)), _encoder.encode(event))


def _pending_digest(event: Event) -> str:
    """`chain_digest` of an event not stored yet, keeping its encoding for the mapper, which stores
    the same bytes (one encoding per event, not two)."""
    state = _encoder.encode(event)
    if len(_encoded) >= _ENCODED_MAX:
        _encoded.clear()
    _encoded[(event.originator_id, event.originator_version)] = (event, state)
    return digest_bytes(_topic(type(event)), state)


_ENCODED_MAX = 100_000
_encoded: dict[tuple[UUID, int], tuple[Event, bytes]] = {}
"""Events encoded for their successor's `prev` and not stored yet: the mapper takes their bytes
from here, for that very event object only (a command taken back may have made another event with
the same version). Bounded (events of units that were taken back are never taken out)."""


_local = threading.local()
"""Per thread, the (aggregate, version, topic, stored JSON) of the event the mapper decoded last.
A load decodes and projects in one thread, one event at a time, so when `Aggregate.project` has
applied its last event that event's note is the one here: one slot, nothing kept per event."""


def _note_stored(event: Event, topic: str, state: bytes) -> None:
    _local.last = (event.originator_id, event.originator_version, topic, state)


def stored_digest(event: Event) -> str:
    """Rule A2: the digest of an event as it is stored (its own bytes, noted when the mapper decoded
    it; else its encoding, the same bytes while its type has not changed since it was stored)."""
    noted = getattr(_local, "last", None)
    if noted is not None and noted[0] == event.originator_id and noted[1] == event.originator_version:
        return digest_bytes(noted[2], noted[3])
    return chain_digest(event)


class MsgspecMapper(Mapper):
    """Stores msgspec events as JSON (optionally compressed/encrypted by the library)."""

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        kept = _encoded.pop((domain_event.originator_id, domain_event.originator_version), None)
        state = kept[1] if kept is not None and kept[0] is domain_event else _encoder.encode(domain_event)
        if self.compressor:
            state = self.compressor.compress(state)
        if self.cipher:
            state = self.cipher.encrypt(state)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=_topic(type(domain_event)),
            state=state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        state = stored_event.state
        try:
            if self.cipher:
                state = self.cipher.decrypt(state)
            if self.compressor:
                state = self.compressor.decompress(state)
            event = _decoder(stored_event.topic)[1].decode(state)
            _note_stored(event, stored_event.topic, state)
            return event
        except Exception as e:  # noqa: BLE001 - re-raised with context
            msg = (
                f"cannot decode stored event {stored_event.topic} of "
                f"{stored_event.originator_id} v{stored_event.originator_version}: {e}"
            )
            raise MapperDeserialisationError(msg) from e


class NullTranscoder(Transcoder):
    """The mapper encodes by itself; the library still wants a transcoder object."""

    def encode(self, obj: Any) -> bytes:  # pragma: no cover - unused
        return b""

    def decode(self, data: bytes) -> Any:  # pragma: no cover - unused
        return None
