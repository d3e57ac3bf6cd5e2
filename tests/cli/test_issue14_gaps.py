"""Issue 14, "safe in people's hands": the gaps a later trial found. `show` and `publish` check the
cipher key against the store too; usage mistakes are one line; money and times printed as
elsewhere; an empty statement is not issued silently; the store options between a group and its
command; `verify`'s hint carries the options in effect. Every mistake: one line on stderr naming
the option (or where the key came from), a non-zero exit, nothing changed."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
from datetime import timedelta
from pathlib import Path

import pytest
from eventsourcing.cipher import AESCipher

from adapters.bootstrap import Settings, open_app
from engine.statements import statements_uuid
from tests.cli.test_cli_safety import AUDIT, cli, one_line, shop, tree
from tests.world import SHOP, T0, alt, comp, line, link, offer, place, sku, supplier


@pytest.fixture(autouse=True)
def no_reflow_env(monkeypatch):
    for name in ("REFLOW_CIPHER_KEY", "REFLOW_STORE", "REFLOW_DUCKDB", "REFLOW_NATS_URL", "COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)


def held_shop(data: Path) -> None:
    """A store in `data` (as serve makes it) with one held order, H1 (29.90), and one tracked
    allocation of S1 on T0's day; its analysts' file rebuilt."""
    app = open_app(Settings(data_dir=data))
    try:
        supplier(app, "S1")
        offer(app, "S1", "O1", {"a": 100}, price="6.80")
        link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
        app.set_merchant_settings("default", hold_remark_words=["加急"], at=T0 - timedelta(days=1))
        place(app, "H1", line("L1", "P1"), remark="加急")
        place(app, "X1", line("L1", "P1", qty=2))
        [a] = app.allocations_of(*SHOP, "X1")
        app.upload_tracking("S1", a.allocation_id, "SF", "SF0000000001", at=T0 + timedelta(hours=2))
    finally:
        app.close()


def test_show_and_publish_refuse_a_key_that_is_not_the_stores(tmp_path, capsys, monkeypatch):
    data = tmp_path / "shop"
    held_shop(data)
    store = f"sqlite:///{data}/events.db"
    assert cli(capsys, monkeypatch, "rebuild", "--data-dir", str(data))[0] == 0
    body = tmp_path / "supplier.json"
    from adapters.examples import EXAMPLES

    body.write_text(json.dumps(EXAMPLES["reflow.in.supplier.upserted"]))
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, monkeypatch, "show", "held", "--data-dir", str(data))
    assert code == 0 and "H1" in out, err
    before = tree(tmp_path)
    monkeypatch.setenv("REFLOW_CIPHER_KEY", AESCipher.create_key(32))  # another store's key
    for args in (["show", "held", "--data-dir", str(data)], ["show", "loss-risks", "--store", store],
                 ["publish", "supplier.upserted", str(body), "--store", store, "--nats", "nats://127.0.0.1:1"]):
        code, out, err = cli(capsys, monkeypatch, *args)
        assert code == 1 and out == "", (args, out)
        one_line(err, "cipher key from REFLOW_CIPHER_KEY", f"--store {store}")
    monkeypatch.setenv("REFLOW_CIPHER_KEY", (data / "cipher.key").read_text().strip())  # the right one
    assert cli(capsys, monkeypatch, "show", "held", "--store", store, "--duckdb", str(data / "reflow.duckdb"))[0] == 0
    monkeypatch.delenv("REFLOW_CIPHER_KEY")
    right = (data / "cipher.key").read_text()
    (data / "cipher.key").write_text(AESCipher.create_key(32))  # the wrong key file beside the store
    code, _, err = cli(capsys, monkeypatch, "show", "held", "--data-dir", str(data))
    assert code == 1
    one_line(err, f"cipher key from {data / 'cipher.key'}")
    (data / "cipher.key").write_text(right)
    assert tree(tmp_path) == {**before, "shop/cipher.key": tree(tmp_path)["shop/cipher.key"]}
    # publish needs no store: without one it goes on to NATS (here not there), as before.
    code, _, err = cli(capsys, monkeypatch, "publish", "supplier.upserted", str(body), "--nats", "nats://127.0.0.1:1")
    one_line(err, "--nats nats://127.0.0.1:1: cannot connect to NATS")


def test_show_without_a_store_says_so_as_every_other_command_and_creates_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for where in ([], ["--data-dir", str(tmp_path / "none")], ["--store", f"sqlite:///{tmp_path}/no/events.db"]):
        errors = []
        for args in (["show", "held"], AUDIT):
            code, out, err = cli(capsys, monkeypatch, *args, *where)
            assert code == 1 and out == "", (args, where)
            one_line(err, "--store sqlite:///", "no reflow store there", "only `reflow serve` and `reflow demo`")
            errors.append(err)
        assert errors[0] == errors[1]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.postgres
def test_show_refuses_the_key_in_another_data_dir_for_a_postgresql_store(pg_store, tmp_path, capsys, monkeypatch):
    shop(pg_store, tmp_path / "d")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "cipher.key").write_text(AESCipher.create_key(32))
    before = tree(tmp_path)
    code, _, err = cli(capsys, monkeypatch, "show", "held", "--store", pg_store, "--data-dir", str(tmp_path / "other"))
    assert code == 1
    one_line(err, f"cipher key from {tmp_path / 'other' / 'cipher.key'}")
    assert tree(tmp_path) == before


def test_usage_mistakes_are_one_line_naming_the_option(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for args, words in ((["show", "held", "--format", "xml"], ["--format", "'xml' is not one of"]),
                        (["release", "--platform", "douyin"], ["Missing option", "--shop"]),
                        (["release", "--platform", "douyin", "--shop", "s", "--order", "o", "--wait", "x"],
                         ["--wait"]),
                        (["link", "show", "--platform"], ["--platform", "requires an argument"]),
                        (["nosuch"], ["No such command", "nosuch"]),
                        (["show", "held", "--bogus"], ["--bogus"])):
        code, out, err = cli(capsys, monkeypatch, *args)
        assert code == 2 and out == "", (args, out)
        one_line(err, *words)
        assert "Value error" not in err and "Usage" not in err, err
    code, out, _ = cli(capsys, monkeypatch, "show", "--help")
    assert code == 0 and "held" in out
    assert list(tmp_path.iterdir()) == []


def test_show_prints_money_with_two_decimals_in_csv_and_json(tmp_path, capsys, monkeypatch):
    held_shop(tmp_path)
    where = ["--data-dir", str(tmp_path)]
    assert cli(capsys, monkeypatch, "rebuild", *where)[0] == 0
    code, out, err = cli(capsys, monkeypatch, "show", "held", "--format", "csv", *where)
    assert code == 0, err
    [row] = list(csv.DictReader(io.StringIO(out)))
    assert row["order_id"] == "H1" and row["amount"] == "29.90"
    code, out, _ = cli(capsys, monkeypatch, "show", "held", "--format", "json", *where)
    assert json.loads(out)[0]["amount"] == "29.90"


def _statements(data: Path) -> int:
    from engine.statements import StatementIssued

    app = open_app(Settings(data_dir=data, create_store=False))
    try:
        return sum(1 for n in app.recorder.select_notifications(1, 10**6)
                   if isinstance(app.mapper.to_domain_event(n), StatementIssued))
    finally:
        app.close()


def test_an_empty_statement_is_refused_unless_allowed_and_rc4_times_are_to_the_second(tmp_path, capsys, monkeypatch):
    from openpyxl import load_workbook

    held_shop(tmp_path)
    where = ["--data-dir", str(tmp_path)]
    quiet = (T0 + timedelta(days=5)).date().isoformat()  # nothing tracked that day
    out = tmp_path / "empty.csv"
    code, stdout, err = cli(capsys, monkeypatch, "statement", "--supplier", "S1", "--from", quiet, "--to", quiet,
                            "--out", str(out), *where)
    assert code == 1 and stdout == ""
    one_line(err, f"no tracked allocations for supplier S1 in {quiet} .. {quiet}", "nothing issued", "--allow-empty")
    assert not out.exists() and _statements(tmp_path) == 0
    code, stdout, err = cli(capsys, monkeypatch, "statement", "--supplier", "S1", "--from", quiet, "--to", quiet,
                            "--allow-empty", *where)
    assert code == 0 and "lines 0  total 0" in stdout, err  # allowed; the refusal above used no RC4 slot
    assert _statements(tmp_path) == 1
    day = T0.date().isoformat()
    code, _, err = cli(capsys, monkeypatch, "statement", "--supplier", "S1", "--from", day, "--to", day, *where)
    assert code == 1
    one_line(err, "RC4", "the next is allowed at")
    times = re.findall(r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[.\d]*", err)
    assert len(times) == 2 and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", t) for t in times), err
    assert err.count(" China time") == 2 and "+08:00" not in err
    assert times[1] > times[0]  # the next allowed time, rounded up: at it, a statement is allowed
    # The xlsx export: money as numbers shown with 2 decimals.
    app = open_app(Settings(data_dir=tmp_path, create_store=False))
    try:
        statement_id = next(e.statement.statement_id for e in app.events.get(statements_uuid("S1")))
    finally:
        app.close()
    book_path = tmp_path / "st.xlsx"
    assert cli(capsys, monkeypatch, "statement", "--id", statement_id, "--out", str(book_path), *where)[0] == 0
    book = load_workbook(book_path)
    total = next(r[1] for r in book["summary"].iter_rows() if r[0].value == "total")
    assert total.value == 0 and total.number_format == "0.00"


def test_xlsx_money_cells_show_two_decimals(tmp_path, capsys, monkeypatch):
    from openpyxl import load_workbook

    held_shop(tmp_path)
    where = ["--data-dir", str(tmp_path)]
    day = T0.date().isoformat()
    path = tmp_path / "st.xlsx"
    code, _, err = cli(capsys, monkeypatch, "statement", "--supplier", "S1", "--from", day, "--to", day,
                       "--out", str(path), *where)
    assert code == 0, err
    sheet = load_workbook(path)["lines"]
    header = [c.value for c in sheet[1]]
    cells = {name: sheet.cell(2, header.index(name) + 1) for name in ("unit_price", "amount", "qty")}
    assert (cells["unit_price"].value, cells["amount"].value) == (6.8, 13.6)
    assert cells["unit_price"].number_format == cells["amount"].number_format == "0.00"
    assert cells["qty"].number_format == "General"


def test_store_options_between_a_group_and_its_command(tmp_path, capsys, monkeypatch):
    data = tmp_path / "shop"
    held_shop(data)
    store, missing = f"sqlite:///{data}/events.db", f"sqlite:///{tmp_path}/none/events.db"
    assert cli(capsys, monkeypatch, "rebuild", "--data-dir", str(data))[0] == 0
    monkeypatch.chdir(tmp_path)
    product = ["--platform", SHOP[0], "--shop", SHOP[1], "--product", "P1"]
    for args in (["link", "--store", store, "show", *product],
                 ["link", "--data-dir", str(data), "show", *product],
                 ["--store", missing, "link", "--store", store, "show", *product],  # between beats before
                 ["link", "--store", missing, "show", *product, "--store", store]):  # after beats between
        code, out, err = cli(capsys, monkeypatch, *args)
        assert code == 0 and out.startswith(f"{SHOP[0]}/{SHOP[1]}/P1: version 1"), (args, err)
    code, _, err = cli(capsys, monkeypatch, "link", "--store", store, "show", *product, "--store", missing)
    assert code == 1
    one_line(err, f"--store {missing}", "no reflow store there")
    code, out, err = cli(capsys, monkeypatch, "show", "--data-dir", str(data), "held")
    assert code == 0 and "H1" in out, err
    body = {"platform": SHOP[0], "shop_id": SHOP[1], "product_id": "P1", "mode": "multi", "skus": [
        {"sku_id": "K1", "alternatives": [{"components": [
            {"supplier_id": "S1", "offer_id": "O1", "supplier_sku_id": "a", "qty": 1}]}]}]}
    (tmp_path / "L.json").write_text(json.dumps(body))
    code, out, err = cli(capsys, monkeypatch, "link", "--store", store, "set", "--file", "L.json")
    assert code == 0 and "unchanged" in out and "nothing published" in out, err
    assert not (tmp_path / "reflow-data").exists() and not (tmp_path / "none").exists()


def test_verify_hint_carries_the_options_in_effect(tmp_path, capsys, monkeypatch):
    held_shop(tmp_path / "shop")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, monkeypatch, "--data-dir", "shop", "verify", "--no-anchor")
    assert code == 0, err
    hint = out.split("to check the log later:\n", 1)[1]
    assert all(len(x) <= 80 for x in hint.splitlines()), hint
    words = shlex.split(hint.replace(" \\\n", " "))
    assert words[:3] == ["reflow", "verify", "--expect-head"]
    assert words[4:] == ["--data-dir", str(tmp_path / "shop")]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    code, out, err = cli(capsys, monkeypatch, *words[1:])  # as printed, from another directory
    assert code == 0 and "history intact" in out, err
