"""The ``reflow`` command line: thin over the composition root (``adapters.bootstrap``).

Global options (CONTRACT section 5) come before the command: ``reflow --store URL serve``; each
also reads its ``REFLOW_*`` environment variable. A failure exits non-zero with one line on
stderr, ``reflow: <reason>``, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from adapters.bootstrap import DEFAULT_NATS_URL, Settings
from adapters.store import DEFAULT_DATA_DIR

app = typer.Typer(
    name="reflow", add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
    help="Event-sourced order routing for dropshipping merchants.",
)


@app.callback()
def options(
    ctx: typer.Context,
    store: Optional[str] = typer.Option(
        None, "--store", envvar="REFLOW_STORE", metavar="URL",
        help="Event store: sqlite:///path (default <data-dir>/events.db) or postgresql://...",
    ),
    duckdb: Optional[Path] = typer.Option(
        None, "--duckdb", envvar="REFLOW_DUCKDB", metavar="PATH",
        help="Analysts' DuckDB file (default <data-dir>/reflow.duckdb).",
    ),
    nats_url: str = typer.Option(
        DEFAULT_NATS_URL, "--nats", envvar="REFLOW_NATS_URL", metavar="URL", help="NATS server.",
    ),
    data_dir: Path = typer.Option(
        Path(DEFAULT_DATA_DIR), "--data-dir", metavar="DIR",
        help="Where the default store, DuckDB file and cipher key live.",
    ),
) -> None:
    ctx.obj = Settings(store=store or None, duckdb=duckdb, nats_url=nats_url, data_dir=data_dir)


@app.command()
def serve(
    ctx: typer.Context,
    batch: int = typer.Option(256, min=1, max=10_000, help="Messages fetched and applied per batch."),
    ack_wait: float = typer.Option(
        10.0, min=1.0, help="Seconds before an unacknowledged message is delivered again."),
) -> None:
    """Consume REFLOW_IN, route, publish REFLOW_OUT, keep projections current, until SIGTERM/SIGINT."""
    from adapters.serve import serve as run_serve

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s reflow %(levelname)s %(message)s")
    settings: Settings = ctx.obj
    server = asyncio.run(run_serve(settings, batch=batch, ack_wait=ack_wait))
    logging.getLogger("reflow.serve").info(
        "stopped: %d applied, %d dead-lettered, %d published",
        server.applied, server.dead, server.publisher.published)


@app.command()
def schema() -> None:
    """Print the JSON Schema of every inbound message (subject -> schema)."""
    from adapters.messages import json_schemas

    typer.echo(json.dumps(json_schemas(), ensure_ascii=False, indent=2))


@app.command()
def statement(
    ctx: typer.Context,
    supplier: str = typer.Option(..., "--supplier", help="Supplier id."),
    date_from: str = typer.Option(..., "--from", metavar="YYYY-MM-DD", help="First day (China time)."),
    date_to: str = typer.Option(..., "--to", metavar="YYYY-MM-DD", help="Last day, inclusive."),
    out: Optional[Path] = typer.Option(None, "--out", help="Export to FILE.csv, .parquet or .xlsx."),
) -> None:
    """Issue a supplier statement (rules RC1-RC5) and print it as a table."""
    from datetime import date

    from rich.console import Console
    from rich.table import Table

    from adapters.bootstrap import open_app
    from projections.export import export_statement
    from projections.statements import issue_statement

    settings: Settings = ctx.obj
    try:
        first, last = date.fromisoformat(date_from), date.fromisoformat(date_to)
    except ValueError as exc:
        raise ValueError(f"--from/--to: {exc} (use YYYY-MM-DD)") from None
    application = open_app(settings)
    try:
        st = issue_statement(application, settings.duckdb_path, supplier, first, last)
    finally:
        application.close()
    table = Table(title=f"statement {st.statement_id}  {supplier}  {first} .. {last}")
    for column in ("allocation", "order", "sku", "qty", "unit price", "amount"):
        table.add_column(column, justify="right" if column in ("qty", "unit price", "amount") else "left")
    for line in st.lines:
        table.add_row(line.allocation_id, line.order_id, line.supplier_sku_id, str(line.qty),
                      str(line.unit_price), str(line.amount))
    console = Console()
    console.print(table)
    console.print(f"lines {len(st.lines)}  total {st.total}  hash {st.content_hash}")
    if out is not None:
        export_statement(st, out)
        console.print(f"written {out}")


@app.command()
def rebuild(ctx: typer.Context) -> None:
    """Rebuild every projection from the event store alone (stop `reflow serve` first)."""
    from adapters.bootstrap import open_app
    from projections.rebuild import rebuild as run_rebuild

    settings: Settings = ctx.obj
    application = open_app(settings)
    try:
        n = run_rebuild(application, settings.duckdb_path, progress=True)
    finally:
        application.close()
    typer.echo(f"rebuilt {settings.duckdb_path} from {n} events")


@app.command()
def demo(
    ctx: typer.Context,
    orders: int = typer.Option(3000, "--orders", min=50, max=200_000, help="Orders in the generated day."),
    quick: bool = typer.Option(False, "--quick", help="A small day of 300 orders (a first look; the tests)."),
    seed: int = typer.Option(2024, "--seed", help="The same seed gives the same day and the same tables."),
    data_dir: Optional[Path] = typer.Option(
        None, "--data-dir", metavar="DIR",
        help="A new or empty directory for the store, the DuckDB file and the broker "
             "(default: a new temporary directory, kept for you to explore)."),
) -> None:
    """The whole system on a generated day of a dropshipping merchant, ending with a report.

    Starts a private NATS server and `reflow serve`, publishes the day as
    shops and suppliers would, then prints orders by status, allocations and
    performance per supplier, one statement, and the DuckDB file with queries."""
    from adapters.demo import QUICK_ORDERS, run_demo

    settings: Settings = ctx.obj
    sources = {name: ctx.parent.get_parameter_source(name) for name in ("store", "duckdb", "data_dir")}
    given = {name: source is not None and source.name != "DEFAULT" for name, source in sources.items()}
    if data_dir is None and given["data_dir"]:
        data_dir = settings.data_dir
    run_demo(seed=seed, orders=QUICK_ORDERS if quick else orders, data_dir=data_dir,
             store=settings.store if given["store"] else None,
             duckdb_path=settings.duckdb if given["duckdb"] else None)


# -- replay: pull pre-link orders, what-if, audit, verify (issue 6; logic in replay/) --------------


def _when(field: str, text: str, *, end_of_day: bool) -> "datetime":
    """An RFC 3339 time; without an offset it is China time; a date alone is that whole day."""
    from datetime import date, datetime, time

    from engine.servicelevel import LOCAL

    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time.max if end_of_day else time.min, LOCAL)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a date (YYYY-MM-DD) or a time "
                         "(YYYY-MM-DDTHH:MM[:SS][+08:00])") from None
    return value if value.tzinfo else value.replace(tzinfo=LOCAL)


def _shop(platform: str) -> None:
    from engine.values import PLATFORMS

    if platform not in PLATFORMS:
        raise ValueError(f"--platform: {platform!r} is not one of {', '.join(PLATFORMS)}")


def _bar(label: str):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, disable=not console.is_terminal)


def _progress(bar, task):
    return lambda done, total: bar.update(task, completed=done, total=total)


@app.command()
def prelink(
    ctx: typer.Context,
    platform: str = typer.Option(..., "--platform", help="Shop platform (douyin, kuaishou, ...)."),
    shop: str = typer.Option(..., "--shop", help="Shop id."),
    product: str = typer.Option(..., "--product", help="Shop product id, linked already."),
    window_days: int = typer.Option(30, "--window-days", help="Pull orders placed within this many days."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be routed; store nothing."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the report to FILE.csv or .parquet."),
) -> None:
    """Pull pre-link orders (rule L10): route the product's orders that waited for its link."""
    from rich.console import Console
    from rich.table import Table

    from adapters.bootstrap import open_app
    from replay.export import export_rows
    from replay.prelink import pull

    _shop(platform)
    if window_days < 1:
        raise ValueError(f"--window-days: must be >= 1, got {window_days}")
    application = open_app(ctx.obj)
    try:
        with _bar("pulling orders") as bar:
            task = bar.add_task("orders", total=None)
            report = pull(application, platform, shop, product, window_days=window_days, dry_run=dry_run,
                          progress=_progress(bar, task))
    finally:
        application.close()
    console = Console()
    table = Table(title=f"{'dry run: ' if dry_run else ''}pull pre-link orders {platform}/{shop}/{product}, "
                        f"{window_days} days")
    for col in ("order", "placed (China)", "result", "status", "allocations", "cost", "sale amount"):
        table.add_column(col, justify="right" if col in ("cost", "sale amount") else "left")
    rows = []
    for r in report.rows:
        allocs = ", ".join(f"{a['allocation_id']} {a['supplier_id']}" for a in r["allocations"])
        cost = sum((a["cost"] or 0 for a in r["allocations"]), 0) if r["allocations"] else None
        result = r["result"] if r["reason"] is None else f"{r['result']}: {r['reason']}"
        why = ", ".join(f"{k} {v}" for k, v in r["unroutable"].items())
        table.add_row(r["order_id"], f"{r['placed_at']:%Y-%m-%d %H:%M}" if r["placed_at"] else "", result,
                      r["status"] + (f" ({why})" if why else ""), allocs, "" if cost is None else str(cost),
                      str(r["amount"]))
        rows.append({"order_id": r["order_id"], "placed_at": r["placed_at"], "result": r["result"],
                     "reason": r["reason"], "status": r["status"], "allocations": allocs, "cost": cost,
                     "amount": r["amount"], "unroutable": why})
    console.print(table)
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items())) or "none"
    console.print(f"{'would route' if dry_run else 'routed'} {len(report.routed)} of {report.candidates} waiting "
                  f"({report.allocated} allocated, cost {report.cost}); skipped: {skipped}; "
                  f"older than the window: {report.outside_window}" + ("; nothing stored" if dry_run else ""))
    if out is not None:
        columns = ["order_id", "placed_at", "result", "reason", "status", "allocations", "cost", "amount", "unroutable"]
        console.print(f"written {export_rows(rows, columns, out)}")


@app.command()
def whatif(
    ctx: typer.Context,
    platform: str = typer.Option(..., "--platform", help="Shop platform."),
    shop: str = typer.Option(..., "--shop", help="Shop id."),
    date_from: str = typer.Option(..., "--from", metavar="DATE|TIME", help="First day or time (China time)."),
    date_to: str = typer.Option(..., "--to", metavar="DATE|TIME", help="Last day (inclusive) or time."),
    product: Optional[str] = typer.Option(None, "--product", help="Only decisions with a line of this product."),
    link_file: Optional[Path] = typer.Option(
        None, "--link", metavar="FILE.json", help="A new link for --product: a reflow.in.link.set body."),
    split_tolerance: Optional[str] = typer.Option(None, "--split-tolerance", help="Fewer-splits tolerance (RT10)."),
    without: list[str] = typer.Option([], "--without-supplier", help="Take a supplier out (repeatable)."),
    show_all: bool = typer.Option(False, "--all", help="List unchanged decisions too."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write every row to FILE.csv or .parquet."),
) -> None:
    """What-if (rule A1): replay a period's decisions with a changed link or policy; store nothing."""
    from decimal import Decimal, InvalidOperation

    from rich.console import Console
    from rich.table import Table

    from adapters.bootstrap import open_app
    from replay.export import export_rows
    from replay.whatif import Change, replay

    _shop(platform)
    start, end = _when("--from", date_from, end_of_day=False), _when("--to", date_to, end_of_day=True)
    if end < start:
        raise ValueError("--to: must not be before --from")
    tolerance = None
    if split_tolerance is not None:
        try:
            tolerance = Decimal(split_tolerance)
        except InvalidOperation:
            raise ValueError(f"--split-tolerance: {split_tolerance!r} is not a decimal number") from None
        if not tolerance.is_finite() or tolerance < 0:
            raise ValueError(f"--split-tolerance: must be >= 0, got {split_tolerance}")
    skus = None
    if link_file is not None:
        if product is None:
            raise ValueError("--link: needs --product (the product the new link is for)")
        skus = _link_skus(link_file)
    if tolerance is None and not without and skus is None:
        raise ValueError("--link/--split-tolerance/--without-supplier: say what to change")
    change = Change(split_tolerance=tolerance, without=frozenset(without), product_id=product, link=skus)
    application = open_app(ctx.obj)
    try:
        with _bar("replaying decisions") as bar:
            task = bar.add_task("events", total=None)
            report = replay(application, platform, shop, start, end, change, product_id=product,
                            progress=_progress(bar, task))
    finally:
        application.close()
    console = Console()
    table = Table(title=f"what-if {change.describe()}: {platform}/{shop} {date_from} .. {date_to}")
    for col in ("order", "decided (China)", "trigger", "recorded", "cost", "what-if", "cost ", "difference"):
        table.add_column(col, justify="right" if col.strip() in ("cost", "difference") else "left")
    from engine.servicelevel import LOCAL

    for r in report.rows if show_all else report.changed:
        table.add_row(r.order_id, r.decided_at.astimezone(LOCAL).strftime("%Y-%m-%d %H:%M"), r.trigger, r.recorded,
                      str(r.recorded_cost), r.what_if, str(r.what_if_cost), f"{r.delta:+}")
    console.print(table)
    console.print(f"{len(report.rows)} orders replayed, {len(report.changed)} would change; cost difference "
                  f"{report.delta:+}; nothing stored")
    if out is not None:
        rows = [r.as_dict() for r in report.rows]
        columns = ["order_id", "decided_at", "trigger", "recorded", "recorded_cost", "what_if", "what_if_cost", "delta"]
        console.print(f"written {export_rows(rows, columns, out)}")


def _link_skus(path: Path):
    from adapters.inbound import _sku_link
    from adapters.messages import BadMessage, decode

    try:
        message = decode("reflow.in.link.set", path.read_bytes())
    except BadMessage as e:
        raise ValueError(f"--link: {path}: {e}") from None
    return tuple(_sku_link(s) for s in message.skus)


@app.command()
def audit(
    ctx: typer.Context,
    platform: str = typer.Option(..., "--platform", help="Shop platform."),
    shop: str = typer.Option(..., "--shop", help="Shop id."),
    order: str = typer.Option(..., "--order", help="Shop order id."),
    as_of: Optional[str] = typer.Option(
        None, "--as-of", metavar="TIME", help="Show the state as of this time (China time unless an offset is given; "
                                              "a date alone means the end of that day)."),
) -> None:
    """An order's full history, each routing decision explained, its state as of a time."""
    from rich.console import Console

    from adapters.bootstrap import open_app
    from replay.audit import audit as run_audit, render

    _shop(platform)
    when = _when("--as-of", as_of, end_of_day=True) if as_of else None
    application = open_app(ctx.obj)
    try:
        result = run_audit(application, platform, shop, order, when)
    finally:
        application.close()
    render(result, Console())


@app.command()
def verify(
    ctx: typer.Context,
    anchor: bool = typer.Option(True, "--anchor/--no-anchor",
                                help="After a clean run, record an anchor of the log (one event)."),
    expect_head: Optional[str] = typer.Option(
        None, "--expect-head", metavar="N:SHA256",
        help="A head printed by an earlier run and kept elsewhere: the log must still hash to it."),
) -> None:
    """Check the stored history (rule A2: hash chain, anchors) and every decision (RT6)."""
    from adapters.bootstrap import open_app
    from replay.verify import parse_head, verify as run_verify

    expect = parse_head(expect_head) if expect_head else None
    application = open_app(ctx.obj)
    try:
        with _bar("verifying events") as bar:
            task = bar.add_task("events", total=None)
            result = run_verify(application, anchor=anchor, expect=expect, progress=_progress(bar, task))
    finally:
        application.close()
    if not result.ok:
        _fail(f"verify: {result.problem.line()}")
    rate = result.events / result.seconds if result.seconds else 0
    typer.echo(f"history intact: {result.events} events ({result.chained} chained, {result.legacy} from before the "
               f"chain), {result.decisions} decisions reproduced, {result.anchors} anchors matched, "
               f"{'no gaps' if result.gaps_checked else 'ids not checked for gaps (PostgreSQL)'}; "
               + (f"{result.noncanonical} stored by an older event type; " if result.noncanonical else "")
               + f"{result.seconds:.1f} s, {rate:,.0f} events/s")
    typer.echo(f"log head: notification {result.up_to} sha256 {result.head}"
               + ("; anchored" if result.anchored else "")
               + f" (keep it: reflow verify --expect-head {result.up_to}:{result.head})")


def main() -> None:
    """Entry point: run the app; known failures become one line on stderr and exit code 1."""
    from adapters.serve import ServeError
    from engine.errors import DomainError

    try:
        app(standalone_mode=False)
    except (DomainError, ValueError, ServeError, OSError, ConnectionError) as exc:
        _fail(str(exc) or type(exc).__name__)
    except KeyboardInterrupt:
        _fail("interrupted", code=130)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        _fail("aborted")
    except Exception as exc:  # noqa: BLE001 - usage errors (typer's own click) and the unexpected
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            message = exc.format_message()
            if not message:  # e.g. no command given: the help was printed already
                raise SystemExit(exc.exit_code) from None
            _fail(message, code=exc.exit_code)
        _fail(f"{type(exc).__name__}: {exc}")


def _fail(reason: str, code: int = 1) -> None:
    from adapters.messages import one_line

    print(f"reflow: {one_line(reason, limit=500)}", file=sys.stderr)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
