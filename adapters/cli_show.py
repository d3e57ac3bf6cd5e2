"""``reflow show held|unroutable|overdue|link-health|loss-risks``: what needs a person's attention,
from the analysts' DuckDB file (read-only, the published snapshot: a few seconds behind serve), and
``reflow link show``'s rendering (registered in ``adapters.cli``).

A file an older reflow wrote, without the views of CONTRACT section 6, is refused in one line
(exit 1) saying how to update it; so is a ``--duckdb`` path that is not there or not a DuckDB
file, the line leading with ``--duckdb <path>:``. Tables
keep to 80 columns (the terminal's width, 80 when not a terminal) with ids stacked in their cells,
never cut or split; ``--format csv|json`` gives every column, times in China time with their
offset, money with 2 decimals. Like every command, it refuses a store that is not there or a
cipher key that is not the store's (read-only, before the file).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import typer

from adapters.cli_common import FORMAT, Format, console, shell_command, table, write_rows
from adapters.cli_common import text as _text

show_app = typer.Typer(name="show", no_args_is_help=False,
                       help="What needs a person's attention, from the analysts' DuckDB views.")


_HELD = """
WITH f AS (
  SELECT order_uuid,
    arg_max({'on': value, 'reason': reason}, pos) FILTER (WHERE flag = 'held') AS hold,
    arg_max({'on': value, 'reason': reason}, pos) FILTER (WHERE flag = 'review') AS review
  FROM facts.order_flags GROUP BY order_uuid),
w AS (SELECT platform, shop_id, order_id, count(*) AS withheld_lines
      FROM order_lines WHERE route_status = 'withheld' GROUP BY ALL)
SELECT o.platform, o.shop_id, o.order_id, o.placed_at, o.amount, o.status,
  CASE WHEN f.hold.on THEN f.hold.reason END AS hold_reason,
  CASE WHEN f.review.on THEN coalesce(f.review.reason, 'under review') END AS review_reason,
  coalesce(w.withheld_lines, 0) AS withheld_lines
FROM orders o
JOIN facts.order_key k USING (platform, shop_id, order_id)
LEFT JOIN f USING (order_uuid)
LEFT JOIN w USING (platform, shop_id, order_id)
WHERE o.status NOT IN ('cancelled', 'shipped') AND (o.status = 'held' OR w.withheld_lines > 0)
ORDER BY o.placed_at, o.platform, o.shop_id, o.order_id"""

_UNROUTABLE = """
SELECT l.platform, l.shop_id, l.order_id, l.line_id, l.product_id, l.sku_id, l.qty, l.unroutable_reason,
  o.placed_at
FROM order_lines l JOIN orders o USING (platform, shop_id, order_id)
WHERE l.route_status = 'unroutable' AND NOT l.refunded AND o.status NOT IN ('cancelled', 'shipped')
ORDER BY o.placed_at, l.platform, l.shop_id, l.order_id, l.line_no"""

_LOSS_RISKS = """
SELECT allocation_id, supplier_id, platform, shop_id, order_id, carrier, tracking_no, reason, recorded_at
FROM loss_risks ORDER BY recorded_at, allocation_id"""

_OVERDUE = """
SELECT allocation_id, supplier_id, platform, shop_id, order_id, ship_by, hours_overdue, reminded_at, rerouted
FROM overdue_allocations ORDER BY ship_by, allocation_id"""

_LINK_HEALTH = """
SELECT platform, shop_id, product_id, sku_id, status, since, missing
FROM link_health WHERE status <> 'healthy' ORDER BY since, platform, shop_id, product_id, sku_id"""


def _order(r: dict[str, Any]) -> str:
    """The shop on one line, the order id under it: neither is ever cut or split."""
    return f"{r['platform']}/{r['shop_id']}\n{r['order_id']}"


def _why_held(r: dict[str, Any]) -> str:
    why = [f"hold: {r['hold_reason']}" if r["hold_reason"] else "",
           f"review: {r['review_reason']}" if r["review_reason"] else "",
           f"{r['withheld_lines']} withheld (cancelled by hand)" if r["withheld_lines"] else ""]
    return "; ".join(w for w in why if w)


def _missing(text: str | None) -> str:
    """Rule L11: the view's JSON list of missing supplier SKUs, one per line, with why."""
    import json

    return "\n".join(f"{m['supplier_id']} / {m['offer_id']} / {m['supplier_sku_id']}: {m['why']}"
                     for m in json.loads(text or "[]"))


def _day_time(value: Any) -> str:
    return _short(value).replace(" ", "\n")


# name -> (view it needs, issue that brought it ("": the first release's), query, table columns:
# (header, cell), what one row is).
# A table keeps to 80 columns with realistic ids (19-digit order, line, product and SKU ids,
# 17-character allocation ids, `pinduoduo/<shop>`): ids are stacked two or three to a cell rather
# than side by side, and their columns (IDS) never wrap, so no id is ever cut or split.
Column = tuple[str, Callable[[dict[str, Any]], Any]]
ALLOCATION = "allocation,\nsupplier"
IDS = ("order", "order, line", "product / SKU", ALLOCATION, "parcel", "product, SKU")
VIEWS: dict[str, tuple[str, str, str, list[Column], str]] = {
    "held": ("orders", "", _HELD, [
        ("order", _order), ("placed", lambda r: _short(r["placed_at"])), ("amount", lambda r: f"{r['amount']:.2f}"),
        ("why", _why_held)], "held order"),
    "unroutable": ("order_lines", "", _UNROUTABLE, [
        ("order, line", lambda r: f"{_order(r)}\nline {r['line_id']}"),
        ("product / SKU", lambda r: f"{r['product_id']}\n{r['sku_id'] or '-'}"), ("qty", lambda r: r["qty"]),
        ("why", lambda r: r["unroutable_reason"])], "unroutable line"),
    "overdue": ("overdue_allocations", "issue 16", _OVERDUE, [
        (ALLOCATION, lambda r: f"{r['allocation_id']}\n{r['supplier_id']}"), ("order", _order),
        ("ship by", lambda r: _short(r["ship_by"])), ("hours", lambda r: r["hours_overdue"])],
        "overdue allocation"),
    "link-health": ("link_health", "issue 15", _LINK_HEALTH, [
        ("product, SKU", lambda r: f"{r['platform']}/{r['shop_id']}\n{r['product_id']}\nSKU {r['sku_id'] or '-'}"),
        ("since", lambda r: _day_time(r["since"])), ("missing", lambda r: _missing(r["missing"]))], "broken link"),
    "loss-risks": ("loss_risks", "", _LOSS_RISKS, [
        (ALLOCATION, lambda r: f"{r['allocation_id']}\n{r['supplier_id']}"), ("order", _order),
        ("parcel", lambda r: f"{r['carrier']}\n{r['tracking_no']}"),
        ("recorded", lambda r: _day_time(r["recorded_at"]))], "loss risk"),
}


def _command(name: str) -> Callable[..., None]:
    def command(ctx: typer.Context, fmt: Format = FORMAT) -> None:
        from adapters.bootstrap import check_store

        check_store(ctx.obj)  # the store there, the key its own, as for every command (read-only)
        show(ctx.obj.duckdb_path, name, fmt)

    command.__doc__ = {
        "held": "Orders held by a hold rule (I6), under platform review (RT4), or with lines withheld (I5).",
        "unroutable": "Order lines no supplier can take now (RT3), with the reason.",
        "overdue": "Allocations still untracked at their ship-by time, or re-routed for it (T4).",
        "link-health": "Shop SKUs whose link uses a supplier SKU that cannot serve it (L11), and why.",
        "loss-risks": "Tracking uploaded for a stopped allocation: the parcel may be out (I7).",
    }[name]
    return command


for _name in VIEWS:
    show_app.command(_name)(_command(_name))


def show(path: Any, name: str, fmt: Format) -> None:
    import duckdb

    view, issue, query, columns, noun = VIEWS[name]
    if not path.exists():
        raise ValueError(f"--duckdb {path}: does not exist yet (reflow serve or reflow rebuild writes it)")
    if not _duckdb_file(path):  # DuckDB's own error for another file is obscure
        raise ValueError(f"--duckdb {path}: is not a DuckDB file (reflow serve or reflow rebuild writes it)")
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            known = con.execute("SELECT count(*) FROM duckdb_views() WHERE schema_name = 'main' AND view_name = ?",
                                [view]).fetchone()[0]
            if not known:
                raise ValueError(f"--duckdb {path}: has no {view} view: an older reflow wrote it (restart reflow "
                                 "serve, or run reflow rebuild, with this version)" if issue else
                                 f"--duckdb {path}: has no {view} view: not a reflow analysts' file")
            cur = con.execute(query)
            names = [d[0] for d in cur.description]
            rows = [{n: _value(n, v) for n, v in zip(names, row)} for row in cur.fetchall()]
            as_of = con.execute("SELECT max(updated_at) FROM facts.position").fetchone()[0]
    except duckdb.Error as e:
        raise ValueError(f"--duckdb {path}: cannot be read as reflow's analysts' file "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    if fmt is Format.json and "missing" in names:  # rule L11's list as a list (csv keeps its JSON text)
        import json

        rows = [{**r, "missing": json.loads(r["missing"] or "[]")} for r in rows]
    if fmt is not Format.table:
        write_rows(fmt, rows, names)
    else:
        _table(rows, columns, f"{len(rows)} {noun}{'' if len(rows) == 1 else 's'}", path, as_of)


def _duckdb_file(path: Any) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as f:
        return f.read(12)[8:12] == b"DUCK"


def _table(rows: list[dict[str, Any]], columns: list[Column], title: str, path: Any, as_of: Any) -> None:
    if rows:
        out = table(*(header for header, _ in columns), ids=IDS, right=("amount", "qty", "hours"))
        for r in rows:
            out.add_row(*(_text(cell(r)) for _, cell in columns))
        console().print(out)  # no markup: an id may hold brackets
    when = f", as of {_short(_local(as_of))} China time" if as_of else ""
    typer.echo(f"{title} ({path.name}{when})")


def render_link(app: Any, link: Any, waiting: int, options: list[str] | None = None) -> None:
    """`reflow link show`: the link, each source as routing sees it now, stock rules, pre-link orders;
    the prose wrapped to the terminal's width, the command to pull them in lines that fit it."""
    from engine.routing import candidate, merchant_of, settings_of

    now = datetime.now(UTC)
    uow = app.unit_of_work()
    merchant = merchant_of(uow, link.platform, link.shop_id)
    settings = settings_of(uow, merchant)
    stdout = console()
    head = f"{link.platform}/{link.shop_id}/{link.product_id}: version {link.link_version}, mode {link.mode},"
    since = f"linked since {_short(link.linked_since)}"  # on the next line rather than cut
    stdout.print(head + (" " if len(head) + 1 + len(since) <= stdout.width else "\n") + since)
    sources = table("SKU", "alt", "supplier / offer / SKU", "qty", "avail", "health", right=("qty", "avail"))
    summary = []
    for entry in link.skus:
        name = entry.sku_id or (f"code {entry.merchant_code}" if entry.merchant_code else "(product)")
        routable = 0
        for j, alt in enumerate(entry.alternatives):
            facts = candidate(uow, merchant, 1, alt, j, now, settings)
            words = [_health(uow, merchant, c, f, now) for c, f in zip(alt.components, facts.components)]
            routable += all(w in ("ok", "no price") for w in words)
            label = f"{j + 1}" + (f" p{alt.priority}" if alt.priority is not None else "")
            if alt.provinces is not None:
                label += f" {len(alt.provinces)} prov."
            for k, (c, f, word) in enumerate(zip(alt.components, facts.components, words)):
                sources.add_row(name if j == 0 and k == 0 else "", label if k == 0 else "",
                                f"{c.supplier_id} / {c.offer_id} / {c.supplier_sku_id}", str(c.qty),
                                str(max(f.available, 0)), word)
        summary.append(f"{name} {'can route' if routable else 'cannot route now'} "
                       f"({routable} of {len(entry.alternatives)} alternatives)")
    stdout.print(sources)
    stdout.print("health now: " + "; ".join(summary))
    broken = [f"{sku or '(product)'}: " + ", ".join(f"{m.supplier_id}/{m.offer_id}/{m.supplier_sku_id} {m.why}"
                                                    for m in missing) for sku, missing in sorted(link.health.items())]
    stdout.print("link health (L11): " + ("; ".join(f"broken {b}" for b in broken) if broken else "healthy"))
    for sku, rule in sorted(link.rules.items()):
        stdout.print(f"stock rule {sku or '(product)'}: ratio {rule.ratio}, min {rule.min_stock}; "
                     f"published {link.published.get(sku, '-')}")
    stdout.print(f"pre-link orders waiting for a pull (L10): {waiting}" + ("; pull them:" if waiting else ""))
    if waiting:
        typer.echo(shell_command(["reflow", "prelink", "--platform", link.platform, "--shop", link.shop_id,
                                  "--product", link.product_id, *(options or [])], stdout.width))


def _health(uow: Any, merchant: str, comp: Any, facts: Any, now: datetime) -> str:
    """One component as routing sees it now; the first thing that stops it, or ok."""
    from engine import ids
    from engine.catalog import Offer, Supplier

    supplier = uow.get(Supplier, ids.supplier_id(comp.supplier_id))
    offer = uow.get(Offer, ids.offer_id(comp.supplier_id, comp.offer_id))
    if supplier is None:
        return "unknown supplier"
    if not facts.supplier_active:
        return "supplier inactive"
    if offer is None:
        return "unknown offer"
    if comp.supplier_sku_id not in offer.skus:
        return "SKU not in offer"
    if comp.supplier_sku_id in offer.withdrawn:
        return "SKU changed (RT11)"
    if not offer.on_shelf:
        return "off shelf"
    if offer.expired(now):
        return "offer expired (M2)"
    if not offer.open_to(merchant):
        return "private offer (M1)"
    if not facts.in_pool:
        return "not in source pool"
    if facts.available < comp.qty:
        return "out of stock"
    if facts.capacity_left is not None and facts.capacity_left < comp.qty:
        return "at capacity today"
    return "ok" if facts.unit_cost is not None else "no price"


MONEY = frozenset({"amount", "cost", "total", "unit_price", "credit"})


def _value(name: str, value: Any) -> Any:
    """A view's cell as printed: money with 2 decimals (as in the table), times in China time."""
    from decimal import Decimal

    if name in MONEY and isinstance(value, Decimal):
        return value.quantize(Decimal("0.01"))
    return _local(value)


def _local(value: Any) -> Any:
    """DuckDB's UTC TIMESTAMP as China time."""
    from engine.servicelevel import LOCAL

    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(LOCAL)
    return value


def _short(value: Any) -> str:
    from engine.servicelevel import LOCAL

    return value.astimezone(LOCAL).strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) else ""
