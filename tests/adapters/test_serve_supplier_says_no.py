"""Issue 15 over the wire, beside a running serve on a real nats-server: a supplier's rejection
(RT11), link health to the shop (L11), and serve's clock passing an offer's expiry (M2, L11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.bootstrap import Settings, open_app
from adapters.serve import Server
from tests.adapters.natsworld import (
    OFFER,
    PRODUCT,
    SHOP,
    SKU,
    SSKU,
    SUPPLIER,
    catalog,
    client,
    example,
    order_body,
    run,
    running,
)

pytestmark = [pytest.mark.nats, pytest.mark.timeout(120)]
LINK_HEALTH = f"reflow.out.shop.{SHOP[0]}.{SHOP[1]}.link_health"


def test_rt11_l11_a_rejection_reroutes_dead_letters_the_wrong_supplier_and_a_dropped_sku_is_reported(
        nats_server, sqlite_store, tmp_path: Path):
    s = Settings(store=sqlite_store, nats_url=nats_server.url, data_dir=tmp_path / "data")

    async def story():
        async with running(s), client(nats_server.url) as c:
            await c.send_many(catalog(stock=5))
            await c.send("order.placed", order_body("R-1"))
            await c.settled()
            app = open_app(s)
            try:
                [alloc] = app.allocations_of(*SHOP, "R-1")
            finally:
                app.close()
            rejected = {"supplier_id": SUPPLIER, "allocation_id": alloc.allocation_id, "reason": "out_of_stock",
                        "rejected_at": "2024-05-01T10:30:00+08:00"}
            await c.send("allocation.rejected", dict(rejected, supplier_id="someone-else"))
            await c.send("allocation.rejected", rejected)
            await c.send("allocation.rejected", dict(rejected, reason="bored"))
            await c.settled()
            app = open_app(s)
            try:
                assert app.allocation(alloc.allocation_id).status == "rejected"
                assert app.order(*SHOP, "R-1").unroutable == {"R-1-1": "rejected"}
                assert app.offer(SUPPLIER, OFFER).stock[SSKU] == 0
            finally:
                app.close()
            errors = [m.headers["Reflow-Error"] for m in await c.messages("REFLOW_DLQ", at_least=2)]
            assert any("rule RT11: supplier_id" in e for e in errors)
            assert any("reason" in e and "bored" in e for e in errors)
            stock = await c.bodies("REFLOW_OUT", f"reflow.out.shop.{SHOP[0]}.{SHOP[1]}.stock", at_least=2)
            assert stock[-1]["stock"] == 0  # S3: the rejected SKU's stock is 0 until the next report

            offer = example("supplier.offer", expires_at=None)
            offer["skus"] = [dict(offer["skus"][0], supplier_sku_id="4987999")]  # the linked SKU dropped
            await c.send("supplier.offer", offer)
            [health] = await c.bodies("REFLOW_OUT", LINK_HEALTH, at_least=1)
            assert health == {"product_id": PRODUCT, "sku_id": SKU, "status": "broken", "missing": [
                {"supplier_id": SUPPLIER, "offer_id": OFFER, "supplier_sku_id": SSKU, "why": "sku_dropped"}]}

    run(story)


def test_l11_m2_serve_clock_passes_an_offer_expiry_without_any_message(
        nats_server, sqlite_store, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(Server, "TICK_SECONDS", 0.5)
    s = Settings(store=sqlite_store, nats_url=nats_server.url, data_dir=tmp_path / "data")
    expires = datetime.now(UTC) + timedelta(seconds=3)

    async def story():
        async with running(s), client(nats_server.url) as c:
            items = catalog()
            items[1] = ("supplier.offer", dict(items[1][1], expires_at=expires.isoformat()))
            await c.send_many(items)
            await c.settled()
            assert await c.bodies("REFLOW_OUT", LINK_HEALTH, timeout=0.5) == []
            [health] = await c.bodies("REFLOW_OUT", LINK_HEALTH, at_least=1, timeout=15)
            assert health["status"] == "broken" and health["missing"][0]["why"] == "expired"

    run(story)
