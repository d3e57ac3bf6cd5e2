"""The application service: reflow's commands and queries, over the eventsourcing event store.

Each command loads the aggregates it needs into a unit of work, decides, and saves every changed
aggregate in one atomic write. A write that collides with a concurrent one (another router took
the same stock unit first) is retried on fresh state, so two routers never both take the last unit
(rule RT7). A refused command raises a `DomainError` before anything is written.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.cryptography import AESCipher
from eventsourcing.persistence import ApplicationRecorder, IntegrityError, Tracking
from eventsourcing.utils import Environment, get_topic

from engine import ids
from engine.base import Aggregate, MsgspecMapper, NullTranscoder
from engine.catalog import (
    CodeBook,
    CodeRegistered,
    Merchant,
    MerchantSettingsChanged,
    MerchantTierSet,
    Offer,
    OfferPublished,
    OfferRenewed,
    PoolTerms,
    PriceBook,
    PriceSet,
    ProductLeftSupplier,
    ProductUsesSupplier,
    Shop,
    ShopRegistered,
    StockReleased,
    StockReported,
    StockReserved,
    StockShipped,
    StockShippedLate,
    Supplier,
    SupplierIndex,
    SupplierUpserted,
)
from engine.errors import (
    Conflict,
    DomainError,
    InvalidCommand,
    LinkRefused,
    NotFound,
    TrackingRefused,
    UnknownAllocation,
    UnknownOffer,
    UnknownSupplier,
)
from engine.linking import (
    Link,
    LinkSet,
    StockPublished,
    StockRule,
    StockRuleSet,
    Unlinked,
    check_link,
    check_stock_rule,
    describe_changes,
    published_stock,
    sku_key,
)
from engine.orders import (
    AddressChanged,
    AftersaleClosed,
    AftersaleOpened,
    AllocationCancelled,
    AllocationEnded,
    AllocationShipped,
    Allocated,
    Allocation,
    AllocLine,
    AllocRef,
    Backlog,
    InterceptAnswered,
    InterceptRequested,
    LinesParked,
    LinesUnparked,
    LossRiskRecorded,
    Order,
    OrderCancelled,
    OrderHeld,
    OrderPlaced,
    OrderReferenced,
    OrderReleased,
    OrderRouted,
    OrderShipped,
    OrderShippedElsewhere,
    Package,
    Parked,
    ReviewChanged,
    ShippedDespiteIntercept,
    TrackingUploaded,
)
from engine.policy import (
    CandidateFacts,
    ComponentFacts,
    Decision,
    LineFacts,
    RoutingInput,
    Verdict,
    cost_of,
    decide,
    rank,
)
from engine.privacy import mask, recipient_token, seal, unseal
from engine.servicelevel import ship_by
from engine.values import (
    PLATFORMS,
    Alternative,
    Buyer,
    Component,
    HoldRules,
    LineIn,
    MerchantSettings,
    OfferSku,
    SkuLink,
    SkuQty,
)

A = TypeVar("A", bound=Aggregate)

TRACKING_NO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{5,39}$")
CARRIER = re.compile(r"^[\w\u4e00-\u9fff .-]{2,32}$")
PREPULL_WINDOW_DAYS = 30  # rule L10 (choice)
POOL_MIN_STOCK = 200  # rule RT8
POOL_MIN_GROWTH = 60


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


_MISSING: Any = object()


class Work:
    """A unit of work: aggregates loaded once, saved together.

    A unit may hold many commands (``Reflow.run_batch``). Each command's changes can be undone on
    their own: the first time a command touches an aggregate, the unit notes how many events it
    had pending; if the command fails, every aggregate it changed is rebuilt from the store plus
    the events of the commands before it, so a refused command leaves no trace in the batch."""

    def __init__(self, app: Reflow, absent: Iterable[UUID] = ()) -> None:
        self.app = app
        self.absent = set(absent)  # ids known not to be in the store (no need to ask it)
        self.loaded: dict[UUID, Aggregate | None] = {}
        self.clear: dict[bytes, Buyer] = {}  # sealed -> buyer, to unseal once per command
        self._before: dict[UUID, tuple[bool, Aggregate | None, int]] = {}

    def get(self, cls: type[A], id: UUID) -> A | None:  # noqa: A002
        agg = self.loaded.get(id, _MISSING)
        if agg is _MISSING:
            self._before.setdefault(id, (False, None, 0))
            agg = None if id in self.absent else self.app.load(cls, id)
            self.loaded[id] = agg
        elif id not in self._before:
            self._before[id] = (True, agg, len(agg._pending) if agg is not None else 0)
        return agg  # type: ignore[return-value]

    def get_or_new(self, cls: type[A], id: UUID) -> A:  # noqa: A002
        agg = self.get(cls, id)
        if agg is None:
            agg = cls(id)
            self.loaded[id] = agg
        return agg

    def begin(self) -> None:
        """A new command starts: forget what the previous one touched."""
        self._before = {}

    def undo(self) -> None:
        """Take back every change of the current command (it failed, or was a dry run)."""
        for id_, (was_loaded, agg, n) in self._before.items():
            now = self.loaded.get(id_)
            if now is agg and (agg is None or len(agg._pending) == n):
                continue  # read only
            if not was_loaded:
                self.loaded.pop(id_, None)
            elif agg is None:
                self.loaded[id_] = None
            else:
                self.loaded[id_] = self._rebuild(type(agg), id_, agg._pending[:n])
        self._before = {}

    def _rebuild(self, cls: type[A], id: UUID, kept: list[Any]) -> A:  # noqa: A002
        agg = (None if id in self.absent else self.app.load(cls, id)) or cls(id)
        for event in kept:
            event.apply(agg)
            agg.version = event.originator_version
        agg._pending = list(kept)
        return agg


class Reflow(Application):
    """reflow's application service. Commands take business values; times are explicit."""

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

    def __init__(self, env: dict[str, str] | None = None, *, default_merchant: str = "default") -> None:
        env = dict(env or {})
        key = env.pop("REFLOW_CIPHER_KEY", None)
        super().__init__(env)
        key = key or self.env.get("REFLOW_CIPHER_KEY")
        if not key:
            raise InvalidCommand("REFLOW_CIPHER_KEY: a cipher key is needed to seal consumer data")
        self._cipher_key = key
        self.cipher = AESCipher(Environment(env={"CIPHER_KEY": key}))
        self.token_key = hashlib.sha256(b"reflow-recipient-token\x1f" + key.encode()).digest()
        self.default_merchant = default_merchant
        self._local = threading.local()  # the batch's unit of work, per thread

    # -- plumbing ---------------------------------------------------------------------------

    def load(self, cls: type[A], id: UUID) -> A | None:  # noqa: A002
        try:
            return self.repository.get(id, projector_func=cls.project)  # type: ignore[arg-type]
        except AggregateNotFoundError:
            return None

    def run(self, decide_fn: Callable[[Work], Any], dry_run: bool = False) -> Any:
        """Run a command in a unit of work; retry on a concurrent write to the same aggregates.

        Inside ``run_batch`` the command joins the batch's unit of work instead, and is saved with
        the others."""
        batch = self._local.__dict__.get("work")
        if batch is not None:
            return self._run_in(batch, decide_fn, dry_run)
        for attempt in range(self.RETRIES):
            if attempt:
                time.sleep(random.uniform(0, 0.002 * attempt))  # jitter: let the other writer finish
            work = Work(self)
            result = decide_fn(work)
            if dry_run:
                return result
            try:
                self._store(work)
            except IntegrityError:
                continue
            return result
        raise Conflict("the same aggregates kept changing concurrently; try again")

    def _store(self, work: Work, position: tuple[str, int] | None = None) -> None:
        """Write every pending event of the unit in one atomic insert (or nothing), with the
        position reached in the unit's source when one is given."""
        events = [e for agg in work.loaded.values() if agg is not None for e in agg.collect_events()]
        if events or position is not None:
            tracking = Tracking(application_name=position[0], notification_id=position[1]) if position else None
            self.events.put(events, tracking=tracking)

    def construct_recorder(self) -> ApplicationRecorder:
        """A process recorder: events and a source's position (``run_batch(position=...)``) are
        written in one transaction, so a message applied once is known as applied."""
        return self.factory.process_recorder()

    def position(self, source: str) -> int:
        """The last position of ``source`` stored with a batch (0 when none)."""
        return self.recorder.max_tracking_id(source) or 0  # type: ignore[attr-defined]

    def run_batch(self, commands: Sequence[Callable[[], Any]],
                  refused: tuple[type[BaseException], ...] = (DomainError,),
                  absent: Iterable[UUID] = (), position: tuple[str, int] | None = None,
                  before_store: Callable[[list[Any]], None] | None = None) -> list[Any]:
        """Run many commands in one unit of work and save all their events in one atomic write.

        Each command is a callable that calls this application's commands. A command that raises
        one of ``refused`` is taken back on its own (``Work.undo``) and its exception is returned
        in its place; the others are kept. Any other exception (the store is down) is raised and
        nothing is written. On a concurrent write to the same aggregates the whole batch runs
        again on fresh state, as one command would (rule RT7).

        ``absent`` names aggregates the caller knows are not stored yet (new orders), so they are
        not looked up one by one; if another writer stores one meanwhile, the write collides and
        the batch runs again with nothing assumed. ``position`` (source, position) is stored in
        the same transaction as the events: a source position at or below the last stored one
        is refused by the store, so a batch cannot be applied twice. ``before_store`` sees the
        results before anything is written (and may stop the write by raising)."""
        absent = set(absent)
        for attempt in range(self.RETRIES):
            if attempt:
                time.sleep(random.uniform(0, 0.002 * attempt))
                absent = set()
            work = Work(self, absent)
            results: list[Any] = []
            self._local.work = work
            try:
                for command in commands:
                    try:
                        results.append(command())
                    except refused as exc:
                        results.append(exc)
            finally:
                self._local.work = None
            if before_store is not None:
                before_store(results)
            try:
                self._store(work, position)
            except IntegrityError:
                if position is not None and self.position(position[0]) >= position[1]:
                    raise Conflict(f"{position[0]} position {position[1]} was stored already") from None
                continue
            return results
        raise Conflict("the same aggregates kept changing concurrently; try again")

    def _run_in(self, work: Work, decide_fn: Callable[[Work], Any], dry_run: bool) -> Any:
        work.begin()
        try:
            result = decide_fn(work)
        except BaseException:
            work.undo()
            raise
        if dry_run:
            work.undo()
        else:
            work.begin()
        return result

    # -- suppliers, offers, prices, merchants -----------------------------------------------

    def upsert_supplier(
        self, supplier_id: str, name: str, active: bool, *, ship_within_hours: int | None = None,
        fulfilment_score: int | None = None, level: int | str | None = None,
        service_stars: Decimal | float | None = None, logistics_score: Decimal | float | None = None,
        experience_score: Decimal | float | None = None, at: datetime | None = None,
    ) -> None:
        at = at or utcnow()
        if ship_within_hours not in (None, 24, 48):
            raise InvalidCommand(f"ship_within_hours: must be 24 or 48, got {ship_within_hours}", "T3")
        if fulfilment_score is not None and not 0 <= fulfilment_score <= 100:
            raise InvalidCommand(f"fulfilment_score: must be 0-100, got {fulfilment_score}", "RT2")
        fields = dict(
            supplier_id=supplier_id, name=name, active=bool(active),
            ship_within_hours=ship_within_hours or 48, fulfilment_score=fulfilment_score or 0,
            level=_level(level), service_stars=_dec(service_stars),
            logistics_score=_dec(logistics_score), experience_score=_dec(experience_score),
        )

        def cmd(w: Work) -> None:
            s = w.get_or_new(Supplier, ids.supplier_id(supplier_id))
            if s.version and all(getattr(s, k) == v for k, v in fields.items()):
                return
            s.trigger(SupplierUpserted, at, **fields)
            self._supply_changed(w, {supplier_id}, at, "supplier")

        self.run(cmd)

    def set_merchant_tier(self, supplier_id: str, merchant_id: str, tier: str, at: datetime | None = None) -> None:
        at = at or utcnow()

        def cmd(w: Work) -> None:
            s = self._supplier(w, supplier_id)
            if s.tiers.get(merchant_id) != tier:
                s.trigger(MerchantTierSet, at, merchant_id=merchant_id, tier=tier)

        self.run(cmd)

    def publish_offer(
        self, supplier_id: str, offer_id: str, title: str, on_shelf: bool, skus: Iterable[OfferSku],
        *, private_to: Iterable[str] | None = None, expires_at: datetime | None = None,
        pool: PoolTerms | None = None, at: datetime | None = None,
    ) -> None:
        at = at or utcnow()
        skus = tuple(skus)
        for i, sku in enumerate(skus):
            if sku.stock < 0:
                raise InvalidCommand(f"skus[{i}].stock: must be >= 0, got {sku.stock}", "RT1")
        fields = dict(
            supplier_id=supplier_id, offer_id=offer_id, title=title, on_shelf=bool(on_shelf),
            skus=skus, private_to=tuple(private_to) if private_to is not None else None,
            expires_at=expires_at, pool=pool or PoolTerms(),
        )

        def cmd(w: Work) -> None:
            self._supplier(w, supplier_id)
            o = w.get_or_new(Offer, ids.offer_id(supplier_id, offer_id))
            if o.version and (at < max(o.stock_at.values(), default=at) or _same_offer(o, fields)):
                return  # a repeat or an older publish must not reset newer stock
            o.trigger(OfferPublished, at, **fields)
            self._supply_changed(w, {supplier_id}, at, "offer")

        self.run(cmd)

    def renew_offer(self, supplier_id: str, offer_id: str, at: datetime | None = None) -> None:
        at = at or utcnow()

        def cmd(w: Work) -> None:
            self._offer(w, supplier_id, offer_id).trigger(OfferRenewed, at)
            self._supply_changed(w, {supplier_id}, at, "offer")

        self.run(cmd)

    def report_stock(self, supplier_id: str, offer_id: str, supplier_sku_id: str, stock: int,
                     at: datetime | None = None) -> None:
        at = at or utcnow()
        if not isinstance(stock, int) or stock < 0:
            raise InvalidCommand(f"stock: must be an integer >= 0, got {stock!r}", "RT1")

        def cmd(w: Work) -> None:
            o = self._offer(w, supplier_id, offer_id)
            if supplier_sku_id not in o.skus:
                raise UnknownOffer(f"supplier_sku_id: {supplier_sku_id!r} is not a SKU of offer {offer_id!r}")
            last = o.stock_at.get(supplier_sku_id)
            if o.stock.get(supplier_sku_id) == stock or (last is not None and at < last):
                return  # the same report again, or one older than what we know
            o.trigger(StockReported, at, supplier_sku_id=supplier_sku_id, stock=stock)
            self._supply_changed(w, {supplier_id}, at, "stock")

        self.run(cmd)

    def set_price(self, supplier_id: str, supplier_sku_id: str, price: Decimal | str,
                  effective_from: datetime, tier: str | None = None, at: datetime | None = None) -> None:
        at = at or utcnow()
        price = _money("price", price)

        def cmd(w: Work) -> None:
            self._supplier(w, supplier_id)
            book = w.get_or_new(PriceBook, ids.pricebook_id(supplier_id))
            series = book.prices.get((supplier_sku_id, tier or ""), [])
            if (effective_from, price) in series:
                return
            book.trigger(PriceSet, at, supplier_id=supplier_id, supplier_sku_id=supplier_sku_id,
                         price=price, effective_from=effective_from, tier=tier)

        self.run(cmd)

    def register_shop(self, platform: str, shop_id: str, merchant_id: str, at: datetime | None = None) -> None:
        at = at or utcnow()
        _platform(platform)

        def cmd(w: Work) -> None:
            shop = w.get_or_new(Shop, ids.shop_id(platform, shop_id))
            if shop.merchant_id != merchant_id:
                shop.trigger(ShopRegistered, at, platform=platform, shop_id=shop_id, merchant_id=merchant_id)

        self.run(cmd)

    def set_merchant_settings(
        self, merchant_id: str, *, source_pool: bool | None = None,
        split_tolerance: Decimal | str | None = None, hold_amount_over: Decimal | str | None = None,
        hold_remark_words: Iterable[str] | None = None, hold_out_of_stock: bool | None = None,
        at: datetime | None = None,
    ) -> None:
        """Change what is given; what is not given keeps its current value."""
        at = at or utcnow()
        tolerance = _money("split_tolerance", split_tolerance) if split_tolerance is not None else None
        amount = _money("hold_amount_over", hold_amount_over) if hold_amount_over is not None else None

        def cmd(w: Work) -> None:
            m = w.get_or_new(Merchant, ids.merchant_id(merchant_id))
            cur = m.settings
            holds = HoldRules(
                amount_over=amount if amount is not None else cur.holds.amount_over,
                remark_words=tuple(hold_remark_words) if hold_remark_words is not None else cur.holds.remark_words,
                out_of_stock=cur.holds.out_of_stock if hold_out_of_stock is None else hold_out_of_stock,
            )
            new = MerchantSettings(
                source_pool=cur.source_pool if source_pool is None else source_pool,
                split_tolerance=cur.split_tolerance if tolerance is None else tolerance,
                holds=holds,
            )
            if new != cur or not m.version:
                m.trigger(MerchantSettingsChanged, at, merchant_id=merchant_id, settings=new)

        self.run(cmd)

    def register_code(self, code: str, kind: str, components: Iterable[Component],
                      merchant_id: str | None = None, at: datetime | None = None) -> None:
        """Merchant codes (rule L7): unique within their kind."""
        at = at or utcnow()
        merchant_id = merchant_id or self.default_merchant
        alt = Alternative(components=tuple(components))
        if kind not in ("item", "bundle"):
            raise InvalidCommand(f"kind: must be item or bundle, got {kind!r}", "L7")
        if not alt.components:
            raise InvalidCommand("components: at least one is needed", "L7")
        if kind == "item" and len(alt.components) != 1:
            raise InvalidCommand("components: an item code maps exactly one component", "L7")
        for k, comp in enumerate(alt.components):
            if comp.qty < 1:
                raise InvalidCommand(f"components[{k}].qty: reflow quantity must be >= 1", "L3")

        def cmd(w: Work) -> None:
            for comp in alt.components:
                self._check_component(w, comp, merchant_id)
            book = w.get_or_new(CodeBook, ids.codebook_id(merchant_id))
            current = book.codes.get((kind, code))
            if current == alt:
                return
            if current is not None:
                raise LinkRefused(f"code: {kind} code {code!r} is already registered", "L7")
            book.trigger(CodeRegistered, at, code=code, kind=kind, alternative=alt)

        self.run(cmd)

    # -- links (rules L1-L8) ----------------------------------------------------------------

    def set_link(self, platform: str, shop_id: str, product_id: str, mode: str,
                 skus: Iterable[SkuLink], at: datetime | None = None) -> int:
        """Set the whole desired link of one shop product; returns the link version."""
        at = at or utcnow()
        _platform(platform)
        skus = tuple(skus)
        check_link(mode, skus)

        def cmd(w: Work) -> int:
            merchant = self._merchant_of(w, platform, shop_id)
            for i, entry in enumerate(skus):
                for j, alt in enumerate(entry.alternatives):
                    for k, comp in enumerate(alt.components):
                        self._check_component(w, comp, merchant, f"skus[{i}].alternatives[{j}].components[{k}]")
            link = w.get_or_new(Link, ids.link_id(platform, shop_id, product_id))
            if link.linked and link.mode == mode and link.skus == skus:
                return link.link_version
            before = link.suppliers()
            changes = describe_changes(link.skus, skus, link.linked)
            link.trigger(LinkSet, at, platform=platform, shop_id=shop_id, product_id=product_id,
                         mode=mode, skus=skus, link_version=link.link_version + 1, changes=changes)
            self._index_link(w, link, before, at)
            self._sync_stock(w, [link], at)
            self._reroute_backlog(w, [(platform, shop_id, product_id)], at, "link")
            return link.link_version

        return self.run(cmd)

    def remove_link(self, platform: str, shop_id: str, product_id: str, at: datetime | None = None) -> None:
        at = at or utcnow()

        def cmd(w: Work) -> None:
            link = w.get(Link, ids.link_id(platform, shop_id, product_id))
            if link is None or not link.linked:
                return
            before = link.suppliers()
            link.trigger(Unlinked, at, link_version=link.link_version + 1)
            self._index_link(w, link, before, at)

        self.run(cmd)

    def set_stock_rule(self, platform: str, shop_id: str, product_id: str, sku_id: str | None,
                       ratio: Decimal | str, min_stock: int, at: datetime | None = None) -> None:
        """Rule S2, per shop SKU: publish floor(sellable x ratio), 0 below the minimum."""
        at = at or utcnow()
        rule = check_stock_rule(_money("ratio", ratio), min_stock)

        def cmd(w: Work) -> None:
            link = w.get_or_new(Link, ids.link_id(platform, shop_id, product_id))
            if link.rules.get(sku_id or "") == rule:
                return
            link.trigger(StockRuleSet, at, platform=platform, shop_id=shop_id, product_id=product_id,
                         sku_id=sku_id or "", rule=rule)
            self._sync_stock(w, [link], at)

        self.run(cmd)

    # -- orders -----------------------------------------------------------------------------

    def place_order(self, platform: str, shop_id: str, order_id: str, placed_at: datetime,
                    buyer: Buyer, lines: Iterable[LineIn], *, channel: str | None = None,
                    remark: str | None = None) -> str:
        """Take a shop order and route it (rules L9, RT1-RT10, I6). Returns the order status.

        The same order placed twice changes nothing."""
        _platform(platform)
        lines = tuple(lines)
        if not lines:
            raise InvalidCommand("lines: an order has at least one line")
        seen: set[str] = set()
        for i, line in enumerate(lines):
            if line.qty < 1:
                raise InvalidCommand(f"lines[{i}].qty: must be >= 1, got {line.qty}")
            _money(f"lines[{i}].unit_price", line.unit_price)
            if line.line_id in seen:
                raise InvalidCommand(f"lines[{i}].line_id: {line.line_id!r} appears twice")
            seen.add(line.line_id)

        def cmd(w: Work) -> str:
            order = w.get_or_new(Order, ids.order_id(platform, shop_id, order_id))
            if order.placed:
                return order.status
            merchant = self._merchant_of(w, platform, shop_id)
            sealed = seal(self.cipher, buyer)
            w.clear[sealed] = buyer
            order.trigger(
                OrderPlaced, placed_at, platform=platform, shop_id=shop_id, order_id=order_id,
                merchant_id=merchant, lines=lines, region=buyer.region,
                sealed_buyer=sealed, channel=channel or _channel(platform),
                sealed_remark=self.cipher.encrypt(remark.encode()) if remark else None,
            )
            if not order.cancelled and not order.under_review:
                reason = self._hold_reason(w, order, remark)
                if reason:
                    order.trigger(OrderHeld, placed_at, reason=reason)
            self._route(w, order, placed_at, "placed")
            return order.status

        return self.run(cmd)

    def set_review(self, platform: str, shop_id: str, order_id: str, under_review: bool,
                   reason: str | None = None, at: datetime | None = None) -> str:
        """Rules RT4, I3: under review, an order is not allocated; earlier allocations are cancelled."""
        at = at or utcnow()

        def cmd(w: Work) -> str:
            order = self._order_or_reference(w, platform, shop_id, order_id, at)
            if order.under_review == under_review:
                return order.status
            order.trigger(ReviewChanged, at, under_review=under_review, reason=reason)
            if under_review:
                for alloc in self._live(w, order):
                    if alloc.status == "active":
                        self._stop(w, order, alloc, "cancelled", f"review: {reason or 'under review'}", at)
            else:
                self._route(w, order, at, "review_cleared")
            return order.status

        return self.run(cmd)

    def release_order(self, platform: str, shop_id: str, order_id: str, at: datetime | None = None) -> str:
        """Release a held order by hand (rule I6) and route what is waiting."""
        at = at or utcnow()

        def cmd(w: Work) -> str:
            order = self._order(w, platform, shop_id, order_id)
            if order.held or "withheld" in order.route.values():
                order.trigger(OrderReleased, at)
            self._route(w, order, at, "released")
            return order.status

        return self.run(cmd)

    def cancel_order(self, platform: str, shop_id: str, order_id: str, at: datetime | None = None) -> str:
        """The consumer cancelled: every untracked allocation is intercepted (rule I1)."""
        at = at or utcnow()

        def cmd(w: Work) -> str:
            order = self._order_or_reference(w, platform, shop_id, order_id, at)
            if order.cancelled:
                return order.status
            for alloc in self._live(w, order):
                if alloc.status == "active":
                    self._stop(w, order, alloc, "intercepted", "order cancelled", at)
            order.trigger(OrderCancelled, at)
            self._unpark(w, order, set(order.lines))
            return order.status

        return self.run(cmd)

    def ship_elsewhere(self, platform: str, shop_id: str, order_id: str, carrier: str | None = None,
                       tracking_no: str | None = None, at: datetime | None = None) -> str:
        """The shop says the order was shipped by other means: it is never routed (rule L10), and an
        allocation not yet tracked is intercepted so the supplier does not send a second parcel."""
        at = at or utcnow()

        def cmd(w: Work) -> str:
            order = self._order_or_reference(w, platform, shop_id, order_id, at)
            if order.shipped or order.cancelled:
                return order.status
            for alloc in self._live(w, order):
                if alloc.status == "active":
                    self._stop(w, order, alloc, "intercepted", "shipped by other means", at)
            order.trigger(OrderShippedElsewhere, at, carrier=carrier, tracking_no=tracking_no)
            self._unpark(w, order, set(order.lines))
            return order.status

        return self.run(cmd)

    def open_aftersale(self, platform: str, shop_id: str, order_id: str, aftersale_id: str,
                       kind: str, line_id: str | None = None, at: datetime | None = None) -> str:
        """Rules I1, I2: before tracking, intercept; after tracking, record for offline handling."""
        at = at or utcnow()
        if kind not in ("refund", "return", "exchange"):
            raise InvalidCommand(f"kind: must be refund, return or exchange, got {kind!r}", "I1")

        def cmd(w: Work) -> str:
            order = self._order_or_reference(w, platform, shop_id, order_id, at)
            if aftersale_id in order.aftersales:
                return order.status
            if line_id is not None and order.placed and line_id not in order.lines:
                raise InvalidCommand(f"line_id: order {order_id} has no line {line_id!r}", "I1")
            touched = [a for a in self._live(w, order) if line_id is None or line_id in a.line_ids]
            post = any(a.status in ("tracked", "shipped") for a in touched) or order.shipped
            order.trigger(AftersaleOpened, at, aftersale_id=aftersale_id, kind=kind,
                          line_id=line_id, post_shipment=post)
            for alloc in touched:
                if alloc.status == "active":
                    self._stop(w, order, alloc, "intercepted", f"aftersale {aftersale_id} ({kind})", at)
            self._route(w, order, at, "aftersale_other_lines")
            return order.status

        return self.run(cmd)

    def close_aftersale(self, platform: str, shop_id: str, order_id: str, aftersale_id: str,
                        outcome: str, at: datetime | None = None) -> str:
        at = at or utcnow()
        if outcome not in ("refunded", "rejected", "withdrawn"):
            raise InvalidCommand(f"outcome: must be refunded, rejected or withdrawn, got {outcome!r}")

        def cmd(w: Work) -> str:
            order = w.get(Order, ids.order_id(platform, shop_id, order_id))
            if order is None or aftersale_id not in order.aftersales:
                raise NotFound(f"aftersale_id: {aftersale_id!r} was never opened on order {order_id}")
            if not order.aftersales[aftersale_id].open:
                return order.status
            order.trigger(AftersaleClosed, at, aftersale_id=aftersale_id, outcome=outcome)
            self._route(w, order, at, "aftersale_closed")
            self._maybe_ship(w, order, at)
            return order.status

        return self.run(cmd)

    def change_address(self, platform: str, shop_id: str, order_id: str, buyer: Buyer,
                       at: datetime | None = None) -> str:
        """Rule I4: untracked allocations are blocked and re-released with the new address."""
        at = at or utcnow()

        def cmd(w: Work) -> str:
            order = self._order_or_reference(w, platform, shop_id, order_id, at)
            if order.sealed and unseal(self.cipher, order.sealed) == buyer:
                return order.status
            if order.address_changed_at is not None and at < order.address_changed_at:
                return order.status  # an older change arriving late changes nothing
            if order.placed and order.placed_at and at < order.placed_at:
                return order.status
            sealed = seal(self.cipher, buyer)
            w.clear[sealed] = buyer
            order.trigger(AddressChanged, at, region=buyer.region, sealed_buyer=sealed)
            for alloc in self._live(w, order):
                if alloc.status == "active":
                    self._stop(w, order, alloc, "intercepted", "address changed", at)
            self._route(w, order, at, "address_changed")
            return order.status

        return self.run(cmd)

    def cancel_allocation(self, allocation_id: str, reason: str | None = None,
                          at: datetime | None = None) -> None:
        """Rule I5: the merchant cancels an allocation by hand."""
        at = at or utcnow()

        def cmd(w: Work) -> None:
            alloc = self._allocation(w, allocation_id)
            if alloc.stopped:
                return
            if alloc.status != "active":
                raise InvalidCommand(
                    f"allocation_id: {allocation_id} already has tracking ({alloc.status}); "
                    "open an after-sale instead", "I5")
            order = self._order(w, alloc.platform, alloc.shop_id, alloc.order_id)
            self._stop(w, order, alloc, "cancelled", reason or "cancelled by merchant", at, by_merchant=True)

        self.run(cmd)

    def cancel_allocations(self, platform: str, shop_id: str, order_ids: Iterable[str],
                           reason: str | None = None, at: datetime | None = None) -> int:
        """Rule I5 in a batch: every untracked allocation of the given orders. Returns how many."""
        at = at or utcnow()
        order_ids = list(order_ids)

        def cmd(w: Work) -> int:
            n = 0
            for oid in order_ids:
                order = self._order(w, platform, shop_id, oid)
                for alloc in self._live(w, order):
                    if alloc.status == "active":
                        self._stop(w, order, alloc, "cancelled", reason or "cancelled by merchant", at,
                                   by_merchant=True)
                        n += 1
            return n

        return self.run(cmd)

    def answer_intercept(self, supplier_id: str, allocation_id: str, outcome: str,
                         carrier: str | None = None, tracking_no: str | None = None,
                         at: datetime | None = None) -> None:
        """Rule I8: `stopped`, or `too_late` with tracking: shipped, with a post-shipment after-sale."""
        at = at or utcnow()
        if outcome not in ("stopped", "too_late"):
            raise InvalidCommand(f"outcome: must be stopped or too_late, got {outcome!r}", "I8")
        if outcome == "too_late":
            _check_tracking(carrier, tracking_no)

        def cmd(w: Work) -> None:
            alloc = self._allocation(w, allocation_id)
            if alloc.supplier_id != supplier_id:
                raise TrackingRefused(f"supplier_id: allocation {allocation_id} is not {supplier_id}'s", "I8")
            if alloc.answer is not None:
                return
            if not alloc.stopped:
                raise InvalidCommand(f"allocation_id: {allocation_id} was not intercepted", "I8")
            alloc.trigger(InterceptAnswered, at, outcome=outcome, carrier=carrier, tracking_no=tracking_no)
            if outcome == "too_late":
                order = self._order(w, alloc.platform, alloc.shop_id, alloc.order_id)
                for oid, items in _per_offer(alloc.lines).items():
                    self._offer(w, supplier_id, oid).trigger(
                        StockShippedLate, at, allocation_id=allocation_id, items=items)
                # the parcel is out: any replacement for the same parts must not ship a second one
                # (a bundle's other parts, with other suppliers, still ship: L4)
                for other in self._live(w, order):
                    if other.status == "active" and _superseded(order, alloc, other):
                        self._stop(w, order, other, "intercepted",
                                   f"superseded: {allocation_id} shipped despite intercept", at)
                order.trigger(ShippedDespiteIntercept, at, ref=AllocRef(
                    allocation_id=allocation_id, supplier_id=supplier_id, line_ids=alloc.line_ids))
                for line_id in alloc.line_ids:
                    order.trigger(AftersaleOpened, at, aftersale_id=f"{allocation_id}-too-late-{line_id}",
                                  kind="return", line_id=line_id, post_shipment=True)
                self._maybe_ship(w, order, at)

        self.run(cmd)

    def upload_tracking(self, supplier_id: str, allocation_id: str, carrier: str, tracking_no: str,
                        at: datetime | None = None) -> str:
        """Rules T1, T2, I7. Returns `tracked`, `shipped` (order confirmed to the shop),
        `duplicate`, or `loss_risk` (refused: the allocation was intercepted or cancelled)."""
        at = at or utcnow()
        _check_tracking(carrier, tracking_no)

        def cmd(w: Work) -> str:
            alloc = self._allocation(w, allocation_id)
            if alloc.supplier_id != supplier_id:
                raise TrackingRefused(
                    f"supplier_id: allocation {allocation_id} belongs to another supplier", "T1")
            if alloc.tracking_no is not None:
                if (alloc.carrier, alloc.tracking_no) == (carrier, tracking_no):
                    return "duplicate"
                raise TrackingRefused(
                    f"tracking_no: allocation {allocation_id} already has tracking {alloc.tracking_no}", "T1")
            if alloc.stopped:
                if (carrier, tracking_no) in alloc.loss_risk_parcels:
                    return "duplicate"  # the same parcel reported again: one risk, not two (I7)
                alloc.trigger(LossRiskRecorded, at, carrier=carrier, tracking_no=tracking_no,
                              reason=f"tracking after {alloc.status}: {alloc.intercept_reason}")
                return "loss_risk"
            alloc.trigger(TrackingUploaded, at, carrier=carrier, tracking_no=tracking_no,
                          late=at > alloc.ship_by)
            for offer_id in {line.offer_id for line in alloc.lines}:
                self._offer(w, supplier_id, offer_id).trigger(StockShipped, at, allocation_id=allocation_id)
            order = self._order(w, alloc.platform, alloc.shop_id, alloc.order_id)
            return "shipped" if self._maybe_ship(w, order, at) else "tracked"

        return self.run(cmd)

    def pull_prelink(self, platform: str, shop_id: str, product_id: str,
                     window_days: int = PREPULL_WINDOW_DAYS, at: datetime | None = None,
                     dry_run: bool = False, only: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Rule L10: route the orders of this product that waited for a link.

        `only` limits the pull to these orders (`replay.prelink` pulls in small units of work, so a
        pull beside live routing retries little). One report entry per order looked at: `result`
        `routed` or `skipped` (`reason`: cancelled, shipped, aftersale_open, held), its status, the
        allocations made (id, supplier, cost) and the order's sale amount."""
        at = at or utcnow()
        if window_days < 1:
            raise InvalidCommand(f"window_days: must be >= 1, got {window_days}", "L10")
        wanted = None if only is None else set(only)

        def cmd(w: Work) -> list[dict[str, Any]]:
            link = w.get(Link, ids.link_id(platform, shop_id, product_id))
            if link is None or not link.linked:
                raise NotFound(f"product_id: {platform}/{shop_id}/{product_id} has no link to pull against", "L10")
            backlog = w.get(Backlog, ids.backlog_id(platform, shop_id, product_id))
            report: list[dict[str, Any]] = []
            if backlog is None:
                return report
            since = at - timedelta(days=window_days)
            entries = backlog.waiting.values() if wanted is None else [
                backlog.waiting[o] for o in wanted if o in backlog.waiting]
            for entry in sorted(entries, key=lambda e: (e.placed_at, e.order_id)):
                if entry.reason != "no_link" or entry.placed_at < since:
                    continue
                order = self._order(w, platform, shop_id, entry.order_id)
                skip = ("cancelled" if order.cancelled else "shipped" if order.shipped
                        else "aftersale_open" if order.open_aftersale()
                        else "held" if order.held or order.under_review else None)
                if skip in ("cancelled", "shipped"):
                    self._unpark(w, order, set(order.lines))
                if skip:
                    report.append(_pulled(w, order, "skipped", skip, []))
                    continue
                before = set(order.allocations)
                self._route(w, order, at, "prelink")
                report.append(_pulled(w, order, "routed", None, [a for a in order.allocations if a not in before]))
            return report

        return self.run(cmd, dry_run=dry_run)

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
        oid = ids.order_id(platform, shop_id, order_id)
        return [e for e in self.events.get(oid) if isinstance(e, OrderRouted)]

    def buyer(self, platform: str, shop_id: str, order_id: str) -> Buyer | None:
        order = self.order(platform, shop_id, order_id)
        return unseal(self.cipher, order.sealed) if order and order.sealed else None

    # -- internals: loading -----------------------------------------------------------------

    def _supplier(self, w: Work, supplier_id: str) -> Supplier:
        s = w.get(Supplier, ids.supplier_id(supplier_id))
        if s is None:
            raise UnknownSupplier(f"supplier_id: unknown supplier {supplier_id!r}")
        return s

    def _offer(self, w: Work, supplier_id: str, offer_id: str) -> Offer:
        o = w.get(Offer, ids.offer_id(supplier_id, offer_id))
        if o is None:
            raise UnknownOffer(f"offer_id: supplier {supplier_id!r} has no offer {offer_id!r}")
        return o

    def _order(self, w: Work, platform: str, shop_id: str, order_id: str) -> Order:
        o = w.get(Order, ids.order_id(platform, shop_id, order_id))
        if o is None:
            raise NotFound(f"order_id: unknown order {platform}/{shop_id}/{order_id}")
        return o

    def _order_or_reference(self, w: Work, platform: str, shop_id: str, order_id: str, at: datetime) -> Order:
        order = w.get_or_new(Order, ids.order_id(platform, shop_id, order_id))
        if not order.version:
            order.trigger(OrderReferenced, at, platform=platform, shop_id=shop_id, order_id=order_id)
        return order

    def _allocation(self, w: Work, allocation_id: str) -> Allocation:
        a = w.get(Allocation, ids.allocation_uuid(allocation_id))
        if a is None:
            raise UnknownAllocation(f"allocation_id: unknown allocation {allocation_id!r}")
        return a

    def _live(self, w: Work, order: Order) -> list[Allocation]:
        return [self._allocation(w, a) for a in list(order.allocations)]

    def _merchant_of(self, w: Work, platform: str, shop_id: str) -> str:
        shop = w.get(Shop, ids.shop_id(platform, shop_id))
        return shop.merchant_id if shop is not None else self.default_merchant

    def _settings(self, w: Work, merchant_id: str) -> MerchantSettings:
        m = w.get(Merchant, ids.merchant_id(merchant_id))
        return m.settings if m is not None else MerchantSettings()

    def _check_component(self, w: Work, comp: Component, merchant_id: str, where: str = "components") -> None:
        self._supplier(w, comp.supplier_id)
        offer = w.get(Offer, ids.offer_id(comp.supplier_id, comp.offer_id))
        if offer is None:
            raise UnknownOffer(f"{where}.offer_id: supplier {comp.supplier_id!r} has no offer {comp.offer_id!r}")
        if comp.supplier_sku_id not in offer.skus:
            raise UnknownOffer(
                f"{where}.supplier_sku_id: offer {comp.offer_id!r} has no SKU {comp.supplier_sku_id!r}")
        if not offer.open_to(merchant_id):
            raise LinkRefused(
                f"{where}.offer_id: micro-supply offer {comp.offer_id!r} is private to merchants "
                f"the supplier accepted; {merchant_id!r} is not one", "M1")

    # -- internals: routing -----------------------------------------------------------------

    def _hold_reason(self, w: Work, order: Order, remark: str | None) -> str | None:
        """Rule I6: the merchant's interception rules hold an order for review."""
        holds = self._settings(w, order.merchant_id).holds
        if holds.amount_over is not None and order.amount > holds.amount_over:
            return f"amount {order.amount} over {holds.amount_over}"
        for word in holds.remark_words:
            if remark and word in remark:
                return f"remark contains {word!r}"
        return None

    def _resolve(self, w: Work, order: Order, line: LineIn) -> tuple[tuple[Alternative, ...], int | None, str]:
        """Which alternatives serve a line: link SKU, link code entry, merchant code (L7), product (L6)."""
        link = w.get(Link, ids.link_id(order.platform, order.shop_id, line.product_id))
        if link is not None and link.linked:
            for entry in link.skus:
                if line.sku_id is not None and entry.sku_id == line.sku_id:
                    return entry.alternatives, link.link_version, "sku"
            for entry in link.skus:
                if line.merchant_code is not None and entry.sku_id is None and entry.merchant_code == line.merchant_code:
                    return entry.alternatives, link.link_version, "merchant_code"
        if line.merchant_code:
            book = w.get(CodeBook, ids.codebook_id(order.merchant_id))
            found = book.resolve(line.merchant_code) if book is not None else None
            if found is not None:
                return (found[1],), None, f"{found[0]}_code"
        if link is not None and link.linked:
            for entry in link.skus:
                if entry.sku_id is None and entry.merchant_code is None:
                    return entry.alternatives, link.link_version, "product"
        return (), None, ""

    def _facts(self, w: Work, order: Order, line: LineIn, at: datetime, settings: MerchantSettings) -> LineFacts:
        rest = order.missing(line.line_id)
        if rest is not None and rest.components:
            # Rules L4, I1, I4: part of the line is still with a live allocation (tracked, say);
            # only what was stopped is routed again, with the same alternative's parts.
            alt = Alternative(components=tuple(
                Component(supplier_id=c.supplier_id, offer_id=c.offer_id, supplier_sku_id=c.supplier_sku_id,
                          qty=c.qty) for c in rest.components), priority=rest.priority, provinces=rest.provinces)
            needs = {(c.supplier_id, c.offer_id, c.supplier_sku_id): c.need for c in rest.components}
            version = next((al.link_version for ref in order.allocations
                            for al in self._allocation(w, ref).lines if al.line_id == line.line_id), None)
            cand = self._facts_for_alternative(w, order, line, alt, rest.index, at, settings, needs)
            return LineFacts(line_id=line.line_id, qty=line.qty, candidates=(cand,),
                             link_version=version, matched_by="remaining_parts")
        alternatives, version, matched = self._resolve(w, order, line)
        candidates = tuple(
            self._facts_for_alternative(w, order, line, alt, index, at, settings)
            for index, alt in enumerate(alternatives)
        )
        return LineFacts(line_id=line.line_id, qty=line.qty, candidates=candidates,
                         link_version=version, matched_by=matched)

    def _route(self, w: Work, order: Order, at: datetime, trigger: str) -> Decision | None:
        lines = order.routable_lines()
        if not lines:
            return None
        settings = self._settings(w, order.merchant_id)
        facts = tuple(self._facts(w, order, line, at, settings) for line in lines)
        inp = RoutingInput(at=at, province=order.region.province if order.region else "",
                           lines=facts, split_tolerance=settings.split_tolerance)
        decision = decide(inp)
        if settings.holds.out_of_stock and trigger == "placed" and any(
            d.unroutable == "out_of_stock" for d in decision.lines
        ):
            order.trigger(OrderHeld, at, reason="a line is out of stock")
            return None
        refs = self._allocate(w, order, lines, facts, decision, at, trigger)
        order.trigger(OrderRouted, at, input=inp, decision=decision, allocations=refs, trigger=trigger)
        self._park(w, order, lines, facts, decision)
        return decision

    def _allocate(self, w: Work, order: Order, lines: list[LineIn], facts: tuple[LineFacts, ...],
                  decision: Decision, at: datetime, trigger: str) -> tuple[AllocRef, ...]:
        """Rule RT5: one allocation per supplier per order; rule RT7: stock reserved at once."""
        by_line = {line.line_id: line for line in lines}
        per_supplier: dict[str, list[AllocLine]] = defaultdict(list)
        for lf, ld in zip(facts, decision.lines):
            if ld.chosen is None:
                continue
            line = by_line[lf.line_id]
            cand = next(c for c in lf.candidates if c.index == ld.chosen)
            for comp in cand.components:
                offer = w.get(Offer, ids.offer_id(comp.supplier_id, comp.offer_id))
                sku = offer.skus[comp.supplier_sku_id]
                per_supplier[comp.supplier_id].append(AllocLine(
                    line_id=line.line_id, offer_id=comp.offer_id, supplier_sku_id=comp.supplier_sku_id,
                    title=offer.title or line.title, spec=sku.spec or line.spec or "", qty=comp.need,
                    unit_cost=comp.unit_cost,
                    amount=comp.unit_cost * comp.need if comp.unit_cost is not None else None,
                    product_id=line.product_id, link_version=lf.link_version,
                ))
        buyer = w.clear.get(order.sealed) or unseal(self.cipher, order.sealed)
        recipient = mask(buyer)
        token = recipient_token(self.token_key, f"{order.platform}/{order.shop_id}/{order.order_id}", order.sealed)
        refs = []
        seq = len(order.allocations) + len(order.ended)
        for supplier_id in sorted(per_supplier):
            alloc_lines = tuple(per_supplier[supplier_id])
            allocation_id = ids.new_allocation_id(order.platform, order.shop_id, order.order_id, supplier_id, seq)
            seq += 1
            supplier = w.get(Supplier, ids.supplier_id(supplier_id))
            alloc_uuid = ids.allocation_uuid(allocation_id)
            if order.version == len(order.pending):  # a new order's allocations are new too
                w.absent.add(alloc_uuid)
            alloc = w.get_or_new(Allocation, alloc_uuid)
            alloc.trigger(
                Allocated, at, allocation_id=allocation_id, platform=order.platform, shop_id=order.shop_id,
                order_id=order.order_id, merchant_id=order.merchant_id, supplier_id=supplier_id,
                lines=alloc_lines, recipient=recipient, recipient_token=token,
                ship_by=ship_by(at, supplier.ship_within_hours), channel=order.channel, trigger=trigger,
            )
            for offer_id, items in _per_offer(alloc_lines).items():
                self._offer(w, supplier_id, offer_id).trigger(
                    StockReserved, at, allocation_id=allocation_id, items=items)
            refs.append(AllocRef(allocation_id=allocation_id, supplier_id=supplier_id,
                                 line_ids=tuple(dict.fromkeys(al.line_id for al in alloc_lines))))
        return tuple(refs)

    def _park(self, w: Work, order: Order, lines: list[LineIn], facts: tuple[LineFacts, ...],
              decision: Decision) -> None:
        """Keep unroutable lines in their product's backlog (RT3, L10); take routed ones out."""
        by_product: dict[str, list[tuple[LineFacts, str | None]]] = defaultdict(list)
        products = {line.line_id: line.product_id for line in lines}
        for lf, ld in zip(facts, decision.lines):
            by_product[products[lf.line_id]].append((lf, ld.unroutable))
        for product_id, items in by_product.items():
            backlog = w.get_or_new(Backlog, ids.backlog_id(order.platform, order.shop_id, product_id))
            reasons = [r for _, r in items if r is not None]
            if not reasons:
                if order.order_id in backlog.waiting:
                    backlog.trigger(LinesUnparked, order.placed_at, order_id=order.order_id)
                continue
            reason = "no_link" if "no_link" in reasons else reasons[0]
            suppliers = tuple(sorted({c.supplier_id for lf, _ in items for cand in lf.candidates for c in cand.components}))
            entry = Parked(order_id=order.order_id, reason=reason, placed_at=order.placed_at, suppliers=suppliers)
            if backlog.waiting.get(order.order_id) != entry:
                backlog.trigger(LinesParked, order.placed_at, platform=order.platform, shop_id=order.shop_id,
                                product_id=product_id, entry=entry)
            for supplier_id in suppliers:
                index = w.get_or_new(SupplierIndex, ids.supplier_index_id(supplier_id))
                key = (order.platform, order.shop_id, product_id)
                if key not in index.products:
                    index.trigger(ProductUsesSupplier, order.placed_at, platform=key[0], shop_id=key[1], product_id=key[2])

    def _unpark(self, w: Work, order: Order, line_ids: set[str]) -> None:
        for product_id in {order.lines[lid].product_id for lid in line_ids if lid in order.lines}:
            backlog = w.get(Backlog, ids.backlog_id(order.platform, order.shop_id, product_id))
            if backlog is not None and order.order_id in backlog.waiting:
                backlog.trigger(LinesUnparked, order.placed_at or backlog.waiting[order.order_id].placed_at,
                                order_id=order.order_id)

    def _reroute_backlog(self, w: Work, products: Iterable[tuple[str, str, str]], at: datetime, trigger: str) -> None:
        """Rule RT3: lines unroutable for a reason other than `no_link` are routed again."""
        for platform, shop_id, product_id in sorted(products):
            backlog = w.get(Backlog, ids.backlog_id(platform, shop_id, product_id))
            if backlog is None:
                continue
            for entry in sorted(backlog.waiting.values(), key=lambda e: (e.placed_at, e.order_id)):
                if entry.reason == "no_link":
                    continue
                order = self._order(w, platform, shop_id, entry.order_id)
                self._route(w, order, at, f"reroute:{trigger}")

    def _supply_changed(self, w: Work, supplier_ids: set[str], at: datetime, trigger: str) -> None:
        """A stock, supplier or offer change: publish shop stock (S3) and retry waiting lines (RT3)."""
        products: set[tuple[str, str, str]] = set()
        for supplier_id in supplier_ids:
            index = w.get(SupplierIndex, ids.supplier_index_id(supplier_id))
            if index is not None:
                products |= index.products
        links = [w.get(Link, ids.link_id(*p)) for p in sorted(products)]
        self._sync_stock(w, [link for link in links if link is not None], at)
        self._reroute_backlog(w, products, at, trigger)

    def _index_link(self, w: Work, link: Link, before: set[str], at: datetime) -> None:
        after = link.suppliers()
        key = dict(platform=link.platform, shop_id=link.shop_id, product_id=link.product_id)
        for supplier_id in sorted(after - before):
            index = w.get_or_new(SupplierIndex, ids.supplier_index_id(supplier_id))
            if (link.platform, link.shop_id, link.product_id) not in index.products:
                index.trigger(ProductUsesSupplier, at, **key)
        for supplier_id in sorted(before - after):
            index = w.get(SupplierIndex, ids.supplier_index_id(supplier_id))
            if index is not None:
                index.trigger(ProductLeftSupplier, at, **key)

    def _sync_stock(self, w: Work, links: list[Link], at: datetime) -> None:
        """Rules S1-S3: publish each affected shop SKU's stock, only when the number changes."""
        for link in links:
            if not link.linked:
                continue
            merchant = self._merchant_of(w, link.platform, link.shop_id)
            settings = self._settings(w, merchant)
            for entry in link.skus:
                key = sku_key(entry)
                sellable = self._sellable(w, entry, merchant, settings, at)
                stock = published_stock(sellable, link.rules.get(key, StockRule()))
                if link.published.get(key) != stock:
                    link.trigger(StockPublished, at, platform=link.platform, shop_id=link.shop_id,
                                 product_id=link.product_id, sku_id=key, stock=stock, sellable=sellable)

    def _sellable(self, w: Work, entry: SkuLink, merchant: str, settings: MerchantSettings, at: datetime) -> int:
        """Rule S1: the stock of the best eligible alternative; a bundle counts its scarcest part."""
        probe = Order(ids.order_id("", "", ""))
        probe.merchant_id = merchant
        line = LineIn(line_id="probe", product_id="", title="", qty=1, unit_price=Decimal(0))
        best: Verdict | None = None
        for index, alt in enumerate(entry.alternatives):
            facts = self._facts_for_alternative(w, probe, line, alt, index, at, settings)
            if not all(c.supplier_active and c.on_shelf and c.in_pool for c in facts.components):
                continue
            stock = min(max(c.available, 0) // c.qty for c in facts.components)
            if stock < 1:
                continue
            verdict = Verdict(index=index, eligible=True, cost=cost_of(facts), stock=stock,
                              score=min(c.score for c in facts.components), priority=alt.priority)
            if best is None or rank(verdict) < rank(best):
                best = verdict
        return best.stock if best else 0

    def _facts_for_alternative(self, w: Work, order: Order, line: LineIn, alt: Alternative, index: int,
                               at: datetime, settings: MerchantSettings,
                               needs: dict[tuple[str, str, str], int] | None = None) -> CandidateFacts:
        comps = []
        for comp in alt.components:
            need = comp.qty * line.qty if needs is None else needs[
                (comp.supplier_id, comp.offer_id, comp.supplier_sku_id)]
            supplier = w.get(Supplier, ids.supplier_id(comp.supplier_id))
            offer = w.get(Offer, ids.offer_id(comp.supplier_id, comp.offer_id))
            book = w.get(PriceBook, ids.pricebook_id(comp.supplier_id))
            sku = offer.skus.get(comp.supplier_sku_id) if offer is not None else None
            tier = supplier.tiers.get(order.merchant_id) if supplier is not None else None
            comps.append(ComponentFacts(
                supplier_id=comp.supplier_id, offer_id=comp.offer_id,
                supplier_sku_id=comp.supplier_sku_id, qty=comp.qty, need=need,
                supplier_active=supplier is not None and supplier.active,
                on_shelf=offer is not None and sku is not None and offer.on_shelf
                and not offer.expired(at) and offer.open_to(order.merchant_id),
                available=offer.available(comp.supplier_sku_id) if offer is not None else 0,
                unit_cost=book.price_at(comp.supplier_sku_id, at, tier) if book is not None else None,
                score=supplier.fulfilment_score if supplier is not None else 0,
                in_pool=(not settings.source_pool) or _in_pool(supplier, offer, sku, book, at),
            ))
        return CandidateFacts(index=index, components=tuple(comps), priority=alt.priority,
                              provinces=alt.provinces)

    # -- internals: lifecycle ---------------------------------------------------------------

    def _stop(self, w: Work, order: Order, alloc: Allocation, how: str, reason: str, at: datetime,
              by_merchant: bool = False) -> None:
        """Intercept or cancel an untracked allocation and release its stock (I1, I3, I4, I5, RT7)."""
        event = InterceptRequested if how == "intercepted" else AllocationCancelled
        alloc.trigger(event, at, reason=reason)
        for offer_id in sorted({line.offer_id for line in alloc.lines}):
            offer = w.get(Offer, ids.offer_id(alloc.supplier_id, offer_id))
            if offer is not None and alloc.allocation_id in offer.holds:
                offer.trigger(StockReleased, at, allocation_id=alloc.allocation_id, reason=reason)
        order.trigger(AllocationEnded, at, allocation_id=alloc.allocation_id, how=how, reason=reason,
                      by_merchant=by_merchant)

    def _maybe_ship(self, w: Work, order: Order, at: datetime) -> bool:
        """Rule T2: when every live allocation has tracking and no line still waits for a supplier
        (every part of a bundle line tracked, L4), confirm shipment to the shop, one package per
        allocation. A line set aside under a refund opened before tracking does not wait; should
        that refund be rejected, its own allocation is confirmed later in a shipment of its own."""
        if order.cancelled or order.shipped_elsewhere:
            return False
        live = self._live(w, order)
        new = [a for a in live if a.allocation_id not in order.packaged]
        if not new or any(a.status not in ("tracked", "shipped") for a in live):
            return False
        waiting = [lid for lid in order.lines
                   if not order.covered(lid) and not order.refunded(lid) and not order.set_aside(lid)]
        if waiting:
            return False
        packages = tuple(
            Package(allocation_id=a.allocation_id, carrier=a.carrier or "", tracking_no=a.tracking_no or "",
                    line_ids=a.line_ids)
            for a in new
        )
        order.trigger(OrderShipped, at, packages=packages)
        for a in new:
            if a.status == "tracked":
                a.trigger(AllocationShipped, at)
        return True


# -- helpers ------------------------------------------------------------------------------------


def _in_pool(supplier: Supplier | None, offer: Offer | None, sku: OfferSku | None,
             book: PriceBook | None, at: datetime) -> bool:
    """Rule RT8: source-pool eligibility of a supplier, its offer and the enrolled SKU."""
    if supplier is None or offer is None or sku is None or not supplier.meets_source_pool():
        return False
    terms = offer.pool
    if not (terms.dropship_free_shipping and terms.returns_7d and terms.growth_score >= POOL_MIN_GROWTH):
        return False
    if supplier.ship_within_hours not in (24, 48) or not sku.enrolled:
        return False
    if offer.stock.get(sku.supplier_sku_id, 0) < POOL_MIN_STOCK:
        return False
    price = sku.channel_price
    if price is None or sku.lowest_30d_price is None or sku.market_price is None:
        return False
    return price <= sku.lowest_30d_price and price < Decimal("0.9") * sku.market_price


def _superseded(order: Order, shipped: Allocation, other: Allocation) -> bool:
    """Rule I8 `too_late`: does the parcel that went out anyway make this live allocation redundant?

    It does where it carries the same parts of a line, or a line served by another alternative
    (L4: a bundle's other parts, at other suppliers, still ship)."""
    mine = order.parts.get(shipped.allocation_id, [])
    theirs = order.parts.get(other.allocation_id, [])
    if not mine or not theirs:
        return bool(set(other.line_ids) & set(shipped.line_ids))
    key = {(lid, c.supplier_id, c.offer_id, c.supplier_sku_id) for lid, _, c in mine}
    alternatives = {(lid, index) for lid, index, _ in mine}
    return any((lid, c.supplier_id, c.offer_id, c.supplier_sku_id) in key
               or (lid in {m for m, _ in alternatives} and (lid, index) not in alternatives)
               for lid, index, c in theirs)


def _pulled(w: Work, order: Order, result: str, reason: str | None, made: list[str]) -> dict[str, Any]:
    """One order's line in a pull pre-link report (rule L10, A1)."""
    allocations = [w.get(Allocation, ids.allocation_uuid(a)) for a in made]
    return {
        "order_id": order.order_id, "placed_at": order.placed_at, "result": result, "reason": reason,
        "status": order.status, "amount": order.amount, "unroutable": dict(order.unroutable),
        "allocations": [
            {"allocation_id": a.allocation_id, "supplier_id": a.supplier_id,
             "cost": None if any(x.amount is None for x in a.lines) else sum((x.amount for x in a.lines), Decimal(0))}
            for a in allocations if a is not None
        ],
    }


def _per_offer(lines: Iterable[AllocLine]) -> dict[str, tuple[SkuQty, ...]]:
    """What an allocation takes from each offer, SKU by SKU, in a stable order."""
    per_offer: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for al in lines:
        per_offer[al.offer_id][al.supplier_sku_id] += al.qty
    return {
        offer_id: tuple(SkuQty(supplier_sku_id=k, qty=q) for k, q in sorted(skus.items()))
        for offer_id, skus in sorted(per_offer.items())
    }


def _same_offer(o: Offer, fields: dict[str, Any]) -> bool:
    return (o.title, o.on_shelf, o.private_to, o.pool, tuple(o.skus.values())) == (
        fields["title"], fields["on_shelf"], fields["private_to"], fields["pool"], fields["skus"],
    ) and (fields["expires_at"] is None or fields["expires_at"] == o.expires_at)


def _check_tracking(carrier: str | None, tracking_no: str | None) -> None:
    if not carrier or not CARRIER.match(carrier):
        raise TrackingRefused(f"carrier: {carrier!r} is not a carrier name", "T1")
    if not tracking_no or not TRACKING_NO.match(tracking_no):
        raise TrackingRefused(
            f"tracking_no: {tracking_no!r} is not a tracking number (6-40 letters, digits, dashes)", "T1")


def _money(field: str, value: Any) -> Decimal:
    if isinstance(value, float) or isinstance(value, bool):
        raise InvalidCommand(f"{field}: must be a decimal string, got a {type(value).__name__}")
    try:
        d = Decimal(value)
    except Exception:  # noqa: BLE001
        raise InvalidCommand(f"{field}: {value!r} is not a decimal number") from None
    if not d.is_finite() or d < 0:
        raise InvalidCommand(f"{field}: must be a finite number >= 0, got {value!r}")
    return d


def _dec(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _level(level: int | str | None) -> int:
    if level is None:
        return 0
    if isinstance(level, str):
        digits = level.strip().upper().removeprefix("L")
        if not digits.isdigit():
            raise InvalidCommand(f"level: {level!r} is not a level like L2", "RT8")
        return int(digits)
    return int(level)


def _platform(platform: str) -> None:
    if platform not in PLATFORMS:
        raise InvalidCommand(f"platform: {platform!r} is not one of {', '.join(PLATFORMS)}")


def _channel(platform: str) -> str:
    """Rule M3: orders carry their channel; by default the platform's own."""
    return "micro_supply" if platform == "weigong" else platform
