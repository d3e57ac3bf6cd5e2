"""The ``reflow`` command line: thin over the composition root (``adapters.bootstrap``).

Global options (CONTRACT sections 5 and 6) come before the command, ``reflow --store URL serve``,
after it, ``reflow serve --store URL``, or between a group and its command, ``reflow link --store
URL show ...`` (``adapters.cli_options``; the last wins); before it, each also reads its
``REFLOW_*`` environment variable. A failure, a usage mistake included, exits non-zero with one
line on stderr, ``reflow: <reason>``, never a traceback or a usage box.

The commands live by area in ``cli_run`` (serve, schema, demo), ``cli_projections`` (statement,
rebuild) and ``cli_replay`` (prelink, whatif, audit, verify); ``cli_guard`` holds the checks that
let a refused command change nothing. This module holds the app, the global options, the order of
the commands and the entry point ``main``; a group given no command (``reflow``, ``reflow show``)
is one line too.
"""

from __future__ import annotations

from pathlib import Path

import typer

from adapters import cli_projections, cli_replay, cli_run
from adapters.bootstrap import DEFAULT_NATS_URL, Settings
from adapters.cli_common import fail
from adapters.cli_options import ReflowGroup
from adapters.store import DEFAULT_DATA_DIR

app = typer.Typer(
    name="reflow", cls=ReflowGroup, add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
    help="Event-sourced order routing for dropshipping merchants.",
)


@app.callback()
def options(
    ctx: typer.Context,
    store: str | None = typer.Option(
        None, "--store", envvar="REFLOW_STORE", metavar="URL",
        help="Event store: sqlite:///path (default <data-dir>/events.db) or postgresql://...",
    ),
    duckdb: Path | None = typer.Option(
        None, "--duckdb", envvar="REFLOW_DUCKDB", metavar="PATH",
        help="Analysts' DuckDB file (default <data-dir>/reflow.duckdb).",
    ),
    nats_url: str = typer.Option(
        DEFAULT_NATS_URL, "--nats", envvar="REFLOW_NATS_URL", metavar="URL", help="NATS server.",
    ),
    data_dir: Path = typer.Option(
        Path(DEFAULT_DATA_DIR), "--data-dir", metavar="DIR",
        help="Where the default store, DuckDB file and cipher key live.",
    ),
) -> None:
    # Only `serve` and `demo` may create a store (they say so themselves); the options may come
    # after the command too, and win there (adapters.cli_options).
    ctx.obj = Settings(store=store or None, duckdb=duckdb, nats_url=nats_url, data_dir=data_dir, create_store=False)


# The commands, in the order ``reflow --help`` lists them.
for command in (cli_run.serve, cli_run.schema, cli_projections.statement, cli_projections.rebuild, cli_run.demo,
                cli_replay.prelink, cli_replay.whatif, cli_replay.audit, cli_replay.verify):
    app.command()(command)

# The operator's commands (CONTRACT section 6): release, cancel, publish; `link set|show`, `show ...`.
from adapters import cli_operator, cli_show  # noqa: E402

for command in (cli_operator.release, cli_operator.cancel, cli_operator.publish):
    app.command()(command)
app.add_typer(cli_operator.link_app)
app.add_typer(cli_show.show_app)


def main() -> None:
    """Entry point: run the app; known failures become one line on stderr and exit code 1."""
    from adapters.serve import ServeError
    from engine.errors import DomainError

    try:
        app(standalone_mode=False)
    except (DomainError, ValueError, ServeError, OSError, ConnectionError) as exc:
        fail(str(exc) or type(exc).__name__)
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except typer.Abort:
        fail("aborted")
    except Exception as exc:  # noqa: BLE001 - usage errors (typer's own click), the projection's, the unexpected
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            message = exc.format_message().replace(": Value error, ", ": ")  # typer's pydantic says "Value error"
            if message == "Missing command." and getattr(exc, "ctx", None) is not None:  # `reflow`, `reflow show`
                names, at = [], exc.ctx
                while at.parent is not None:  # the root's name may be `python -m adapters.cli`
                    names.insert(0, at.info_name)
                    at = at.parent
                path = " ".join(["reflow", *names])
                message = f"missing command; {path} --help lists them"
            if not message:  # the help was printed already
                raise SystemExit(exc.exit_code) from None
            fail(message, code=exc.exit_code)
        from projections.runner import ProjectionRefused

        if isinstance(exc, ProjectionRefused):  # busy (another runner) or outdated: the option first
            fail(f"--duckdb {exc.path}: {exc.reason}")
        fail(f"{type(exc).__name__}: {exc}")  # unexpected: the class says what it was


if __name__ == "__main__":
    main()
