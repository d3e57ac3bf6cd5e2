"""Pull pre-link orders (rule L10) and its dry run (rule A1).

The candidates are the product's `Backlog` entries waiting for a link (`no_link`) and placed within
the window: one aggregate read, never a scan of the history. They are routed by the engine's own
`Reflow.pull_prelink` in small units of work (`chunk` orders each), so a pull running beside
`reflow serve` collides with live routing only over a few orders at a time and a collision retries
only those (the engine re-reads them and skips any that were routed, cancelled or shipped since).
A chunk that keeps colliding is pulled again order by order. A second pull finds nothing left.

A dry run routes every candidate in one unit of work that is never stored: each order sees the
stock the earlier ones would have taken, exactly as the real pull would.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from engine import ids
from engine.backlog import Backlog
from engine.commands import PREPULL_WINDOW_DAYS
from engine.errors import Conflict, InvalidCommand, NotFound
from engine.linking import Link

CHUNK = 32


@dataclass
class PullReport:
    platform: str
    shop_id: str
    product_id: str
    window_days: int
    at: datetime
    dry_run: bool
    candidates: int = 0
    outside_window: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def routed(self) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["result"] == "routed"]

    @property
    def skipped(self) -> Counter:
        return Counter(r["reason"] for r in self.rows if r["result"] == "skipped")

    @property
    def allocated(self) -> int:
        return sum(1 for r in self.routed if r["allocations"])

    @property
    def cost(self) -> Decimal:
        return sum((a["cost"] or Decimal(0) for r in self.routed for a in r["allocations"]), Decimal(0))


def candidates(app: Any, platform: str, shop_id: str, product_id: str, window_days: int,
               at: datetime) -> tuple[list[str], int]:
    """Orders of the product waiting for a link, oldest first, and how many fall outside the window."""
    backlog = app.load(Backlog, ids.backlog_id(platform, shop_id, product_id))
    if backlog is None:
        return [], 0
    since = at - timedelta(days=window_days)
    waiting = sorted((e for e in backlog.waiting.values() if e.reason == "no_link"),
                     key=lambda e: (e.placed_at, e.order_id))
    inside = [e.order_id for e in waiting if e.placed_at >= since]
    return inside, len(waiting) - len(inside)


def pull(app: Any, platform: str, shop_id: str, product_id: str, *,
         window_days: int = PREPULL_WINDOW_DAYS, at: datetime | None = None, dry_run: bool = False,
         chunk: int = CHUNK, progress: Callable[[int, int], None] | None = None) -> PullReport:
    """Route (or, dry, show) the product's pre-link orders; `progress(done, total)` per chunk."""
    at = at or datetime.now(UTC)
    if window_days < 1:
        raise InvalidCommand(f"--window-days: must be >= 1, got {window_days}", "L10")
    link = app.load(Link, ids.link_id(platform, shop_id, product_id))
    if link is None or not link.linked:
        raise NotFound(f"--product: {platform}/{shop_id}/{product_id} has no link to pull against "
                       "(link it first)", "L10")
    report = PullReport(platform, shop_id, product_id, window_days, at, dry_run)
    todo, report.outside_window = candidates(app, platform, shop_id, product_id, window_days, at)
    report.candidates = len(todo)
    if dry_run:
        report.rows = app.pull_prelink(platform, shop_id, product_id, window_days, at=at, dry_run=True,
                                       only=todo)
        if progress:
            progress(len(todo), len(todo))
        return report
    for start in range(0, len(todo), chunk):
        part = todo[start:start + chunk]
        try:
            report.rows += app.pull_prelink(platform, shop_id, product_id, window_days, at=at, only=part)
        except Conflict:
            for order_id in part:  # live traffic kept taking the same stock: one order at a time
                report.rows += app.pull_prelink(platform, shop_id, product_id, window_days, at=at,
                                                only=[order_id])
        if progress:
            progress(start + len(part), len(todo))
    return report
