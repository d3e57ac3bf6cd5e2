"""`reflow demo`: the generated day is deterministic for a seed, the engine decides the demo's whole
timeline the same however serve batches it, and the demo runs end to end (its quick size) with
every number of its printed tables equal to a query on the DuckDB views, and the same tables on
every run of a seed and day."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import subprocess
import sys
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from adapters.demo import (
    DAYS_AGO,
    DEFAULT_SEED,
    EXAMPLE_QUERIES,
    LATE_LINK,
    QUICK_ORDERS,
    SCARCE,
    SUPPLIERS,
    Applied,
    DemoDay,
    DemoError,
    Message,
    encode,
    product_id,
    run_demo,
)
from adapters.demo.scenario import DROP, DROP_LINK, FACTORY
from adapters.messages import BadMessage, decode
from engine.servicelevel import LOCAL

ROOT = Path(__file__).resolve().parents[2]


def messages(day: DemoDay) -> list[tuple[str, str, str]]:
    return [(m.subject, m.msg_id, json.dumps(m.body, ensure_ascii=False, sort_keys=True)) for m in day.opening()] + [
        (m.subject, m.at.isoformat(), json.dumps(m.body, ensure_ascii=False, sort_keys=True)) for m in day.the_day()]


def test_the_generated_day_is_the_same_for_the_same_seed():
    day = date(2026, 5, 1)
    first, again = DemoDay(7, QUICK_ORDERS, day), DemoDay(7, QUICK_ORDERS, day)
    assert messages(first) == messages(again)
    assert messages(DemoDay(8, QUICK_ORDERS, day)) != messages(first)


def test_the_day_is_valid_contract_messages_but_one_producer_bug():
    plan = DemoDay(7, QUICK_ORDERS, date(2026, 5, 1))
    bad = []
    for m in plan.opening() + plan.the_day():
        try:
            decode(f"reflow.in.{m.subject}", json.dumps(m.body, ensure_ascii=False).encode())
        except BadMessage as exc:
            bad.append(exc.reason)
    assert bad == ["reflow.in.supplier.price: Expected `str`, got `float` - at `$.price`"]
    roles = {o.role for o in plan.orders}
    assert roles >= {"plain", "held", "review", "cancel", "address", "refund_all", "refund_line"}
    assert len({o.key for o in plan.orders}) == QUICK_ORDERS
    platforms = {o.shop.platform for o in plan.orders}
    assert platforms == {"douyin", "kuaishou", "taobao", "tmall", "pinduoduo", "weigong"}


def tables(text: str) -> dict[str, list[list[str]]]:
    """The tables of the output (a title line, header lines, a rule, rows, a blank line):
    title -> rows of cells (cells are apart by two spaces or more)."""
    out: dict[str, list[list[str]]] = {}
    block: list[str] = []
    rows = None
    for line in text.splitlines():
        if not line.strip():
            block, rows = [], None
        elif set(line.strip()) == {"─"} and block:
            rows = out.setdefault(block[0].strip(), [])
        elif rows is not None:
            rows.append(re.split(r"\s{2,}", line.strip()))
        else:
            block.append(line)
    return out


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_demo_runs_end_to_end_and_prints_what_the_duckdb_views_say(tmp_path):
    data = tmp_path / "demo"
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}  # 80 columns: fits
    done = subprocess.run([sys.executable, "-m", "adapters.cli", "demo", "--quick", "--data-dir", str(data)],
                          capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    printed = tables(out)
    path = data / "reflow.duckdb"
    assert f"Analysts' database: {path}" in out
    assert "dead letter (REFLOW_DLQ): reflow.in.supplier.price: Expected `str`, got `float`" in out

    con = duckdb.connect(str(path), read_only=True)
    q = lambda sql, *args: con.execute(sql, list(args)).fetchall()  # noqa: E731

    # orders by status: counts and amounts
    by_status = {r[0]: r[1:] for r in printed["Orders by status"]}
    assert sum(int(v[0]) for s, v in by_status.items() if s != "total") == QUICK_ORDERS
    for status, n, amount in q("SELECT status, count(*), sum(amount) FROM orders GROUP BY status"):
        assert by_status[status] == [str(n), f"{amount:.2f}"], status
    assert by_status["total"][0] == str(q("SELECT count(*) FROM orders")[0][0])
    assert by_status["shipped"][0] > by_status["cancelled"][0]
    for status in ("held", "cancelled", "allocated"):
        assert int(by_status[status][0]) > 0, status

    # allocations per supplier, by status
    per_supplier = {r[0]: [int(x) for x in r[1:]] for r in printed["Allocations per supplier, by status"]}
    rows = q("""SELECT supplier_id, count(*), count(*) FILTER (WHERE status = 'active'),
                  count(*) FILTER (WHERE status = 'tracked'), count(*) FILTER (WHERE status = 'shipped'),
                  count(*) FILTER (WHERE status = 'intercepted'), count(*) FILTER (WHERE status = 'cancelled'),
                  count(*) FILTER (WHERE status = 'rejected'), sum(qty) FROM allocations GROUP BY supplier_id""")
    assert {r[0]: list(r[1:]) for r in rows} == per_supplier
    assert len(per_supplier) == len(SUPPLIERS)

    # supplier performance, late and loss risks included
    perf = {r[0]: r[1:] for r in printed["Supplier performance (T3: late; I7: loss risks)"]}
    for r in q("""SELECT supplier_id, allocations, tracked, on_time, late, intercepted, loss_risks,
                    median_hours_to_tracking FROM supplier_performance"""):
        assert perf[r[0]] == [str(x) if x is not None else "-" for x in r[1:]], r[0]
    assert sum(int(v[3]) for v in perf.values()) > 0  # late
    assert sum(int(v[5]) for v in perf.values()) > 0  # loss risks

    # the issued statement
    [title] = [t for t in printed if t.startswith("Statement ")]
    [[supplier, _, n_lines, qty, total, apart]] = printed[title]
    [(sid, lines, total_v, content_hash)] = q(
        "SELECT statement_id, lines, total, content_hash FROM statements WHERE supplier_id = ?", supplier)
    assert title == f"Statement {sid}"
    assert (int(n_lines), Decimal(total)) == (lines, total_v)
    assert f"content hash {content_hash}" in out
    assert int(qty) == q("SELECT sum(qty) FROM statement_lines WHERE statement_id = ?", sid)[0][0]
    assert int(apart) == q("SELECT count(*) FROM statement_apart WHERE statement_id = ?", sid)[0][0]

    # the story happened: pre-link orders pulled (L10), bundles split per supplier (L4), RT9, I8
    platform, shop, key = LATE_LINK
    waiting = q("""SELECT count(*) FROM order_lines l JOIN orders o USING (platform, shop_id, order_id)
                   WHERE l.product_id = ? AND o.status NOT IN ('cancelled', 'held')
                   AND l.route_status <> 'allocated'""", product_id(platform, key))[0][0]
    assert waiting == 0
    assert q("SELECT count(*) FROM allocations WHERE routed_by = 'prelink'")[0][0] > 0
    assert q("SELECT count(*) FROM allocations WHERE intercept_answer = 'too_late'")[0][0] > 0
    assert q("SELECT count(*) FROM post_shipment_aftersales")[0][0] > 0

    issue_15(q, out)
    from tests.cli.test_demo_issue16 import issue_16  # (that module imports this one)

    issue_16(q, out, printed)

    # the example queries an analyst can paste run as printed
    for _, sql in EXAMPLE_QUERIES:
        assert sql in out
        assert con.execute(sql).fetchall()
    con.close()


def issue_15(q: Any, out: str) -> None:
    """Each rule of issue 15 once in the DuckDB views, and the report's line for it says so."""
    said = dict(re.sub(r"\s+", " ", x).split(" ", 1) for x in re.split(
        r"\n(?=\S)", out.split("When the supplier says no (issue 15)\n")[1].split("\n\n")[0]))
    assert list(said) == ["RT11", "RT12", "RT13", "L11"]
    # RT11: one allocation rejected, its lines allocated at once to another supplier
    [(aid, supplier, reason, *order)] = q("""SELECT allocation_id, supplier_id, intercept_reason, platform, shop_id,
                                             order_id FROM allocations WHERE status = 'rejected'""")
    [(other, rerouted)] = q("""SELECT supplier_id, allocation_id FROM allocations WHERE platform = ? AND shop_id = ?
                               AND order_id = ? AND routed_by = 'rejected'""", *order)
    assert other != supplier
    assert said["RT11"].startswith(f"{supplier} rejected allocation {aid} ({reason}) at ")
    assert said["RT11"].endswith(f"rerouted to {other} ({rerouted})")
    # RT12: one line covered by two suppliers, each with less than the line's quantity
    [(order_id, line_id, qty, parts)] = q("""
        SELECT l.order_id, l.line_id, any_value(o.qty), list((l.qty, l.supplier_id) ORDER BY l.qty DESC)
        FROM allocation_lines l JOIN allocations a USING (allocation_id)
        JOIN order_lines o ON (o.platform, o.shop_id, o.order_id, o.line_id) = (l.platform, l.shop_id, l.order_id,
                                                                                l.line_id)
        WHERE a.status IN ('active', 'tracked', 'shipped') GROUP BY l.order_id, l.line_id
        HAVING count(DISTINCT l.supplier_id) >= 2 AND max(l.qty) < any_value(o.qty)""")
    assert len(parts) == 2 and sum(n for n, _ in parts) == qty
    assert said["RT12"] == (f"taobao order {order_id} line {line_id} ({qty} units) split: "
                            + " + ".join(f"{n} from {s}" for n, s in parts))
    # RT13: the factory never past its capacity on a China-time day; two lines waited, then went at 00:00
    day = date.fromisoformat(re.search(r"orders on (\S+) ", out)[1])
    capacity = DemoDay(DEFAULT_SEED, QUICK_ORDERS, day).capacity
    per_day = dict(q("""SELECT CAST(allocated_at + INTERVAL 8 HOUR AS DATE), sum(qty) FROM allocations
                        WHERE supplier_id = ? GROUP BY ALL""", FACTORY))
    assert per_day == {day: capacity, day + timedelta(days=1): 2}
    waited = q("""SELECT DISTINCT r.line_id FROM facts.line_routes r WHERE r.reason = 'capacity_reached'""")
    assert len(waited) == 2
    assert q("""SELECT DISTINCT a.allocated_at + INTERVAL 8 HOUR FROM allocation_lines l JOIN allocations a USING
                (allocation_id) WHERE l.line_id IN (?, ?)""", *(w[0] for w in waited)) == [
        (datetime.combine(day + timedelta(days=1), datetime.min.time()),)]
    assert said["RT13"].startswith(f"{FACTORY} reached its capacity of {capacity} units a day at ")
    assert said["RT13"].endswith("2 lines waited, routed at 00:00 the next day")
    # L11: the link of the dropped SKU broken once, healthy again now
    platform, shop, key = DROP_LINK
    [(sku, status)] = q("SELECT sku_id, status FROM link_health WHERE platform = ? AND product_id = ?",
                        platform, product_id(platform, key))
    assert status == "healthy"
    history = q("SELECT status, missing FROM facts.link_health ORDER BY pos")
    assert [h[0] for h in history] == ["broken", "healthy"]
    assert json.loads(history[0][1])[0]["supplier_sku_id"] == DROP[2]
    assert re.fullmatch(rf"link {platform}/{product_id(platform, key)}/{sku} broken at \d\d:\d\d "
                        rf"\({DROP[0]} SKU {DROP[2]} dropped\), mended at \d\d:\d\d", said["L11"])


# -- the same message order gives the same decisions, however it is batched ----------------------


class InProcess:
    """The demo's timeline through serve's apply path, without NATS: each stage's messages in
    stream order, cut into batches of ``batch``, each batch one atomic write (``apply_batch``, as
    serve does); the broker's clock ticks one millisecond per message from ``broker_start``;
    REFLOW_OUT is what the outbound mapper makes of the new events."""

    def __init__(self, app: Any, batch: int, broker_start: datetime) -> None:
        from adapters.outbound import Mapper

        self.app, self.batch, self.broker_start = app, batch, broker_start
        self.mapper = Mapper(app)
        self.seq = self.position = 0
        self.published: list[tuple[str, str, str]] = []
        self.dead: list[str] = []

    async def __call__(self, title: str, messages: list[Message]) -> Applied:
        from adapters.serve import apply_batch

        items = []
        for m in messages:
            self.seq += 1
            items.append((f"reflow.in.{m.subject}", encode(m.body), self.broker_start + timedelta(milliseconds=self.seq),
                          self.seq))
            self.published.append((m.subject, m.msg_id, json.dumps(m.body, ensure_ascii=False, sort_keys=True)))
        for i in range(0, len(items), self.batch):
            outcomes, failure = apply_batch(self.app, items[i:i + self.batch], source="REFLOW_IN")
            assert failure is None, failure
            self.dead += [o.error for o in outcomes if o.dead]
        out = []
        while True:
            page, last = self.mapper.page(self.position, 1000)
            if last == self.position:
                break
            out += [(o.subject, json.loads(o.body)) for o in page]
            self.position = last
        return Applied(out=out, last_at=self.broker_start + timedelta(milliseconds=self.seq))


def _plain(value: Any) -> Any:
    """An event as plain data, without what differs from store to store by design: the sealed
    consumer data (AES-GCM, a fresh nonce each time), the recipient token made from it, and the
    A2 chain digest over them."""
    if isinstance(value, msgspec.Struct):
        return {f: _plain(getattr(value, f)) for f in value.__struct_fields__
                if f not in ("prev", "recipient_token") and not isinstance(getattr(value, f), bytes)}
    if isinstance(value, (list, tuple)):
        return [_plain(x) for x in value]
    if isinstance(value, dict):
        return {k: _plain(x) for k, x in value.items()}
    return value


def histories(app: Any) -> dict[str, list[tuple[str, Any]]]:
    """Every aggregate's events, in its own order (the order across aggregates within one write
    is the store's business)."""
    out: dict[str, list[tuple[str, Any]]] = {}
    last = 0
    while notes := app.recorder.select_notifications(last, 5000, inclusive_of_start=False):
        for n in notes:
            event = app.mapper.to_domain_event(n)
            out.setdefault(str(n.originator_id), []).append((type(event).__name__, _plain(event)))
        last = notes[-1].id
    return out


def play_in_process(tmp_path: Path, plan: DemoDay, batch: int, broker_start: datetime,
                    after: Any = None) -> tuple[InProcess, dict]:
    """The demo's timeline through serve's apply path; ``after(app)`` before the store closes."""
    from eventsourcing.cipher import AESCipher

    from adapters.store import ensure_store, store_env
    from engine.app import Reflow

    env = store_env(f"sqlite:///{tmp_path}/batch-{batch}/events.db", tmp_path / f"batch-{batch}")
    ensure_store(env)
    env["REFLOW_CIPHER_KEY"] = AESCipher.create_key(32)
    app = Reflow(env)
    try:
        driver = InProcess(app, batch, broker_start)
        asyncio.run(plan.play(driver))
        if after is not None:
            after(app)
        return driver, histories(app)
    finally:
        app.close()


@pytest.mark.timeout(300)
def test_the_engine_decides_the_demo_timeline_the_same_in_any_batch_size(tmp_path):
    """RT6: the same message sequence, applied one message per write, in odd batches and in serve's
    batches, gives the same message sequence back (the suppliers and the morning react to what
    REFLOW_OUT says) and the same history for every order, allocation, offer and link. The broker's
    clock runs the whole timeline inside one second, as a fast demo run does: the restock, dated
    at the broker's time of the last answer, still comes after the offer's publication."""
    day = date(2026, 5, 1)
    start = datetime(day.year, day.month, day.day, tzinfo=LOCAL)
    broker_start = start + timedelta(days=DAYS_AGO, hours=9)  # the morning, on a whole second
    runs = {batch: play_in_process(tmp_path, DemoDay(7, QUICK_ORDERS, day), batch, broker_start)
            for batch in (1, 37, 256)}
    (first, reference), *others = runs.values()
    assert len(first.published) > 800 and first.seq < 1000  # all within the broker's one second
    assert first.dead == ["reflow.in.supplier.price: Expected `str`, got `float` - at `$.price`"]
    for driver, history in others:
        assert driver.published == first.published
        assert driver.dead == first.dead
        assert history.keys() == reference.keys()
        for aggregate, events in reference.items():
            assert history[aggregate] == events, aggregate
    # the restock was taken (it was dropped as older than the offer when dated by the demo's clock
    # to the second) and the air fryer's waiting lines were re-routed on it (RT3)
    restocks = [e for events in reference.values() for name, e in events
                if name == "StockReported" and e["supplier_sku_id"] == SCARCE[1]]
    assert len(restocks) == 1
    assert any(name == "OrderRouted" and e["input"]["at"] == restocks[0]["at"]
               for events in reference.values() for name, e in events)


@pytest.mark.timeout(300)
def test_i8_demo_suppliers_answer_intercepts_after_they_were_requested(tmp_path):
    """Issue 14: the demo's suppliers answered some intercepts before they were requested. Each
    answer (and each tracking of an ignored intercept) now comes after the intercept's time."""
    day = date(2026, 5, 1)
    start = datetime(day.year, day.month, day.day, tzinfo=LOCAL)
    _, history = play_in_process(tmp_path, DemoDay(7, QUICK_ORDERS, day), 256,
                                 start + timedelta(days=DAYS_AGO, hours=9))
    answered = 0
    for events in history.values():
        stopped = [e["at"] for name, e in events if name in ("InterceptRequested", "AllocationCancelled")]
        later = [e["at"] for name, e in events if name in ("InterceptAnswered", "LossRiskRecorded")]
        if stopped and later:
            answered += len(later)
            assert min(later) >= stopped[0]
    assert answered > 10


def test_the_demo_refuses_a_day_that_is_not_in_the_past(tmp_path):
    """The day's trackings and returns run over the next days; the morning is now."""
    recent = datetime.now(LOCAL).date() - timedelta(days=DAYS_AGO - 1)
    with pytest.raises(DemoError, match="at least 4 days back"):
        run_demo(orders=QUICK_ORDERS, day=recent, data_dir=tmp_path / "demo")
    assert not (tmp_path / "demo").exists()


@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_same_seed_on_the_same_day_gives_the_same_tables(tmp_path):
    from rich.console import Console

    day = datetime.now(LOCAL).date() - timedelta(days=DAYS_AGO)  # the demo's own day, once for both
    first, second = (run_demo(orders=QUICK_ORDERS, day=day, data_dir=tmp_path / name,
                              console=Console(file=io.StringIO(), width=200)) for name in ("a", "b"))
    assert first.orders_by_status == second.orders_by_status
    assert first.allocations_by_supplier == second.allocations_by_supplier
    assert first.performance == second.performance
    assert first.statement.content_hash == second.statement.content_hash
    at = re.compile(r"\d\d:\d\d")  # L11 happens this morning, at the broker's time
    assert [at.sub("hh:mm", text) if rule == "L11" else text for rule, text in first.rules] == [
        at.sub("hh:mm", text) if rule == "L11" else text for rule, text in second.rules]
    assert [rule for rule, text in first.rules if "not seen" not in text] == ["RT11", "RT12", "RT13", "L11"]
    assert first.parcel == second.parcel and first.overdue == second.overdue
    assert [rule for rule, text in first.parcel if "not seen" not in text] == ["T4", "RC6"]
