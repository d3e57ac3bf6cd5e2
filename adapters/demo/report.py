"""The report: the projections caught up, one supplier statement issued (for the supplier that took
a parcel back, so it shows the credit, RC6), and the tables read from the DuckDB contract views,
printed to fit 80 columns, with what the day showed of issues 15 and 16 (one line per rule,
``stories``) and example queries for the analysts."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from adapters.demo.generator import DayPlan
from adapters.demo.scenario import DAYS_AGO, FACTORY
from adapters.demo.stories import overdue_counts, parcel_lines, rule_lines, wrap
from engine.servicelevel import LOCAL


@dataclass
class Report:
    """What the demo printed, as data (the test compares it with the DuckDB views)."""

    day: date
    data_dir: Path
    duckdb_path: Path
    published: int = 0
    dead_letters: list[tuple[str, str]] = field(default_factory=list)
    stages: list[tuple[str, int, float]] = field(default_factory=list)
    orders_by_status: list[tuple[str, int, Decimal]] = field(default_factory=list)
    allocations_by_supplier: list[tuple] = field(default_factory=list)
    performance: list[tuple] = field(default_factory=list)
    statement: Any = None
    rules: list[tuple[str, str]] = field(default_factory=list)  # (RT11 … L11, the report's line)
    parcel: list[tuple[str, str]] = field(default_factory=list)  # (T4, RC6: the report's line)
    overdue: tuple[int, int] = (0, 0)  # allocations reminded of their ship-by, of them re-routed (T4)
    elapsed: float = 0.0


STATUSES = ("unrouted", "held", "partially_allocated", "allocated", "shipped", "cancelled")
ALLOCATION_HEADERS = ("alloc.", "active", "track.", "shipped", "interc.", "cancel.", "rej.", "units")
PERFORMANCE_HEADERS = ("alloc.", "tracked", "on time", "late", "interc.", "loss risks", "median h")
PERFORMANCE_COLUMNS = ("allocations", "tracked", "on_time", "late", "intercepted", "loss_risks",
                       "median_hours_to_tracking")
EXAMPLE_QUERIES = (
    ("Orders and sales per platform and status",
     "SELECT platform, status, count(*) AS orders, sum(amount) AS amount\n"
     "FROM orders GROUP BY ALL ORDER BY platform, orders DESC;"),
    ("Margin per product and supplier (sale vs settlement cost)",
     "SELECT platform, product_id, supplier_id, units, sale_amount, settlement_cost, margin\n"
     "FROM margins ORDER BY margin DESC LIMIT 10;"),
    ("Late parcels, the latest first (China time)",
     "SELECT supplier_id, allocation_id, order_id,\n"
     "       ship_by + INTERVAL 8 HOUR AS ship_by_cst, tracked_at + INTERVAL 8 HOUR AS tracked_cst\n"
     "FROM allocations WHERE late ORDER BY tracked_at - ship_by DESC LIMIT 10;"),
)


def finish(plan: DayPlan, app: Any, settings: Any, report: Report, console: Any) -> None:
    """Projections up to date, one statement issued, the tables read from the views."""
    import duckdb

    from projections.runner import ProjectionRunner
    from projections.statements import issue_statement

    started = time.monotonic()
    with ProjectionRunner(app, settings.duckdb_path) as runner:
        runner.catch_up()
        runner.publish()  # the report reads the analysts' copy: make sure it holds everything
        events = runner.connection.execute("SELECT events FROM facts.position").fetchone()[0]
    console.print(f"[green]✓[/] projections: {events:,} events in {settings.duckdb_path.name}, "
                  f"{time.monotonic() - started:.1f} s")
    last_day = plan.day + timedelta(days=DAYS_AGO - 1)
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        supplier = con.execute(  # the supplier that took a parcel back (RC6), else the busiest
            "SELECT supplier_id FROM returns WHERE status = 'accepted' AND credited_on IS NULL "
            "ORDER BY answered_at, return_id LIMIT 1").fetchone() or con.execute(
            "SELECT supplier_id FROM allocations WHERE tracked_at IS NOT NULL "
            "GROUP BY supplier_id ORDER BY count(*) DESC, supplier_id LIMIT 1").fetchone()
    report.statement = issue_statement(app, settings.duckdb_path, supplier[0], plan.day, last_day)
    with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
        tables = report_tables(con)
        report.rules = rule_lines(con, FACTORY, plan.capacity)
        report.parcel = parcel_lines(con)
        report.overdue = overdue_counts(con)
    report.orders_by_status = tables["orders_by_status"]
    report.allocations_by_supplier = tables["allocations_by_supplier"]
    report.performance = tables["performance"]


def report_tables(con: Any) -> dict[str, list[tuple]]:
    """The report's numbers, straight from the contract views."""
    by_status = dict((s, (n, a)) for s, n, a in con.execute(
        "SELECT status, count(*), sum(amount) FROM orders GROUP BY status").fetchall())
    orders_by_status = [(s, *by_status.get(s, (0, Decimal(0)))) for s in STATUSES]
    allocations = con.execute("""
        SELECT supplier_id, count(*),
          count(*) FILTER (WHERE status = 'active'), count(*) FILTER (WHERE status = 'tracked'),
          count(*) FILTER (WHERE status = 'shipped'), count(*) FILTER (WHERE status = 'intercepted'),
          count(*) FILTER (WHERE status = 'cancelled'), count(*) FILTER (WHERE status = 'rejected'), sum(qty)
        FROM allocations GROUP BY supplier_id ORDER BY count(*) DESC, supplier_id""").fetchall()
    performance = con.execute(f"""
        SELECT supplier_id, {', '.join(PERFORMANCE_COLUMNS)} FROM supplier_performance
        ORDER BY late DESC, supplier_id""").fetchall()
    return {"orders_by_status": orders_by_status, "allocations_by_supplier": allocations,
            "performance": performance}


# -- the report ---------------------------------------------------------------------------------


def _table(title: str, first: str, numbers: Iterable[str]) -> Any:
    """A table that fits 80 columns: a rule under the header, no vertical lines."""
    from rich import box
    from rich.table import Table

    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    t.add_column(first, no_wrap=True)
    for name in numbers:
        t.add_column(name, justify="right")
    return t


def render(report: Report, console: Any) -> None:
    for _, error in report.dead_letters:
        console.print(f"[yellow]dead letter[/] (REFLOW_DLQ): {error}", highlight=False, soft_wrap=True)
    if any(error.startswith("reflow.in.supplier.price") for _, error in report.dead_letters):
        console.print("(planted: one producer sends a price as a JSON number; a bad message goes to the "
                      "dead letters and changes nothing)", highlight=False, soft_wrap=True)
    console.print()

    t = _table("Orders by status", "status", ("orders", "amount (CNY)"))
    for status, n, amount in report.orders_by_status:
        t.add_row(status, str(n), f"{amount:.2f}")
    t.add_row("total", str(sum(x[1] for x in report.orders_by_status)),
              f"{sum(x[2] for x in report.orders_by_status):.2f}", style="bold")
    console.print(t, "")

    t = _table("Allocations per supplier, by status", "supplier", ALLOCATION_HEADERS)
    for row in report.allocations_by_supplier:
        t.add_row(row[0], *(str(x) for x in row[1:]))
    console.print(t, "")

    t = _table("Supplier performance (T3: late; I7: loss risks)", "supplier", PERFORMANCE_HEADERS)
    for row in report.performance:
        t.add_row(row[0], *(str(x) if x is not None else "-" for x in row[1:]))
    console.print(t, "")
    reminded, rerouted = report.overdue
    console.print(f"overdue reminders (T4, no tracking by ship-by): {reminded}; re-routed: {rerouted}\n",
                  highlight=False)

    for title, lines in (("When the supplier says no (issue 15)", report.rules),
                         ("After the parcel (issue 16)", report.parcel)):
        if lines:
            console.print(title, highlight=False)
            for _, text in lines:
                console.print(wrap(text), highlight=False, markup=False)
            console.print()

    st = report.statement
    first = st.period_from.astimezone(LOCAL).date()
    last = (st.period_to.astimezone(LOCAL) - timedelta(seconds=1)).date()
    t = _table(f"Statement {st.statement_id}", "supplier", ("period (China time)", "lines", "qty", "total (CNY)",
                                                             "apart"))
    t.add_row(st.supplier_id, f"{first} .. {last}", str(len(st.lines)), str(st.qty), f"{st.total:.2f}",
              str(len(st.apart)))
    console.print(t, "")
    if st.credits:  # RC6: accepted returns, apart from the lines
        n = len(st.credits)
        console.print(f"credits {st.credits_total:.2f} ({n} return{'s' if n != 1 else ''} taken back), "
                      f"net total {st.net_total:.2f}", highlight=False)
    console.print(f"content hash {st.content_hash}\n", highlight=False)
    lines = _table(f"its first {min(5, len(st.lines))} of {len(st.lines)} lines", "allocation",
                   ("order", "sku", "qty", "unit price", "amount"))
    for ln in st.lines[:5]:
        lines.add_row(ln.allocation_id, ln.order_id, ln.supplier_sku_id, str(ln.qty), f"{ln.unit_price}",
                      f"{ln.amount}")
    console.print(lines, "")

    console.print(f"[bold]Analysts' database[/]: {report.duckdb_path}", highlight=False, soft_wrap=True)
    console.print(f"open it read-only:  duckdb -readonly {report.duckdb_path}", highlight=False, soft_wrap=True)
    console.print("(the duckdb command line comes with `pip install duckdb-cli`, or from Python:\n"
                  f"  .venv/bin/python -c \"import duckdb; duckdb.connect('{report.duckdb_path}', read_only=True)"
                  ".sql('SELECT status, count(*) FROM orders GROUP BY ALL').show()\")",
                  highlight=False, markup=False, soft_wrap=True)
    for title, sql in EXAMPLE_QUERIES:
        console.print(f"\n-- {title}", highlight=False, markup=False, soft_wrap=True)
        console.print(sql, highlight=False, markup=False, soft_wrap=True)
    console.print(f"\n{report.published:,} messages published, {len(report.dead_letters)} dead-lettered, "
                  f"done in {report.elapsed:.1f} s", highlight=False)
