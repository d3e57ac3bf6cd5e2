"""Issue 14, a newcomer's trial on a fresh clone: bad input is one line on stderr naming the option,
a non-zero exit, and changes nothing (no store, key, directory, DuckDB file or output file made or
overwritten); only `serve` and `demo` create a store, and a refused one leaves none behind. Also:
CSV files as `--format csv` prints them, hints that run from any directory, the README's Python."""

from __future__ import annotations

import csv
import io
import json
import re
import shlex
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest

from adapters.bootstrap import Settings, open_app
from tests.cli.test_cli_safety import cli, one_line, tree
from tests.world import SHOP, T0, allocations, alt, comp, line, link, offer, place, sku, supplier

ROOT = Path(__file__).resolve().parents[2]
DAY = T0.date().isoformat()
SHOP_ARGS = ["--platform", SHOP[0], "--shop", SHOP[1]]
WHATIF = ["whatif", *SHOP_ARGS, "--from", DAY, "--to", DAY]


@pytest.fixture(autouse=True)
def no_reflow_env(monkeypatch):
    for name in ("REFLOW_CIPHER_KEY", "REFLOW_STORE", "REFLOW_DUCKDB", "REFLOW_NATS_URL", "COLUMNS", "LINES"):
        monkeypatch.delenv(name, raising=False)


def trial_shop(data: Path) -> None:
    """A store (as serve makes it): S1 and S2, one order X0 allocated to S1 and tracked on T0's day,
    and K1's link broken (L11: S2's SKU changed, its allocation of X1 rejected)."""
    app = open_app(Settings(data_dir=data))
    try:
        supplier(app, "S1")
        supplier(app, "S2")
        offer(app, "S1", "O1", {"a": 100}, price="6.80")
        offer(app, "S2", "O2", {"b": 100}, price="5.00")
        link(app, "P1", sku("K1", alt(comp("S2", "O2", "b"), priority=1), alt(comp("S1", "O1", "a"), priority=2)))
        place(app, "X1", line("L1", "P1"))
        [rejected] = allocations(app, "X1")
        app.reject_allocation("S2", rejected.allocation_id, "sku_changed", at=T0 + timedelta(minutes=5))
        place(app, "X0", line("L1", "P1", qty=2), at=T0 + timedelta(minutes=10))
        [a] = allocations(app, "X0")
        app.upload_tracking("S1", a.allocation_id, "SF", "SF0000000001", at=T0 + timedelta(hours=2))
    finally:
        app.close()


@pytest.fixture
def shop(tmp_path, monkeypatch) -> Path:
    trial_shop(tmp_path / "reflow-data")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_prelink_and_whatif_out_refuse_like_statement_before_any_work(shop, capsys, monkeypatch):
    (shop / "taken.csv").write_text("mine\n")
    before = tree(shop)
    for command in (["prelink", *SHOP_ARGS, "--product", "P1", "--dry-run"], [*WHATIF, "--without-supplier", "S2"]):
        for out, words in (("taken.csv", ["--out", "exists"]), ("nodir/r.csv", ["--out", "nodir", "does not exist"]),
                           ("wi.xlsx", ["--out", ".csv or .parquet"])):
            code, stdout, err = cli(capsys, monkeypatch, *command, "--out", out)
            assert code == 1 and stdout == "", (command, out, stdout)  # nothing printed before the refusal
            one_line(err, *words)
    assert tree(shop) == before and (shop / "taken.csv").read_text() == "mine\n"


def test_a_refused_statement_or_rebuild_makes_no_duckdb_file_or_directory(shop, capsys, monkeypatch):
    (shop / "reports").mkdir()
    before = tree(shop)
    statement = ["statement", "--supplier", "S1", "--from", DAY, "--to", DAY]
    for args, words in (
            ([*statement, "--duckdb", "newdir2/y.duckdb"], ["--duckdb newdir2/y.duckdb", "does not exist"]),
            (["rebuild", "--duckdb", "newdir/x.duckdb"], ["--duckdb newdir/x.duckdb", "does not exist"]),
            (["statement", "--supplier", "nosuch", "--from", DAY, "--to", DAY, "--duckdb", "reports/y.duckdb"],
             ["nosuch"]),
            (["statement", "--supplier", "S1", "--from", "2026-01-01", "--to", "2026-01-01", "--duckdb",
              "reports/y.duckdb"], ["no tracked allocations", "--allow-empty"])):
        code, out, err = cli(capsys, monkeypatch, *args)
        assert code == 1 and out == "", args
        one_line(err, *words)
        assert tree(shop) == before, args
    code, out, err = cli(capsys, monkeypatch, *statement, "--duckdb", "reports/y.duckdb")
    assert code == 0 and (shop / "reports" / "y.duckdb").exists(), err  # issued: its new file is fine
    code, _, err = cli(capsys, monkeypatch, *statement, "--duckdb", "reports/y.duckdb")
    one_line(err, "RC4")  # refused before the projection: the file as it was


def test_statement_refuses_id_with_issuing_options_and_names_the_bad_day(shop, capsys, monkeypatch):
    for args, words in ((["--id", "ST-S1-20261102-1", "--supplier", "S1"], ["--id", "--supplier"]),
                        (["--id", "ST-S1-20261102-1", "--from", DAY, "--to", DAY], ["--id", "--from, --to"]),
                        (["--supplier", "S1", "--from", "2026-13-01", "--to", DAY], ["--from: '2026-13-01'", "month"]),
                        (["--supplier", "S1", "--from", DAY, "--to", "yesterday"], ["--to: 'yesterday'"])):
        code, out, err = cli(capsys, monkeypatch, "statement", *args)
        assert code == 1 and out == "", args
        one_line(err, *words)
        assert "--from/--to" not in err


def test_csv_files_are_what_format_csv_prints_and_the_issued_id_goes_to_stderr(shop, capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, "statement", "--supplier", "S1", "--from", DAY, "--to", DAY,
                         "--out", "st.csv", "--format", "csv")
    assert code == 0, err
    [issued] = re.findall(r"^issued (ST-S1-\S+)$", err, re.M)  # scripts find the id; stdout is the csv alone
    assert list(csv.reader(io.StringIO(out))) == list(csv.reader((shop / "st.csv").open(newline="")))
    assert "+08:00" in out and "+00:00" not in (shop / "st.csv").read_text()
    code, again, err = cli(capsys, monkeypatch, "statement", "--id", issued, "--format", "csv")
    assert code == 0 and again == out and "issued" not in err  # printed again, not issued
    args = [*WHATIF, "--without-supplier", "S1", "--all", "--format", "csv"]
    code, out, err = cli(capsys, monkeypatch, *args, "--out", "wi.csv")
    assert code == 0, err
    rows = list(csv.reader((shop / "wi.csv").open(newline="")))
    assert rows == list(csv.reader(io.StringIO(out))) and len(rows) == 3
    assert rows[0][-2:] == ["lines_lost", "lines_gained"] and rows[1][1].endswith("+08:00")


def test_whatif_refuses_an_unknown_supplier_and_a_tolerance_over_one(shop, capsys, monkeypatch):
    for args, words in ((["--without-supplier", "nosuch"], ["--without-supplier", "nosuch"]),
                        (["--capacity", "nosuch=3"], ["--capacity", "nosuch"]),
                        (["--split-tolerance", "2"], ["--split-tolerance", "0 to 1"])):
        code, out, err = cli(capsys, monkeypatch, *WHATIF, *args)
        assert code == 1 and out == "", args
        one_line(err, *words)
    assert cli(capsys, monkeypatch, *WHATIF, "--split-tolerance", "1")[0] == 0


def test_link_health_json_gives_missing_as_a_list(shop, capsys, monkeypatch):
    assert cli(capsys, monkeypatch, "rebuild")[0] == 0
    code, out, err = cli(capsys, monkeypatch, "show", "link-health", "--format", "json")
    assert code == 0, err
    [row] = json.loads(out)
    assert row["missing"] == [{"supplier_id": "S2", "offer_id": "O2", "supplier_sku_id": "b", "why": "sku_changed"}]
    code, out, _ = cli(capsys, monkeypatch, "show", "link-health", "--format", "csv")
    assert json.loads(next(csv.DictReader(io.StringIO(out)))["missing"]) == row["missing"]  # csv: its JSON text


def test_no_command_is_one_line_on_stderr(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for args in ([], ["show"], ["link"]):
        code, out, err = cli(capsys, monkeypatch, *args)
        assert code == 2 and out == "", args
        one_line(err, "missing command", f"{' '.join(['reflow', *args])} --help")
    code, out, _ = cli(capsys, monkeypatch, "link", "--help")
    assert code == 0 and "show" in out
    assert list(tmp_path.iterdir()) == []


def test_hints_carry_an_absolute_data_dir_when_the_default_is_in_effect(shop, capsys, monkeypatch):
    assert Settings().as_options() == ["--data-dir", str(shop / "reflow-data")]
    assert Settings(store="sqlite:///s/e.db", duckdb=Path("x.duckdb")).as_options() == [
        "--store", f"sqlite:///{shop}/s/e.db", "--duckdb", str(shop / "x.duckdb")]  # the key is beside the store
    code, out, err = cli(capsys, monkeypatch, "verify", "--no-anchor")
    assert code == 0, err
    words = shlex.split(out.split("to check the log later:\n", 1)[1].replace(" \\\n", " "))
    assert words[4:] == ["--data-dir", str(shop / "reflow-data")]
    (shop / "elsewhere").mkdir()
    monkeypatch.chdir(shop / "elsewhere")
    code, out, err = cli(capsys, monkeypatch, *words[1:])  # as printed, from another directory
    assert code == 0 and "history intact" in out, err


def test_publish_refuses_a_named_store_that_is_not_a_reflow_store(tmp_path, capsys, monkeypatch):
    from adapters.examples import EXAMPLES

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.json").write_text(json.dumps(EXAMPLES["reflow.in.supplier.upserted"]))
    publish = ["publish", "supplier.upserted", "s.json", "--nats", "nats://127.0.0.1:1"]
    for where in (["--store", "sqlite:////nonexistent/dir/events.db"], ["--data-dir", "nowhere"]):
        code, out, err = cli(capsys, monkeypatch, *publish, *where)
        assert code == 1 and out == "", where
        one_line(err, "--store", "no reflow store there")
    code, _, err = cli(capsys, monkeypatch, *publish)  # no store named: publishing needs none
    one_line(err, "--nats nats://127.0.0.1:1: cannot connect to NATS")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json"]


def test_refused_serve_leaves_no_store_or_key(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "report.csv").write_text("month,total\n")
    before = tree(tmp_path)
    for args, words in ((["--duckdb", "report.csv"], ["--duckdb report.csv", "is not a DuckDB file"]),
                        (["--duckdb", "nodir/x.duckdb"], ["--duckdb nodir/x.duckdb", "does not exist"]),
                        (["--nats", "nats://127.0.0.1:1"], ["--nats nats://127.0.0.1:1", "cannot connect"])):
        code, out, err = cli(capsys, monkeypatch, "serve", "--data-dir", "s2", *args)
        assert code == 1 and out == "", args
        one_line(err, *words)
        assert tree(tmp_path) == before, args


@pytest.mark.nats
@pytest.mark.timeout(120)
def test_serve_on_a_reflow_out_from_another_store_leaves_no_store(nats_server, tmp_path, capsys, monkeypatch):
    from tests.adapters.natsworld import catalog, client, order_body, run, running

    first = Settings(store=f"sqlite:///{tmp_path}/a/events.db", nats_url=nats_server.url, data_dir=tmp_path / "a")

    async def fill():
        async with running(first), client(nats_server.url) as c:
            for subject, body in catalog():
                await c.send(subject, body)
            await c.send("order.placed", order_body("S-1"))
            await c.settled()
            assert await c.messages("REFLOW_OUT", "reflow.out.supplier.*.allocation", at_least=1)

    run(fill)
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, monkeypatch, "serve", "--data-dir", "b", "--nats", nats_server.url)
    assert code == 1 and out == ""
    one_line(err, "REFLOW_OUT already holds messages", "another store")
    assert not (tmp_path / "b").exists()

    async def passes(url, *, new_store):  # without the check before: the store serve made is removed again
        return None

    monkeypatch.setattr("adapters.cli_guard._check_broker", passes)
    code, _, err = cli(capsys, monkeypatch, "serve", "--data-dir", "b", "--nats", nats_server.url)
    assert code == 1 and "REFLOW_OUT already holds" in err and not (tmp_path / "b").exists()
    open_app(Settings(data_dir=tmp_path / "c")).close()  # a store there before: never removed
    kept = tree(tmp_path / "c")
    code, _, err = cli(capsys, monkeypatch, "serve", "--data-dir", "c", "--nats", nats_server.url)
    assert code == 1 and "REFLOW_OUT already holds" in err
    assert {k for k in tree(tmp_path / "c") if "events.db-" not in k} == {k for k in kept if "events.db-" not in k}


def test_refused_demo_names_the_option_and_leaves_nothing(shop, capsys, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(shop / "tmp"))
    (shop / "tmp").mkdir()
    (shop / "report.csv").write_text("month,total\n")
    before = tree(shop)
    store = f"sqlite:///{shop}/reflow-data/events.db"
    for args, words in (
            (["--duckdb", "report.csv"], ["--duckdb report.csv", "exists already"]),
            (["--store", store], [f"--store {store}", "holds events"]),
            (["--store", "postgresql://127.0.0.1:1/x", "--data-dir", "pgy"], ["--store postgresql://127.0.0.1:1/x"]),
            (["--data-dir", "report.csv"], ["--data-dir report.csv", "is not a directory"]),
            (["--data-dir", "reflow-data"], ["--data-dir reflow-data", "holds an event store"])):
        code, out, err = cli(capsys, monkeypatch, "demo", "--quick", *args)
        assert code == 1 and out == "", (args, out)
        one_line(err, *words)
        assert tree(shop) == before, args
    from adapters.demo.harness import DemoError

    def no_broker(self):  # refused after the store was made: what the run made is removed
        raise DemoError("nats-server: cannot start")

    monkeypatch.setattr("adapters.natsserver.NatsServer.__enter__", no_broker)
    for args in ([], ["--data-dir", "fresh"], ["--store", f"sqlite:///{shop}/tmp/new/events.db"]):
        code, _, err = cli(capsys, monkeypatch, "demo", "--quick", *args)
        one_line(err, "nats-server: cannot start")
        assert tree(shop) == before, args


def test_the_readme_python_snippet_runs(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = readme.split("Using the engine from Python:\n\n```python\n", 1)[1].split("```", 1)[0]
    check = ("\nfrom engine import ids\nfrom engine.catalog import Supplier\n"
             "assert app.load(Supplier, ids.supplier_id('S1')).name == 'Yiwu Factory'\napp.close()\n")
    done = subprocess.run([sys.executable, "-c", snippet + check], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "reflow-data" / "events.db").exists()
