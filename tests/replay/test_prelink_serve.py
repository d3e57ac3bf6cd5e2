"""Rule L10 beside a live `reflow serve`: `reflow prelink` from another process while serve routes
new orders for the same supplier offer; every order is allocated once and published once."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.bootstrap import Settings, open_app
from replay.verify import verify
from tests.adapters.natsworld import SHOP, SUPPLIER, catalog, client, order_body, run, running, single_link

pytestmark = [pytest.mark.nats, pytest.mark.timeout(180)]

PRE = "3581209911"
PULLED = 400


def test_L10_prelink_cli_while_serve_is_live_routes_each_order_once(nats_server, sqlite_store, tmp_path):
    s = Settings(store=sqlite_store, nats_url=nats_server.url, data_dir=tmp_path / "data")
    day_ago = (datetime.now(UTC) - timedelta(days=1)).isoformat()

    def pre_order(n: int) -> dict:
        return order_body(f"PRE-{n}", placed_at=day_ago, lines=[{
            "line_id": "1", "product_id": PRE, "sku_id": None, "title": "钢化膜", "qty": 1, "unit_price": "9.90"}])

    async def story():
        async with running(s), client(nats_server.url) as c:
            for subject, body in catalog(stock=100_000):
                await c.send(subject, body)
            await c.send_many([("order.placed", pre_order(n)) for n in range(PULLED)])
            await c.send("link.set", single_link(PRE, None))
            await c.settled()
            cli = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "adapters.cli", "--store", sqlite_store, "--data-dir", str(s.data_dir),
                "prelink", "--platform", SHOP[0], "--shop", SHOP[1], "--product", PRE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=Path(__file__).parents[2])
            live = 0
            while cli.returncode is None and live < 2000:  # live orders on the same offer meanwhile
                await c.send_many([("order.placed", order_body(f"LIVE-{live + k}")) for k in range(10)])
                if live < PULLED and live % 20 == 0:
                    await c.send("order.cancelled", {"platform": SHOP[0], "shop_id": SHOP[1],
                                                     "order_id": f"PRE-{live}", "cancelled_at": day_ago})
                live += 10
                await asyncio.sleep(0.02)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(cli.wait(), 0.001)
            out, err = await asyncio.wait_for(cli.communicate(), 120)
            assert cli.returncode == 0, err.decode()
            await c.settled()
            messages = await c.bodies("REFLOW_OUT", f"reflow.out.supplier.{SUPPLIER}.allocation", at_least=PULLED)
            return out.decode(), messages, live

    out, messages, live = run(story, timeout=170)
    assert "routed" in out
    assert live >= 50, live  # the pull and live traffic overlapped
    app = open_app(s)
    try:
        published = [m["allocation_id"] for m in messages]
        assert len(published) == len(set(published))  # each allocation published once
        cancelled = 0
        for n in range(PULLED):
            order = app.order(*SHOP, f"PRE-{n}")
            every = app.allocations_of(*SHOP, f"PRE-{n}")
            active = [a for a in every if a.status == "active"]
            if order.cancelled:  # cancelled while the pull ran: never left with a live allocation
                assert n % 20 == 0 and active == []
                cancelled += 1
            else:
                assert order.status == "allocated" and len(every) == 1, (n, order.status)
                assert every[0].allocation_id in published
        assert cancelled == len(range(0, min(live, PULLED), 20))
        for n in range(live):
            assert app.order(*SHOP, f"LIVE-{n}").status == "allocated"
        result = verify(app, anchor=False)
        assert result.ok, result.problem.line()
    finally:
        app.close()
