"""``reflow serve``, ``reflow schema`` and ``reflow demo``: running the system (registered in
``adapters.cli``)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path

import typer

from adapters.bootstrap import Settings


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
    settings: Settings = replace(ctx.obj, create_store=True)  # serve and demo alone may create a store
    server = asyncio.run(run_serve(settings, batch=batch, ack_wait=ack_wait))
    logging.getLogger("reflow.serve").info(
        "stopped: %d applied, %d dead-lettered, %d published",
        server.applied, server.dead, server.publisher.published)


def schema() -> None:
    """Print the JSON Schema of every inbound message (subject -> schema)."""
    from adapters.messages import json_schemas

    typer.echo(json.dumps(json_schemas(), ensure_ascii=False, indent=2))


def demo(
    ctx: typer.Context,
    orders: int = typer.Option(3000, "--orders", min=50, max=200_000, help="Orders in the generated day."),
    quick: bool = typer.Option(False, "--quick", help="A small day of 300 orders (a first look; the tests)."),
    seed: int = typer.Option(2024, "--seed", help="The same seed gives the same day and the same tables."),
    data_dir: Path | None = typer.Option(
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
    # Given before the command (or by REFLOW_*), or after it (adapters.cli_options; demo's own --data-dir)
    sources = {name: (ctx.parent.get_parameter_source(name), ctx.get_parameter_source(name))
               for name in ("store", "duckdb", "data_dir")}
    given = {name: any(s is not None and s.name != "DEFAULT" for s in pair) for name, pair in sources.items()}
    if data_dir is None and given["data_dir"]:
        data_dir = settings.data_dir
    run_demo(seed=seed, orders=QUICK_ORDERS if quick else orders, data_dir=data_dir,
             store=settings.store if given["store"] else None,
             duckdb_path=settings.duckdb if given["duckdb"] else None)
