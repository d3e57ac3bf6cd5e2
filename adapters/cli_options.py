"""Where reflow keeps things, given after a command's name as well as before it (CONTRACT sections 5
and 6): ``reflow audit ... --store URL`` is ``reflow --store URL audit ...``.

``ReflowGroup`` (the app's click group class, ``adapters.cli``) adds ``--store``, ``--duckdb``,
``--nats`` and ``--data-dir`` to every command it holds, sub-groups and their commands included,
unless a command has an option of that name already (``demo --data-dir``), so each command's
``--help`` lists them and a command added later gets them too. Given after the command (or between
a group and its command: ``reflow link --store URL set``), one of them replaces that field of the
command's settings (``ctx.obj``, built by the app's callback from the options before the command):
the one given last wins (after the command, then between, then before). These read no environment variable (the
options before the command do), so ``REFLOW_STORE`` never beats a ``--store`` typed before it.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

PANEL = "Store and files (also accepted before the command; given here, they win)"


def _where(
    store: str | None = typer.Option(
        None, "--store", metavar="URL",
        help="Event store: sqlite:///path (default <data-dir>/events.db) or postgresql://...; env REFLOW_STORE."),
    duckdb: Path | None = typer.Option(
        None, "--duckdb", metavar="PATH",
        help="Analysts' DuckDB file (default <data-dir>/reflow.duckdb); env REFLOW_DUCKDB."),
    nats_url: str | None = typer.Option(
        None, "--nats", metavar="URL", help="NATS server; env REFLOW_NATS_URL."),
    data_dir: Path | None = typer.Option(
        None, "--data-dir", metavar="DIR", help="Where the default store, DuckDB file and cipher key live."),
) -> None:
    """Only a carrier of the options' definitions."""


def _given_after(ctx: Any, param: Any, value: Any) -> Any:
    """The option's value given after the command replaces that field of the command's settings."""
    if value is None or value == "" or getattr(ctx, "resilient_parsing", False):
        return value
    source = ctx.get_parameter_source(param.name)
    if source is None or source.name != "COMMANDLINE":
        return value
    if ctx.obj is not None and hasattr(ctx.obj, param.name):
        converted = Path(str(value)) if param.name in ("duckdb", "data_dir") else str(value)
        ctx.obj = replace(ctx.obj, **{param.name: converted})
    return value


def _options() -> list[Any]:
    holder = typer.Typer(add_completion=False)
    holder.command()(_where)
    params = typer.main.get_command(holder).params
    for param in params:
        param.expose_value = False  # the command's function never sees them: they go to ctx.obj
        param.callback = _given_after
        param.rich_help_panel = PANEL
    return params


def add_where_options(group: Any) -> None:
    """Give every command of ``group``, its sub-groups and their commands the four options: a
    sub-group's (``reflow link --store URL set``) go to its commands' settings, which theirs replace."""
    for command in group.commands.values():
        if isinstance(command, TyperGroup):
            add_where_options(command)
        taken = {opt for p in command.params for opt in getattr(p, "opts", ())}
        command.params.extend(p for p in _options() if not taken & set(p.opts))


class ReflowGroup(TyperGroup):
    """The app's group: its commands take the store and file options after their name too."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        add_where_options(self)
