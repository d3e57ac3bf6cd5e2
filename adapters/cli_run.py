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
    clock: str = typer.Option(
        "wall", "--clock", metavar="wall|messages",
        help="How time passes for deadlines (RT13 new day, M2 expiry, T4 ship-by): wall = serve ticks every 10 s "
             "(to the last message's broker time while catching up, then to now); messages = only "
             "reflow.in.clock.tick moves time (replaying old traffic, a producer driving its own timeline)."),
    partitions: int = typer.Option(
        0, "--partitions", min=0, max=64, metavar="N",
        help="Run as one of several routers on a REFLOW_IN split into N partitions by shop (README "
             "'Scaling out'); every router of one stream gives the same N. 0: serve the whole stream."),
    partition: list[str] = typer.Option(
        [], "--partition", metavar="K",
        help="A lane this router takes first and keeps: 0..N-1 or general (repeatable). It takes "
             "others only when their router is gone."),
    replicas: int = typer.Option(
        1, "--replicas", min=1, max=5, help="Copies of each stream (and of the leases) reflow makes on a NATS cluster."),
) -> None:
    """Consume REFLOW_IN, route, publish REFLOW_OUT, keep projections current, until SIGTERM/SIGINT."""
    from adapters.cli_guard import Debris, check_serve
    from adapters.partitions import lane_name
    from adapters.serve import serve as run_serve

    if clock not in ("wall", "messages"):
        raise ValueError(f"--clock: must be wall or messages, got {clock!r}")
    if partition and not partitions:
        raise ValueError("--partition: needs --partitions N (the number of partitions of REFLOW_IN)")
    prefer = [lane_name(k, partitions) for k in partition]
    if partitions and not (ctx.obj.store or "").lower().startswith(("postgresql:", "postgres:")):
        raise ValueError("--partitions: the routers share one PostgreSQL store; give --store postgresql://...")
    settings: Settings = replace(ctx.obj, create_store=True)  # serve and demo alone may create a store
    check_serve(settings)  # --duckdb, the store, NATS: refused before the store is created
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s reflow %(levelname)s %(message)s")
    with Debris(settings).removed_if_refused():  # a store it made, refused with no event in it: removed
        server = asyncio.run(run_serve(settings, batch=batch, ack_wait=ack_wait, clock=clock, tune_gc=True,
                                       partitions=partitions, prefer=prefer, replicas=replicas))
    logging.getLogger("reflow.serve").info(
        "stopped: %d applied, %d dead-lettered, %d published, %d write(s) retried after a concurrent one",
        server.applied, server.dead, server.published, server.app.conflicts)


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
    routers: int = typer.Option(
        0, "--routers", min=0, max=8, metavar="N",
        help="Run the day through N routers (reflow serve --partitions N, one process each) on a "
             "three-node NATS cluster on loopback; needs --store postgresql://... (0: one serve)."),
) -> None:
    """The whole system on a generated day of a dropshipping merchant, ending with a report.

    Starts a private NATS server and `reflow serve`, publishes the day as
    shops and suppliers would, then prints orders by status, allocations and
    performance per supplier, one statement, and the DuckDB file with queries."""
    import tempfile

    from adapters.cli_common import given
    from adapters.cli_guard import Debris, check_demo
    from adapters.demo import QUICK_ORDERS, run_demo

    settings: Settings = ctx.obj
    # Given before the command (or by REFLOW_*), or after it (adapters.cli_options; demo's own --data-dir)
    if data_dir is None and given(ctx, "data_dir"):
        data_dir = settings.data_dir
    store = settings.store if given(ctx, "store") else None
    duckdb = settings.duckdb if given(ctx, "duckdb") else None
    if routers and not (store or "").lower().startswith(("postgresql:", "postgres:")):
        raise ValueError("--routers: the routers share one PostgreSQL store; give --store postgresql://...")
    check_demo(data_dir, store, duckdb)  # each refusal names its option, before anything is made
    made = () if data_dir is not None else (data_dir := Path(tempfile.mkdtemp(prefix="reflow-demo-")),)
    debris = Debris(Settings(store=store, duckdb=duckdb, data_dir=data_dir), data_dir / "nats",
                    data_dir / "nats-server.log", made=made)
    with debris.removed_if_refused():  # refused before its store held an event: nothing left behind
        run_demo(seed=seed, orders=QUICK_ORDERS if quick else orders, data_dir=data_dir, store=store,
                 duckdb_path=duckdb, routers=routers)
