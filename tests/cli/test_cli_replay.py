"""`reflow prelink`, `reflow whatif`, `reflow audit` and `reflow verify` from the command line."""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import timedelta

from adapters.bootstrap import Settings, open_app
from engine.app import utcnow
from tests.cli.test_cli_statement import reflow
from tests.world import SHOP, alt, comp, line, link, offer, place, sku, supplier

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
    head = ok.stdout.split("--expect-head ")[1].split(")")[0]
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
