"""``reflow statement`` and ``reflow rebuild``: the projections' commands (registered in
``adapters.cli``; logic in ``projections/``)."""

from __future__ import annotations

from pathlib import Path

import typer

from adapters.bootstrap import Settings


def statement(
    ctx: typer.Context,
    supplier: str | None = typer.Option(None, "--supplier", help="Supplier id."),
    date_from: str | None = typer.Option(None, "--from", metavar="YYYY-MM-DD", help="First day (China time)."),
    date_to: str | None = typer.Option(None, "--to", metavar="YYYY-MM-DD", help="Last day, inclusive."),
    out: Path | None = typer.Option(None, "--out", help="Export to FILE.csv, .parquet or .xlsx (a new file)."),
    statement_id: str | None = typer.Option(None, "--id", help="An issued statement, to print or export again."),
) -> None:
    """Issue a supplier statement (rules RC1-RC5) and print it as a table; with --id, print or
    export one issued before (nothing is issued)."""
    from datetime import date, timedelta

    from rich.console import Console
    from rich.table import Table

    from adapters.bootstrap import open_app
    from engine.servicelevel import LOCAL
    from engine.statements import issued
    from projections.export import check_out, export_statement
    from projections.statements import issue_statement

    settings: Settings = ctx.obj
    if out is not None:
        check_out(out)  # before anything is issued
    if statement_id is None:
        missing = [o for o, v in (("--supplier", supplier), ("--from", date_from), ("--to", date_to)) if v is None]
        if missing:
            raise ValueError(f"{', '.join(missing)}: needed to issue a statement (or --id to export one issued)")
        try:
            first, last = date.fromisoformat(date_from), date.fromisoformat(date_to)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"--from/--to: {exc} (use YYYY-MM-DD)") from None
    application = open_app(settings)
    try:
        if statement_id is not None:
            st = issued(application, statement_id)
        else:
            st = issue_statement(application, settings.duckdb_path, supplier, first, last)
    finally:
        application.close()
    first = st.period_from.astimezone(LOCAL).date()
    last = (st.period_to.astimezone(LOCAL) - timedelta(microseconds=1)).date()
    table = Table(title=f"statement {st.statement_id}  {st.supplier_id}  {first} .. {last}")
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
