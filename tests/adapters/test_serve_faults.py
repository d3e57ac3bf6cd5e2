"""What producers get wrong and what goes wrong around serve: dead letters (CONTRACT section 3),
duplicates (section 1), a NATS server restart."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.bootstrap import Settings, open_app
from adapters.serve import dead_letter_subject
from tests.adapters.natsworld import (
    OFFER,
    SHOP,
    SUPPLIER,
    catalog,
    client,
    example,
    order_body,
    run,
    running,
)

pytestmark = [pytest.mark.nats, pytest.mark.timeout(120)]


def settings(nats_server, store: str, tmp_path: Path) -> Settings:
    return Settings(store=store, nats_url=nats_server.url, data_dir=tmp_path / "data")


def test_bad_messages_become_dead_letters_with_original_bytes_and_serve_goes_on(
        nats_server, sqlite_store, tmp_path):
    s = settings(nats_server, sqlite_store, tmp_path)
    not_json = b'{"platform": "douyin", "order_id": '
    no_buyer = {k: v for k, v in order_body("X-1").items() if k != "buyer"}
    bad_qty = order_body("X-2")
    bad_qty["lines"][0]["qty"] = "two"
    eleven = {"platform": SHOP[0], "shop_id": SHOP[1], "product_id": "P-11", "mode": "multi",
              "skus": [{"sku_id": "K1", "alternatives": [
                  {"components": [{"supplier_id": SUPPLIER, "offer_id": f"O{n}", "supplier_sku_id": "s",
                                   "qty": 1}]} for n in range(11)]}]}

    async def story():
        async with running(s), client(nats_server.url) as c:
            await c.send("supplier.upserted", example("supplier.upserted"))
            for n in range(11):
                await c.send("supplier.offer", {"supplier_id": SUPPLIER, "offer_id": f"O{n}", "title": "t",
                                                "on_shelf": True, "skus": [{"supplier_sku_id": "s", "stock": 5}]})
            sent = {
                "not_json": ("order.placed", not_json),
                "no_buyer": ("order.placed", json.dumps(no_buyer).encode()),
                "bad_qty": ("order.placed", json.dumps(bad_qty, ensure_ascii=False).encode()),
                "eleven": ("link.set", json.dumps(eleven).encode()),
            }
            for name, (subject, data) in sent.items():
                await c.send(subject, data, msg_id=name)
            await c.send("supplier.stock", example("supplier.stock", offer_id="O3", supplier_sku_id="s", stock=7,
                                                   at=datetime.now(UTC).isoformat()))
            await c.settled()

            dead = {m.headers["Nats-Msg-Id"]: m for m in await c.messages("REFLOW_DLQ", at_least=4)}
            assert sorted(dead) == ["dlq-bad_qty", "dlq-eleven", "dlq-no_buyer", "dlq-not_json"]
            for name, (subject, data) in sent.items():
                letter = dead[f"dlq-{name}"]
                assert letter.data == data
                assert letter.subject == dead_letter_subject(f"reflow.in.{subject}") == f"reflow.dlq.in.{subject}"
                assert letter.headers["Reflow-Subject"] == f"reflow.in.{subject}"
                error = letter.headers["Reflow-Error"]
                assert "\n" not in error and len(error) < 400
                assert "13812345678" not in error and "张伟" not in error
            assert "not valid JSON" in dead["dlq-not_json"].headers["Reflow-Error"]
            assert "buyer" in dead["dlq-no_buyer"].headers["Reflow-Error"]
            assert "$.lines[0].qty" in dead["dlq-bad_qty"].headers["Reflow-Error"]
            assert "rule L1" in dead["dlq-eleven"].headers["Reflow-Error"]

            app = open_app(s)
            try:
                assert app.offer(SUPPLIER, "O3").stock["s"] == 7  # serve went on
                assert app.link(*SHOP, "P-11") is None  # the refused link stored nothing
                assert app.order(*SHOP, "X-1") is None and app.order(*SHOP, "X-2") is None
            finally:
                app.close()

    run(story)


def test_the_same_message_or_the_same_fact_twice_changes_nothing(nats_server, store_url, tmp_path):
    s = settings(nats_server, store_url, tmp_path)

    async def story():
        async with running(s), client(nats_server.url) as c:
            for subject, body in catalog():
                await c.send(subject, body)
            await c.send("order.placed", order_body("D-1"), msg_id="order-D-1")
            await c.send("order.placed", order_body("D-1"), msg_id="order-D-1")  # redelivered
            await c.send("order.placed", order_body("D-1"), msg_id="order-D-1-again")  # same fact
            await c.settled()
            app = open_app(s)
            try:
                [alloc] = app.allocations_of(*SHOP, "D-1")
                tracking = example("tracking.uploaded", allocation_id=alloc.allocation_id)
                await c.send("tracking.uploaded", tracking)
                await c.send("tracking.uploaded", tracking)
                await c.settled()
                assert app.order(*SHOP, "D-1").status == "shipped"
                assert app.offer(SUPPLIER, OFFER).stock["4987001"] == 1199
            finally:
                app.close()
            inbound = await c.messages("REFLOW_IN", "reflow.in.order.placed")
            assert len(inbound) == 2  # the server dropped the same Nats-Msg-Id
            assert len(await c.messages("REFLOW_OUT", "reflow.out.supplier.*.allocation", at_least=1)) == 1
            assert len(await c.messages("REFLOW_OUT", "reflow.out.shop.*.*.shipment", at_least=1)) == 1
            assert await c.messages("REFLOW_DLQ") == []

    run(story)


def test_serve_carries_on_across_a_nats_server_restart(nats_server, sqlite_store, tmp_path):
    s = settings(nats_server, sqlite_store, tmp_path)

    async def story():
        async with running(s), client(nats_server.url) as c:
            for subject, body in catalog():
                await c.send(subject, body)
            await c.send("order.placed", order_body("R-1"))
            await c.settled()
            nats_server.restart()
            await c.send("order.placed", order_body("R-2"))
            await c.send("order.placed", order_body("R-3"))
            await c.settled(timeout=30)
            out = await c.bodies("REFLOW_OUT", "reflow.out.supplier.*.allocation", at_least=3, timeout=20)
            assert len(out) == 3

    run(story)


def test_serve_refuses_a_reflow_out_filled_from_another_store(nats_server, tmp_path):
    """A new store on a broker whose REFLOW_OUT came from another store would publish nothing until
    its positions passed the old ones (seen on a fresh trial): serve refuses to start, one line."""
    from adapters.serve import ServeError

    first = settings(nats_server, f"sqlite:///{tmp_path}/a/events.db", tmp_path / "a")
    second = settings(nats_server, f"sqlite:///{tmp_path}/b/events.db", tmp_path / "b")

    async def story():
        async with running(first), client(nats_server.url) as c:
            for subject, body in catalog():
                await c.send(subject, body)
            await c.send("order.placed", order_body("S-1"))
            await c.settled()
            assert len(await c.messages("REFLOW_OUT", "reflow.out.supplier.*.allocation", at_least=1)) == 1
        with pytest.raises(ServeError, match=r"REFLOW_OUT already holds messages up to store position \d+, "
                                             r"but this store has 0 events"):
            async with running(second):
                pass

    run(story)


def test_serve_never_replaces_a_duckdb_path_that_is_not_reflows_file(nats_server, sqlite_store, tmp_path):
    """Issue 14: `rebuild` refused a foreign --duckdb file, but serve's projections would replace it."""
    from dataclasses import replace

    from adapters.serve import ServeError

    report = tmp_path / "report.csv"
    report.write_text("month,total\n2026-11,3829.40\n")
    s = replace(settings(nats_server, sqlite_store, tmp_path), duckdb=report)

    async def story():
        with pytest.raises(ServeError, match=r"--duckdb .*report\.csv: is not a DuckDB file"):
            async with running(s):
                pass

    run(story)
    assert report.read_text() == "month,total\n2026-11,3829.40\n"
    assert not (tmp_path / "report.csv.work").exists()
