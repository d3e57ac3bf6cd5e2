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

import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
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
from engine.errors import Conflict, DomainError, InvalidCommand
from engine.handlers import HANDLERS
from engine.linking import Link
from engine.order_events import OrderRouted
from engine.orders import Order
from engine.privacy import Keys
from engine.uow import UnitOfWork
from engine.values import Buyer, Component, LineIn, OfferSku, PoolTerms, SkuLink

A = TypeVar("A", bound=Aggregate)
Position = tuple[str, int]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Reflow(Application):
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

    # -- running commands -------------------------------------------------------------------

    def load(self, cls: type[A], id: UUID) -> A | None:  # noqa: A002
        try:
            return self.repository.get(id, projector_func=cls.project)  # type: ignore[arg-type]
        except AggregateNotFoundError:
            return None

    def unit_of_work(self, absent: Iterable[UUID] = ()) -> UnitOfWork:
        return UnitOfWork(self.load, self.keys, absent)

    def execute(self, command: c.Command, dry_run: bool = False) -> Any:
        """Run one command and store what it changed (nothing on a dry run)."""
        handler = self.handlers[type(command)]
        return self.run(lambda uow: handler(command, uow), dry_run=dry_run)

    def run(self, decide: Callable[[UnitOfWork], Any], dry_run: bool = False) -> Any:
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
        results = self._retrying(lambda uow: [decide(uow)], (), None, store=not dry_run)
        return results[0]

    def run_batch(self, commands: Sequence[c.Command | Callable[[], Any]],
                  refused: tuple[type[BaseException], ...] = (DomainError,),
                  absent: Iterable[UUID] = (), position: Position | None = None,
                  before_store: Callable[[list[Any]], None] | None = None) -> list[Any]:
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
                        results.append(exc)
            finally:
                self._local.uow = None
            if before_store is not None:
                before_store(results)
            return results

        return self._retrying(each, absent, position)

    def _retrying(self, each: Callable[[UnitOfWork], list[Any]], absent: Iterable[UUID],
                  position: Position | None, store: bool = True) -> list[Any]:
        absent = set(absent)
        for attempt in range(self.RETRIES):
            if attempt:
                time.sleep(random.uniform(0, 0.002 * attempt))  # jitter: let the other writer finish
                absent = set()
            uow = self.unit_of_work(absent)
            results = each(uow)
            if not store:
                return results
            try:
                self._store(uow, position)
            except IntegrityError:
                if position is not None and self.position(position[0]) >= position[1]:
                    raise Conflict(f"{position[0]} position {position[1]} was stored already") from None
                continue
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

    # -- conveniences: build a command and execute it (times default to now) -----------------

    def upsert_supplier(self, supplier_id: str, name: str, active: bool, *, ship_within_hours: int | None = None,
                        fulfilment_score: int | None = None, level: int | str | None = None,
                        service_stars: Decimal | float | None = None, logistics_score: Decimal | float | None = None,
                        experience_score: Decimal | float | None = None, daily_capacity: int | None = None,
                        at: datetime | None = None) -> None:
        return self.execute(c.UpsertSupplier(
            at=at or utcnow(), supplier_id=supplier_id, name=name, active=active,
            ship_within_hours=ship_within_hours, fulfilment_score=fulfilment_score, level=level,
            service_stars=_dec(service_stars), logistics_score=_dec(logistics_score),
            experience_score=_dec(experience_score), daily_capacity=daily_capacity))

    def set_merchant_tier(self, supplier_id: str, merchant_id: str, tier: str, at: datetime | None = None) -> None:
        return self.execute(c.SetMerchantTier(at=at or utcnow(), supplier_id=supplier_id, merchant_id=merchant_id,
                                              tier=tier))

    def publish_offer(self, supplier_id: str, offer_id: str, title: str, on_shelf: bool, skus: Iterable[OfferSku],
                      *, private_to: Iterable[str] | None = None, expires_at: datetime | None = None,
                      pool: PoolTerms | None = None, at: datetime | None = None) -> None:
        return self.execute(c.PublishOffer(
            at=at or utcnow(), supplier_id=supplier_id, offer_id=offer_id, title=title, on_shelf=on_shelf,
            skus=tuple(skus), private_to=tuple(private_to) if private_to is not None else None,
            expires_at=expires_at, pool=pool or PoolTerms()))

    def renew_offer(self, supplier_id: str, offer_id: str, at: datetime | None = None) -> None:
        return self.execute(c.RenewOffer(at=at or utcnow(), supplier_id=supplier_id, offer_id=offer_id))

    def report_stock(self, supplier_id: str, offer_id: str, supplier_sku_id: str, stock: int,
                     at: datetime | None = None) -> None:
        return self.execute(c.ReportStock(at=at or utcnow(), supplier_id=supplier_id, offer_id=offer_id,
                                          supplier_sku_id=supplier_sku_id, stock=stock))

    def set_price(self, supplier_id: str, supplier_sku_id: str, price: Decimal | str, effective_from: datetime,
                  tier: str | None = None, at: datetime | None = None) -> None:
        return self.execute(c.SetPrice(at=at or utcnow(), supplier_id=supplier_id, supplier_sku_id=supplier_sku_id,
                                       price=price, effective_from=effective_from, tier=tier))

    def register_shop(self, platform: str, shop_id: str, merchant_id: str, at: datetime | None = None) -> None:
        return self.execute(c.RegisterShop(at=at or utcnow(), platform=platform, shop_id=shop_id,
                                           merchant_id=merchant_id))

    def set_merchant_settings(self, merchant_id: str, *, at: datetime | None = None, **settings: Any) -> None:
        """Change what is given (source_pool, split_tolerance, hold_amount_over, hold_remark_words,
        hold_out_of_stock); what is not given keeps its current value."""
        if settings.get("hold_remark_words") is not None:
            settings["hold_remark_words"] = tuple(settings["hold_remark_words"])
        return self.execute(c.ChangeMerchantSettings(at=at or utcnow(), merchant_id=merchant_id, **settings))

    def register_code(self, code: str, kind: str, components: Iterable[Component], merchant_id: str | None = None,
                      at: datetime | None = None) -> None:
        return self.execute(c.RegisterCode(at=at or utcnow(), code=code, kind=kind, components=tuple(components),
                                           merchant_id=merchant_id))

    def set_link(self, platform: str, shop_id: str, product_id: str, mode: str, skus: Iterable[SkuLink],
                 at: datetime | None = None) -> int:
        return self.execute(c.SetLink(at=at or utcnow(), platform=platform, shop_id=shop_id, product_id=product_id,
                                      mode=mode, skus=tuple(skus)))

    def remove_link(self, platform: str, shop_id: str, product_id: str, at: datetime | None = None) -> None:
        return self.execute(c.RemoveLink(at=at or utcnow(), platform=platform, shop_id=shop_id, product_id=product_id))

    def set_stock_rule(self, platform: str, shop_id: str, product_id: str, sku_id: str | None,
                       ratio: Decimal | str, min_stock: int, at: datetime | None = None) -> None:
        return self.execute(c.SetStockRule(at=at or utcnow(), platform=platform, shop_id=shop_id,
                                           product_id=product_id, sku_id=sku_id, ratio=ratio, min_stock=min_stock))

    def place_order(self, platform: str, shop_id: str, order_id: str, placed_at: datetime, buyer: Buyer,
                    lines: Iterable[LineIn], *, channel: str | None = None, remark: str | None = None) -> str:
        return self.execute(c.PlaceOrder(at=placed_at, platform=platform, shop_id=shop_id, order_id=order_id,
                                         buyer=buyer, lines=tuple(lines), channel=channel, remark=remark))

    def set_review(self, platform: str, shop_id: str, order_id: str, under_review: bool, reason: str | None = None,
                   at: datetime | None = None) -> str:
        return self.execute(c.SetReview(at=at or utcnow(), platform=platform, shop_id=shop_id, order_id=order_id,
                                        under_review=under_review, reason=reason))

    def release_order(self, platform: str, shop_id: str, order_id: str, at: datetime | None = None) -> str:
        return self.execute(c.ReleaseOrder(at=at or utcnow(), platform=platform, shop_id=shop_id, order_id=order_id))

    def cancel_order(self, platform: str, shop_id: str, order_id: str, at: datetime | None = None) -> str:
        return self.execute(c.CancelOrder(at=at or utcnow(), platform=platform, shop_id=shop_id, order_id=order_id))

    def ship_elsewhere(self, platform: str, shop_id: str, order_id: str, carrier: str | None = None,
                       tracking_no: str | None = None, at: datetime | None = None) -> str:
        return self.execute(c.ShipElsewhere(at=at or utcnow(), platform=platform, shop_id=shop_id,
                                            order_id=order_id, carrier=carrier, tracking_no=tracking_no))

    def open_aftersale(self, platform: str, shop_id: str, order_id: str, aftersale_id: str, kind: str,
                       line_id: str | None = None, at: datetime | None = None) -> str:
        return self.execute(c.OpenAftersale(at=at or utcnow(), platform=platform, shop_id=shop_id, order_id=order_id,
                                            aftersale_id=aftersale_id, kind=kind, line_id=line_id))

    def close_aftersale(self, platform: str, shop_id: str, order_id: str, aftersale_id: str, outcome: str,
                        at: datetime | None = None) -> str:
        return self.execute(c.CloseAftersale(at=at or utcnow(), platform=platform, shop_id=shop_id,
                                             order_id=order_id, aftersale_id=aftersale_id, outcome=outcome))

    def change_address(self, platform: str, shop_id: str, order_id: str, buyer: Buyer,
                       at: datetime | None = None) -> str:
        return self.execute(c.ChangeAddress(at=at or utcnow(), platform=platform, shop_id=shop_id,
                                            order_id=order_id, buyer=buyer))

    def cancel_allocation(self, allocation_id: str, reason: str | None = None, at: datetime | None = None) -> None:
        return self.execute(c.CancelAllocation(at=at or utcnow(), allocation_id=allocation_id, reason=reason))

    def cancel_allocations(self, platform: str, shop_id: str, order_ids: Iterable[str], reason: str | None = None,
                           at: datetime | None = None) -> int:
        return self.execute(c.CancelAllocations(at=at or utcnow(), platform=platform, shop_id=shop_id,
                                                order_ids=tuple(order_ids), reason=reason))

    def answer_intercept(self, supplier_id: str, allocation_id: str, outcome: str, carrier: str | None = None,
                         tracking_no: str | None = None, at: datetime | None = None) -> None:
        return self.execute(c.AnswerIntercept(at=at or utcnow(), supplier_id=supplier_id,
                                              allocation_id=allocation_id, outcome=outcome, carrier=carrier,
                                              tracking_no=tracking_no))

    def reject_allocation(self, supplier_id: str, allocation_id: str, reason: str, note: str | None = None,
                          at: datetime | None = None) -> str:
        return self.execute(c.RejectAllocation(at=at or utcnow(), supplier_id=supplier_id,
                                               allocation_id=allocation_id, reason=reason, note=note))

    def request_return(self, platform: str, shop_id: str, order_id: str, aftersale_id: str,
                       at: datetime | None = None) -> list[str]:
        return self.execute(c.RequestReturn(at=at or utcnow(), platform=platform, shop_id=shop_id, order_id=order_id,
                                            aftersale_id=aftersale_id))

    def answer_return(self, supplier_id: str, return_id: str, outcome: str, reason: str | None = None,
                      at: datetime | None = None) -> str:
        return self.execute(c.AnswerReturn(at=at or utcnow(), supplier_id=supplier_id, return_id=return_id,
                                           outcome=outcome, reason=reason))

    def pass_time(self, at: datetime | None = None) -> int:
        return self.execute(c.PassTime(at=at or utcnow()))

    def upload_tracking(self, supplier_id: str, allocation_id: str, carrier: str, tracking_no: str,
                        at: datetime | None = None) -> str:
        return self.execute(c.UploadTracking(at=at or utcnow(), supplier_id=supplier_id,
                                             allocation_id=allocation_id, carrier=carrier, tracking_no=tracking_no))

    def pull_prelink(self, platform: str, shop_id: str, product_id: str, window_days: int = c.PREPULL_WINDOW_DAYS,
                     at: datetime | None = None, dry_run: bool = False,
                     only: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Rule L10 (see engine.handlers.linking.pull_prelink); `dry_run` stores nothing (A1)."""
        return self.execute(c.PullPrelink(at=at or utcnow(), platform=platform, shop_id=shop_id,
                                          product_id=product_id, window_days=window_days,
                                          only=tuple(only) if only is not None else None), dry_run=dry_run)


def _dec(value: Decimal | float | None) -> Decimal | None:
    return None if value is None else Decimal(str(value))
