"""What the command modules share: a failure as one line on stderr, times read as China time,
the platform check, progress bars on stderr."""

from __future__ import annotations

import sys
from datetime import datetime


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
