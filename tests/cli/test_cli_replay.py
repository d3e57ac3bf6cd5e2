"""`reflow prelink`, `reflow whatif`, `reflow audit` and `reflow verify` from the command line."""

from __future__ import annotations

import csv
import json
import re
import sqlite3
from datetime import timedelta

from adapters.bootstrap import Settings, open_app
from engine.app import utcnow
from tests.cli.test_cli_statement import fits, reflow
from tests.world import BUYER, SHOP, T0, alt, comp, line, link, offer, place, sku, supplier

SHOP_ARGS = ["--platform", SHOP[0], "--shop", SHOP[1]]


def test_L10_A1_A2_prelink_dry_run_then_pull_then_audit_whatif_and_verify(tmp_path):
    app = open_app(Settings(data_dir=tmp_path))
    supplier(app, "S1")
    supplier(app, "S2")
    offer(app, "S1", "O1", {"a": 100}, price="6.80")
    offer(app, "S2", "O2", {"b": 100}, price="7.20")
    now = utcnow()  # the CLI pulls as of now: the orders must be inside the 30-day window
    for n in range(3):
        place(app, f"E{n}", line("L1", "P1"), at=now - timedelta(days=n + 1))
    link(app, "P1", sku("K1", alt(comp("S1", "O1", "a")), alt(comp("S2", "O2", "b"))), at=now)
    app.close()

    dry = reflow(tmp_path, "prelink", *SHOP_ARGS, "--product", "P1", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would route 3 of 3 waiting" in dry.stdout and "nothing stored" in dry.stdout
    out = tmp_path / "pull.csv"
    done = reflow(tmp_path, "prelink", *SHOP_ARGS, "--product", "P1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "routed 3 of 3 waiting (3 allocated, cost 20.40)" in done.stdout
    assert [r["status"] for r in csv.DictReader(out.open())] == ["allocated"] * 3
    again = reflow(tmp_path, "prelink", *SHOP_ARGS, "--product", "P1")
    assert "routed 0 of 0 waiting" in again.stdout

    audit = reflow(tmp_path, "audit", *SHOP_ARGS, "--order", "E0")
    assert audit.returncode == 0, audit.stderr
    assert "lost: cost" in audit.stdout and "status allocated" in audit.stdout
    assert "张三丰" not in audit.stdout and "13812345678" not in audit.stdout
    early = reflow(tmp_path, "audit", *SHOP_ARGS, "--order", "E0", "--as-of", "2020-01-01")
    assert "no event of this order had happened by then" in early.stdout

    link_file = tmp_path / "link.json"
    link_file.write_text(json.dumps({"platform": SHOP[0], "shop_id": SHOP[1], "product_id": "P1", "mode": "single",
                                     "skus": [{"sku_id": "K1", "alternatives": [{"components": [
                                         {"supplier_id": "S2", "offer_id": "O2", "supplier_sku_id": "b", "qty": 1}]}]}]}))
    whatif = reflow(tmp_path, "whatif", *SHOP_ARGS, "--from", "2000-01-01", "--to", "2099-12-31", "--product", "P1",
                    "--link", str(link_file), "--out", str(tmp_path / "w.parquet"))
    assert whatif.returncode == 0, whatif.stderr
    assert ("3 orders replayed, 3 would change; cost difference +1.20 over the orders routed the same lines both "
            "ways; nothing stored") in " ".join(whatif.stdout.split())

    ok = reflow(tmp_path, "verify")
    assert ok.returncode == 0, ok.stderr
    assert "history intact" in ok.stdout and "anchored" in ok.stdout
    fits(ok.stdout)
    head = re.search(r"--expect-head \\?\s*(\d+:[0-9a-f]{64})", ok.stdout).group(1)
    assert "--data-dir" in ok.stdout.split("--expect-head", 1)[1]  # the options in effect, to copy
    assert reflow(tmp_path, "verify", "--no-anchor", "--expect-head", head).returncode == 0

    db = sqlite3.connect(tmp_path / "events.db")
    rowid, state = db.execute("SELECT rowid, state FROM stored_events WHERE topic LIKE '%OrderRouted' "
                              "ORDER BY rowid LIMIT 1").fetchone()
    db.execute("UPDATE stored_events SET state = ? WHERE rowid = ?", (state.replace(b'"placed"', b'"plaxed"'), rowid))
    db.commit()
    db.close()
    bad = reflow(tmp_path, "verify")
    assert bad.returncode == 1
    assert bad.stderr.startswith(f"reflow: verify: notification {rowid} (engine.order_events:OrderRouted of aggregate ")
    assert bad.stderr.count("\n") == 1


def test_bad_replay_input_gives_one_line_naming_the_field(tmp_path):
    open_app(Settings(data_dir=tmp_path)).close()  # an (empty) store: only serve and demo create one
    cases = [
        (["prelink", "--platform", "ebay", "--shop", "s", "--product", "p"], "--platform"),
        (["prelink", *SHOP_ARGS, "--product", "p", "--window-days", "0"], "--window-days"),
        (["prelink", *SHOP_ARGS, "--product", "nothing-linked"], "--product"),
        (["audit", *SHOP_ARGS, "--order", "O1", "--as-of", "yesterday"], "--as-of"),
        (["audit", *SHOP_ARGS, "--order", "nope"], "--order"),
        (["whatif", *SHOP_ARGS, "--from", "2026-01-01", "--to", "2026-01-02"], "say what to change"),
        (["whatif", *SHOP_ARGS, "--from", "2026-01-01", "--to", "2026-01-02", "--split-tolerance", "x"],
         "--split-tolerance"),
        (["whatif", *SHOP_ARGS, "--from", "2026-01-02", "--to", "2026-01-01", "--split-tolerance", "0.1"], "--to"),
        (["prelink", *SHOP_ARGS], "--product"),
        (["verify", "--expect-head", "12:xyz"], "--expect-head"),
    ]
    for args, field in cases:
        done = reflow(tmp_path, *args)
        assert done.returncode != 0, args
        assert field in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr


# Ids as long as real ones: 19-digit shop order ids, 17-character allocation ids, long offers and SKUs.
NOW_SUPPLIER, NEW_SUPPLIER = "SUP-HANGZHOU-0001", "SUP-SHENZHEN-0002"
OFFERS = {NOW_SUPPLIER: "OFFER-771200450001", NEW_SUPPLIER: "OFFER-882300560002"}
SKUS = {NOW_SUPPLIER: ("SKU-RED-XL-000001", "SKU-BLU-XL-000002"), NEW_SUPPLIER: ("SKU-RED-XL-900001", "SKU-BLU-XL-900002")}
PRODUCT = "P-3560012345678"
ORDERS = [f"692123456789012345{n}" for n in range(2)]
WHATIF = ["order_id", "decided_at", "trigger", "recorded", "recorded_cost", "what_if", "what_if_cost", "delta",
          "lines_lost", "lines_gained"]


def _bundles(app, tmp_path):
    """Orders of two lines, each line a bundle of two components from one supplier, then shipped."""
    for s in SKUS:
        supplier(app, s)
        offer(app, s, OFFERS[s], {k: 100 for k in SKUS[s]}, price="6.80" if s == NOW_SUPPLIER else "7.20")
    link(app, PRODUCT, sku("K1", *(alt(*(comp(s, OFFERS[s], k) for k in SKUS[s])) for s in SKUS)))
    for n, order_id in enumerate(ORDERS):
        place(app, order_id, line("L1", PRODUCT, qty=2), line("L2", PRODUCT), at=T0 + timedelta(minutes=n))
        [a] = app.allocations_of(*SHOP, order_id)
        app.upload_tracking(NOW_SUPPLIER, a.allocation_id, "SF", f"SF14000000000{n}", at=T0 + timedelta(hours=2))
    allocation_id = app.allocations_of(*SHOP, ORDERS[0])[0].allocation_id
    app.close()
    link_file = tmp_path / "link.json"
    link_file.write_text(json.dumps({"platform": SHOP[0], "shop_id": SHOP[1], "product_id": PRODUCT, "mode": "single",
                                     "skus": [{"sku_id": "K1", "alternatives": [{"components": [
                                         {"supplier_id": NEW_SUPPLIER, "offer_id": OFFERS[NEW_SUPPLIER],
                                          "supplier_sku_id": k, "qty": 1} for k in SKUS[NEW_SUPPLIER]]}]}]}))
    return allocation_id, link_file


def test_A1_whatif_at_80_columns_keeps_ids_whole_and_prints_csv_and_json(tmp_path):
    """Issue 14: at 80 columns `whatif` cut every column; `--format csv|json` for scripts."""
    _, link_file = _bundles(open_app(Settings(data_dir=tmp_path)), tmp_path)
    args = ["whatif", *SHOP_ARGS, "--from", "2000-01-01", "--to", "2099-12-31", "--product", PRODUCT,
            "--link", str(link_file)]
    shown = reflow(tmp_path, *args)
    assert shown.returncode == 0, shown.stderr
    fits(shown.stdout)
    for word in [*ORDERS, *SKUS, *OFFERS.values(), *SKUS[NOW_SUPPLIER], *SKUS[NEW_SUPPLIER], "+4.80"]:
        assert word in shown.stdout, word  # 2 x (2 + 2 + 1 + 1) units x 0.40
    summary = " ".join(shown.stdout.split()[-25:])  # the summary after the table
    assert "2 orders replayed, 2 would change; cost difference +4.80" in summary and "nothing stored" in summary

    as_csv = reflow(tmp_path, *args, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    lines = as_csv.stdout.splitlines()
    assert lines[0].split(",") == WHATIF  # every field of a row, nothing but the csv on stdout
    rows = list(csv.DictReader(lines))
    assert [r["order_id"] for r in rows] == ORDERS and rows[0]["delta"] == "2.40"
    assert rows[0]["decided_at"].endswith("+08:00") and rows[0]["lines_lost"] == "0"
    assert f"{NOW_SUPPLIER}/{OFFERS[NOW_SUPPLIER]}/" in rows[0]["recorded"]
    assert "2 orders replayed" in as_csv.stderr  # the summary apart, on stderr

    as_json = reflow(tmp_path, *args, "--format", "json", "--all", "--out", str(tmp_path / "w.csv"))
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert [list(r) for r in data] == [WHATIF] * 2
    assert data[1]["order_id"] == ORDERS[1] and data[1]["what_if_cost"] == "43.20" and data[1]["lines_gained"] == 0
    assert "written" in as_json.stderr and (tmp_path / "w.csv").exists()


def test_audit_at_80_columns_keeps_ids_and_event_names_whole_and_prints_csv_and_json(tmp_path):
    """Issue 14: at 80 columns `audit` split ids and event names across lines; `--format csv|json`."""
    allocation_id, _ = _bundles(open_app(Settings(data_dir=tmp_path)), tmp_path)
    args = ["audit", *SHOP_ARGS, "--order", ORDERS[0]]
    events = ["OrderPlaced", "OrderRouted", "Allocated", "TrackingUploaded", "OrderShipped", "AllocationShipped"]
    shown = reflow(tmp_path, *args)
    assert shown.returncode == 0, shown.stderr
    fits(shown.stdout)
    for word in [ORDERS[0], allocation_id, *events, *SKUS[NOW_SUPPLIER], "SF140000000000", "lost: cost"]:
        assert word in shown.stdout, word
    assert shown.stdout.count(allocation_id) >= 6  # state, 4 history entries, the decision
    assert f"{NOW_SUPPLIER}/{OFFERS[NOW_SUPPLIER]}/{SKUS[NOW_SUPPLIER][0]} x2" in shown.stdout  # a component whole

    as_csv = reflow(tmp_path, *args, "--format", "csv")
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(as_csv.stdout.splitlines()))  # one row a history entry
    assert [r["event"] for r in rows] == events
    assert [r["where"] for r in rows] == ["order", "order", allocation_id, allocation_id, "order", allocation_id]
    assert rows[0]["at"] == T0.isoformat() and "tracking uploaded: SF SF140000000000" in rows[3]["detail"]

    as_json = reflow(tmp_path, *args, "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["order"]["status"] == "shipped" and data["as_of"] is None
    assert [h["event"] for h in data["history"]] == events
    assert data["allocations"] == [{"allocation_id": allocation_id, "supplier_id": NOW_SUPPLIER, "status": "shipped",
                                    "carrier": "SF", "tracking_no": "SF140000000000", "intercept_reason": None}]
    [decision] = data["decisions"]
    assert decision["reproduced"] and [ln["outcome"] for ln in decision["lines"]] == ["alternative 0"] * 2
    assert [c["verdict"] for c in decision["lines"][0]["candidates"]] == ["chosen", "lost: cost"]
    assert data["recipient_masked"]["phone"] == "138****5678"
    for clear in (BUYER.name, BUYER.phone, BUYER.address):  # rule P1, in every format
        assert clear not in as_json.stdout and clear not in as_csv.stdout and clear not in shown.stdout


PRELINK_CSV = ["order_id", "placed_at", "result", "reason", "status", "allocations", "cost", "amount", "unroutable"]
PRELINK_JSON = ["order_id", "placed_at", "result", "reason", "status", "amount", "unroutable", "allocations"]


def _prelinked(app):
    """Three orders placed before their product was linked (within the window): the first to two
    suppliers (a SKU each), the second with a line of a product still unlinked, the third under review."""
    for s in SKUS:
        supplier(app, s)
    offer(app, NOW_SUPPLIER, OFFERS[NOW_SUPPLIER], {SKUS[NOW_SUPPLIER][0]: 100}, price="6.80")
    offer(app, NEW_SUPPLIER, OFFERS[NEW_SUPPLIER], {SKUS[NEW_SUPPLIER][1]: 100}, price="7.20")
    now = utcnow()
    orders = [*ORDERS, "6921234567890123452"]
    place(app, orders[0], line("L1", PRODUCT, qty=2), line("L2", PRODUCT, sku_id="K2"), at=now - timedelta(days=3))
    place(app, orders[1], line("L1", PRODUCT), line("L2", "P-3560099999999"), at=now - timedelta(days=2))
    place(app, orders[2], line("L1", PRODUCT), at=now - timedelta(days=1))
    app.set_review(*SHOP, orders[2], True, "risk check", at=now - timedelta(hours=20))
    link(app, PRODUCT, sku("K1", alt(comp(NOW_SUPPLIER, OFFERS[NOW_SUPPLIER], SKUS[NOW_SUPPLIER][0]))),
         sku("K2", alt(comp(NEW_SUPPLIER, OFFERS[NEW_SUPPLIER], SKUS[NEW_SUPPLIER][1]))), at=now)
    app.close()
    return orders


def test_L10_prelink_at_80_columns_keeps_ids_whole_and_prints_csv_and_json(tmp_path):
    """Issue 14: at 80 columns `prelink` cut every column; `--format csv|json` for scripts."""
    orders = _prelinked(open_app(Settings(data_dir=tmp_path)))
    args = ["prelink", *SHOP_ARGS, "--product", PRODUCT]

    as_json = reflow(tmp_path, *args, "--dry-run", "--format", "json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)  # every field of each report entry, nothing else on stdout
    assert [list(r) for r in data] == [PRELINK_JSON] * 3 and [r["order_id"] for r in data] == orders
    assert [(r["result"], r["reason"], r["status"]) for r in data] == [
        ("routed", None, "allocated"), ("routed", None, "partially_allocated"), ("skipped", "held", "held")]
    assert data[0]["placed_at"].endswith("+08:00") and data[0]["amount"] == "89.70"
    assert data[1]["unroutable"] == {"L2": "no_link"} and data[2]["allocations"] == []
    assert [(a["supplier_id"], a["cost"]) for a in data[0]["allocations"]] == [
        (NOW_SUPPLIER, "13.60"), (NEW_SUPPLIER, "7.20")]
    allocation_ids = [a["allocation_id"] for r in data for a in r["allocations"]]
    assert len(allocation_ids) == 3
    summary = " ".join(as_json.stderr.split())  # the summary apart, on stderr
    assert "would route 2 of 3 waiting (2 allocated, cost 27.60); skipped: 1 held" in summary
    assert "nothing stored" in summary

    shown = reflow(tmp_path, *args, "--dry-run")
    assert shown.returncode == 0, shown.stderr
    fits(shown.stdout)
    for word in [*orders, *allocation_ids, *SKUS, "partially_allocated", "L2: no_link", "skipped: held", "13.60",
                 "7.20", "89.70"]:
        assert word in shown.stdout, word
    summary = " ".join(shown.stdout.split()[-25:])  # the summary after the table
    assert "would route 2 of 3 waiting (2 allocated, cost 27.60)" in summary and "nothing stored" in summary

    for width in (80, 64):  # `link show` ends with the command to pull them, in lines that fit
        linked = reflow(tmp_path, "link", "show", *SHOP_ARGS, "--product", PRODUCT, columns=width)
        assert linked.returncode == 0, linked.stderr
        over = [x for x in linked.stdout.splitlines() if len(x) > width]
        assert all(x.strip() == str(tmp_path) for x in over), over  # only a path longer than the width
        pull_them = linked.stdout.split("pull them:\n")[1].split("\n(link health")[0]
        # the options in effect come along, so it runs as printed from any directory
        assert pull_them.replace(" \\\n", " ").split() == ["reflow", *args, "--data-dir", str(tmp_path)], pull_them

    out = tmp_path / "pull.csv"
    as_csv = reflow(tmp_path, *args, "--format", "csv", "--out", str(out))
    assert as_csv.returncode == 0, as_csv.stderr
    lines = as_csv.stdout.splitlines()
    assert lines[0].split(",") == PRELINK_CSV  # every field of an entry, one row an order
    rows = list(csv.DictReader(lines))
    assert [r["order_id"] for r in rows] == orders and rows[0]["placed_at"].endswith("+08:00")
    assert rows[0]["allocations"] == f"{allocation_ids[0]} {NOW_SUPPLIER}, {allocation_ids[1]} {NEW_SUPPLIER}"
    assert rows[0]["cost"] == "20.80" and rows[1]["unroutable"] == "L2 no_link" and rows[2]["reason"] == "held"
    assert "routed 2 of 3 waiting" in as_csv.stderr and "written" in as_csv.stderr
    assert [r["allocations"] for r in csv.DictReader(out.open())] == [r["allocations"] for r in rows]
    app = open_app(Settings(data_dir=tmp_path))  # the dry run showed the allocations the pull made
    assert sorted(a.allocation_id for o in orders for a in app.allocations_of(*SHOP, o)) == sorted(allocation_ids)
    app.close()


def test_A1_rt12_rt13_whatif_split_lines_and_capacity_options(tmp_path):
    app = open_app(Settings(data_dir=tmp_path))
    try:
        supplier(app, "S1")
        supplier(app, "S2")
        offer(app, "S1", "O1", {"a": 2}, price="5.00")
        offer(app, "S2", "O2", {"b": 2}, price="9.00")
        link(app, "P1", sku("K1", alt(comp("S1", "O1", "a")), alt(comp("S2", "O2", "b"))))
        place(app, "BIG", line("L1", "P1", qty=3))
    finally:
        app.close()
    args = ["whatif", *SHOP_ARGS, "--from", "2000-01-01", "--to", "2099-12-31"]
    split = reflow(tmp_path, *args, "--split-lines", "on", "--format", "json")
    assert split.returncode == 0, split.stderr
    assert json.loads(split.stdout)[0]["what_if"] == "L1: S1/O1/ax2+S2/O2/bx1"
    capped = reflow(tmp_path, *args, "--split-lines", "on", "--capacity", "S1=1")
    assert capped.returncode == 0 and "capacity S1 1" in capped.stdout, capped.stderr
    for bad, option in ((["--split-lines", "maybe"], "--split-lines"), (["--capacity", "S1"], "--capacity"),
                        (["--capacity", "S1=0"], "--capacity")):
        refused = reflow(tmp_path, *args, *bad)
        assert refused.returncode != 0 and refused.stderr.count("\n") == 1 and option in refused.stderr, refused.stderr


def test_A1_rt13_whatif_refuses_a_capacity_given_twice(tmp_path):
    app = open_app(Settings(data_dir=tmp_path))
    try:
        supplier(app, "S1")
    finally:
        app.close()
    done = reflow(tmp_path, "whatif", *SHOP_ARGS, "--from", "2000-01-01", "--to", "2099-12-31",
                  "--capacity", "S1=2", "--capacity", "S1=3")
    assert done.returncode != 0 and done.stderr.count("\n") == 1 and "--capacity: S1 given more than once" in done.stderr
