"""Replay: ``reflow prelink`` (pull pre-link orders), ``whatif``, ``audit``, ``verify`` (issue 6;
registered in ``adapters.cli``; logic in ``replay/``)."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from adapters.cli_common import (
    Format,
    check_platform,
    console,
    fail,
    parse_when,
    progress_bar,
    progress_callback,
    shell_command,
    table,
    write_json,
    write_rows,
)

WHATIF_COLUMNS = ["order_id", "decided_at", "trigger", "recorded", "recorded_cost", "what_if", "what_if_cost",
                  "delta", "lines_lost", "lines_gained"]


PRELINK_OUT = ["order_id", "placed_at", "result", "reason", "status", "allocations", "cost", "amount", "unroutable"]
PRELINK_FIELDS = ["order_id", "placed_at", "result", "reason", "status", "amount", "unroutable", "allocations"]


def prelink(
    ctx: typer.Context,
    platform: str = typer.Option(..., "--platform", help="Shop platform (douyin, kuaishou, ...)."),
    shop: str = typer.Option(..., "--shop", help="Shop id."),
    product: str = typer.Option(..., "--product", help="Shop product id, linked already."),
    window_days: int = typer.Option(30, "--window-days", help="Pull orders placed within this many days."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be routed; store nothing."),
    out: Path | None = typer.Option(None, "--out", help="Also write the report to FILE.csv or .parquet."),
    fmt: Format = typer.Option(Format.table, "--format", help="table (fits the terminal; the summary after it), "
                               "csv or json (every field of each order, the summary on stderr)."),
) -> None:
    """Pull pre-link orders (rule L10): route the product's orders that waited for its link."""
    from adapters.bootstrap import open_app
    from replay.export import check_out, export_rows
    from replay.prelink import pull

    check_platform(platform)
    if window_days < 1:
        raise ValueError(f"--window-days: must be >= 1, got {window_days}")
    if out is not None:
        check_out(out)  # before any work: a new .csv or .parquet in a directory that exists
    application = open_app(ctx.obj)
    try:
        with progress_bar("pulling orders") as bar:
            task = bar.add_task("orders", total=None)
            report = pull(application, platform, shop, product, window_days=window_days, dry_run=dry_run,
                          progress=progress_callback(bar, task))
    finally:
        application.close()
    rows = [_pulled_row(r) for r in report.rows]
    if fmt is Format.table:
        _pulled_table(report, console())
    elif fmt is Format.csv:  # one row an order, as --out FILE.csv (times in China time)
        write_rows(fmt, rows, PRELINK_OUT)
    else:  # each report entry whole: its allocations with their supplier and cost, its lines left unroutable
        write_json([{n: r[n] for n in PRELINK_FIELDS} for r in report.rows])
    notes = console(stderr=fmt is not Format.table)  # csv and json alone on stdout
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped.items())) or "none"
    notes.print(f"{'would route' if dry_run else 'routed'} {len(report.routed)} of {report.candidates} waiting "
                f"({report.allocated} allocated, cost {report.cost}); skipped: {skipped}; "
                f"older than the window: {report.outside_window}" + ("; nothing stored" if dry_run else ""))
    if out is not None:
        notes.print(f"written {export_rows(rows, PRELINK_OUT, out)}")


def _pulled_row(r: dict) -> dict:
    """A pull report entry as one flat row (csv, --out): allocations as `ID SUPPLIER, ...`, their cost
    summed, the unroutable lines as `LINE REASON, ...`."""
    allocations = r["allocations"]
    return {**r, "allocations": ", ".join(f"{a['allocation_id']} {a['supplier_id']}" for a in allocations),
            "cost": sum((a["cost"] or 0 for a in allocations), 0) if allocations else None,
            "unroutable": ", ".join(f"{k} {v}" for k, v in r["unroutable"].items())}


def _pulled_table(report, stdout) -> None:
    """The pull at the terminal's width: order and time, result and status (and the lines left
    unroutable), each allocation with its supplier under it and its cost, the sale amount."""
    from engine.servicelevel import LOCAL

    stdout.print(f"{'dry run: ' if report.dry_run else ''}pull pre-link orders {report.platform}/{report.shop_id}/"
                 f"{report.product_id}, {report.window_days} days")
    if not report.rows:
        return
    grid = table("order, placed", "result, status", "allocation,\nsupplier", "cost", "amount",
                 ids=("order, placed", "allocation,\nsupplier"), right=("cost", "amount"))
    for r in report.rows:
        placed = f"{r['placed_at'].astimezone(LOCAL):%Y-%m-%d %H:%M}" if r["placed_at"] else ""
        result = r["result"] if r["reason"] is None else f"{r['result']}: {r['reason']}"
        why = "".join(f"\n{line}: {reason}" for line, reason in r["unroutable"].items())
        allocs = r["allocations"]
        grid.add_row(f"{r['order_id']}\n{placed}", f"{result}\n{r['status']}{why}",
                     "\n".join(f"{a['allocation_id']}\n{a['supplier_id']}" for a in allocs),
                     "\n".join("-\n" if a["cost"] is None else f"{a['cost']}\n" for a in allocs).rstrip(),
                     str(r["amount"]))
    stdout.print(grid)


def _capacity(text: str) -> tuple[str, int | None]:
    """`SUPPLIER=N` (units per China-time day) or `SUPPLIER=none` (no limit), for what-if (RT13)."""
    supplier, sep, units = text.partition("=")
    if not sep or not supplier or not (units == "none" or (units.isdigit() and int(units) >= 1)):
        raise ValueError(f"--capacity: {text!r} is not SUPPLIER=N (N >= 1) or SUPPLIER=none")
    return supplier, None if units == "none" else int(units)


def whatif(
    ctx: typer.Context,
    platform: str = typer.Option(..., "--platform", help="Shop platform."),
    shop: str = typer.Option(..., "--shop", help="Shop id."),
    date_from: str = typer.Option(..., "--from", metavar="DATE|TIME", help="First day or time (China time)."),
    date_to: str = typer.Option(..., "--to", metavar="DATE|TIME", help="Last day (inclusive) or time."),
    product: str | None = typer.Option(None, "--product", help="Only decisions with a line of this product."),
    link_file: Path | None = typer.Option(
        None, "--link", metavar="FILE.json", help="A new link for --product: a reflow.in.link.set body."),
    split_tolerance: str | None = typer.Option(None, "--split-tolerance", help="Fewer-splits tolerance (RT10)."),
    without: list[str] = typer.Option([], "--without-supplier", help="Take a supplier out (repeatable)."),
    split_lines: str | None = typer.Option(None, "--split-lines", metavar="on|off", help="Split lines (RT12)."),
    capacity: list[str] = typer.Option([], "--capacity", metavar="SUPPLIER=N|none",
                                       help="A supplier's daily capacity (RT13; repeatable)."),
    show_all: bool = typer.Option(False, "--all", help="List unchanged decisions too."),
    out: Path | None = typer.Option(None, "--out", help="Also write every row to FILE.csv or .parquet."),
    fmt: Format = typer.Option(Format.table, "--format", help="table (fits the terminal; the summary after it), "
                               "csv or json (every field, the summary on stderr)."),
) -> None:
    """What-if (rule A1): replay a period's decisions with a changed link or policy; store nothing."""
    from decimal import Decimal, InvalidOperation

    from adapters.bootstrap import open_app
    from replay.export import check_out, export_rows
    from replay.whatif import Change, replay

    check_platform(platform)
    if out is not None:
        check_out(out)  # before any work or output
    start, end = parse_when("--from", date_from, end_of_day=False), parse_when("--to", date_to, end_of_day=True)
    if end < start:
        raise ValueError("--to: must not be before --from")
    tolerance = None
    if split_tolerance is not None:
        try:
            tolerance = Decimal(split_tolerance)
        except InvalidOperation:
            raise ValueError(f"--split-tolerance: {split_tolerance!r} is not a decimal number") from None
        if not tolerance.is_finite() or not 0 <= tolerance <= 1:  # RT10: a fraction of the cheapest split's cost
            raise ValueError(f"--split-tolerance: a fraction from 0 to 1 (0.05 is 5%), got {split_tolerance}")
    skus = None
    if link_file is not None:
        if product is None:
            raise ValueError("--link: needs --product (the product the new link is for)")
        skus = _link_skus(link_file)
    if split_lines not in (None, "on", "off"):
        raise ValueError(f"--split-lines: must be on or off, got {split_lines!r}")
    capacities = tuple(_capacity(x) for x in capacity)
    twice = sorted({s for s, _ in capacities if [x for x, _ in capacities].count(s) > 1})
    if twice:
        raise ValueError(f"--capacity: {', '.join(twice)} given more than once")
    if tolerance is None and not without and skus is None and split_lines is None and not capacities:
        raise ValueError("--link/--split-tolerance/--without-supplier/--split-lines/--capacity: say what to change")
    change = Change(split_tolerance=tolerance, without=frozenset(without), product_id=product, link=skus,
                    split_lines=None if split_lines is None else split_lines == "on", capacity=capacities)
    application = open_app(ctx.obj)
    try:
        _known_suppliers(application, [*(("--without-supplier", s) for s in without),
                                       *(("--capacity", s) for s, _ in capacities)])
        with progress_bar("replaying decisions") as bar:
            task = bar.add_task("events", total=None)
            report = replay(application, platform, shop, start, end, change, product_id=product,
                            progress=progress_callback(bar, task))
    finally:
        application.close()
    from engine.servicelevel import LOCAL

    shown = report.rows if show_all else report.changed
    if fmt is Format.table:
        stdout = console()
        stdout.print(f"what-if {change.describe()}: {platform}/{shop} {date_from} .. {date_to} (China time)")
        grid = table("order, decided", "recorded → what-if", "delta", ids=("order, decided", "delta"),
                     right=("delta",))
        for r in shown:
            grid.add_row(f"{r.order_id}\n{r.decided_at.astimezone(LOCAL):%Y-%m-%d %H:%M}",
                         _routes(r.recorded, r.what_if), f"{r.delta:+}")
        stdout.print(grid)
    else:
        write_rows(fmt, [r.as_dict() for r in shown], WHATIF_COLUMNS)
    notes = console(stderr=fmt is not Format.table)  # csv and json alone on stdout
    lost = report.unroutable
    notes.print(f"{len(report.rows)} orders replayed, {len(report.changed)} would change; cost difference "
                f"{report.delta:+} over the orders routed the same lines both ways; nothing stored")
    if lost or report.newly_routed:
        notes.print(f"apart: {len(lost)} orders would have {sum(r.lines_lost for r in lost)} lines left "
                    f"unroutable (recorded cost {sum((r.recorded_cost for r in lost), Decimal(0)):.2f}, "
                    f"not a saving); {len(report.newly_routed)} unroutable before would be routed")
    if out is not None:
        rows = [r.as_dict() for r in report.rows]
        notes.print(f"written {export_rows(rows, WHATIF_COLUMNS, out)}")  # the columns of --format csv


def _known_suppliers(app, given: list[tuple[str, str]]) -> None:
    """Refuse, in one line naming the option, a supplier reflow does not know (as `reflow statement` does)."""
    from engine import ids
    from engine.catalog import Supplier

    for option, supplier in given:
        if app.load(Supplier, ids.supplier_id(supplier)) is None:
            raise ValueError(f"{option}: reflow knows no supplier {supplier!r} (no supplier.upserted for it)")


def _routes(recorded: str, what_if: str) -> str:
    """A what-if row's two routes for a table cell: a line of the order a line of text, spaces where
    they may wrap (around `/` and `+`, before the count), so no id is ever cut."""
    def lines(route: str) -> list[str]:
        return [re.sub(r"(?<=\S)x(\d+)(?=\+|$| )", r" x\1", part).replace("/", " / ").replace("+", " + ")
                for part in route.split("; ")]

    after = ["same"] if what_if == recorded else lines(what_if)
    return "\n".join(lines(recorded) + [f"→ {after[0]}"] + [f"  {x}" for x in after[1:]])


def _link_skus(path: Path):
    from adapters.inbound import _sku_link
    from adapters.messages import BadMessage, decode

    try:
        message = decode("reflow.in.link.set", path.read_bytes())
    except BadMessage as e:
        raise ValueError(f"--link: {path}: {e}") from None
    return tuple(_sku_link(s) for s in message.skus)


def audit(
    ctx: typer.Context,
    platform: str = typer.Option(..., "--platform", help="Shop platform."),
    shop: str = typer.Option(..., "--shop", help="Shop id."),
    order: str = typer.Option(..., "--order", help="Shop order id."),
    as_of: str | None = typer.Option(
        None, "--as-of", metavar="TIME", help="Show the state as of this time (China time unless an offset is given; "
                                              "a date alone means the end of that day)."),
    fmt: Format = typer.Option(Format.table, "--format", help="table (fits the terminal), csv (one row a "
                               "history entry) or json (the whole audit: state, history, decisions)."),
) -> None:
    """An order's full history, each routing decision explained, its state as of a time."""
    from adapters.bootstrap import open_app
    from replay.audit import HISTORY, as_data, history, render
    from replay.audit import audit as run_audit

    check_platform(platform)
    when = parse_when("--as-of", as_of, end_of_day=True) if as_of else None
    application = open_app(ctx.obj)
    try:
        result = run_audit(application, platform, shop, order, when)
    finally:
        application.close()
    if fmt is Format.csv:
        write_rows(fmt, history(result), HISTORY)
    elif fmt is Format.json:
        write_json(as_data(result))
    else:
        render(result, console())


def verify(
    ctx: typer.Context,
    anchor: bool = typer.Option(True, "--anchor/--no-anchor",
                                help="After a clean run, record an anchor of the log (one event)."),
    expect_head: str | None = typer.Option(
        None, "--expect-head", metavar="N:SHA256",
        help="A head printed by an earlier run and kept elsewhere: the log must still hash to it."),
) -> None:
    """Check the stored history (rule A2: hash chain, anchors) and every decision (RT6)."""
    from adapters.bootstrap import open_app
    from replay.verify import parse_head
    from replay.verify import verify as run_verify

    expect = parse_head(expect_head) if expect_head else None
    application = open_app(ctx.obj)
    try:
        with progress_bar("verifying events") as bar:
            task = bar.add_task("events", total=None)
            result = run_verify(application, anchor=anchor, expect=expect, progress=progress_callback(bar, task))
    finally:
        application.close()
    if not result.ok:
        fail(f"verify: {result.problem.line()}")
    rate = result.events / result.seconds if result.seconds else 0
    stdout = console()  # prose wrapped to the terminal's width; the head whole, in a command to copy
    stdout.print(f"history intact: {result.events} events ({result.chained} chained, {result.legacy} from before "
                 f"the chain), {result.decisions} decisions reproduced, {result.anchors} anchors matched, "
                 f"{'no gaps' if result.gaps_checked else 'ids not checked for gaps (PostgreSQL)'}; "
                 + (f"{result.noncanonical} stored by an older event type; " if result.noncanonical else "")
                 + f"{result.seconds:.1f} s, {rate:,.0f} events/s")
    stdout.print(f"log head: notification {result.up_to}{', anchored' if result.anchored else ''}; keep it "
                 "elsewhere to check the log later:")
    typer.echo(shell_command(["reflow", "verify", "--expect-head", f"{result.up_to}:{result.head}",
                              *ctx.obj.as_options()], stdout.width))  # the options in effect: it runs from anywhere
