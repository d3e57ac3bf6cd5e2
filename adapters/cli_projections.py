"""``reflow statement`` and ``reflow rebuild``: the projections' commands (registered in
``adapters.cli``; logic in ``projections/``)."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path

import typer

from adapters.bootstrap import Settings
from adapters.cli_common import Format, console, table, write_json, write_rows


def statement(
    ctx: typer.Context,
    supplier: str | None = typer.Option(None, "--supplier", help="Supplier id."),
    date_from: str | None = typer.Option(None, "--from", metavar="YYYY-MM-DD", help="First day (China time)."),
    date_to: str | None = typer.Option(None, "--to", metavar="YYYY-MM-DD", help="Last day, inclusive."),
    out: Path | None = typer.Option(None, "--out", help="Export to FILE.csv, .parquet or .xlsx (a new file)."),
    statement_id: str | None = typer.Option(None, "--id", help="An issued statement, to print or export again."),
    fmt: Format = typer.Option(Format.table, "--format", help="table (fits the terminal), csv (every row and "
                               "column, as --out FILE.csv) or json (the summary and the rows)."),
    allow_empty: bool = typer.Option(False, "--allow-empty", help="Issue it even with no tracked allocation in "
                                     "the period (refused otherwise: nothing issued)."),
) -> None:
    """Issue a supplier statement (rules RC1-RC5) and print it; with --id, print or export one
    issued before (nothing is issued)."""
    from adapters.bootstrap import open_app
    from adapters.cli_common import check_duckdb_dir
    from adapters.cli_guard import may_issue, removed_if_refused
    from engine.servicelevel import LOCAL
    from engine.statements import StatementRefused, issued
    from projections.export import COLUMNS, check_out, export_statement, rows, summary
    from projections.statements import EmptyStatement, issue_statement

    settings: Settings = ctx.obj
    if statement_id is not None:
        also = [o for o, v in (("--supplier", supplier), ("--from", date_from), ("--to", date_to),
                               ("--allow-empty", allow_empty or None)) if v is not None]
        if also:
            raise ValueError(f"--id: prints or exports a statement issued before; {', '.join(also)} would "
                             "be ignored (give --id alone, or those without --id to issue one)")
    if out is not None:
        check_out(out)  # before anything is issued
    if statement_id is None:
        missing = [o for o, v in (("--supplier", supplier), ("--from", date_from), ("--to", date_to)) if v is None]
        if missing:
            raise ValueError(f"{', '.join(missing)}: needed to issue a statement (or --id to export one issued)")
        first, last = _day("--from", date_from), _day("--to", date_to)
    application = open_app(settings)
    try:
        if statement_id is not None:
            st = issued(application, statement_id)
        else:
            check_duckdb_dir(settings.duckdb_path)
            may_issue(application, supplier, first, last)  # refused here, before a DuckDB file is made
            with removed_if_refused(settings.duckdb_path):
                st = issue_statement(application, settings.duckdb_path, supplier, first, last,
                                     allow_empty=allow_empty)
    except EmptyStatement as empty:
        raise ValueError(f"{empty} (--allow-empty issues it anyway)") from None
    except StatementRefused as refused:  # RC4's times to the second, in China time, as elsewhere
        raise ValueError(_to_the_second(str(refused), refused.next_allowed)) from None
    finally:
        application.close()
    if statement_id is None and fmt is not Format.table:  # csv and json alone on stdout; scripts find the id
        typer.echo(f"issued {st.statement_id}", err=True)
    if fmt is Format.csv:
        write_rows(fmt, rows(st), COLUMNS)
    elif fmt is Format.json:  # the summary's times as the rows' are: China time with the offset
        write_json({"summary": {**summary(st), **{k: getattr(st, k) for k in ("period_from", "period_to",
                                                                               "issued_at")}},
                    "rows": rows(st)})
    else:
        first = st.period_from.astimezone(LOCAL).date()
        last = (st.period_to.astimezone(LOCAL) - timedelta(microseconds=1)).date()
        # Ids whole on every line; the unit price (amount / qty) and the rest are in csv, json and --out.
        lines = table("allocation", "order", "SKU", "qty", "amount", ids=("allocation", "order"),
                      right=("qty", "amount"))
        for line in st.lines:
            lines.add_row(line.allocation_id, line.order_id, line.supplier_sku_id, str(line.qty), str(line.amount))
        stdout = console()
        stdout.print(f"statement {st.statement_id}  {st.supplier_id}  {first} .. {last} (China time)")
        stdout.print(lines)
        stdout.print(f"lines {len(st.lines)}  total {st.total}  hash {st.content_hash}")
        if st.credits:  # rule RC6: accepted returns, apart from the lines
            stdout.print(f"credits (RC6): {len(st.credits)} accepted returns {st.credits_total}  "
                         f"net total {st.net_total}")
        if st.apart:
            kinds = [a.section for a in st.apart]
            stdout.print(f"listed apart (in csv, json and --out): {kinds.count('post_shipment_aftersale')} "
                         f"post-shipment after-sales, {kinds.count('loss_risk')} loss risks")
    if out is not None:
        export_statement(st, out)
        console(stderr=fmt is not Format.table).print(f"written {out}")


def _day(option: str, value: str) -> date:
    """A China-time day; refused in one line naming the option."""
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        why = "" if "isoformat" in str(exc) else f": {exc}"
        raise ValueError(f"{option}: {value!r} is not a day YYYY-MM-DD{why}") from None


def _to_the_second(message: str, next_allowed: datetime | None) -> str:
    """The times in a refusal to the second, China time: the next allowed one rounded up (at the
    time printed it is allowed), the others down."""
    from engine.servicelevel import LOCAL

    def shown(match: re.Match) -> str:
        at = datetime.fromisoformat(match.group(0))
        if next_allowed is not None and at == next_allowed and at.microsecond:
            at += timedelta(seconds=1)
        return f"{at.astimezone(LOCAL):%Y-%m-%d %H:%M:%S} China time"

    return _ISO.sub(shown, message)


_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")


def rebuild(ctx: typer.Context) -> None:
    """Rebuild every projection from the event store alone (stop `reflow serve` first)."""
    from adapters.bootstrap import open_app
    from adapters.cli_common import check_duckdb_dir
    from projections.rebuild import rebuild as run_rebuild

    settings: Settings = ctx.obj
    application = open_app(settings)
    try:
        check_duckdb_dir(settings.duckdb_path)  # the store's refusals first, as every command's
        n = run_rebuild(application, settings.duckdb_path, progress=True)
    finally:
        application.close()
    typer.echo(f"rebuilt {settings.duckdb_path} from {n} events")
