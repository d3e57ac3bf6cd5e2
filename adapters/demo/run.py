"""``run_demo``: a fresh data directory, a private nats-server, the stages through ``reflow
serve`` (``harness``), then the report (``report``)."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.demo.day import DemoDay
from adapters.demo.harness import DemoError, run_stages
from adapters.demo.report import Report, finish, render
from adapters.demo.scenario import DAYS_AGO, DEFAULT_ORDERS, DEFAULT_SEED, MERCHANT, MERCHANT_NAME, SHOPS, SUPPLIERS

UTC = UTC


def run_demo(*, seed: int = DEFAULT_SEED, orders: int = DEFAULT_ORDERS, data_dir: Path | None = None,
             store: str | None = None, duckdb_path: Path | None = None, day: date | None = None,
             console: Any = None, batch: int = 256, routers: int = 0) -> Report:
    """Run the whole demo and print its report; returns the report as data. ``routers``: that many
    ``reflow serve --partitions`` processes on a three-node NATS cluster instead of one serve
    (issue 18; the store must be PostgreSQL)."""
    from rich.console import Console

    from adapters.bootstrap import Settings, open_app
    from adapters.natsserver import NatsServer

    console = console or Console()
    started = time.monotonic()
    plan = DemoDay(seed, orders, day)
    if plan.start + timedelta(days=DAYS_AGO) > datetime.now(UTC):
        # The plan's times (orders, trackings, returns) end before that; the morning and the
        # messages without a time of their own take the broker's time, now. A later day would
        # mix the two, and the decisions would depend on the hour the demo runs.
        raise DemoError(f"day: at least {DAYS_AGO} days back in China time (its trackings and returns "
                        f"must lie in the past), got {plan.day}")
    if data_dir is None:
        data_dir = Path(tempfile.mkdtemp(prefix="reflow-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(store=store, duckdb=duckdb_path, data_dir=data_dir)
    app = open_app(settings)
    try:
        held = app.recorder.max_notification_id() or 0
        if held:
            where = "given with --store" if store else f"in {data_dir}"
            raise DemoError(f"the event store {where} already holds {held} events; the demo needs an empty "
                            "one (give --data-dir a new directory, or --store an empty schema)")
        if settings.duckdb_path.exists():
            raise DemoError(f"{settings.duckdb_path} exists already; give --data-dir a new directory")
        console.print(f"[bold]reflow demo[/]: {orders:,} orders on {plan.day} (seed {seed}) of {MERCHANT_NAME}\n"
                      f"({MERCHANT}): {len(SHOPS)} shops, {len(SUPPLIERS)} suppliers", highlight=False)
        console.print(f"data: {data_dir}", highlight=False, soft_wrap=True)
        report = Report(day=plan.day, data_dir=data_dir, duckdb_path=settings.duckdb_path)
        nats_dir = data_dir / "nats"
        if routers:
            from adapters.natscluster import NatsCluster
            from adapters.routerprocs import Routers

            console.print("starting a NATS cluster of 3 nodes on loopback ...", highlight=False)
            with NatsCluster(3, nats_dir) as cluster:
                settings = Settings(store=store, duckdb=duckdb_path, nats_url=cluster.url, data_dir=data_dir)
                group = Routers(routers, settings, data_dir / "logs", replicas=3, batch=batch, clock="messages")
                asyncio.run(run_stages(plan, settings, app, report, console, batch, routers=group))
        else:
            with NatsServer(store_dir=nats_dir, log_file=data_dir / "nats-server.log") as server:
                settings = Settings(store=store, duckdb=duckdb_path, nats_url=server.url, data_dir=data_dir)
                asyncio.run(run_stages(plan, settings, app, report, console, batch))
        shutil.rmtree(nats_dir, ignore_errors=True)
        finish(plan, app, settings, report, console)
    finally:
        app.close()
    report.elapsed = time.monotonic() - started
    render(report, console)
    return report

