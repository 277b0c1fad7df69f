"""Workflows: what happens after an event, step by step.

A workflow belongs to an event type; every save is a new version and one is current (as
templates are). Its steps, in order, are JSON objects with a ``type`` and an optional ``name``
(how later conditions refer to it: ``steps.<name>``) and ``if`` (a condition: the step is
skipped when it is false):

- ``send``: ``channel`` (or ``channels``) and ``template`` (default: the event type's). The
  message goes through the delivery path every event takes (preferences, quiet hours,
  throttles, budgets, failover). Later conditions see ``steps.<name>.status`` (the delivery's
  status: ``sent``, ``failed``, ``skipped``...; with several channels, each one's in
  ``steps.<name>.channels``) and, for in-app, ``steps.<name>.read``.
- ``delay``: ``duration`` (``"2s"``, ``"1h30m"``, or seconds), or ``until`` (an expression
  giving an ISO 8601 time, such as ``payload.appointment_at``) with an optional ``offset``
  (``"-1h"``), or ``at`` (``"09:00"``, the next such time of day in the user's time zone).
- ``branch``: ``condition``, then the ``then`` steps when it is true, else the ``else`` steps.
- ``throttle``: ``limit`` runs per ``window`` per user past this step; the run stops there
  beyond it.
- ``digest``: ``window``: the first run of a user waits the window out and collects the runs
  that reach the step meanwhile (they stop there); it goes on with ``payload.digest``
  (``count``, ``events``: their payloads).
- ``fetch``: ``url`` (a template over the context), ``method`` (GET or POST), ``timeout``
  (seconds), ``retries``, ``maxBytes``: the JSON answer is ``steps.<name>.data``.

Conditions are one expression in the template language, run in the template sandbox
(``backend.services.conditions``). A step's path is its place in the tree: ``"2"``,
``"1.then.0"``; each step runs once per run (``runs``, ``advance``).

An event type whose workflow is one ``send`` step, on the type's own channels with its own
template, without a condition (what every type became when workflows came), is sent the way it
always was: dispatch straight to deliveries, no run (:func:`is_plain`).

The package: ``definitions`` (durations, step paths, validation when a workflow is saved),
``service`` (saving versions, listing and cancelling runs, the dry run), ``runs`` (starting
runs, the release sweep), ``advance`` (taking runs through their steps, in batches) and
``steps`` (the steps that do more than compute an outcome: throttle, digest, fetch, delays).
"""

from backend.services.workflows.advance import (
    Advanced,
    Dispatch,
    DispatchTogether,
    advance,
    advance_many,
)
from backend.services.workflows.definitions import (
    KINDS,
    MAX_DEPTH,
    MAX_STEPS,
    RUN_STATUSES,
    check_steps,
    field_of,
    first_path,
    is_plain,
    list_at,
    next_path,
    parse_duration,
    plain_steps,
    send_payload,
    split_path,
    step_at,
    walk,
)
from backend.services.workflows.runs import (
    cancel_for_event,
    publish_advances,
    release_due_runs,
    run_id_of,
    start_runs,
    starts_runs,
    step_event_id,
    step_event_ids,
)
from backend.services.workflows.service import (
    MAX_CANCEL_KEY,
    Preview,
    PreviewStep,
    RunFilter,
    WorkflowData,
    cancel_runs,
    current_workflow,
    get_run,
    keep_plain_workflow,
    list_runs,
    preview_profile,
    preview_workflow,
    save_workflow,
    version_numbers,
    workflow_versions,
)
from backend.services.workflows.steps import (
    next_time_of_day,
)

__all__ = [
    "KINDS",
    "MAX_CANCEL_KEY",
    "MAX_DEPTH",
    "MAX_STEPS",
    "RUN_STATUSES",
    "Advanced",
    "Dispatch",
    "DispatchTogether",
    "Preview",
    "PreviewStep",
    "RunFilter",
    "WorkflowData",
    "advance",
    "advance_many",
    "cancel_for_event",
    "cancel_runs",
    "check_steps",
    "current_workflow",
    "field_of",
    "first_path",
    "get_run",
    "is_plain",
    "keep_plain_workflow",
    "list_at",
    "list_runs",
    "next_path",
    "next_time_of_day",
    "parse_duration",
    "plain_steps",
    "preview_profile",
    "preview_workflow",
    "publish_advances",
    "release_due_runs",
    "run_id_of",
    "save_workflow",
    "send_payload",
    "split_path",
    "start_runs",
    "starts_runs",
    "step_at",
    "step_event_id",
    "step_event_ids",
    "version_numbers",
    "walk",
    "workflow_versions",
]
