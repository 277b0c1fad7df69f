"""Workflows over GraphQL: saving versions, the typed errors of bad steps, the dry run, the
migration's single-step workflows and the tables it creates (real PostgreSQL, each test in a
rolled-back transaction)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from backend.channels import Channel
from backend.config import Settings
from backend.services import workflows
from tests.conftest import schema_differences
from tests.factories import template_and_event_type, token_for

SAVE = """mutation($type: String!, $steps: JSON!, $cancels: [String!]) {
  saveWorkflow(eventType: $type, steps: $steps, cancels: $cancels) { __typename
  ... on Workflow { eventType version current steps cancels }
  ... on WorkflowStepError { code message field step }
  ... on Error { code message field } } }"""
WORKFLOW = """query($type: String!) { workflow(eventType: $type) { version current steps }
  workflowVersions(eventType: $type) { version current } }"""
PREVIEW = """mutation($type: String!, $payload: JSON, $user: ID, $steps: JSON) {
  previewWorkflow(eventType: $type, payload: $payload, userId: $user, steps: $steps) {
  __typename
  ... on WorkflowPreview { workflowVersion steps { path name type runs condition detail
      messages { channel subject title body } } }
  ... on WorkflowStepError { code message field step }
  ... on Error { code message field } } }"""
CANCEL = """mutation($key: String!) { cancelWorkflowRuns(key: $key) { __typename
  ... on WorkflowRunsCancelled { key cancelled } ... on Error { code message field } } }"""

THREE_STEPS = [
    {"type": "send", "name": "inapp", "channel": "in_app"},
    {"type": "delay", "duration": "2s"},
    {
        "type": "branch",
        "name": "unread",
        "condition": "steps.inapp.read == false",
        "then": [{"type": "send", "name": "email", "channel": "email"}],
    },
]


@pytest.fixture
def manager(settings: Settings) -> str:
    return token_for(settings, "manager", sub="wf-manager")


async def event_type(gql: Any, token: str) -> str:
    """A new event type with an in-app and email template ("Hi {{ user.first_name }}")."""
    suffix = uuid.uuid4().hex[:8]
    slug = f"wf-{suffix}"
    content = [
        {"channel": "IN_APP", "locale": "en", "title": "Hi {{ user.first_name }}", "body": "b"},
        {
            "channel": "EMAIL",
            "locale": "en",
            "subject": "Still there, {{ user.first_name }}? {{ payload.item }}",
            "body": "You have an unread message.",
        },
    ]
    name = f"wf.{suffix}"
    await template_and_event_type(gql, token, slug=slug, content=content, name=name)
    return name


async def test_a_registered_type_gets_its_single_step_workflow_and_saves_make_versions(
    gql, manager
) -> None:
    name = await event_type(gql, manager)
    body = await gql(WORKFLOW, {"type": name}, token=manager)
    plain = body["data"]["workflow"]
    assert plain["version"] == 1 and plain["current"] is True
    assert plain["steps"] == [
        {"type": "send", "name": "send", "channels": ["in_app"], "template": f"wf-{name[3:]}"}
    ]

    saved = await gql(SAVE, {"type": name, "steps": THREE_STEPS}, token=manager)
    result = saved["data"]["saveWorkflow"]
    assert result["__typename"] == "Workflow", saved
    assert result["version"] == 2 and result["current"] is True
    # Names are filled in from the step's place; templates default to the type's.
    assert [s["name"] for s in result["steps"]] == ["inapp", "delay_1", "unread"]
    assert result["steps"][1]["duration"] == 2
    assert result["steps"][2]["then"][0]["template"] == f"wf-{name[3:]}"

    body = await gql(WORKFLOW, {"type": name}, token=manager)
    assert body["data"]["workflow"]["version"] == 2
    assert body["data"]["workflowVersions"] == [
        {"version": 2, "current": True},
        {"version": 1, "current": False},
    ]


@pytest.mark.parametrize(
    ("steps", "field", "step", "words"),
    [
        (
            [{"type": "send", "name": "inapp", "channel": "in_app", "if": "payload.x =="}],
            "steps[0].if",
            "inapp",
            "Syntax error",
        ),
        (
            [
                {"type": "send", "name": "a", "channel": "in_app"},
                {
                    "type": "branch",
                    "name": "b",
                    "condition": "true",
                    "then": [{"type": "delay", "name": "wait", "duration": "soon"}],
                },
            ],
            "steps[1].then[0].duration",
            "wait",
            "not a duration",
        ),
        (
            [{"type": "branch", "name": "b", "condition": "steps.a.read %} {% if true"}],
            "steps[0].condition",
            "b",
            "expression",
        ),
        (
            [{"type": "send", "name": "mail", "channel": "sms"}],
            "steps[0].channel",
            "mail",
            "no content for sms",
        ),
        (
            [{"type": "send", "name": "x", "channel": "in_app", "template": "nope-404"}],
            "steps[0].template",
            "x",
            "no template 'nope-404'",
        ),
        (
            [
                {"type": "send", "name": "x", "channel": "in_app"},
                {"type": "send", "name": "x", "channel": "in_app"},
            ],
            "steps[1].name",
            "x",
            "Two steps are named 'x'",
        ),
        (
            [{"type": "fetch", "name": "f", "url": "ftp://example.com"}],
            "steps[0].url",
            "f",
            "http(s) URL",
        ),
        (
            [{"type": "delay", "name": "d", "duration": "1h", "at": "09:00"}],
            "steps[0].duration",
            "d",
            "one of duration, until or at",
        ),
    ],
)
async def test_a_bad_step_is_a_typed_error_naming_the_step_and_field(
    gql, manager, steps, field, step, words
) -> None:
    name = await event_type(gql, manager)
    body = await gql(SAVE, {"type": name, "steps": steps}, token=manager)
    error = body["data"]["saveWorkflow"]
    assert error["__typename"] == "WorkflowStepError", body
    assert error["code"] == "WORKFLOW_STEP"
    assert error["field"] == field and error["step"] == step
    assert words in error["message"]
    # Nothing was saved: the plain workflow is still the current one.
    current = await gql(WORKFLOW, {"type": name}, token=manager)
    assert current["data"]["workflow"]["version"] == 1


async def test_saving_needs_a_known_type_steps_and_a_manager(gql, manager, settings) -> None:
    body = await gql(SAVE, {"type": "no.such.type", "steps": THREE_STEPS}, token=manager)
    assert body["data"]["saveWorkflow"]["code"] == "NOT_FOUND"
    name = await event_type(gql, manager)
    body = await gql(SAVE, {"type": name, "steps": []}, token=manager)
    assert body["data"]["saveWorkflow"] == {
        "__typename": "ValidationError",
        "code": "VALIDATION",
        "message": "A workflow has at least one step",
        "field": "steps",
    }
    body = await gql(SAVE, {"type": name, "steps": THREE_STEPS, "cancels": ["nope"]}, token=manager)
    assert body["data"]["saveWorkflow"]["field"] == "cancels[0]"
    service = token_for(settings, "service", sub="wf-service")
    body = await gql(SAVE, {"type": name, "steps": THREE_STEPS}, token=service)
    assert body["data"]["saveWorkflow"]["code"] == "FORBIDDEN"
    # Services may cancel runs by key (none have this one).
    key = f"k-{uuid.uuid4().hex}"
    body = await gql(CANCEL, {"key": key}, token=service)
    assert body["data"]["cancelWorkflowRuns"] == {
        "__typename": "WorkflowRunsCancelled",
        "key": key,
        "cancelled": 0,
    }
    body = await gql(CANCEL, {"key": ""}, token=service)
    assert body["data"]["cancelWorkflowRuns"]["code"] == "VALIDATION"


async def test_the_dry_run_shows_the_steps_conditions_and_messages_and_sends_nothing(
    gql, manager
) -> None:
    name = await event_type(gql, manager)
    steps = [
        *THREE_STEPS,
        {"type": "send", "name": "big", "channel": "email", "if": "payload.amount > 100"},
    ]
    saved = await gql(SAVE, {"type": name, "steps": steps}, token=manager)
    assert saved["data"]["saveWorkflow"]["version"] == 2, saved
    body = await gql(
        PREVIEW,
        {"type": name, "payload": {"item": "a lamp", "amount": 5}, "user": "nobody-known"},
        token=manager,
    )
    preview = body["data"]["previewWorkflow"]
    assert preview["__typename"] == "WorkflowPreview", body
    assert preview["workflowVersion"] == 2
    by_path = {s["path"]: s for s in preview["steps"]}
    assert list(by_path) == ["0", "1", "2", "2.then.0", "3"]
    assert by_path["0"]["messages"] == [
        {"channel": "IN_APP", "subject": None, "title": "Hi Ada", "body": "b"}
    ]
    # A dry run takes the in-app message as unread: the branch goes to `then`.
    assert by_path["2"]["condition"] is True and by_path["2"]["detail"] == "takes then"
    assert by_path["2.then.0"]["messages"][0]["subject"] == "Still there, Ada? a lamp"
    assert by_path["3"]["runs"] is False and by_path["3"]["condition"] is False

    # Unsaved steps can be tried too; an `if` reading a missing variable names the step.
    body = await gql(
        PREVIEW,
        {
            "type": name,
            "payload": {},
            "steps": [{"type": "send", "name": "s", "channel": "in_app", "if": "payload.vip"}],
        },
        token=manager,
    )
    error = body["data"]["previewWorkflow"]
    assert error["__typename"] == "WorkflowStepError", body
    assert error["field"] == "steps[0].if" and error["step"] == "s"
    assert "payload.vip" in error["message"]


def test_paths_walk_the_tree_in_run_order() -> None:
    steps = [
        {"type": "send"},
        {"type": "branch", "then": [{"type": "send"}, {"type": "delay"}], "else": []},
        {"type": "send"},
    ]
    assert workflows.next_path(steps, "0") == "1"
    assert workflows.first_path(steps, "1.then") == "1.then.0"
    assert workflows.first_path(steps, "1.else") is None
    assert workflows.next_path(steps, "1.then.0") == "1.then.1"
    assert workflows.next_path(steps, "1.then.1") == "2"
    assert workflows.next_path(steps, "2") is None
    assert workflows.field_of("1.then.0") == "steps[1].then[0]"


async def test_the_migration_creates_the_models_tables(engine: AsyncEngine) -> None:
    tables = {"workflows", "workflow_runs", "workflow_run_steps"}
    assert await schema_differences(engine, tables) == []


def readme_examples() -> list[str]:
    """The GraphQL blocks of the README's workflow section, as a reader would paste them."""
    text = (Path(__file__).parent.parent / "README.md").read_text()
    section = text.split("### Workflows", 1)[1].split("\n### ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```graphql\n")[1:]]


async def test_the_readme_example_saves_and_dry_runs_as_shown(gql, manager) -> None:
    save, preview = readme_examples()
    body = await gql(save, token=manager)
    result = body["data"]["saveWorkflow"]
    assert result["__typename"] == "Workflow", body
    assert [s["name"] for s in result["steps"]] == ["inapp", "delay_1", "unread"]
    mutation, query = preview.split("query {", 1)
    body = await gql(mutation, token=manager)
    steps = body["data"]["previewWorkflow"]["steps"]
    assert [(s["path"], s["runs"]) for s in steps] == [
        ("0", True),
        ("1", True),
        ("2", True),
        ("2.then.0", True),
    ]
    body = await gql("query {" + query, token=manager)
    assert "edges" in body["data"]["workflowRuns"], body


async def test_existing_types_became_single_step_workflows_sent_as_before(gql, manager) -> None:
    body = await gql("{ eventTypes { name templateSlug channels builtin } }", token=manager)
    builtins = [t for t in body["data"]["eventTypes"] if t["builtin"]]
    assert builtins
    for t in builtins:
        found = await gql(WORKFLOW, {"type": t["name"]}, token=manager)
        steps = found["data"]["workflowVersions"][-1:]
        assert steps and steps[0]["version"] == 1
        first = await gql(
            "query($t: String!) { workflowVersions(eventType: $t) { version steps } }",
            {"t": t["name"]},
            token=manager,
        )
        v1 = next(v for v in first["data"]["workflowVersions"] if v["version"] == 1)
        assert v1["steps"] == [
            {
                "type": "send",
                "name": "send",
                "channels": [c.lower() for c in t["channels"]],
                "template": t["templateSlug"],
            }
        ]
        assert workflows.is_plain(
            v1["steps"],
            template_slug=t["templateSlug"],
            channels=[Channel(c.lower()) for c in t["channels"]],
        )
