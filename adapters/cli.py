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

    Starts a private NATS server and `reflow serve`, publishes the day as the shops and suppliers
    would, and prints orders by status, allocations and performance per supplier, one statement,
    and the DuckDB file with example queries."""
    from adapters.demo import QUICK_ORDERS, run_demo

    settings: Settings = ctx.obj
    sources = {name: ctx.parent.get_parameter_source(name) for name in ("store", "duckdb", "data_dir")}
    given = {name: source is not None and source.name != "DEFAULT" for name, source in sources.items()}
    if data_dir is None and given["data_dir"]:
        data_dir = settings.data_dir
    run_demo(seed=seed, orders=QUICK_ORDERS if quick else orders, data_dir=data_dir,
             store=settings.store if given["store"] else None,
             duckdb_path=settings.duckdb if given["duckdb"] else None)


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
