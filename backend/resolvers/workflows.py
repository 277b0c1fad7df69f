"""Workflow resolvers. Writing, reading and dry-running workflows, and reading runs: admins
and managers. Cancelling runs by key: also services (the billing service that saw the
payment stops its reminders)."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.tools import create_type

from backend.auth import MANAGE_TEMPLATES, Principal, Role
from backend.resolvers.units import mutate, read
from backend.schema.common import JSON
from backend.schema.context import Context
from backend.schema.workflows import (
    CancelWorkflowRunsResult,
    Workflow,
    WorkflowPreview,
    WorkflowPreviewResult,
    WorkflowPreviewStep,
    WorkflowResult,
    WorkflowRun,
    WorkflowRunConnection,
    WorkflowRunFilter,
    WorkflowRunsCancelled,
)
from backend.services import workflows as workflow_service

Info = strawberry.Info[Context, Any]

MANAGE_WORKFLOWS = MANAGE_TEMPLATES
CANCEL_RUNS = frozenset({Role.ADMIN, Role.MANAGER, Role.SERVICE})


@strawberry.field(description="An event type's current workflow; null when it has none.")
async def workflow(info: Info, event_type: str) -> Workflow | None:
    async def work(session: AsyncSession, _: Principal) -> Workflow | None:
        row = await workflow_service.current_workflow(session, event_type=event_type)
        return Workflow.from_model(row) if row is not None else None

    return await read(info, MANAGE_WORKFLOWS, work)


@strawberry.field(description="Every version of an event type's workflow, newest first.")
async def workflow_versions(info: Info, event_type: str) -> list[Workflow]:
    async def work(session: AsyncSession, _: Principal) -> list[Workflow]:
        rows = await workflow_service.workflow_versions(session, event_type=event_type)
        return [Workflow.from_model(r) for r in rows]

    return await read(info, MANAGE_WORKFLOWS, work)


@strawberry.field(description="Workflow runs, newest first (`first` 1 to 100).")
async def workflow_runs(
    info: Info,
    filter: WorkflowRunFilter | None = None,
    first: int = 50,
    after: str | None = None,
) -> WorkflowRunConnection:
    given = filter or WorkflowRunFilter()
    wanted = workflow_service.RunFilter(
        event_type=given.event_type,
        user_id=str(given.user_id) if given.user_id is not None else None,
        status=given.status,
        cancel_key=given.cancel_key,
        event_id=str(given.event_id) if given.event_id is not None else None,
    )

    async def work(session: AsyncSession, _: Principal) -> WorkflowRunConnection:
        page = await workflow_service.list_runs(session, filter=wanted, first=first, after=after)
        versions = await workflow_service.version_numbers(
            session, runs=[run for _, run in page.items]
        )
        return WorkflowRunConnection.from_page(
            page, lambda run: WorkflowRun.from_model(run, version=versions.get(run.workflow_id))
        )

    return await read(info, MANAGE_WORKFLOWS, work)


@strawberry.field(description="A workflow run with its step timeline; null when there is none.")
async def workflow_run(info: Info, id: strawberry.ID) -> WorkflowRun | None:
    async def work(session: AsyncSession, _: Principal) -> WorkflowRun | None:
        found = await workflow_service.get_run(session, run_id=str(id))
        if found is None:
            return None
        run, steps, version = found
        return WorkflowRun.from_model(run, steps, version)

    return await read(info, MANAGE_WORKFLOWS, work)


@strawberry.mutation(
    description=(
        "Save an event type's workflow as its new current version (runs already started keep "
        "theirs). `steps`: a JSON list of steps, each `{type, name?, if?, ...}`: `send` "
        "(`channel` or `channels`, `template`), `delay` (`duration`, or `until` with "
        "`offset`, or `at`), `branch` (`condition`, `then`, `else`), `throttle` (`limit`, "
        "`window`), `digest` (`window`), `fetch` (`url`, `method`, `timeout`, `retries`, "
        "`maxBytes`). `cancels`: event types whose runs an event of this type cancels. A bad "
        "step is a WorkflowStepError naming the step and field. Admins, managers."
    )
)
async def save_workflow(
    info: Info, event_type: str, steps: JSON, cancels: list[str] | None = None
) -> WorkflowResult:
    data = workflow_service.WorkflowData(
        event_type=event_type, steps=steps, cancels=tuple(cancels or ())
    )

    async def work(session: AsyncSession, actor: Principal) -> Workflow:
        row = await workflow_service.save_workflow(session, actor=actor, data=data)
        await session.refresh(row)
        return Workflow.from_model(row)

    return await mutate(info, MANAGE_WORKFLOWS, work)  # type: ignore[return-value]


@strawberry.mutation(
    description=(
        "A dry run of the event type's workflow (or of unsaved `steps`) for one event and "
        "user: which steps would run, each condition's value and each rendered message. "
        "Nothing is sent or stored; sends are taken as delivered and unread, fetches as not "
        "answered. The user is the stored recipient `userId`, else a sample user. Admins, "
        "managers."
    )
)
async def preview_workflow(
    info: Info,
    event_type: str,
    payload: JSON | None = None,
    user_id: strawberry.ID | None = None,
    steps: JSON | None = None,
) -> WorkflowPreviewResult:
    async def work(session: AsyncSession, _: Principal) -> WorkflowPreview:
        user = await workflow_service.preview_profile(
            session, user_id=str(user_id) if user_id is not None else None
        )
        preview = await workflow_service.preview_workflow(
            session, event_type=event_type, payload=payload, user=user, steps=steps
        )
        return WorkflowPreview(
            workflow_version=preview.workflow.version,
            steps=[WorkflowPreviewStep.from_service(s) for s in preview.steps],
        )

    return await mutate(info, MANAGE_WORKFLOWS, work)  # type: ignore[return-value]


@strawberry.mutation(
    description=(
        "Cancel every unfinished run with this cancel key (the `cancelKey` its event carried): "
        "a waiting run stops before its next step. Admins, managers, services."
    )
)
async def cancel_workflow_runs(info: Info, key: str) -> CancelWorkflowRunsResult:
    async def work(session: AsyncSession, _: Principal) -> WorkflowRunsCancelled:
        count = await workflow_service.cancel_runs(session, key=key)
        return WorkflowRunsCancelled(key=key, cancelled=count)

    return await mutate(info, CANCEL_RUNS, work)  # type: ignore[return-value]


Query = create_type("Query", [workflow, workflow_versions, workflow_runs, workflow_run])
Mutation = create_type("Mutation", [save_workflow, preview_workflow, cancel_workflow_runs])
