"""What the day showed of issues 15 and 16, as the report tells it: one line per rule with its ids,
read from the DuckDB views (``allocations``, ``allocation_lines``, ``link_health``,
``overdue_allocations``, ``returns``, ``statements``; the waiting lines from
``facts.line_routes``). Only the factory's capacity is the plan's: it is what the demo sent on
``supplier.upserted``, and no view holds it.

A rule the day did not show says so ("not seen"); the demo test requires all six."""

from __future__ import annotations

import json
import textwrap
from datetime import UTC, datetime
from typing import Any

from engine.servicelevel import LOCAL

RULES = ("RT11", "RT12", "RT13", "L11")
AFTER_THE_PARCEL = ("T4", "RC6")
LIVE = "('active', 'tracked', 'shipped')"


def _hm(ts: datetime) -> str:
    """A view's time (UTC, no zone) as China time, HH:MM."""
    return ts.replace(tzinfo=UTC).astimezone(LOCAL).strftime("%H:%M")


def rejection(con: Any) -> str:
    """RT11: the first rejected allocation, and where its lines went."""
    row = con.execute("""
        SELECT allocation_id, supplier_id, intercept_reason, intercepted_at, platform, shop_id, order_id
        FROM allocations WHERE status = 'rejected' ORDER BY intercepted_at, allocation_id LIMIT 1""").fetchone()
    if row is None:
        return "RT11 not seen: no supplier rejected an allocation"
    aid, supplier, reason, at, *order = row
    went = con.execute(f"""
        SELECT supplier_id, allocation_id FROM allocations
        WHERE platform = ? AND shop_id = ? AND order_id = ? AND routed_by = 'rejected' AND status IN {LIVE}
        ORDER BY allocation_id""", order).fetchall()
    where = " + ".join(f"{s} ({a})" for s, a in went) or "nowhere (the line waits)"
    return f"RT11 {supplier} rejected allocation {aid} ({reason}) at {_hm(at)}; rerouted to {where}"


def split_line(con: Any) -> str:
    """RT12: the first line covered by several alternatives, each part fewer units than the line
    (a bundle's suppliers each cover every unit of the line, L4, so a bundle is never taken for one)."""
    row = con.execute(f"""
        WITH parts AS (
          SELECT a.platform, a.shop_id, a.order_id, l.line_id, a.supplier_id, sum(l.qty) AS units
          FROM allocation_lines l JOIN allocations a USING (allocation_id)
          WHERE a.status IN {LIVE} GROUP BY ALL)
        SELECT p.platform, p.order_id, p.line_id, any_value(o.qty) AS qty,
          list(p.units || ' from ' || p.supplier_id ORDER BY p.units DESC, p.supplier_id) AS parts
        FROM parts p JOIN order_lines o USING (platform, shop_id, order_id, line_id)
        GROUP BY p.platform, p.shop_id, p.order_id, p.line_id
        HAVING count(*) >= 2 AND max(p.units) < any_value(o.qty)
        ORDER BY p.platform, p.order_id, p.line_id LIMIT 1""").fetchone()
    if row is None:
        return "RT12 not seen: no line was split"
    platform, order_id, line_id, qty, parts = row
    return f"RT12 {platform} order {order_id} line {line_id} ({qty} units) split: {' + '.join(parts)}"


def capacity(con: Any, supplier_id: str, limit: int | None) -> str:
    """RT13: the lines that waited for the supplier's capacity, and when they were routed."""
    waited = con.execute("""
        SELECT k.platform, k.shop_id, k.order_id, r.line_id, min(r.event_at) AS waited_at
        FROM facts.line_routes r JOIN facts.order_key k USING (order_uuid)
        WHERE r.reason = 'capacity_reached' GROUP BY ALL ORDER BY waited_at, k.order_id, r.line_id""").fetchall()
    if limit is None or not waited:
        return "RT13 not seen: no line waited for a supplier's capacity"
    routed = con.execute(f"""
        SELECT l.line_id, a.allocated_at FROM allocation_lines l JOIN allocations a USING (allocation_id)
        WHERE a.supplier_id = ? AND a.routed_by = 'reroute:new_day' AND a.status IN {LIVE}
        ORDER BY a.allocated_at""", [supplier_id]).fetchall()
    lines = {w[3] for w in waited}
    times = sorted({_hm(at) for line_id, at in routed if line_id in lines})
    then = f"routed at {', '.join(times)} the next day" if times else "still waiting"
    n = len(waited)
    return (f"RT13 {supplier_id} reached its capacity of {limit} units a day at {_hm(waited[0][4])}; "
            f"{n} line{'s' if n != 1 else ''} waited, {then}")


def link_mended(con: Any) -> str:
    """L11: the first link reported broken, why, and when it was healthy again."""
    rows = con.execute("""
        SELECT platform, shop_id, product_id, sku_id, status, missing, event_at
        FROM facts.link_health ORDER BY pos""").fetchall()
    broken = next((r for r in rows if r[4] == "broken"), None)
    if broken is None:
        return "L11  not seen: no link was reported broken"
    platform, _, product, sku, _, missing, at = broken
    mended = next((r[6] for r in rows[rows.index(broken):] if r[:4] == broken[:4] and r[4] == "healthy"), None)
    gone = json.loads(missing)[0]
    why = {"sku_dropped": "dropped", "sku_changed": "changed"}.get(gone["why"], gone["why"])
    end = f"mended at {_hm(mended)}" if mended else "still broken"
    return (f"L11  link {platform}/{product}/{sku or '-'} broken at {_hm(at)} ({gone['supplier_id']} "
            f"SKU {gone['supplier_sku_id']} {why}), {end}")


def _day_hm(ts: datetime) -> str:
    """A view's time (UTC, no zone) as China time, MM-DD HH:MM."""
    return ts.replace(tzinfo=UTC).astimezone(LOCAL).strftime("%m-%d %H:%M")


def overdue_counts(con: Any) -> tuple[int, int]:
    """T4: how many allocations were reminded of their ship-by, and how many were re-routed for it."""
    reminded = con.execute("SELECT count(*) FROM allocations WHERE reminded_at IS NOT NULL").fetchone()[0]
    return reminded, con.execute("SELECT count(*) FROM overdue_allocations WHERE rerouted").fetchone()[0]


def overdue_rerouted(con: Any) -> str:
    """T4: the first allocation re-routed for being overdue, and where its lines went."""
    row = con.execute("""
        SELECT allocation_id, supplier_id, ship_by, reminded_at, platform, shop_id, order_id
        FROM overdue_allocations WHERE rerouted ORDER BY ship_by, allocation_id LIMIT 1""").fetchone()
    if row is None:
        return "T4   not seen: no overdue allocation was re-routed"
    aid, supplier, ship_by, reminded, *order = row
    went = con.execute(f"""
        SELECT supplier_id, allocation_id, allocated_at FROM allocations
        WHERE platform = ? AND shop_id = ? AND order_id = ? AND routed_by = 'overdue' AND status IN {LIVE}
        ORDER BY allocated_at, allocation_id""", order).fetchall()
    if not went:
        return (f"T4   {supplier} had no tracking for {aid} by {_day_hm(ship_by)}; reminded at "
                f"{_hm(reminded)}, intercepted, its lines wait")
    [(stopped,)] = con.execute("SELECT intercepted_at FROM allocations WHERE allocation_id = ?", [aid]).fetchall()
    hours = (stopped - ship_by).total_seconds() / 3600  # the merchant's setting; routed at the next tick
    where = " + ".join(f"{s} ({a})" for s, a, _ in went)
    return (f"T4   {supplier} had no tracking for {aid} by {_day_hm(ship_by)}; reminded at {_hm(reminded)}, "
            f"re-routed to {where} {hours:g} h later")


def return_credited(con: Any) -> str:
    """RC6: the first return its supplier accepted, and the statement that credits it."""
    row = con.execute("""
        SELECT r.return_id, r.platform, r.order_id, r.supplier_id, r.credit, s.statement_id
        FROM returns r LEFT JOIN statements s ON s.statement_id = r.credited_on
        WHERE r.status = 'accepted' ORDER BY r.answered_at, r.return_id LIMIT 1""").fetchone()
    if row is None:
        return "RC6  not seen: no supplier accepted a return"
    rid, platform, order_id, supplier, credit, statement = row
    on = f"on {statement}" if statement else "on no statement yet"
    return f"RC6  return {rid} ({platform} order {order_id}) accepted by {supplier}, credited {credit:.2f} {on}"


def parcel_lines(con: Any) -> list[tuple[str, str]]:
    """(rule, text) for T4 and RC6."""
    return list(zip(AFTER_THE_PARCEL, (overdue_rerouted(con), return_credited(con)), strict=True))


def rule_lines(con: Any, factory: str, limit: int | None) -> list[tuple[str, str]]:
    """(rule, text) for each of the four rules, in the order of RULES."""
    return list(zip(RULES, (rejection(con), split_line(con), capacity(con, factory, limit), link_mended(con)),
                    strict=True))


def wrap(text: str, width: int = 80) -> str:
    """One rule's line, wrapped under its text at ``width`` columns."""
    return "\n".join(textwrap.wrap(text, width, subsequent_indent=" " * 5, break_on_hyphens=False))
