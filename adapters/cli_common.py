"""What the command modules share: a failure as one line on stderr, times read as China time,
the platform check, progress bars on stderr, and rows printed as a table that keeps to the
terminal's width (80 columns when not a terminal) or, for scripts, as csv or json on stdout
(``--format``), and a command to copy in lines that fit."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Collection, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


FORMAT = typer.Option(Format.table, "--format", help="table (fits the terminal), csv or json (every column).")


def console(*, stderr: bool = False):
    """A rich console that prints data as it is: no markup (ids may hold brackets), no highlighting."""
    from rich.console import Console

    return Console(highlight=False, markup=False, stderr=stderr)


def table(*headers: str, ids: Collection[str] = (), right: Collection[str] = ()):
    """A rich table that keeps to the console's width: no outer edge, one rule under the header.
    Cells wrap at spaces, folding only a word wider than its column; the `ids` columns never wrap
    or shrink (the others give way: keep them few and short enough to fit together); the `right`
    columns (numbers) are right-aligned."""
    from rich import box
    from rich.table import Table

    out = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    for header in headers:
        out.add_column(header, overflow="fold", no_wrap=header in ids,
                       justify="right" if header in right else "left")
    return out


def shell_command(words: Sequence[str], width: int) -> str:
    """A command to copy, indented two spaces, in lines of at most `width` where its words allow:
    broken with ` \\` before an option (an option and its value together when they fit), the
    lines after indented four; a word is never split. Words are quoted for a POSIX shell."""
    import shlex

    groups: list[list[str]] = []
    for word in map(shlex.quote, words):
        if groups and not word.startswith("-") and groups[-1][-1].startswith("-") and len(groups[-1]) == 1:
            groups[-1].append(word)
        else:
            groups.append([word])
    lines: list[str] = []
    line = ""
    for group in groups:
        for part in [" ".join(group)] if len(" ".join(group)) + 6 <= width else group:
            if line and len(line) + 1 + len(part) + 2 > width:
                lines.append(line + " \\")
                line = ""
            line = f"{line} {part}" if line else ("  " if not lines else "    ") + part
    return "\n".join([*lines, line])


def text(value: Any) -> str:
    """A value as a csv or table cell: nothing for None, times in China time with their offset."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return _china(value).isoformat()
    return str(value)


def json_value(value: Any) -> str:
    """`json.dumps`'s fallback: times as `text` gives them, money (Decimal) as an exact string."""
    return text(value)


def write_rows(fmt: Format, rows: Sequence[dict[str, Any]], names: Sequence[str]) -> None:
    """Rows on stdout, each with the fields `names`: csv with a header line, or a json list."""
    if fmt is Format.csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(names)
        out.writerows([text(r.get(n)) for n in names] for r in rows)
    else:
        write_json([{n: r.get(n) for n in names} for r in rows])


def write_json(data: Any) -> None:
    typer.echo(json.dumps(data, default=json_value, ensure_ascii=False, indent=1))


def _china(value: datetime) -> datetime:
    from engine.servicelevel import LOCAL

    return value.astimezone(LOCAL) if value.tzinfo else value


def parse_when(field: str, text: str, *, end_of_day: bool) -> datetime:
    """An RFC 3339 time; without an offset it is China time; a date alone is that whole day."""
    from datetime import date, datetime, time

    from engine.servicelevel import LOCAL

    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime.combine(day, time.max if end_of_day else time.min, LOCAL)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{field}: {text!r} is not a date (YYYY-MM-DD) or a time "
                         "(YYYY-MM-DDTHH:MM[:SS][+08:00])") from None
    return value if value.tzinfo else value.replace(tzinfo=LOCAL)


def check_platform(platform: str) -> None:
    from engine.values import PLATFORMS

    if platform not in PLATFORMS:
        raise ValueError(f"--platform: {platform!r} is not one of {', '.join(PLATFORMS)}")


def check_duckdb_dir(path: Path) -> None:
    """Refuse, before anything is made, a ``--duckdb`` file in a directory that does not exist:
    reflow creates no directory for it (only ``serve`` and ``demo`` make their data directory)."""
    folder = path.parent
    if not folder.is_dir():
        why = "is not a directory" if folder.exists() else "does not exist"
        raise ValueError(f"--duckdb {path}: the directory {folder} {why} (reflow creates none)")


def given(ctx: Any, name: str) -> bool:
    """Was the global option ``name`` (store, duckdb, nats_url, data_dir) given: before the command
    or by its ``REFLOW_*`` variable, between a group and its command, or after the command?"""
    while ctx is not None:
        try:
            source = ctx.get_parameter_source(name)
        except (AttributeError, KeyError):
            source = None
        if source is not None and source.name != "DEFAULT":
            return True
        ctx = ctx.parent
    return False


def progress_bar(label: str):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(stderr=True)
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, disable=not console.is_terminal)


def progress_callback(bar, task):
    return lambda done, total: bar.update(task, completed=done, total=total)


def fail(reason: str, code: int = 1) -> None:
    from adapters.messages import one_line

    print(f"reflow: {one_line(reason, limit=500)}", file=sys.stderr)
    raise SystemExit(code)
