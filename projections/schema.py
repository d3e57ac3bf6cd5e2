"""The DuckDB schema: append-only fact tables (schema `facts`) and the analysts' views (schema `main`).

Every stored event the projection cares about becomes one or more rows in a `facts.*` table,
stamped with its notification position `pos`. Nothing is ever updated in place: the current
state of an order or an allocation is the latest fact by `pos`, computed by the views. That makes
a batch a handful of bulk `INSERT ... SELECT FROM arrow`, makes re-applying a batch impossible to
confuse with new facts (the position gate), and makes `rebuild` produce identical rows by
construction.

Times are stored as `TIMESTAMP` in UTC (no zone): DuckDB's Python client needs `pytz` to fetch a
`TIMESTAMPTZ`, and analysts should not need it. Use `ts AT TIME ZONE 'UTC' AT TIME ZONE
'Asia/Shanghai'` (or `+ INTERVAL 8 HOUR`) for China time. Money is `DECIMAL(18,4)`.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "2"

_T = {
    "uuid": ("UUID", pa.string()),
    "str": ("VARCHAR", pa.string()),
    "int": ("INTEGER", pa.int32()),
    "big": ("BIGINT", pa.int64()),
    "bool": ("BOOLEAN", pa.bool_()),
    "ts": ("TIMESTAMP", pa.timestamp("us")),
    "money": ("DECIMAL(18,4)", pa.decimal128(18, 4)),
}

# table -> [(column, kind)]. Column order is the order of the Arrow batches (facts.py).
TABLES: dict[str, list[tuple[str, str]]] = {
    "order_keys": [("order_uuid", "uuid"), ("platform", "str"), ("shop_id", "str"), ("order_id", "str"),
                   ("pos", "big")],
    "orders_placed": [("order_uuid", "uuid"), ("merchant_id", "str"), ("channel", "str"), ("placed_at", "ts"),
                      ("pos", "big")],
    "order_lines": [("order_uuid", "uuid"), ("line_no", "int"), ("line_id", "str"), ("product_id", "str"),
                    ("sku_id", "str"), ("merchant_code", "str"), ("qty", "int"), ("unit_price", "money"),
                    ("pos", "big")],
    "order_flags": [("order_uuid", "uuid"), ("pos", "big"), ("flag", "str"), ("value", "bool"),
                    ("reason", "str"), ("event_at", "ts")],
    "line_routes": [("order_uuid", "uuid"), ("line_id", "str"), ("pos", "big"), ("route", "str"),
                    ("reason", "str"), ("event_at", "ts")],
    "alloc_refs": [("order_uuid", "uuid"), ("allocation_id", "str"), ("supplier_id", "str"), ("line_id", "str"),
                   ("pos", "big")],
    "allocations_ended": [("order_uuid", "uuid"), ("allocation_id", "str"), ("how", "str"), ("reason", "str"),
                          ("event_at", "ts"), ("pos", "big"), ("by_merchant", "bool")],
    "aftersales": [("order_uuid", "uuid"), ("aftersale_id", "str"), ("kind", "str"), ("line_id", "str"),
                   ("post_shipment", "bool"), ("opened_at", "ts"), ("pos", "big")],
    "aftersales_closed": [("order_uuid", "uuid"), ("aftersale_id", "str"), ("outcome", "str"), ("closed_at", "ts"),
                          ("pos", "big")],
    "allocations": [("alloc_uuid", "uuid"), ("allocation_id", "str"), ("platform", "str"), ("shop_id", "str"),
                    ("order_id", "str"), ("merchant_id", "str"), ("supplier_id", "str"), ("channel", "str"),
                    ("routed_by", "str"), ("allocated_at", "ts"), ("ship_by", "ts"), ("pos", "big")],
    "allocation_lines": [("allocation_id", "str"), ("seq", "int"), ("line_id", "str"), ("offer_id", "str"),
                         ("supplier_sku_id", "str"), ("product_id", "str"), ("qty", "int"), ("unit_cost", "money"),
                         ("amount", "money"), ("link_version", "int"), ("pos", "big")],
    "allocation_events": [("alloc_uuid", "uuid"), ("pos", "big"), ("kind", "str"), ("status", "str"), ("event_at", "ts"),
                          ("reason", "str"), ("carrier", "str"), ("tracking_no", "str"), ("late", "bool"),
                          ("outcome", "str")],
    "link_health": [("platform", "str"), ("shop_id", "str"), ("product_id", "str"), ("sku_id", "str"),
                    ("status", "str"), ("missing", "str"), ("event_at", "ts"), ("pos", "big")],
    "returns": [("return_uuid", "uuid"), ("return_id", "str"), ("allocation_id", "str"), ("supplier_id", "str"),
                ("platform", "str"), ("shop_id", "str"), ("order_id", "str"), ("aftersale_id", "str"),
                ("requested_at", "ts"), ("pos", "big")],
    "return_lines": [("return_id", "str"), ("seq", "int"), ("line_id", "str"), ("offer_id", "str"),
                     ("supplier_sku_id", "str"), ("qty", "int")],
    "return_answers": [("return_uuid", "uuid"), ("outcome", "str"), ("reason", "str"), ("answered_at", "ts"),
                       ("pos", "big")],
    "statement_credits": [("statement_id", "str"), ("seq", "int"), ("return_id", "str"), ("allocation_id", "str"),
                          ("aftersale_id", "str"), ("platform", "str"), ("shop_id", "str"), ("order_id", "str"),
                          ("answered_at", "ts"), ("qty", "int"), ("amount", "money")],
    "suppliers": [("supplier_uuid", "uuid"), ("supplier_id", "str"), ("name", "str"), ("active", "bool"),
                  ("ship_within_hours", "int"), ("pos", "big")],
    "prices": [("supplier_id", "str"), ("supplier_sku_id", "str"), ("tier", "str"), ("price", "money"),
               ("effective_from", "ts"), ("event_at", "ts"), ("pos", "big")],
    "merchant_tiers": [("supplier_uuid", "uuid"), ("merchant_id", "str"), ("tier", "str"), ("event_at", "ts"),
                       ("pos", "big")],
    "statements": [("statement_id", "str"), ("supplier_id", "str"), ("period_from", "ts"), ("period_to", "ts"),
                   ("issued_at", "ts"), ("lines", "int"), ("qty", "big"), ("total", "money"),
                   ("content_hash", "str"), ("position", "big"), ("pos", "big")],
    "statement_lines": [("statement_id", "str"), ("seq", "int"), ("allocation_id", "str"), ("platform", "str"),
                        ("shop_id", "str"), ("order_id", "str"), ("line_id", "str"), ("offer_id", "str"),
                        ("supplier_sku_id", "str"), ("product_id", "str"), ("qty", "int"), ("unit_price", "money"),
                        ("amount", "money"), ("price_tier", "str"), ("allocated_at", "ts"), ("tracked_at", "ts"),
                        ("carrier", "str"), ("tracking_no", "str")],
    "statement_apart": [("statement_id", "str"), ("section", "str"), ("seq", "int"), ("allocation_id", "str"),
                        ("platform", "str"), ("shop_id", "str"), ("order_id", "str"), ("line_id", "str"),
                        ("aftersale_id", "str"), ("kind", "str"), ("carrier", "str"), ("tracking_no", "str"),
                        ("reason", "str"), ("event_at", "ts")],
}

ARROW_SCHEMAS = {
    name: pa.schema([(col, _T[kind][1]) for col, kind in cols]) for name, cols in TABLES.items()
}


# Who runs the projection (one row): its pid and owner, and what serve's supervisor knows about
# the projection process (restarts since serve started, the last failure). Not a fact: rewritten
# by every runner at start, so it is created without a schema version change.
RUNNER_TABLE = ("CREATE TABLE IF NOT EXISTS facts.runner (id INTEGER PRIMARY KEY, pid INTEGER, owner VARCHAR, "
                "started_at TIMESTAMP, restarts INTEGER, last_error VARCHAR, last_error_at TIMESTAMP)")


def ddl() -> list[str]:
    out = ["CREATE SCHEMA IF NOT EXISTS facts",
           "CREATE TABLE IF NOT EXISTS facts.meta (key VARCHAR PRIMARY KEY, value VARCHAR)",
           "CREATE TABLE IF NOT EXISTS facts.position (id INTEGER PRIMARY KEY, pos BIGINT NOT NULL, "
           "events BIGINT NOT NULL, updated_at TIMESTAMP)", RUNNER_TABLE]
    for name, cols in TABLES.items():
        body = ", ".join(f"{col} {_T[kind][0]}" for col, kind in cols)
        out.append(f"CREATE TABLE IF NOT EXISTS facts.{name} ({body})")
    return out + VIEWS


_PERFORMANCE = """
SELECT {keys},
  count(*) AS allocations,
  count(*) FILTER (WHERE late IS NOT NULL) AS tracked,
  count(*) FILTER (WHERE late = false) AS on_time,
  count(*) FILTER (WHERE late = true) AS late,
  count(*) FILTER (WHERE stopped_as = 'intercepted') AS intercepted,
  CAST(coalesce(sum(loss_risks), 0) AS BIGINT) AS loss_risks,
  round(median(epoch(tracked_at - allocated_at) / 3600.0) FILTER (WHERE late IS NOT NULL), 2)
    AS median_hours_to_tracking,
  count(*) FILTER (WHERE stopped_as = 'cancelled') AS cancelled,
  count(*) FILTER (WHERE stopped_as = 'rejected') AS rejected
FROM allocations GROUP BY {keys}
"""

def priced(source: str, suppliers: str | None = None) -> str:
    """The RC1 price join over a CTE `al` with supplier_id, merchant_id, supplier_sku_id and
    allocated_at: the merchant's tier at allocation time, the tier price in force then, else the base
    price in force then; `al.*` with `settlement_price` and `price_tier`, one row for each row of `al`.

    Each tier and each price point is in force from its time until the next one of its key (NULLs
    skipped, as `max_by` skips them), so every line meets at most one of each: equality joins with a
    range filter, no aggregation per line. (Not ASOF: DuckDB 2.0 plans a small ASOF probe as a nested
    loop over every price.) `suppliers`, the SQL of the supplier ids `al` can hold (`$supplier`, or a
    subquery), keeps the tiers and prices read to theirs (issue 17: a statement for one supplier read
    and windowed every supplier's prices)."""
    only = "" if suppliers is None else f" AND supplier_id IN ({suppliers})"
    return f"""{source},
    tier_spans AS (
      SELECT supplier_id, merchant_id, tier, event_at AS since,
        lead(event_at) OVER (PARTITION BY supplier_id, merchant_id ORDER BY event_at) AS until
      FROM facts.tier_points WHERE tier IS NOT NULL AND event_at IS NOT NULL{only}),
    price_spans AS (
      SELECT supplier_id, supplier_sku_id, tier, price, effective_from AS since,
        lead(effective_from) OVER (PARTITION BY supplier_id, supplier_sku_id, tier ORDER BY effective_from) AS until
      FROM facts.price_points WHERE price IS NOT NULL AND effective_from IS NOT NULL{only}),
    tier_price_spans AS (  -- only tiers some merchant is in: a small side to build the join on
      SELECT * FROM price_spans WHERE tier IN (SELECT tier FROM tier_spans))
    SELECT al.*, coalesce(tp.price, bp.price) AS settlement_price,
      CASE WHEN tp.price IS NOT NULL THEN tp.tier ELSE '' END AS price_tier
    FROM al
    LEFT JOIN tier_spans ts ON ts.supplier_id = al.supplier_id AND ts.merchant_id = al.merchant_id
      AND ts.since <= al.allocated_at AND (ts.until IS NULL OR al.allocated_at < ts.until)
    LEFT JOIN tier_price_spans tp ON tp.supplier_id = al.supplier_id AND tp.supplier_sku_id = al.supplier_sku_id
      AND tp.tier = ts.tier AND tp.since <= al.allocated_at AND (tp.until IS NULL OR al.allocated_at < tp.until)
    LEFT JOIN price_spans bp ON bp.supplier_id = al.supplier_id AND bp.supplier_sku_id = al.supplier_sku_id
      AND bp.tier = '' AND bp.since <= al.allocated_at AND (bp.until IS NULL OR al.allocated_at < bp.until)"""



def return_amounts(returns: str, settled: str) -> str:
    """Rule RC6, one place: the CTEs `prices` (each returned SKU's settlement price, from `settled`,
    rows shaped as the `settlement_lines` view's) and `amounts` (per return of `returns`: the credit
    at those prices, its quantity, and the SKUs still unpriced). Used by the `returns` view and by
    a statement's credits (projections/statements.py)."""
    return f"""prices AS (
      SELECT allocation_id, offer_id, supplier_sku_id, any_value(settlement_price) AS price
      FROM {settled} GROUP BY allocation_id, offer_id, supplier_sku_id),
    amounts AS (
      SELECT r.return_id, sum(p.price * l.qty) AS amount, count(*) FILTER (WHERE p.price IS NULL) AS unpriced,
        sum(l.qty) AS qty, list(DISTINCT l.supplier_sku_id) FILTER (WHERE p.price IS NULL) AS unpriced_skus
      FROM {returns} r JOIN facts.return_lines l USING (return_id)
      LEFT JOIN prices p ON p.allocation_id = r.allocation_id AND p.offer_id = l.offer_id
        AND p.supplier_sku_id = l.supplier_sku_id
      GROUP BY r.return_id)"""

VIEWS = [
    # -- helpers (schema facts) --
    """CREATE OR REPLACE VIEW facts.order_key AS
    SELECT order_uuid, arg_min(platform, pos) AS platform, arg_min(shop_id, pos) AS shop_id,
           arg_min(order_id, pos) AS order_id
    FROM facts.order_keys GROUP BY order_uuid""",
    # A line's route is its latest routing fact; a line withheld by a manual cancellation (I5)
    # waits again (`unrouted`) once the merchant releases the order.
    """CREATE OR REPLACE VIEW facts.line_state AS
    WITH ev AS (
      SELECT order_uuid, line_id, pos, route, reason FROM facts.line_routes
      UNION ALL
      SELECT e.order_uuid, r.line_id, e.pos,
        CASE WHEN e.by_merchant THEN 'withheld' ELSE 'unrouted' END, NULL
      FROM facts.allocations_ended e
      JOIN facts.alloc_refs r ON r.order_uuid = e.order_uuid AND r.allocation_id = e.allocation_id),
    last AS (
      SELECT order_uuid, line_id, arg_max({'route': route, 'reason': reason, 'pos': pos}, pos) AS s
      FROM ev GROUP BY order_uuid, line_id),
    released AS (
      SELECT order_uuid, max(pos) AS pos FROM facts.order_flags WHERE flag = 'held' AND NOT value
      GROUP BY order_uuid)
    SELECT last.order_uuid, last.line_id,
      {'route': CASE WHEN last.s.route = 'withheld' AND released.pos > last.s.pos THEN 'unrouted'
                     ELSE last.s.route END,
       'reason': last.s.reason} AS s
    FROM last LEFT JOIN released USING (order_uuid)""",
    # Engine rule: a line refunded by a closed after-sale no longer needs a supplier.
    """CREATE OR REPLACE VIEW facts.refunded_lines AS
    SELECT DISTINCT l.order_uuid, l.line_id
    FROM facts.order_lines l
    JOIN facts.aftersales a ON a.order_uuid = l.order_uuid AND (a.line_id IS NULL OR a.line_id = l.line_id)
    JOIN facts.aftersales_closed c ON c.order_uuid = a.order_uuid AND c.aftersale_id = a.aftersale_id
    WHERE c.outcome = 'refunded'""",
    """CREATE OR REPLACE VIEW facts.order_state AS
    SELECT order_uuid,
      bool_or(flag = 'cancelled') AS cancelled,
      bool_or(flag = 'shipped') AS shipped,
      coalesce(arg_max(value, pos) FILTER (WHERE flag = 'held'), false) AS held,
      coalesce(arg_max(value, pos) FILTER (WHERE flag = 'review'), false) AS under_review
    FROM facts.order_flags GROUP BY order_uuid""",
    """CREATE OR REPLACE VIEW facts.allocation_state AS
    SELECT alloc_uuid,
      arg_max(status, pos) FILTER (WHERE status IS NOT NULL) AS status,
      arg_max({'kind': kind, 'at': event_at, 'reason': reason}, pos)
        FILTER (WHERE kind IN ('intercepted', 'cancelled', 'rejected')) AS stop,
      arg_max({'carrier': carrier, 'tracking_no': tracking_no, 'at': event_at, 'late': late}, pos)
        FILTER (WHERE kind = 'tracked' OR (kind = 'answered' AND outcome = 'too_late')) AS tracking,
      count(*) FILTER (WHERE kind = 'loss_risk') AS loss_risks,
      arg_max(outcome, pos) FILTER (WHERE kind = 'answered') AS intercept_answer,
      min(event_at) FILTER (WHERE kind = 'overdue') AS reminded_at
    FROM facts.allocation_events GROUP BY alloc_uuid""",
    """CREATE OR REPLACE VIEW facts.supplier_key AS
    SELECT supplier_uuid, arg_max(supplier_id, pos) AS supplier_id FROM facts.suppliers GROUP BY supplier_uuid""",
    """CREATE OR REPLACE VIEW facts.price_points AS
    SELECT supplier_id, supplier_sku_id, tier, effective_from, arg_max(price, pos) AS price
    FROM facts.prices GROUP BY supplier_id, supplier_sku_id, tier, effective_from""",
    """CREATE OR REPLACE VIEW facts.tier_points AS
    SELECT k.supplier_id, t.merchant_id, t.event_at, arg_max(t.tier, t.pos) AS tier
    FROM facts.merchant_tiers t JOIN facts.supplier_key k USING (supplier_uuid)
    GROUP BY k.supplier_id, t.merchant_id, t.event_at""",
    # -- the contract views (schema main) --
    """CREATE OR REPLACE VIEW order_lines AS
    SELECT k.platform, k.shop_id, k.order_id, l.line_id, l.product_id, l.sku_id, l.qty, l.unit_price,
      coalesce(s.s.route, 'unrouted') AS route_status,
      CASE WHEN s.s.route = 'unroutable' THEN s.s.reason END AS unroutable_reason,
      p.channel, l.line_no, l.merchant_code, rf.line_id IS NOT NULL AS refunded
    FROM facts.order_lines l
    JOIN facts.orders_placed p USING (order_uuid)
    JOIN facts.order_key k USING (order_uuid)
    LEFT JOIN facts.line_state s USING (order_uuid, line_id)
    LEFT JOIN facts.refunded_lines rf USING (order_uuid, line_id)""",
    """CREATE OR REPLACE VIEW orders AS
    WITH live AS (  -- lines with a part still on a live allocation (a bundle or split line, L4, RT12)
      SELECT DISTINCT r.order_uuid, r.line_id FROM facts.alloc_refs r
      JOIN facts.allocations a USING (allocation_id) LEFT JOIN facts.allocation_state st USING (alloc_uuid)
      WHERE coalesce(st.status, 'active') IN ('active', 'tracked', 'shipped')),
    lines AS (
      SELECT l.order_uuid, count(*) AS line_count, sum(l.qty * l.unit_price) AS amount,
             count(*) FILTER (WHERE rf.line_id IS NULL) AS needed_lines,
             count(*) FILTER (WHERE s.s.route = 'allocated' AND rf.line_id IS NULL) AS allocated_lines,
             count(*) FILTER (WHERE lv.line_id IS NOT NULL AND rf.line_id IS NULL) AS live_lines
      FROM facts.order_lines l LEFT JOIN facts.line_state s USING (order_uuid, line_id)
      LEFT JOIN facts.refunded_lines rf USING (order_uuid, line_id)
      LEFT JOIN live lv USING (order_uuid, line_id)
      GROUP BY l.order_uuid)
    SELECT k.platform, k.shop_id, k.order_id, p.channel, p.placed_at,
      CASE WHEN coalesce(f.cancelled, false) THEN 'cancelled'
           WHEN coalesce(f.shipped, false) THEN 'shipped'
           WHEN coalesce(f.under_review, false) OR coalesce(f.held, false) THEN 'held'
           WHEN coalesce(n.allocated_lines, 0) > 0 AND n.allocated_lines = n.needed_lines THEN 'allocated'
           WHEN coalesce(n.allocated_lines, 0) > 0 OR coalesce(n.live_lines, 0) > 0 THEN 'partially_allocated'
           ELSE 'unrouted' END AS status,
      coalesce(n.amount, 0) AS amount, p.merchant_id, coalesce(n.line_count, 0) AS line_count,
      coalesce(n.allocated_lines, 0) AS allocated_lines
    FROM facts.orders_placed p
    JOIN facts.order_key k USING (order_uuid)
    LEFT JOIN lines n USING (order_uuid)
    LEFT JOIN facts.order_state f USING (order_uuid)""",
    """CREATE OR REPLACE VIEW allocations AS
    SELECT a.allocation_id, a.platform, a.shop_id, a.order_id, a.supplier_id,
      coalesce(s.status, 'active') AS status, a.allocated_at, a.ship_by, l.link_version,
      s.tracking.carrier AS carrier, s.tracking.tracking_no AS tracking_no, s.tracking['at'] AS tracked_at,
      s.stop['at'] AS intercepted_at, s.stop.reason AS intercept_reason,
      a.channel, a.merchant_id, s.stop.kind AS stopped_as, s.tracking.late AS late,
      coalesce(s.loss_risks, 0) AS loss_risks, s.intercept_answer, a.routed_by, l.qty, s.reminded_at
    FROM facts.allocations a
    LEFT JOIN facts.allocation_state s USING (alloc_uuid)
    LEFT JOIN (SELECT allocation_id, max(link_version) AS link_version, sum(qty) AS qty
               FROM facts.allocation_lines GROUP BY allocation_id) l USING (allocation_id)""",
    """CREATE OR REPLACE VIEW allocation_lines AS
    SELECT l.allocation_id, l.line_id, l.offer_id, l.supplier_sku_id, l.qty, l.unit_cost, l.amount,
      a.supplier_id, l.product_id, l.link_version, l.seq, a.platform, a.shop_id, a.order_id, a.channel
    FROM facts.allocation_lines l JOIN facts.allocations a USING (allocation_id)""",
    "CREATE OR REPLACE VIEW supplier_performance AS " + _PERFORMANCE.format(keys="supplier_id"),
    "CREATE OR REPLACE VIEW supplier_performance_by_channel AS "
    + _PERFORMANCE.format(keys="supplier_id, channel"),
    """CREATE OR REPLACE VIEW loss_risks AS
    SELECT a.allocation_id, a.supplier_id, a.platform, a.shop_id, a.order_id, a.channel,
      e.carrier, e.tracking_no, e.reason, e.event_at AS recorded_at
    FROM facts.allocation_events e JOIN facts.allocations a USING (alloc_uuid)
    WHERE e.kind = 'loss_risk'""",
    """CREATE OR REPLACE VIEW post_shipment_aftersales AS
    WITH closed AS (
      SELECT order_uuid, aftersale_id, arg_max(outcome, pos) AS outcome, arg_max(closed_at, pos) AS closed_at
      FROM facts.aftersales_closed GROUP BY order_uuid, aftersale_id),
    shipped AS (
      SELECT r.order_uuid, r.line_id, a.allocation_id, a.supplier_id, a.tracked_at
      FROM facts.alloc_refs r JOIN allocations a USING (allocation_id) WHERE a.tracked_at IS NOT NULL)
    SELECT DISTINCT k.platform, k.shop_id, k.order_id, s.aftersale_id, s.kind, s.line_id, s.opened_at,
      c.closed_at, c.outcome, sh.allocation_id, sh.supplier_id, p.channel
    FROM facts.aftersales s
    JOIN facts.order_key k USING (order_uuid)
    LEFT JOIN facts.orders_placed p USING (order_uuid)
    LEFT JOIN closed c USING (order_uuid, aftersale_id)
    LEFT JOIN shipped sh ON sh.order_uuid = s.order_uuid AND (s.line_id IS NULL OR sh.line_id = s.line_id)
      AND sh.tracked_at <= s.opened_at
    WHERE s.post_shipment""",
    # Rule RC1: the settlement price in force when allocated; the merchant's tier price wins.
    "CREATE OR REPLACE VIEW settlement_lines AS " + priced("""
    WITH al AS (
      SELECT l.allocation_id, l.seq, l.line_id, l.offer_id, l.supplier_sku_id, l.product_id, l.qty,
        a.supplier_id, a.merchant_id, a.allocated_at, a.platform, a.shop_id, a.order_id, a.channel
      FROM facts.allocation_lines l JOIN facts.allocations a USING (allocation_id))"""),
    """CREATE OR REPLACE VIEW margins AS
    WITH live AS (
      SELECT s.*, ol.unit_price * ol.qty AS sale_line_amount, s.settlement_price * s.qty AS cost
      FROM settlement_lines s
      JOIN allocations a USING (allocation_id)
      JOIN order_lines ol ON ol.platform = s.platform AND ol.shop_id = s.shop_id
        AND ol.order_id = s.order_id AND ol.line_id = s.line_id
      WHERE a.status IN ('active', 'tracked', 'shipped')),
    shared AS (
      SELECT *, CASE
        WHEN count(cost) OVER w = count(*) OVER w AND sum(cost) OVER w > 0
          THEN sale_line_amount * cost / sum(cost) OVER w
        ELSE sale_line_amount / count(*) OVER w END AS sale_amount
      FROM live
      WINDOW w AS (PARTITION BY platform, shop_id, order_id, line_id))
    SELECT platform, shop_id, product_id, supplier_id, channel,
      count(DISTINCT allocation_id) AS allocations, sum(qty) AS units,
      CAST(sum(sale_amount) AS DECIMAL(18,2)) AS sale_amount,
      CAST(sum(cost) AS DECIMAL(18,2)) AS settlement_cost,
      CAST(sum(sale_amount) - sum(cost) AS DECIMAL(18,2)) AS margin,
      count(*) FILTER (WHERE cost IS NULL) AS unpriced_lines
    FROM shared GROUP BY platform, shop_id, product_id, supplier_id, channel""",
    """CREATE OR REPLACE VIEW statements AS
    SELECT s.statement_id, s.supplier_id, s.period_from, s.period_to, s.issued_at, s.lines, s.total, s.content_hash,
      CAST(coalesce(c.credits, 0) AS DECIMAL(18,4)) AS credits,
      CAST(s.total - coalesce(c.credits, 0) AS DECIMAL(18,4)) AS net_total, s.qty, s.position
    FROM facts.statements s
    LEFT JOIN (SELECT statement_id, sum(amount) AS credits FROM facts.statement_credits GROUP BY statement_id) c
      USING (statement_id)""",
    """CREATE OR REPLACE VIEW statement_credits AS SELECT * FROM facts.statement_credits""",
    # Rule RC6: every return to a supplier; an accepted one's credit at the price its lines were
    # settled at (NULL while a line is unpriced), and the statement that credited it.
    """CREATE OR REPLACE VIEW returns AS
    WITH ans AS (
      SELECT return_uuid, arg_max(outcome, pos) AS outcome, arg_max(reason, pos) AS reason,
        arg_max(answered_at, pos) AS answered_at
      FROM facts.return_answers GROUP BY return_uuid),
    """ + return_amounts("facts.returns", "settlement_lines") + """
    SELECT r.return_id, r.allocation_id, r.supplier_id, r.aftersale_id, coalesce(a.outcome, 'requested') AS status,
      r.requested_at, a.answered_at,
      CASE WHEN a.outcome = 'accepted' AND p.unpriced = 0 THEN CAST(p.amount AS DECIMAL(18,4)) END AS credit,
      r.platform, r.shop_id, r.order_id, a.reason, p.qty, c.statement_id AS credited_on, p.unpriced_skus
    FROM facts.returns r
    LEFT JOIN ans a USING (return_uuid)
    LEFT JOIN amounts p USING (return_id)
    LEFT JOIN facts.statement_credits c USING (return_id)""",
    """CREATE OR REPLACE VIEW statement_lines AS SELECT * FROM facts.statement_lines""",
    """CREATE OR REPLACE VIEW statement_apart AS SELECT * FROM facts.statement_apart""",
    # Rule L11: each shop SKU's latest link health; `missing` is a JSON list of the supplier SKUs
    # that cannot serve it ({supplier_id, offer_id, supplier_sku_id, why}), `sku_id` NULL = the product.
    """CREATE OR REPLACE VIEW link_health AS
    SELECT platform, shop_id, product_id, nullif(sku_id, '') AS sku_id,
      arg_max(status, pos) AS status, arg_max(event_at, pos) AS since, arg_max(missing, pos) AS missing
    FROM facts.link_health GROUP BY platform, shop_id, product_id, sku_id""",
    # Rule T4: allocations reminded for want of tracking by their ship-by time, still untracked or
    # re-routed for it; hours overdue until now, the tracking, or the intercept, and never less than
    # when the reminder went out (reflow's clock, driven by ticks, may be behind or ahead of now).
    """CREATE OR REPLACE VIEW overdue_allocations AS
    SELECT allocation_id, supplier_id, platform, shop_id, order_id, ship_by,
      round(epoch(greatest(coalesce(tracked_at, CASE WHEN status <> 'active' THEN intercepted_at END,
                                    CAST(current_timestamp AT TIME ZONE 'UTC' AS TIMESTAMP)), reminded_at) - ship_by)
            / 3600.0, 1) AS hours_overdue,
      reminded_at, coalesce(stopped_as = 'intercepted' AND intercept_reason = 'overdue', false) AS rerouted,
      status, channel
    FROM allocations
    WHERE reminded_at IS NOT NULL AND (status = 'active' OR (stopped_as = 'intercepted' AND intercept_reason = 'overdue'))""",
    # position and events first: the reliability harness compares those two with a rebuild.
    """CREATE OR REPLACE VIEW projection_status AS
    SELECT p.pos AS position, p.events, p.updated_at, r.pid AS runner_pid, r.owner AS runner,
      r.started_at AS runner_started_at, coalesce(r.restarts, 0) AS restarts, r.last_error, r.last_error_at
    FROM facts.position p LEFT JOIN facts.runner r ON r.id = 1""",
]
