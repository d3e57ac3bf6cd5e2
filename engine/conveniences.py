"""The methods named after commands (`place_order`, `upload_tracking`, ...): each builds its command
(engine/commands.py) and executes it; times default to now. Mixed into `engine.app.Reflow`."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from engine import commands as c
from engine.values import Buyer, Component, LineIn, OfferSku, PoolTerms, SkuLink


def utcnow() -> datetime:
    return datetime.now(UTC)


class Conveniences:
    """Commands as methods, over the application's `execute` (engine.app.Reflow)."""

    execute: Any

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
