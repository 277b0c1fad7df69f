"""RedBeat's scheduler step."""

from __future__ import annotations

from typing import Any

from redbeat import RedBeatScheduler


def maybe_due_kwargs(scheduler: RedBeatScheduler) -> dict[str, Any]:
    """The keyword arguments RedBeat's ``tick`` gives ``Scheduler.maybe_due`` for an entry
    (the producer that publishes a due entry's task), for a ``tick`` of Herald's own.

    Written against celery-redbeat 2.4: ``RedBeatScheduler._maybe_due_kwargs``, a cached
    property (``{"producer": self.producer}``) that bridges Celery's renaming of ``publisher``.
    """
    kwargs: dict[str, Any] = scheduler._maybe_due_kwargs
    return kwargs
