"""Issue 16 over the wire, beside a running serve on a real nats-server: the overdue watch (T4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.bootstrap import Settings, open_app
from adapters.serve import Server
from tests.adapters.natsworld import SHOP, SUPPLIER, catalog, client, example, order_body, run, running

pytestmark = [pytest.mark.nats, pytest.mark.timeout(120)]


def test_t4_serve_reminds_the_supplier_once_and_reroutes_per_the_merchants_setting(
        nats_server, sqlite_store, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(Server, "TICK_SECONDS", 3600.0)  # serve's own clock once at most: the ticks here drive time
    s = Settings(store=sqlite_store, nats_url=nats_server.url, data_dir=tmp_path / "data")

    async def story():
        async with running(s), client(nats_server.url) as c:
            await c.send("merchant.settings", example("merchant.settings", merchant_id="default",
                                                      hold_amount_over=None, reroute_overdue_hours=2))
            await c.send_many(catalog())
            await c.send("order.placed", order_body("T-1"))  # 2024-05-01 10:15, ship by 23:59:59 that day
            await c.send("clock.tick", {"at": "2024-05-02T01:00:00+08:00"})
            await c.send("clock.tick", {"at": "2024-05-02T01:30:00+08:00"})
            await c.settled()
            [reminder] = await c.bodies("REFLOW_OUT", f"reflow.out.supplier.{SUPPLIER}.overdue", at_least=1)
            assert reminder["ship_by"] == "2024-05-01T15:59:59Z" and reminder["hours_overdue"] == 1.0
            await c.send("clock.tick", {"at": "2024-05-02T02:30:00+08:00"})
            intercepts = await c.bodies("REFLOW_OUT", f"reflow.out.supplier.{SUPPLIER}.intercept", at_least=1)
            assert [(i["allocation_id"], i["reason"]) for i in intercepts] == [(reminder["allocation_id"], "overdue")]
            await c.send("merchant.settings", {"merchant_id": "default", "reroute_overdue_hours": 0})
            [dead] = await c.messages("REFLOW_DLQ", at_least=1)
            assert "reroute_overdue_hours" in dead.headers["Reflow-Error"]
            app = open_app(s)
            try:
                assert app.order(*SHOP, "T-1").unroutable == {"T-1-1": "rejected"}  # never back to that supplier
            finally:
                app.close()

    run(story)
