"""Time zones and cron expressions as Herald accepts them, for campaigns, digests and quiet
hours: checked when saved, so that a stored schedule can always be computed."""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, available_timezones

from croniter import croniter
from croniter.croniter import CroniterError

from backend.errors import ValidationError

log = logging.getLogger(__name__)

# Files in the zone database that name no IANA zone: the machine's own zone, a placeholder.
_NOT_ZONES = frozenset({"localtime", "Factory", "posixrules"})


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def check_zone(name: str, *, field: str) -> ZoneInfo:
    """The IANA zone ``name`` (e.g. Europe/Moscow), or a ValidationError on ``field``.

    ``localtime`` and paths are refused: they name whatever the server's clock is set to."""
    if name not in _zone_names():
        raise ValidationError(
            f"'{name[:100]}' is not a time zone (IANA names only, such as Europe/Berlin)",
            field=field,
        )
    return ZoneInfo(name)


def next_cron_time(cron: str, after: datetime) -> datetime | None:
    """The first time ``cron`` matches strictly after ``after`` (in ``after``'s zone), or
    None when it never does (``0 0 30 2 *``: February has no 30th)."""
    try:
        nxt: datetime = croniter(cron, after).get_next(datetime)
    except CroniterError:
        return None
    return nxt


def check_cron(cron: str, *, field: str, zone: tzinfo = UTC, now: datetime | None = None) -> str:
    """A 5-field cron expression that occurs, or a ValidationError on ``field``."""
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ValidationError(
            f"'{cron[:100]}' is not a 5-field cron expression (minute hour day month weekday)",
            field=field,
        )
    if next_cron_time(cron, (now or datetime.now(UTC)).astimezone(zone)) is None:
        raise ValidationError(
            f"'{cron}' never occurs: no date matches its day and month", field=field
        )
    return cron
