"""The operator's commands (CONTRACT section 6) as processes beside `reflow serve` as a process:
`release`, `cancel`, `link set|show`, `publish`, `show`. The write commands publish the inbound
message and wait until serve stored it; refusals are one line and publish nothing."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from adapters.bootstrap import Settings, open_app
from adapters.serve import IN_STREAM
from tests.adapters.natsworld import OFFER, SHOP, SSKU, SUPPLIER, catalog, client, example, order_body, run
from tests.adapters.test_serve_process import consumer_ready, start_serve, stop

pytestmark = [pytest.mark.nats, pytest.mark.slow, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
KEY = f"{SHOP[0]}/{SHOP[1]}"
SHOP_ARGS = ["--platform", SHOP[0], "--shop", SHOP[1]]


class World:
    """A NATS server, `reflow serve` as a process on a SQLite store, and the CLI as processes."""

    def __init__(self, nats_url: str, tmp: Path) -> None:
        self.url, self.data, self.log = nats_url, tmp / "data", tmp / "serve.log"
        self.store = f"sqlite:///{self.data}/events.db"
        self.serve: subprocess.Popen | None = None

    def start(self) -> None:
        self.serve = start_serve(self.url, self.store, self.data, self.log)

        async def ready():
            async with client(self.url) as c:
                await consumer_ready(c, self.serve)
        run(ready)

    def stop(self) -> None:
        if self.serve is not None and self.serve.poll() is None:
            assert stop(self.serve) == 0

    def cli(self, *args: str, stdin: str | None = None, nats: str | None = None) -> subprocess.CompletedProcess:
        return self.cli_in(ROOT, "--store", self.store, "--nats", nats or self.url, "--data-dir", str(self.data),
                           *args, stdin=stdin)

    def cli_in(self, cwd: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        """`reflow ARGS` run in `cwd`, with only the options given (no REFLOW_* variable)."""
        cmd = [sys.executable, "-m", "adapters.cli", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=90, cwd=cwd, input=stdin, env=_env())

    def shell(self, printed: str) -> subprocess.CompletedProcess:
        """A command as a command printed it, run by a shell in a directory of its own (`reflow` on PATH)."""
        elsewhere = self.data.parent / "elsewhere"
        elsewhere.mkdir(exist_ok=True)
        return subprocess.run(["sh", "-c", printed], capture_output=True, text=True, timeout=90, cwd=elsewhere,
                              env=_env())

    def send(self, items: list[tuple[str, dict]]) -> None:
        async def go():
            async with client(self.url) as c:
                await c.send_many(items)
                await c.settled()
        run(go)

    def in_seq(self) -> int:
        async def go():
            async with client(self.url) as c:
                return (await c.js.stream_info(IN_STREAM)).state.last_seq
        return run(go)

    def read(self, fn):
        app = open_app(Settings(store=self.store, data_dir=self.data))
        try:
            return fn(app)
        finally:
            app.close()

    def poll_show(self, *args: str, until, timeout: float = 30) -> subprocess.CompletedProcess:
        """`reflow show ...` until its output satisfies `until` (the analysts' file lags a few seconds)."""
        deadline = time.monotonic() + timeout
        while True:
            done = self.cli("show", *args)
            if (done.returncode == 0 and until(done.stdout)) or time.monotonic() > deadline:
                return done
            time.sleep(0.5)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFLOW_") and k not in ("COLUMNS", "LINES")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])  # the venv's `reflow`
    return env


def printed_commands(stdout: str, intro: str) -> list[str]:
    """The commands printed after the line `intro`, as printed (a long one in lines ending ` \\`)."""
    assert f"{intro}\n" in stdout, stdout
    commands: list[str] = []
    for line in stdout.split(f"{intro}\n", 1)[1].splitlines():
        if line.startswith("  reflow "):
            commands.append(line)
        elif line.startswith("    ") and commands and commands[-1].endswith(" \\"):
            commands[-1] += "\n" + line
        else:
            break
    assert all(len(line) <= 80 for c in commands for line in c.splitlines()), commands
    return commands


def words(printed: str) -> list[str]:
    return shlex.split(printed.replace(" \\\n", " "))


@pytest.fixture
def world(nats_server, tmp_path):
    w = World(nats_server.url, tmp_path)
    try:
        yield w
    finally:
        if w.serve is not None and w.serve.poll() is None:
            w.serve.kill()
            w.serve.wait()
    assert "Traceback" not in (w.log.read_text() if w.log.exists() else "")


def placed(order_id: str, qty: int = 1, remark: str | None = None) -> tuple[str, dict]:
    body = order_body(order_id, qty=qty)
    if remark:
        body["remark"] = remark
    return ("order.placed", body)


def one_line_refusal(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert done.stderr.startswith("reflow: ") and done.stderr.count("\n") == 1, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


def alloc_of(w: World, order_id: str, status: str | None = None) -> str:
    every = w.read(lambda app: [(a.allocation_id, a.status) for a in app.allocations_of(*SHOP, order_id)])
    return next(a for a, s in every if status is None or s == status)


def test_i6_release_and_i5_cancel_commands_beside_serve_then_show(world):
    w = world
    w.start()
    settings = ("merchant.settings", {"merchant_id": "default", "hold_remark_words": ["加急"]})
    w.send([*catalog(), settings, placed("H-1", remark="加急 发货"), placed("C-1"), placed("C-2"), placed("C-3"),
            placed("U-1", qty=5000)])
    assert w.read(lambda app: app.order(*SHOP, "H-1").status) == "held"

    done = w.cli("release", *SHOP_ARGS, "--order", "H-1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"released {KEY}/H-1: 1 line routed; allocation A")
    assert f"({SUPPLIER}); status allocated" in done.stdout
    assert w.read(lambda app: app.order(*SHOP, "H-1").status) == "allocated"

    seq = w.in_seq()
    one_line_refusal(w.cli("release", *SHOP_ARGS, "--order", "H-1"), "is not held and has no withheld lines")
    one_line_refusal(w.cli("release", *SHOP_ARGS, "--order", "NOPE"), f"--order: unknown order {KEY}/NOPE")
    assert w.in_seq() == seq  # refused: nothing published

    # The global options given before and after the command, the data dir relative to where it runs:
    # the command printed to route the lines again carries them, and runs as printed from elsewhere.
    first = alloc_of(w, "C-1")
    done = w.cli_in(w.data.parent, "--data-dir", w.data.name, "cancel", "--allocation", first,
                    "--reason", "merchant cancelled by hand", "--nats", w.url)
    assert done.returncode == 0, done.stderr
    assert f"cancelled {first} ({SUPPLIER}) of {KEY}/C-1: line C-1-1 withheld" in done.stdout
    [again] = printed_commands(done.stdout, "route them again:")
    assert words(again) == ["reflow", "release", *SHOP_ARGS, "--order", "C-1", "--nats", w.url,
                            "--data-dir", str(w.data.resolve())]
    assert w.read(lambda app: app.allocation(first).status) == "cancelled"
    seq = w.in_seq()
    one_line_refusal(w.cli("cancel", "--allocation", first), f"--allocation: {first} is cancelled already")
    one_line_refusal(w.cli("cancel", "--allocation", "A0000000000000000"), "unknown allocation")
    one_line_refusal(w.cli("cancel", "--allocation", first, "--order", "C-1"), "not both")
    assert w.in_seq() == seq

    held = w.poll_show("held", until=lambda out: "C-1" in out and "H-1" not in out)
    assert held.returncode == 0, held.stderr
    assert "1 withheld (cancelled by hand)" in " ".join(held.stdout.split()) and "1 held order" in held.stdout
    assert KEY in held.stdout and "C-1" in held.stdout and "19.90" in held.stdout
    assert max(len(line) for line in held.stdout.splitlines()) <= 80

    done = w.shell(again)
    assert done.returncode == 0, done.stderr
    assert f"released {KEY}/C-1: 1 line routed; allocation " in done.stdout and first not in done.stdout
    assert alloc_of(w, "C-1", "active") != first

    done = w.cli("cancel", *SHOP_ARGS, "--order", "C-2", "--order", "C-3")
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("cancelled A") == 2
    assert [words(c)[:8] for c in printed_commands(done.stdout, "route them again:")] == [
        ["reflow", "release", *SHOP_ARGS, "--order", order] for order in ("C-2", "C-3")]
    one_line_refusal(w.cli("cancel", *SHOP_ARGS, "--order", "C-2"), "has no allocation without tracking to cancel")

    # The supplier of C-2 ships anyway (a loss risk, I7); H-1's parcel is tracked: too late to cancel.
    lost, shipped = alloc_of(w, "C-2"), alloc_of(w, "H-1")
    for allocation_id, tracking in ((lost, "YT7000000000001"), (shipped, "YT7000000000002")):
        body = example("tracking.uploaded", allocation_id=allocation_id, tracking_no=tracking,
                       uploaded_at=datetime.now(UTC).isoformat())
        done = w.cli("publish", "tracking.uploaded", stdin=json.dumps(body))
        assert done.returncode == 0 and "applied by reflow serve" in done.stdout, done.stderr
    one_line_refusal(w.cli("cancel", "--allocation", shipped), "already has tracking", "rule I5")

    risks = w.poll_show("loss-risks", "--format", "json", until=lambda out: lost in out)
    assert [r["allocation_id"] for r in json.loads(risks.stdout)] == [lost]
    assert json.loads(risks.stdout)[0]["tracking_no"] == "YT7000000000001"
    unroutable = w.cli("show", "unroutable", "--format", "csv")
    assert unroutable.returncode == 0, unroutable.stderr
    rows = unroutable.stdout.splitlines()
    assert rows[0].startswith("platform,shop_id,order_id,line_id") and len(rows) == 2
    assert ",U-1,U-1-1," in rows[1] and rows[1].count("out_of_stock") == 1
    table = w.cli("show", "unroutable")
    assert "U-1" in table.stdout and max(len(line) for line in table.stdout.splitlines()) <= 80
    overdue = w.cli("show", "overdue")
    assert overdue.returncode == 0 and "overdue allocation" in overdue.stdout.splitlines()[0], overdue.stderr
    health = w.cli("show", "link-health")
    assert health.returncode == 0 and health.stdout.startswith("0 broken links"), health.stderr

    async def intercepts():
        async with client(w.url) as c:
            return await c.bodies("REFLOW_OUT", f"reflow.out.supplier.{SUPPLIER}.intercept", at_least=3)
    said = {b["allocation_id"]: b["reason"] for b in run(intercepts)}
    assert said[first] == "merchant cancelled by hand"  # the supplier was told to stop, with the reason
    w.stop()


def test_l10_link_set_and_show_then_prelink_with_the_catalog_from_reflow_publish(world, tmp_path):
    w = world
    w.start()
    for subject, body in catalog()[:3]:  # supplier, offer, price: no link yet
        f = tmp_path / f"{subject}.json"
        f.write_text(json.dumps(body, ensure_ascii=False))
        done = w.cli("publish", subject, str(f))
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith(f"published reflow.in.{subject} (REFLOW_IN seq ")
        assert "Nats-Msg-Id reflow-cli-" in done.stdout and "applied by reflow serve" in done.stdout

    async def ids():
        async with client(w.url) as c:
            return [m.headers["Nats-Msg-Id"] for m in await c.messages(IN_STREAM)]
    got = run(ids)
    assert len(got) == len(set(got)) == 3 and all(i.startswith("reflow-cli-") for i in got)

    seq = w.in_seq()
    bad = example("order.placed")
    bad["lines"][0]["qty"] = "2"
    one_line_refusal(w.cli("publish", "order.placed", stdin=json.dumps(bad)), "$.lines[0].qty", "nothing published")
    one_line_refusal(w.cli("publish", "order.sent", "-", stdin="{}"), "SUBJECT: unknown subject")
    assert w.in_seq() == seq
    ghost = example("tracking.uploaded", allocation_id="A0000000000000000")
    refused = w.cli("publish", "reflow.in.tracking.uploaded", stdin=json.dumps(ghost))
    one_line_refusal(refused, "refused by reflow serve (dead letter for reflow-cli-", "unknown allocation")

    recent = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    line = {"line_id": "1", "product_id": "P-NEW", "sku_id": "K1", "title": "磨砂防摔手机壳", "qty": 1,
            "unit_price": "19.90"}
    w.send([("order.placed", order_body(f"P-{n}", placed_at=recent, lines=[line])) for n in (1, 2)])

    one_line_refusal(w.cli("link", "show", *SHOP_ARGS, "--product", "P-NEW"), "has no link")
    link = {"platform": SHOP[0], "shop_id": SHOP[1], "product_id": "P-NEW", "mode": "single",
            "skus": [{"sku_id": "K1", "alternatives": [{"components": [
                {"supplier_id": SUPPLIER, "offer_id": OFFER, "supplier_sku_id": SSKU, "qty": 1}]}]}]}
    seq = w.in_seq()
    unknown = json.loads(json.dumps(link))
    unknown["skus"][0]["alternatives"][0]["components"][0]["offer_id"] = "nope"
    one_line_refusal(w.cli("link", "set", "--file", "-", stdin=json.dumps(unknown)),
                     "skus[0].alternatives[0].components[0].offer_id")
    one_line_refusal(w.cli("link", "set", "--file", str(tmp_path / "missing.json")), "--file: cannot read")
    assert w.in_seq() == seq

    link_file = tmp_path / "link.json"
    link_file.write_text(json.dumps(link))
    done = w.cli("link", "set", "--file", str(link_file))
    assert done.returncode == 0, done.stderr
    assert f"linked {KEY}/P-NEW: version 1 (created)" in done.stdout
    [pull] = printed_commands(done.stdout, "2 orders placed before the link wait for a pull:")
    assert words(pull) == ["reflow", "prelink", *SHOP_ARGS, "--product", "P-NEW", "--nats", w.url,
                           "--data-dir", str(w.data)]  # --store is the data dir's default: left out
    seq = w.in_seq()
    again = w.cli("link", "set", "--file", str(link_file))
    assert again.returncode == 0 and "unchanged" in again.stdout and "nothing published" in again.stdout
    assert w.in_seq() == seq

    shown = w.cli("link", "show", *SHOP_ARGS, "--product", "P-NEW")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"{KEY}/P-NEW: version 1, mode single, linked since ")
    assert f"{SUPPLIER} / {OFFER} / {SSKU}" in shown.stdout and " ok" in shown.stdout
    assert "K1 can route (1 of 1 alternatives)" in shown.stdout
    assert "pre-link orders waiting for a pull (L10): 2" in shown.stdout
    assert max(len(x) for x in shown.stdout.splitlines()) <= 80
    hint = shown.stdout.split("pull them:\n", 1)[1].split("(link health", 1)[0]
    assert "--nats" in hint and "--data-dir" in hint  # copyable from any directory

    pulled = w.shell(pull)  # as printed, from another directory
    assert pulled.returncode == 0, pulled.stderr
    assert "routed 2 of 2 waiting" in pulled.stdout
    assert "pre-link orders waiting for a pull (L10): 0" in w.cli("link", "show", *SHOP_ARGS, "--product",
                                                                    "P-NEW").stdout
    assert w.read(lambda app: [app.order(*SHOP, f"P-{n}").status for n in (1, 2)]) == ["allocated"] * 2
    w.stop()


def test_i6_release_without_serve_stays_queued_and_without_nats_is_refused(world):
    w = world
    w.start()
    settings = ("merchant.settings", {"merchant_id": "default", "hold_remark_words": ["加急"]})
    w.send([*catalog(), settings, placed("H-1", remark="加急"), placed("H-2", remark="加急")])
    w.stop()  # REFLOW_IN stays; nobody applies it

    queued = w.cli("release", *SHOP_ARGS, "--order", "H-1", "--wait", "1")
    assert queued.returncode == 3, (queued.stdout, queued.stderr)
    assert queued.stderr.count("\n") == 1 and "has not applied it within 1 s" in queued.stderr
    assert "stays queued in REFLOW_IN" in queued.stderr
    assert w.read(lambda app: app.order(*SHOP, "H-1").status) == "held"

    w.start()  # the queued release is applied in stream order
    deadline = time.monotonic() + 30
    while w.read(lambda app: app.order(*SHOP, "H-1").status) != "allocated":
        assert time.monotonic() < deadline, "the queued release was not applied"
        time.sleep(0.2)

    seq = w.in_seq()
    gone = w.cli("release", *SHOP_ARGS, "--order", "H-2", nats="nats://127.0.0.1:1")
    one_line_refusal(gone, "reflow: --nats nats://127.0.0.1:1: cannot connect to NATS (no servers available)")
    assert w.in_seq() == seq and w.read(lambda app: app.order(*SHOP, "H-2").status) == "held"

    done = w.cli("release", *SHOP_ARGS, "--order", "H-2", "--wait", "0")
    assert done.returncode == 0, done.stderr
    assert "published reflow.in.order.released (REFLOW_IN seq" in done.stdout
    assert "not waiting for reflow serve" in done.stdout

    async def settle():
        async with client(w.url) as c:
            await asyncio.wait_for(c.settled(), 30)
    run(settle)
    assert w.read(lambda app: app.order(*SHOP, "H-2").status) == "allocated"
    w.stop()
