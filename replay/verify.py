"""`reflow verify`: the stored history is intact (rule A2) and every decision reproducible (RT6).

One pass over the notification log, in order, checks every event:

1. **Bytes.** The stored JSON decodes. Events whose bytes are not what encoding them again gives
   are counted (`noncanonical`): an event stored by an older version of its type (a field added
   since) is like that, and stays valid, because the chain is over the bytes as stored.
2. **Identity.** The body names the aggregate and version the row is stored under.
3. **Chain per aggregate.** An aggregate's events come in version order 1, 2, 3, ... and each
   event's `prev` is the sha256 of the topic and stored bytes of the one before, so any changed
   byte, removed or reordered event breaks the link to its successor. Once the log holds a
   chained event, an event stored without its `prev` is a break too.
4. **Continuity** (SQLite only, where ids are `rowid`s handed out as max + 1 and a rolled-back
   write leaves no hole): notification ids run 1, 2, 3, ... without gaps.
5. **Cross-references.** Every allocation an `OrderRouted` names has its `Allocated` event and
   every `Allocated` is named by an `OrderRouted` (they are written in one atomic save).
6. **Anchors.** A rolling hash over every notification (id and event digest) is compared with the
   anchors recorded by earlier clean runs (`LogAnchored` events), which covers what a chain per
   aggregate cannot see alone: the removal of an aggregate's last event, or of the log's tail.
7. **Decisions** (rule RT6). `decide(event.input) == event.decision` for every `OrderRouted`.

The first problem stops the run and is named by notification id, topic, aggregate and version.
A clean run records a new anchor (unless asked not to) so the next run covers up to here.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from engine.allocations import Allocated, AllocationOverdue
from engine.anchor import ANCHOR_ID, GENESIS, LogAnchor, LogAnchored
from engine.base import decode_event, digest_bytes, encode_event
from engine.clock import DeadlinePassed
from engine.order_events import OrderRouted
from engine.policy import Decision, decide

_LEGACY = b',"prev":null'


@dataclass(frozen=True)
class Problem:
    """The first event that does not match, and why."""

    notification_id: int | None
    topic: str
    originator_id: UUID | str | None
    version: int | None
    what: str

    def line(self) -> str:
        where = f"notification {self.notification_id}" if self.notification_id is not None else "the log"
        who = f" ({self.topic} of aggregate {self.originator_id} v{self.version})" if self.topic else ""
        return f"{where}{who}: {self.what}"


@dataclass
class Result:
    events: int = 0
    chained: int = 0
    legacy: int = 0
    decisions: int = 0
    anchors: int = 0
    noncanonical: int = 0
    """Events whose bytes are not what encoding them again gives: stored by an older version of their
    type (a field added since), or altered; the chain still covers them (it is over stored bytes)."""
    up_to: int = 0
    head: str = GENESIS.hex()
    seconds: float = 0.0
    problem: Problem | None = None
    anchored: bool = False
    gaps_checked: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.problem is None


class _Broken(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.line())
        self.problem = problem


def roll(head: bytes, notification_id: int, digest: str) -> bytes:
    """The log's rolling hash after one more notification (its id and hex chain digest)."""
    return hashlib.sha256(head + notification_id.to_bytes(8, "big") + digest.encode()).digest()


@dataclass(frozen=True)
class Anchor:
    """The log's rolling hash `head` after notification `up_to` (and how many events, if known)."""

    up_to: int
    head: str
    events: int | None = None
    said: str = "an anchor you kept"


def parse_head(text: str) -> Anchor:
    """`N:HEX` as printed by `reflow verify` (`log head: notification N sha256 HEX`)."""
    up_to, _, head = text.partition(":")
    if not up_to.isdigit() or len(head) != 64 or any(c not in "0123456789abcdef" for c in head):
        raise ValueError(f"--expect-head: {text!r} is not N:SHA256 (a notification id and 64 hex digits)")
    return Anchor(int(up_to), head)


def verify(app: Any, *, anchor: bool = True, batch: int = 5000, expect: Anchor | None = None,
           progress: Callable[[int, int], None] | None = None) -> Result:
    """Check the whole stored history; `progress(done, total)` is called after each batch.

    `expect`: a head printed by an earlier run and kept outside the store; the log must still
    hash to it at that notification (this catches a rewrite of the whole chain and its anchors)."""
    started = time.perf_counter()
    result = Result()
    try:
        anchors = _anchors(app) + ([expect] if expect else [])
        end = app.recorder.max_notification_id() or 0
        _Scan(app, result, anchors, end, batch, progress).run()
    except _Broken as broken:
        result.problem = broken.problem
    result.seconds = time.perf_counter() - started
    if result.ok and anchor:
        result.anchored = _record_anchor(app, result)
    return result


def _anchors(app: Any) -> list[Anchor]:
    try:
        return [Anchor(e.up_to, e.head, e.events, f"the anchor recorded at {e.at:%Y-%m-%d %H:%M:%S} UTC")
                for e in app.events.get(ANCHOR_ID) if isinstance(e, LogAnchored)]
    except Exception as e:  # noqa: BLE001 - a damaged anchor is itself a finding
        raise _Broken(Problem(None, "engine.anchor:LogAnchored", ANCHOR_ID, None,
                              f"the recorded anchors cannot be read: {e}")) from None


def _record_anchor(app: Any, result: Result) -> bool:
    log = app.load(LogAnchor, ANCHOR_ID) or LogAnchor(ANCHOR_ID)
    if log.up_to >= result.up_to:
        return False
    log.anchor(result.up_to, result.events, result.head, _now())
    try:
        app.save(log)
    except IntegrityError:  # another verify anchored at the same moment: its anchor serves
        return False
    return True


def _now():
    from datetime import datetime

    return datetime.now(UTC)


class _Scan:
    def __init__(self, app: Any, result: Result, anchors: list[Anchor], end: int, batch: int,
                 progress: Callable[[int, int], None] | None) -> None:
        self.app, self.r, self.end, self.batch, self.progress = app, result, end, batch, progress
        self.anchors = sorted(anchors, key=lambda a: a.up_to)
        self.next_anchor = 0
        self.contiguous = "sqlite" in type(app.recorder).__module__
        result.gaps_checked = self.contiguous
        mapper = app.mapper
        self.cipher, self.compressor = mapper.cipher, mapper.compressor
        self.last: dict[Any, tuple[int, str, int, str]] = {}  # aggregate -> version, digest, id, topic
        self.chain_began: int | None = None
        self.routed: dict[str, tuple] = {}  # allocation named by an OrderRouted, no Allocated yet
        self.allocated: dict[str, tuple] = {}  # Allocated not yet named by an OrderRouted
        self.ship_by: dict[Any, Any] = {}  # allocation aggregate -> its ship-by time (T4)
        self.head = GENESIS
        self.pos = 0

    def run(self) -> None:
        while self.pos < self.end:
            notes = self.app.recorder.select_notifications(start=self.pos + 1, limit=self.batch, stop=self.end)
            if not notes:
                break
            for n in notes:
                self.check(n)
            if self.progress:
                self.progress(self.pos, self.end)
        self.check_anchors(None)
        self.r.up_to, self.r.head = self.pos, self.head.hex()
        self.check_references()

    def check_anchors(self, next_id: int | None) -> None:
        """Anchors up to before `next_id` (None: all that remain) must match the log so far."""
        while self.next_anchor < len(self.anchors):
            a = self.anchors[self.next_anchor]
            if next_id is not None and a.up_to >= next_id:
                return
            if next_id is None and a.up_to > self.pos:
                raise _Broken(Problem(
                    None, "", None, None,
                    f"{a.said} covers the log up to notification {a.up_to} but it now ends at {self.pos} "
                    f"({self.r.events} events): events were removed from its end"))
            if (a.events is not None and a.events != self.r.events) or a.head != self.head.hex():
                since = self.anchors[self.next_anchor - 1].up_to if self.next_anchor else 0
                counts = f"{a.events} events then, " if a.events is not None else ""
                raise _Broken(Problem(
                    a.up_to, "", None, None,
                    f"the log up to here no longer matches {a.said} ({counts}{self.r.events} now; rolling "
                    f"hash differs): an event after notification {since} and up to {a.up_to} was removed, "
                    "reordered or altered"))
            self.r.anchors += 1
            self.next_anchor += 1

    def check(self, n: Any) -> None:
        if self.next_anchor < len(self.anchors):
            self.check_anchors(n.id)
        if self.contiguous and n.id != self.pos + 1:
            missing = f"{self.pos + 1}" if n.id == self.pos + 2 else f"{self.pos + 1}..{n.id - 1}"
            raise _Broken(Problem(n.id, n.topic, n.originator_id, n.originator_version,
                                  f"notification {missing} is missing before this one: an event was removed"))
        state = n.state
        if self.cipher:
            state = self.cipher.decrypt(state)
        if self.compressor:
            state = self.compressor.decompress(state)
        try:
            event = decode_event(n.topic, state)
        except Exception as e:  # noqa: BLE001
            raise _Broken(self._problem(n, f"the stored event cannot be decoded ({e}): altered")) from None
        chained = b'"prev":' in state  # legacy events (stored before the chain) lack the key
        canonical = encode_event(event)
        if canonical != state and (chained or canonical.replace(_LEGACY, b"", 1) != state):
            self.r.noncanonical += 1  # stored by an older version of its type, or altered
        if event.originator_id != _uuid(n.originator_id) or event.originator_version != n.originator_version:
            raise _Broken(self._problem(
                n, f"the event inside names aggregate {event.originator_id} v{event.originator_version}: "
                   "moved or reordered"))
        digest = digest_bytes(n.topic, state)
        key = n.originator_id
        last = self.last.get(key)
        version = n.originator_version
        if last is None:
            if version != 1:
                raise _Broken(self._problem(n, f"the aggregate's events v1..v{version - 1} are missing: removed"))
            if event.prev is not None:
                raise _Broken(self._problem(n, "a first event carries a previous digest: altered"))
        else:
            if version != last[0] + 1:
                what = (f"v{last[0] + 1}..v{version - 1} are missing before it: removed or reordered"
                        if version > last[0]
                        else f"it comes after v{last[0]} in the log: reordered")
                raise _Broken(self._problem(n, what))
            if chained and event.prev != last[1]:
                # the link from v(k) to v(k-1) is broken: v(k-1) no longer is what v(k) saw
                raise _Broken(Problem(
                    last[2], last[3], key, last[0],
                    f"altered: the aggregate's next event v{version} (notification {n.id}) recorded "
                    "another digest for it (or that event's own link was altered)"))
        if chained:
            self.r.chained += 1
            if self.chain_began is None:
                self.chain_began = n.id
        else:
            self.r.legacy += 1
            if self.chain_began is not None and version > 1:
                raise _Broken(self._problem(
                    n, f"stored without a previous-event digest although the chain began at notification "
                       f"{self.chain_began}: its digest was removed"))
        self.last[key] = (version, digest, n.id, n.topic)
        self.head = roll(self.head, n.id, digest)
        self.pos = n.id
        self.r.events += 1
        kind = type(event)
        if kind is OrderRouted:
            self.check_decision(n, event)
        elif kind is Allocated:
            if self.routed.pop(event.allocation_id, None) is None:
                self.allocated[event.allocation_id] = (n.id, n.topic, n.originator_id, version)
            self.ship_by[event.originator_id] = event.ship_by
        elif kind is DeadlinePassed and event.at != event.due:
            raise _Broken(self._problem(n, f"rule T4: a deadline due {event.due.isoformat()} passed as of "
                                           f"{event.at.isoformat()}, not its due time"))
        elif kind is AllocationOverdue and event.at != self.ship_by.get(event.originator_id, event.ship_by):
            raise _Broken(self._problem(n, "rule T4: an overdue reminder not dated at its allocation's ship-by time"))

    def check_decision(self, n: Any, event: OrderRouted) -> None:
        again = decide(event.input)
        if again != event.decision:
            raise _Broken(self._problem(n, "rule RT6: re-running the policy on the recorded input gives "
                                           f"another decision ({_difference(event.decision, again)})"))
        self.r.decisions += 1
        for ref in event.allocations:
            if self.allocated.pop(ref.allocation_id, None) is None:
                self.routed[ref.allocation_id] = (n.id, n.topic, n.originator_id, n.originator_version)

    def check_references(self) -> None:
        dangling = [(ctx, aid, "names allocation {} whose Allocated event is missing: removed")
                    for aid, ctx in self.routed.items()]
        dangling += [(ctx, aid, "allocation {} is named by no routing decision: its OrderRouted was removed")
                     for aid, ctx in self.allocated.items()]
        if dangling:
            (nid, topic, oid, version), aid, what = min(dangling, key=lambda d: d[0][0])
            raise _Broken(Problem(nid, topic, oid, version, what.format(aid)))

    @staticmethod
    def _problem(n: Any, what: str) -> Problem:
        return Problem(n.id, n.topic, n.originator_id, n.originator_version, what)


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _difference(recorded: Decision, again: Decision) -> str:
    for a, b in zip(recorded.lines, again.lines):
        if (a.chosen, a.unroutable) != (b.chosen, b.unroutable):
            return (f"line {a.line_id}: recorded {_said(a.chosen, a.unroutable)}, "
                    f"re-run {_said(b.chosen, b.unroutable)}")
        if a != b:
            return f"line {a.line_id}: the candidates' verdicts differ"
    if len(recorded.lines) != len(again.lines):
        return f"{len(recorded.lines)} lines recorded, {len(again.lines)} re-run"
    return f"consolidated to {recorded.consolidated_to!r} recorded, {again.consolidated_to!r} re-run"


def _said(chosen: int | None, unroutable: str | None) -> str:
    return f"alternative {chosen}" if chosen is not None else f"unroutable ({unroutable})"
