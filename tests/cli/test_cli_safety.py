"""Issue 14, "safe in people's hands" (CONTRACT sections 5 and 6): the store and file options after
the command too; only `serve` and `demo` create a store; the store knows its key; an unreachable
PostgreSQL and a `--duckdb` that is not reflow's file are one line each. Every mistake: one line on
stderr naming the option or where the key came from, a non-zero exit, nothing changed."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import psycopg
import pytest
from eventsourcing.cipher import AESCipher

from adapters.bootstrap import Settings, open_app
from tests.world import SHOP, alt, comp, line, link, offer, place, sku, supplier

ROOT = Path(__file__).parents[2]
AUDIT = ["audit", "--platform", SHOP[0], "--shop", SHOP[1], "--order", "E0"]


@pytest.fixture(autouse=True)
def no_key_in_env(monkeypatch):
    monkeypatch.delenv("REFLOW_CIPHER_KEY", raising=False)
    for name in ("REFLOW_STORE", "REFLOW_DUCKDB", "REFLOW_NATS_URL"):
        monkeypatch.delenv(name, raising=False)


def cli(capsys, monkeypatch, *args: str) -> tuple[int, str, str]:
    """`reflow ARGS` in this process: exit code, stdout, stderr."""
    from adapters.cli import main

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["reflow", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line(err: str, *words: str) -> None:
    assert err.count("\n") == 1 and err.startswith("reflow: "), err
    for word in words:
        assert word in err, (word, err)


def tree(root: Path) -> dict[str, tuple[int, int] | str]:
    """Every directory, and every file with its size and time of change (reading SQLite's WAL store
    may come and go with its -wal/-shm files, which leave directory times changed only)."""
    return {str(p.relative_to(root)): "dir" if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def shop(store: str, data_dir: Path | None = None) -> None:
    """A store (created as serve would) holding one order, E0."""
    app = open_app(Settings(store=store, data_dir=data_dir or Path("reflow-data")))
    try:
        supplier(app, "S1")
        offer(app, "S1", "O1", {"a": 100}, price="6.80")
        link(app, "P1", sku("K1", alt(comp("S1", "O1", "a"))))
        place(app, "E0", line("L1", "P1"))
    finally:
        app.close()


def test_store_options_work_after_the_command_and_win_there(tmp_path, capsys, monkeypatch):
    store = f"sqlite:///{tmp_path}/shop/events.db"
    shop(store)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # The example, as a process, from another directory: --store alone finds the key.
    done = subprocess.run([sys.executable, "-m", "adapters.cli", *AUDIT, "--store", store], cwd=elsewhere,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "E0" in done.stdout and list(elsewhere.iterdir()) == []
    monkeypatch.chdir(elsewhere)
    missing = f"sqlite:///{tmp_path}/none/events.db"
    code, out, _ = cli(capsys, monkeypatch, "--store", missing, *AUDIT, "--store", store)
    assert code == 0 and "E0" in out  # after the command wins
    code, _, err = cli(capsys, monkeypatch, "--store", store, *AUDIT, "--store", missing)
    assert code == 1
    one_line(err, f"--store {missing}")
    monkeypatch.setenv("REFLOW_STORE", store)  # the environment still works
    code, out, _ = cli(capsys, monkeypatch, *AUDIT)
    assert code == 0 and "E0" in out
    code, _, err = cli(capsys, monkeypatch, *AUDIT, "--store", missing)  # and loses to the option
    assert code == 1 and "none/events.db" in err
    monkeypatch.delenv("REFLOW_STORE")
    code, out, _ = cli(capsys, monkeypatch, *AUDIT, "--data-dir", str(tmp_path / "shop"))
    assert code == 0 and "E0" in out
    code, out, _ = cli(capsys, monkeypatch, "rebuild", "--store", store, "--duckdb", str(tmp_path / "a.duckdb"))
    assert code == 0 and (tmp_path / "a.duckdb").exists()
    assert list(elsewhere.iterdir()) == []


def test_every_command_lists_the_store_options_in_its_help(capsys, monkeypatch):
    import typer

    from adapters.cli import app

    monkeypatch.setenv("COLUMNS", "200")

    def paths(group, prefix=()):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                yield from paths(command, (*prefix, name))
            else:
                yield (*prefix, name)

    commands = list(paths(typer.main.get_command(app)))
    assert {("serve",), ("audit",), ("rebuild",), ("demo",), ("schema",)} <= set(commands)
    for path in commands:
        code, out, err = cli(capsys, monkeypatch, *path, "--help")
        assert code == 0, (path, err)
        for option in ("--store", "--duckdb", "--nats", "--data-dir"):
            assert option in out, (path, option)


COMMANDS = [
    AUDIT,
    ["verify"],
    ["prelink", "--platform", SHOP[0], "--shop", SHOP[1], "--product", "P1", "--dry-run"],
    ["whatif", "--platform", SHOP[0], "--shop", SHOP[1], "--from", "2026-11-01", "--to", "2026-11-30",
     "--without-supplier", "S1"],
    ["statement", "--supplier", "S1", "--from", "2026-11-01", "--to", "2026-11-30"],
    ["rebuild"],
]


def test_commands_other_than_serve_and_demo_never_create_a_store(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    store = f"sqlite:///{tmp_path}/nonexistent/dir/events.db"
    for args in COMMANDS:
        for where in (["--store", store], ["--data-dir", str(tmp_path / "data")], []):
            code, _, err = cli(capsys, monkeypatch, *args, *where)
            assert code == 1, (args, where, err)
            one_line(err, "--store sqlite:///", "no reflow store there", "only `reflow serve` and `reflow demo`")
    assert tree(tmp_path) == before
    # A file that is not a store is not one either, and is left alone.
    (tmp_path / "notes.db").write_text("not a database\n")
    before = tree(tmp_path)
    code, _, err = cli(capsys, monkeypatch, *AUDIT, "--store", f"sqlite:///{tmp_path}/notes.db")
    one_line(err, "--store", "no reflow store there")
    assert code == 1 and tree(tmp_path) == before
    # serve refuses it too rather than overwrite it (it fails before it needs NATS).
    code, _, err = cli(capsys, monkeypatch, "serve", "--store", f"sqlite:///{tmp_path}/notes.db")
    one_line(err, "--store", "no reflow store there")
    assert code == 1 and tree(tmp_path) == before


@pytest.mark.postgres
def test_commands_other_than_serve_and_demo_never_create_a_postgresql_schema(pg_url, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cipher.key").write_text(AESCipher.create_key(32))
    url = f"{pg_url}?schema=not_there_{os.getpid()}"
    for args in COMMANDS:
        code, _, err = cli(capsys, monkeypatch, *args, "--store", url, "--data-dir", str(tmp_path))
        assert code == 1, (args, err)
        one_line(err, f"--store {url}", "no reflow store there", "does not exist")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [url.rsplit("=", 1)[1]]).fetchone() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cipher.key"]


def test_a_key_that_is_not_the_stores_is_refused_naming_where_it_came_from(tmp_path, capsys, monkeypatch):
    store = f"sqlite:///{tmp_path}/shop/events.db"
    shop(store)
    key_file = tmp_path / "shop" / "cipher.key"
    monkeypatch.chdir(tmp_path)
    before = tree(tmp_path)
    monkeypatch.setenv("REFLOW_CIPHER_KEY", AESCipher.create_key(32))
    for args in (AUDIT, ["verify"], ["rebuild"], ["serve", "--nats", "nats://127.0.0.1:1"]):
        code, _, err = cli(capsys, monkeypatch, *args, "--store", store)
        assert code == 1, (args, err)
        one_line(err, "cipher key from REFLOW_CIPHER_KEY", f"--store {store}")
    assert tree(tmp_path) == before
    monkeypatch.setenv("REFLOW_CIPHER_KEY", key_file.read_text().strip())  # the right one, given in the env
    assert cli(capsys, monkeypatch, *AUDIT, "--store", store)[0] == 0
    monkeypatch.delenv("REFLOW_CIPHER_KEY")
    right = key_file.read_text()
    key_file.write_text(AESCipher.create_key(32))  # another store's key file, beside this store
    before = tree(tmp_path)
    code, _, err = cli(capsys, monkeypatch, *AUDIT, "--store", store)
    one_line(err, f"cipher key from {key_file}")
    code, _, err = cli(capsys, monkeypatch, "serve", "--nats", "nats://127.0.0.1:1", "--store", store)
    one_line(err, f"cipher key from {key_file}")
    assert code == 1 and tree(tmp_path) == before
    key_file.unlink()  # no key at all: refused, and none is made up (not even by serve)
    before = tree(tmp_path)
    for args in (AUDIT, ["serve", "--nats", "nats://127.0.0.1:1"]):
        code, _, err = cli(capsys, monkeypatch, *args, "--store", store)
        assert code == 1
        one_line(err, "no cipher key", str(key_file), "REFLOW_CIPHER_KEY")
    assert tree(tmp_path) == before
    key_file.write_text(right)
    assert cli(capsys, monkeypatch, *AUDIT, "--store", store)[0] == 0


def test_a_store_from_before_fingerprints_learns_its_key_from_serve(tmp_path, capsys, monkeypatch):
    from dataclasses import replace

    shutil.copytree(ROOT / "tests" / "fixtures" / "store_v1", tmp_path / "data")
    store = f"sqlite:///{tmp_path}/data/events.db"
    settings = Settings(store=store, create_store=False)
    open_app(settings).close()  # used as before; nothing recorded
    open_app(replace(settings, create_store=True)).close()  # serve records the key it was given
    monkeypatch.setenv("REFLOW_CIPHER_KEY", AESCipher.create_key(32))
    code, _, err = cli(capsys, monkeypatch, "verify", "--no-anchor", "--store", store)
    assert code == 1
    one_line(err, "cipher key from REFLOW_CIPHER_KEY")


@pytest.mark.postgres
def test_a_postgresql_store_finds_its_key_in_the_data_dir_or_the_env(pg_store, tmp_path, capsys, monkeypatch):
    shop(pg_store, tmp_path / "d")
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, monkeypatch, *AUDIT, "--store", pg_store, "--data-dir", str(tmp_path / "d"))[0] == 0
    before = tree(tmp_path)
    code, _, err = cli(capsys, monkeypatch, *AUDIT, "--store", pg_store)  # ./reflow-data has no key
    one_line(err, "no cipher key", str(tmp_path / "reflow-data" / "cipher.key"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "cipher.key").write_text(AESCipher.create_key(32))
    before = tree(tmp_path)
    code, _, err = cli(capsys, monkeypatch, *AUDIT, "--store", pg_store, "--data-dir", str(tmp_path / "other"))
    one_line(err, f"cipher key from {tmp_path / 'other' / 'cipher.key'}")
    assert code == 1 and tree(tmp_path) == before
    monkeypatch.setenv("REFLOW_CIPHER_KEY", (tmp_path / "d" / "cipher.key").read_text().strip())
    assert cli(capsys, monkeypatch, *AUDIT, "--store", pg_store, "--data-dir", str(tmp_path / "other"))[0] == 0


def test_an_unreachable_postgresql_is_one_line_naming_the_store_and_host(tmp_path, capsys, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nobody listens there once closed
    monkeypatch.chdir(tmp_path)
    url = f"postgresql://reflow:s3cret@127.0.0.1:{port}/x"
    started = time.monotonic()
    for args in (AUDIT, ["serve"]):
        code, _, err = cli(capsys, monkeypatch, *args, "--store", url)
        assert code == 1
        one_line(err, f"--store postgresql://reflow:***@127.0.0.1:{port}/x",
                 f"cannot connect to PostgreSQL at 127.0.0.1:{port}")
        assert "s3cret" not in err and "Traceback" not in err
    assert time.monotonic() - started < 15
    assert list(tmp_path.iterdir()) == []


def test_rebuild_never_overwrites_a_file_that_is_not_reflows_duckdb(tmp_path, capsys, monkeypatch):
    store = f"sqlite:///{tmp_path}/shop/events.db"
    shop(store)
    monkeypatch.chdir(tmp_path)
    report = tmp_path / "report.csv"
    report.write_text("order,amount\nE0,29.90\n")
    with duckdb.connect(str(tmp_path / "theirs.duckdb")) as con:
        con.execute("CREATE TABLE sales (amount DECIMAL(18, 4))")
    (tmp_path / "folder.duckdb").mkdir()
    for target, why in ((report, "is not a DuckDB file"), (tmp_path / "theirs.duckdb", "without reflow's tables"),
                        (tmp_path / "folder.duckdb", "is not a file")):
        before = tree(tmp_path)
        code, _, err = cli(capsys, monkeypatch, "--duckdb", str(target), "rebuild", "--store", store)
        assert code == 1
        one_line(err, f"--duckdb {target}", why)
        assert tree(tmp_path) == before
    assert report.read_text() == "order,amount\nE0,29.90\n"
    ours = tmp_path / "new" / "reflow.duckdb"  # a path that does not exist is fine, and reflow's file too
    code, _, err = cli(capsys, monkeypatch, "rebuild", "--store", store, "--duckdb", str(ours))
    one_line(err, f"--duckdb {ours}", "does not exist")  # but no directory is made for it (issue 14)
    assert code == 1 and not ours.parent.exists()
    ours.parent.mkdir()
    for _ in range(2):
        code, out, err = cli(capsys, monkeypatch, "rebuild", "--store", store, "--duckdb", str(ours))
        assert code == 0, err
    with duckdb.connect(str(ours), read_only=True) as con:
        assert con.execute("SELECT order_id FROM orders").fetchall() == [("E0",)]


def test_a_store_reads_the_same_whether_its_key_comes_from_the_env_or_its_file(tmp_path, capsys, monkeypatch):
    """`REFLOW_CIPHER_KEY` in the environment used to make eventsourcing encrypt every event whole
    too: a store written that way could not be read with its key file, and the other way round. Now
    the format never depends on where the key came from; a store written whole before stays readable
    (and is written on the same way)."""
    from adapters.store import key_file, store_env
    from engine.app import Reflow

    store = f"sqlite:///{tmp_path}/old/events.db"
    key = key_file(tmp_path / "old" / "cipher.key")
    monkeypatch.setenv("REFLOW_CIPHER_KEY", key)  # as a store was made before: key in the environment
    old = Reflow({**store_env(store), "CIPHER_KEY": key, "REFLOW_CIPHER_KEY": key})  # every event encrypted whole
    supplier(old, "S1")
    old.close()
    monkeypatch.delenv("REFLOW_CIPHER_KEY")
    code, out, err = cli(capsys, monkeypatch, "verify", "--no-anchor", "--store", store)  # with the key file
    assert code == 0, err
    serve = Settings(store=store, create_store=True)
    app = open_app(serve)  # serve records the key, and that the events are encrypted whole
    offer(app, "S1", "O1", {"a": 5})
    app.close()
    monkeypatch.setenv("REFLOW_CIPHER_KEY", key)
    code, out, err = cli(capsys, monkeypatch, "verify", "--no-anchor", "--store", store)  # decodes every event
    assert code == 0 and "history intact" in out, err
    with sqlite3.connect(tmp_path / "old" / "events.db") as con:
        assert con.execute("SELECT whole_record FROM reflow_store_key").fetchall() == [(1,)]
    new = f"sqlite:///{tmp_path}/new/events.db"  # a new store: events never encrypted whole, whatever the key's source
    monkeypatch.delenv("REFLOW_CIPHER_KEY")
    shop(new)  # with its key file, then read with the key from the environment
    with sqlite3.connect(tmp_path / "new" / "events.db") as con:
        assert con.execute("SELECT whole_record FROM reflow_store_key").fetchall() == [(0,)]
    monkeypatch.setenv("REFLOW_CIPHER_KEY", (tmp_path / "new" / "cipher.key").read_text().strip())
    assert cli(capsys, monkeypatch, *AUDIT, "--store", new)[0] == 0


def test_an_unreachable_nats_is_one_line_naming_the_option(tmp_path, capsys, monkeypatch):
    """A user trial: `reflow: cannot connect to NATS at nats://127.0.0.1:1: nats: no servers available for
    connection` did not say which option to fix; now it leads with `--nats`, its password masked."""
    from adapters.examples import EXAMPLES

    store = f"sqlite:///{tmp_path}/shop/events.db"
    shop(store)
    body = tmp_path / "supplier.json"
    body.write_text(json.dumps(EXAMPLES["reflow.in.supplier.upserted"]))
    monkeypatch.chdir(tmp_path)
    for args, url, shown in ((["serve"], "nats://127.0.0.1:1", "nats://127.0.0.1:1"),
                             (["publish", "supplier.upserted", str(body)], "nats://ops:s3cret@127.0.0.1:1",
                              "nats://ops:***@127.0.0.1:1")):
        code, out, err = cli(capsys, monkeypatch, *args, "--store", store, "--nats", url)
        assert code == 1 and out == "", (args, out)
        assert err == f"reflow: --nats {shown}: cannot connect to NATS (no servers available)\n", err
    monkeypatch.setenv("REFLOW_NATS_URL", "nats://127.0.0.1:1")  # from the environment: the same line
    code, _, err = cli(capsys, monkeypatch, "publish", "supplier.upserted", str(body))
    one_line(err, "reflow: --nats nats://127.0.0.1:1: cannot connect to NATS")


def test_rebuild_beside_a_projection_runner_is_one_line_leading_with_duckdb(tmp_path, capsys, monkeypatch):
    """A user trial: `reflow rebuild` beside serve printed `reflow: ProjectionBusy: <path>: ...`; now
    the line leads with `--duckdb <path>:`, no class name, and names the holder; nothing changes."""
    from projections.runner import ProjectionRunner

    store = f"sqlite:///{tmp_path}/shop/events.db"
    shop(store)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "shop" / "reflow.duckdb"
    app = open_app(Settings(store=store))
    runner = ProjectionRunner(app, path, owner="reflow serve, pid 4242")  # as serve's projection process
    try:
        published = (path.stat().st_size, path.stat().st_mtime_ns)
        code, out, err = cli(capsys, monkeypatch, "rebuild", "--store", store, "--duckdb", str(path))
        assert code == 1 and out == ""
        one_line(err, f"reflow: --duckdb {path}: another projection runner holds it: pid {os.getpid()} "
                      "(reflow serve, pid 4242)", "give this one its own --duckdb")
        assert "Projection" not in err
    finally:
        runner.close()
        app.close()
    # Another DuckDB client on the working file (no runner lock): the same, naming the working file.
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('held', flush=True); time.sleep(60)", f"{path}.work"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, out, err = cli(capsys, monkeypatch, "rebuild", "--store", store, "--duckdb", str(path))
        assert code == 1
        one_line(err, f"reflow: --duckdb {path}: another process holds its working file {path}.work",
                 "is `reflow serve` running?")
        assert "Projection" not in err
    finally:
        holder.kill()
        holder.wait()
    assert (path.stat().st_size, path.stat().st_mtime_ns) == published  # refused: nothing changed
    assert Path(f"{path}.work").exists()


def test_serve_clock_option_is_checked_before_anything_is_created(tmp_path, capsys, monkeypatch):
    data = tmp_path / "fresh"
    code, _, err = cli(capsys, monkeypatch, "serve", "--clock", "sometimes", "--data-dir", str(data))
    assert code == 1 and err.count("\n") == 1 and "--clock" in err, err
    assert not data.exists()
