"""Ship-by times (rule T3): allocated before 16:00 local time ships the same day; every allocation
ships within 48 h (24 h for suppliers enrolled with 24 h)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone

LOCAL = timezone(timedelta(hours=8), "CST")  # China Standard Time, no daylight saving
CUTOFF = time(16, 0)


def ship_by(allocated_at: datetime, ship_within_hours: int = 48) -> datetime:
    local = allocated_at.astimezone(LOCAL)
    deadline = allocated_at + timedelta(hours=ship_within_hours)
    if local.timetz().replace(tzinfo=None) < CUTOFF:
        end_of_day = datetime.combine(local.date(), time(23, 59, 59), LOCAL)
        deadline = min(deadline, end_of_day)
    return deadline.astimezone(UTC)


def is_late(tracked_at: datetime, ship_by_at: datetime) -> bool:
    return tracked_at > ship_by_at


def china_day(at: datetime) -> date:
    """The China-time day of a moment (RT13, RC4)."""
    return at.astimezone(LOCAL).date()
