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


def test_rc6_serve_sends_the_return_to_the_supplier_and_an_answer_twice_changes_nothing(
        nats_server, sqlite_store, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(Server, "TICK_SECONDS", 3600.0)
    s = Settings(store=sqlite_store, nats_url=nats_server.url, data_dir=tmp_path / "data")

    async def story():
        async with running(s), client(nats_server.url) as c:
            await c.send_many(catalog())
            await c.send("order.placed", order_body("Q-1", qty=2))
            await c.settled()
            app = open_app(s)
            try:
                [alloc] = app.allocations_of(*SHOP, "Q-1")
            finally:
                app.close()
            await c.send("tracking.uploaded", example("tracking.uploaded", allocation_id=alloc.allocation_id,
                                                      uploaded_at="2024-05-01T17:00:00+08:00"))
            await c.send("aftersale.opened", example("aftersale.opened", order_id="Q-1", aftersale_id="AS-Q",
                                                     kind="return", line_id="Q-1-1", opened_at="2024-05-03T09:00:00+08:00"))
            await c.send("return.requested", example("return.requested", order_id="Q-1", aftersale_id="AS-Q"))
            [ret] = await c.bodies("REFLOW_OUT", f"reflow.out.supplier.{SUPPLIER}.return", at_least=1)
            assert ret["allocation_id"] == alloc.allocation_id and ret["lines"] == [
                {"offer_id": alloc.lines[0].offer_id, "supplier_sku_id": alloc.lines[0].supplier_sku_id, "qty": 2}]
            answer = example("return.answered", return_id=ret["return_id"])
            await c.send("return.answered", answer)
            await c.send("return.answered", dict(answer, outcome="refused", reason="too late"))
            await c.send("return.answered", dict(answer, supplier_id="someone-else"))
            await c.settled()
            [dead] = await c.messages("REFLOW_DLQ", at_least=1)
            assert "rule RC6: supplier_id" in dead.headers["Reflow-Error"]
            app = open_app(s)
            try:
                from engine import ids
                from engine.returns import SupplierReturn

                assert app.load(SupplierReturn, ids.return_uuid(ret["return_id"])).status == "accepted"
            finally:
                app.close()

    run(story)
