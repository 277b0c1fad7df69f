"""GraphQL types for workflows: an event type's steps, their versions, runs and dry runs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from backend.db.models import Workflow as WorkflowModel
from backend.db.models import WorkflowRun as WorkflowRunModel
from backend.db.models import WorkflowRunStep as WorkflowRunStepModel
from backend.schema.common import JSON, Connection
from backend.schema.errors import (
    AccessErrors,
    NotFoundError,
    TemplateRenderError,
    ValidationError,
    WorkflowStepError,
)
from backend.schema.templates import RenderedMessage
from backend.services import workflows as workflow_service


@strawberry.type(
    description=(
        "One version of an event type's workflow. `steps` is the list of steps as JSON (see "
        "`saveWorkflow`), with each step's `name` filled in."
    )
)
class Workflow:
    id: strawberry.ID
    event_type: str
    version: int
    current: bool = strawberry.field(description="The version new events go through.")
    steps: JSON
    cancels: list[str] = strawberry.field(
        description="Event types whose unfinished runs an event of this type cancels."
    )
    created_at: datetime
    created_by: str | None

    @classmethod
    def from_model(cls, row: WorkflowModel) -> Workflow:
        return cls(
            id=strawberry.ID(str(row.id)),
            event_type=row.event_type,
            version=row.version,
            current=row.is_current,
            steps=row.steps,  # type: ignore[arg-type]
            cancels=list(row.cancels),
            created_at=row.created_at,
            created_by=row.created_by,
        )


@strawberry.type(description="A step of a run: when it started and ended, and its outcome.")
class WorkflowRunStep:
    path: str = strawberry.field(description="The step's place: `2`, `1.then.0`.")
    name: str
    type: str
    status: str = strawberry.field(description="`running` or `done`.")
    outcome: JSON = strawberry.field(
        description="What the step did (`status`, a send's `channels`, a branch's `value`...)."
    )
    attempts: int = strawberry.field(description="More than 1: a worker died during the step.")
    started_at: datetime
    finished_at: datetime | None

    @classmethod
    def from_model(cls, row: WorkflowRunStepModel) -> WorkflowRunStep:
        return cls(
            path=row.path,
            name=row.name,
            type=row.kind,
            status=row.status,
            outcome=row.outcome,  # type: ignore[arg-type]
            attempts=row.attempts,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )


@strawberry.type(description="One event for one user going through a workflow version.")
class WorkflowRun:
    id: strawberry.ID
    event_type: str
    event_id: strawberry.ID
    user_id: strawberry.ID
    workflow_version: int | None
    status: str = strawberry.field(
        description=(
            "`queued`, `running`, `waiting` (a delay or digest window, until `dueAt`), "
            "`completed`, `failed`, `cancelled`, or `stopped` (throttled, or collected into "
            "another run's digest)."
        )
    )
    cancel_key: str | None
    cursor: str | None = strawberry.field(description="The path of the next step.")
    due_at: datetime | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    steps: list[WorkflowRunStep] | None = strawberry.field(
        description="The step timeline, in the order the steps started (`workflowRun` only)."
    )

    @classmethod
    def from_model(
        cls,
        row: WorkflowRunModel,
        steps: list[WorkflowRunStepModel] | None = None,
        version: int | None = None,
    ) -> WorkflowRun:
        return cls(
            id=strawberry.ID(str(row.id)),
            event_type=row.event_type,
            event_id=strawberry.ID(row.event_id),
            user_id=strawberry.ID(row.user_id),
            workflow_version=version,
            status=row.status,
            cancel_key=row.cancel_key,
            cursor=row.cursor,
            due_at=row.due_at,
            error=row.error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            finished_at=row.finished_at,
            steps=[WorkflowRunStep.from_model(s) for s in steps] if steps is not None else None,
        )


@strawberry.type(description="Workflow runs, newest first.")
class WorkflowRunConnection(Connection[WorkflowRun]):
    pass


@strawberry.input(description="Which runs to list; fields left out match every run.")
class WorkflowRunFilter:
    event_type: str | None = None
    user_id: strawberry.ID | None = None
    status: str | None = None
    cancel_key: str | None = None
    event_id: strawberry.ID | None = None


@strawberry.type(description="A step in a dry run.")
class WorkflowPreviewStep:
    path: str
    name: str
    type: str
    runs: bool = strawberry.field(description="Whether the step would run (its `if` holds).")
    condition: bool | None = strawberry.field(
        description="The value of the step's `if`, or of a branch's `condition`."
    )
    detail: str = strawberry.field(description="What the step would do, in words.")
    messages: list[RenderedMessage] = strawberry.field(
        description="A send step's rendered messages, one per channel."
    )

    @classmethod
    def from_service(cls, step: workflow_service.PreviewStep) -> WorkflowPreviewStep:
        return cls(
            path=step.path,
            name=step.name,
            type=step.kind,
            runs=step.runs,
            condition=step.condition,
            detail=step.detail,
            messages=[RenderedMessage.from_rendered(m) for m in step.messages],
        )


@strawberry.type(description="A dry run of a workflow for one event and user: nothing is sent.")
class WorkflowPreview:
    workflow_version: int = strawberry.field(description="0 for unsaved steps.")
    steps: list[WorkflowPreviewStep] = strawberry.field(
        description="The steps the run would reach, in order (skipped ones too)."
    )


@strawberry.type(description="Runs cancelled.")
class WorkflowRunsCancelled:
    key: str
    cancelled: int = strawberry.field(description="How many unfinished runs were cancelled.")


WorkflowResult = Annotated[
    Workflow | WorkflowStepError | ValidationError | NotFoundError | AccessErrors,
    strawberry.union("WorkflowResult"),
]
WorkflowPreviewResult = Annotated[
    WorkflowPreview
    | WorkflowStepError
    | ValidationError
    | TemplateRenderError
    | NotFoundError
    | AccessErrors,
    strawberry.union("WorkflowPreviewResult"),
]
CancelWorkflowRunsResult = Annotated[
    WorkflowRunsCancelled | ValidationError | AccessErrors,
    strawberry.union("CancelWorkflowRunsResult"),
]
