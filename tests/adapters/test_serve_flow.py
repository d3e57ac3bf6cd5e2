"""reflow serve end to end on a real nats-server: every inbound subject reaches the engine, and
suppliers and shops receive what the contract promises (CONTRACT sections 1 and 2)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.bootstrap import Settings, open_app
from tests.adapters.natsworld import (
    OFFER,
    PRODUCT,
    SHOP,
    SKU,
    SUPPLIER,
    client,
    example,
    order_body,
    run,
    running,
    single_link,
)

pytestmark = [pytest.mark.nats, pytest.mark.timeout(120)]

MERCHANT = "m-hangzhou-01"


def settings(nats_server, store: str, tmp_path: Path) -> Settings:
    return Settings(store=store, nats_url=nats_server.url, data_dir=tmp_path / "data")


def test_p1_l9_t2_every_subject_reaches_the_engine_and_suppliers_and_shops_hear_of_it(
        nats_server, sqlite_store, tmp_path):
    s = settings(nats_server, sqlite_store, tmp_path)

    async def story():
        async with running(s), client(nats_server.url) as c:
            # A shop of a merchant, a supplier who puts that merchant in a tier, an offer, prices.
            await c.send("shop.registered", example("shop.registered"))
            await c.send("supplier.upserted", example("supplier.upserted"))
            await c.send("merchant.tier", example("merchant.tier"))
            await c.send("merchant.settings", example("merchant.settings", hold_out_of_stock=False))
            await c.send("supplier.offer", example("supplier.offer", expires_at="2024-05-20T00:00:00+08:00"))
            # Renewed today (M2): on shelf for 30 more days, also for what is routed "now" below.
            await c.send("offer.renewed", example("offer.renewed", renewed_at=datetime.now(UTC).isoformat()))
            await c.send("supplier.price", example("supplier.price"))
            await c.send("supplier.price", example("supplier.price", tier=None, price="7.20"))
            await c.send("code.registered", example("code.registered"))
            await c.send("link.set", single_link())
            await c.send("stock.rule", example("stock.rule"))
            await c.send("supplier.stock", example("supplier.stock"))
            # Orders: A (two lines, one product not linked yet), B (ships), C (held: over 2000).
            await c.send("order.placed", example("order.placed"))
            await c.send("order.placed", order_body("B-1"))
            await c.send("order.placed", order_body("C-1", qty=120))
            await c.settled()

            app = open_app(s)
            try:
                order_a = example("order.placed")["order_id"]
                assert app.order(*SHOP, order_a).status == "partially_allocated"
                assert app.order(*SHOP, "C-1").status == "held"
                [alloc_a] = app.allocations_of(*SHOP, order_a)
                [alloc_b] = app.allocations_of(*SHOP, "B-1")
                assert app.offer(SUPPLIER, OFFER).expires_at > datetime.now(UTC) + timedelta(days=29)

                # The supplier hears of A and B, masked (P1).
                out = {b["allocation_id"]: b for b in await c.bodies(
                    "REFLOW_OUT", f"reflow.out.supplier.{SUPPLIER}.allocation", at_least=2)}
                a = out[alloc_a.allocation_id]
                assert a["recipient"] == {"name": "张*", "phone": "138****5678", "province": "浙江省",
                                          "city": "杭州市", "district": "西湖区", "address": "****"}
                assert a["recipient_token"].startswith("rt_")
                assert a["lines"] == [{"offer_id": OFFER, "supplier_sku_id": "4987001",
                                       "title": "iPhone15 磨砂手机壳 一件代发", "spec": "黑色", "qty": 2}]
                assert a["allocated_at"] == "2024-05-01T10:15:00+08:00" and a["ship_by"]
                assert "13812345678" not in str(out) and "文三路" not in str(out)
                stock = await c.bodies("REFLOW_OUT", f"reflow.out.shop.{SHOP[0]}.{SHOP[1]}.stock", at_least=1)
                assert {"product_id": PRODUCT, "sku_id": SKU} == {k: stock[-1][k] for k in ("product_id", "sku_id")}

                # B ships on tracking (T2); C is released by hand (I6).
                await c.send("tracking.uploaded", example("tracking.uploaded", allocation_id=alloc_b.allocation_id))
                await c.send("order.released", {"platform": SHOP[0], "shop_id": SHOP[1], "order_id": "C-1"})
                # A: the address changes (I4), a review cancels (I3), the review clears, an
                # after-sale intercepts (I1) and the supplier answers (I8), it is withdrawn,
                # the merchant cancels by order (I5), and finally the consumer cancels.
                await c.send("order.address_changed", example("order.address_changed"))
                await c.send("order.review", example("order.review"))
                await c.send("order.review", example("order.review", under_review=False))
                await c.send("aftersale.opened", example("aftersale.opened"))
                await c.settled()
                intercepted = [x for x in app.allocations_of(*SHOP, order_a) if x.status == "intercepted"]
                last = intercepted[-1]
                await c.send("intercept.answered", example(
                    "intercept.answered", allocation_id=last.allocation_id, outcome="stopped",
                    carrier=None, tracking_no=None))
                await c.send("aftersale.closed", example("aftersale.closed"))
                await c.send("allocation.cancel", example("allocation.cancel"))
                await c.send("order.cancelled", example("order.cancelled"))
                # The second product gets its link: pull its pre-link orders (L10), then unlink.
                await c.send("order.placed", order_body("D-1", lines=[{
                    "line_id": "D-1-1", "product_id": "3581209911", "title": "钢化膜", "qty": 1,
                    "unit_price": "9.90"}]))
                await c.send("link.set", single_link("3581209911", None))
                await c.send("prelink.pull", example("prelink.pull", product_id="3581209911", window_days=3650))
                await c.send("link.removed", example("link.removed", product_id="3581209911"))
                await c.settled()

                assert app.order(*SHOP, "B-1").status == "shipped"
                assert app.order(*SHOP, "C-1").status == "allocated"
                assert app.order(*SHOP, order_a).status == "cancelled"
                assert app.allocation(last.allocation_id).answer == "stopped"
                assert not app.link(*SHOP, "3581209911").linked
                assert app.order(*SHOP, "D-1").status == "allocated"
                statuses = sorted(x.status for x in app.allocations_of(*SHOP, order_a))
                assert statuses == ["cancelled", "cancelled", "intercepted", "intercepted"]

                ship = await c.bodies("REFLOW_OUT", f"reflow.out.shop.{SHOP[0]}.{SHOP[1]}.shipment", at_least=1)
                assert ship == [{"order_id": "B-1", "packages": [{
                    "carrier": "ZTO", "tracking_no": "73512345678901", "line_ids": ["B-1-1"]}]}]
                stops = await c.bodies("REFLOW_OUT", f"reflow.out.supplier.{SUPPLIER}.intercept", at_least=4)
                assert sorted(x["reason"] for x in stops) == sorted([
                    "address changed", "review: risk control", "aftersale AS-20240501-0001 (refund)",
                    "merchant cancelled by hand"])
                assert {x["allocation_id"] for x in stops} <= {x.allocation_id for x in app.allocations_of(*SHOP, order_a)}
                assert await c.messages("REFLOW_DLQ") == []
            finally:
                app.close()

    run(story)
