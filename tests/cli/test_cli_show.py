"""`reflow show held|unroutable|loss-risks` at 80 columns with ids as real shops have them (a user
trial found 19-digit order ids, allocation, supplier, product and line ids and tracking numbers
split across lines), and its refusals, each one line leading with `--duckdb`."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import duckdb

from adapters.bootstrap import Settings, open_app
from tests.cli.test_cli_statement import fits, reflow
from tests.world import T0, alt, comp, line, link, offer, place, sku, supplier

DOUYIN, PDD = ("douyin", "dy-880123"), ("pinduoduo", "pdd-880123456")  # the longest platform name
SUPPLIER, OFFER, SSKU = "dongguan-toy-04", "608812345678", "5012345678901"
PRODUCT, SKU = "3581234567890123456", "1798765432109876543"
UNLINKED, UNLINKED_SKU = "3589999999999999999", "1790000000000000001"
ORDERS = [f"692134567890123456{n}" for n in range(5)]
LINES = [f"692134567890123{n}001" for n in range(5)]
TRACKING = "7700123456789"


def _world(tmp_path) -> str:
    """Held (a hold rule, platform review, a line withheld by hand), unroutable (no link, out of
    stock) and a loss risk (tracking for the allocation cancelled by hand); its allocation id."""
    app = open_app(Settings(data_dir=tmp_path))
    supplier(app, SUPPLIER)
    offer(app, SUPPLIER, OFFER, {SSKU: 100}, price="6.80")
    for shop in (DOUYIN, PDD):
        link(app, PRODUCT, sku(SKU, alt(comp(SUPPLIER, OFFER, SSKU))), shop=shop)
    app.set_merchant_settings("default", hold_remark_words=["加急"], at=T0 - timedelta(days=1))
    place(app, ORDERS[0], line(LINES[0], PRODUCT, sku_id=SKU), at=T0, shop=PDD, remark="加急 发货")
    place(app, ORDERS[1], line(LINES[1], PRODUCT, sku_id=SKU), at=T0, shop=PDD)
    place(app, ORDERS[2], line(LINES[2], PRODUCT, sku_id=SKU), at=T0, shop=DOUYIN)
    place(app, ORDERS[3], line(LINES[3], UNLINKED, sku_id=UNLINKED_SKU), at=T0, shop=PDD)
    place(app, ORDERS[4], line(LINES[4], PRODUCT, sku_id=SKU, qty=500), at=T0, shop=PDD)
    app.set_review(*DOUYIN, ORDERS[2], True, "platform risk check", at=T0)
    [stopped] = app.allocations_of(*PDD, ORDERS[1])
    app.cancel_allocation(stopped.allocation_id, "merchant cancelled by hand", at=T0 + timedelta(hours=1))
    app.upload_tracking(SUPPLIER, stopped.allocation_id, "YTO", TRACKING, at=T0 + timedelta(hours=2))
    app.close()
    return stopped.allocation_id


def test_show_at_80_columns_keeps_every_id_whole(tmp_path):
    allocation_id = _world(tmp_path)
    assert len(allocation_id) == 17
    assert reflow(tmp_path, "rebuild").returncode == 0
    shops = [f"{p}/{s}" for p, s in (DOUYIN, PDD)]
    expected = {
        "held": (3, [*shops, *ORDERS[:3], "hold:", "review:", "withheld"]),
        "unroutable": (2, [shops[1], *ORDERS[3:], *LINES[3:], PRODUCT, SKU, UNLINKED, UNLINKED_SKU, "no_link",
                           "out_of_stock"]),
        "loss-risks": (1, [allocation_id, SUPPLIER, shops[1], ORDERS[1], "YTO", TRACKING]),
    }
    for name, (rows, words) in expected.items():
        shown = reflow(tmp_path, "show", name)
        assert shown.returncode == 0, shown.stderr
        fits(shown.stdout)
        assert "…" not in shown.stdout
        for word in words:  # whole, on one line of the table
            assert any(word in row for row in shown.stdout.splitlines()), (name, word)
        ids = [*ORDERS, *LINES, PRODUCT, SKU, UNLINKED, UNLINKED_SKU, TRACKING, SUPPLIER, allocation_id]
        pieces = [t for t in re.findall(r"[\w-]+", shown.stdout) if len(t) >= 3 and t not in ids
                  and any(i.startswith(t) or i.endswith(t) for i in ids)]
        assert pieces == [], (name, pieces)  # no piece of an id anywhere
        data = json.loads(reflow(tmp_path, "show", name, "--format", "json").stdout)
        assert len(data) == rows, (name, data)
    [risk] = json.loads(reflow(tmp_path, "show", "loss-risks", "--format", "json").stdout)
    assert (risk["allocation_id"], risk["tracking_no"], risk["order_id"]) == (allocation_id, TRACKING, ORDERS[1])


def test_show_refusals_lead_with_duckdb(tmp_path):
    _world(tmp_path)  # the store (and its key) is checked first, as for every command
    not_duckdb = tmp_path / "report.csv"
    not_duckdb.write_text("order,amount\n")
    for path, why in ((tmp_path / "none.duckdb", "does not exist yet"), (not_duckdb, "is not a DuckDB file")):
        done = reflow(tmp_path, "--duckdb", str(path), "show", "held")
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr.startswith(f"reflow: --duckdb {path}: {why}") and done.stderr.count("\n") == 1, done.stderr
    assert reflow(tmp_path, "rebuild").returncode == 0
    with duckdb.connect(str(tmp_path / "reflow.duckdb")) as con:  # as a file written before issue 16
        con.execute("DROP VIEW overdue_allocations")
    done = reflow(tmp_path, "show", "overdue")
    assert done.returncode == 1
    assert done.stderr.startswith(f"reflow: --duckdb {tmp_path / 'reflow.duckdb'}: has no overdue_allocations "
                                  "view: an older reflow wrote it"), done.stderr
