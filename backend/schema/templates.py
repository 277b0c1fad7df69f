"""GraphQL types and inputs for message templates."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any

import strawberry

from backend.db.models import Template as TemplateModel
from backend.db.models import TemplateVersion as TemplateVersionModel
from backend.schema.common import JSON, Channel, Connection
from backend.schema.errors import (
    AccessErrors,
    ConflictError,
    NotFoundError,
    TemplateRenderError,
    TemplateSyntaxError,
    ValidationError,
)
from backend.schema.inbox import NotificationAction, NotificationActionInput
from backend.services import templates as service


@strawberry.type(description="Content of a template for one channel and locale (Jinja2 syntax).")
class TemplateContent:
    channel: Channel
    locale: str
    subject: str | None = strawberry.field(description="Email subject.")
    title: str | None = strawberry.field(description="Push / in-app title.")
    body: str | None = strawberry.field(
        description=(
            "Plain-text body (email text part, SMS, push); the text of a chat message "
            "(Telegram: HTML, its variables escaped)."
        )
    )
    html: str | None = strawberry.field(description="Email HTML body, autoescaped.")
    blocks: JSON | None = strawberry.field(
        description="Slack only: Block Kit blocks (a list), every string in them a template."
    )
    data: JSON | None = strawberry.field(
        description="Mobile push only: the data sent with the notification (string values, "
        "each a template)."
    )
    badge: int | None = strawberry.field(description="Mobile push only: the app icon's badge.")
    sound: str | None = strawberry.field(description="Mobile push only: the sound to play.")
    actions: list[NotificationAction] | None = strawberry.field(
        description="In-app only: the primary and secondary action (label and url templates, "
        "or a name)."
    )

    @classmethod
    def from_data(cls, data: service.ContentData) -> TemplateContent:
        return cls(**_message_fields(data), actions=_actions(data.actions))


# What a template's content, its input and a rendered message carry alike (actions differ in type).
_MESSAGE_FIELDS = (
    "channel",
    "locale",
    "subject",
    "title",
    "body",
    "html",
    "blocks",
    "data",
    "badge",
    "sound",
)


def _message_fields(source: object) -> dict[str, Any]:
    return {name: getattr(source, name) for name in _MESSAGE_FIELDS}


def _actions(actions: list[dict[str, str]] | None) -> list[NotificationAction] | None:
    return None if actions is None else [NotificationAction.from_json(a) for a in actions]


@strawberry.type(description="A template as it was at one version.")
class TemplateVersion:
    version: int
    name: str
    description: str
    content: list[TemplateContent]
    created_at: datetime
    created_by: str | None

    @classmethod
    def from_model(cls, model: TemplateVersionModel) -> TemplateVersion:
        return cls(
            version=model.version,
            name=model.name,
            description=model.description,
            content=[TemplateContent.from_data(c) for c in service.template_content(model)],
            created_at=model.created_at,
            created_by=model.created_by,
        )


@strawberry.type(description="A message template with per-channel, per-locale content.")
class Template:
    id: strawberry.ID
    slug: str
    name: str
    description: str
    version: int = strawberry.field(description="The current version; every update adds one.")
    content: list[TemplateContent]
    variables: list[str] = strawberry.field(
        description="Context variables the content reads, as dotted paths (`payload.movie.title`)."
    )
    created_at: datetime
    updated_at: datetime
    created_by: str | None
    updated_by: str | None
    tenant_id: str | None = strawberry.field(
        description="The tenant this template is for (overriding the shared one with its slug); "
        "null: shared."
    )
    # Loads the versions when a query asks for them; the resolver that makes the template
    # gives it, so that this module holds types only and imports no resolver.
    load_versions: strawberry.Private[Callable[[], Awaitable[list[TemplateVersion]]]]

    @strawberry.field(description="Every version, newest first (the current one included).")
    async def versions(self) -> list[TemplateVersion]:
        return await self.load_versions()

    @classmethod
    def from_model(
        cls,
        model: TemplateModel,
        load_versions: Callable[[], Awaitable[list[TemplateVersion]]],
    ) -> Template:
        content = service.template_content(model)
        return cls(
            id=strawberry.ID(str(model.id)),
            slug=model.slug,
            name=model.name,
            description=model.description,
            version=model.version,
            content=[TemplateContent.from_data(c) for c in content],
            variables=service.content_variables(content),
            created_at=model.created_at,
            updated_at=model.updated_at,
            created_by=model.created_by,
            updated_by=model.updated_by,
            tenant_id=model.tenant_id,
            load_versions=load_versions,
        )


@strawberry.type(description="A page of templates, ordered by slug.")
class TemplateConnection(Connection[Template]):
    pass


@strawberry.input(description="Content for one channel and locale.")
class TemplateContentInput:
    channel: Channel
    locale: str = "en"
    subject: str | None = None
    title: str | None = None
    body: str | None = None
    html: str | None = None
    blocks: JSON | None = strawberry.field(
        default=None,
        description="Slack only: Block Kit blocks (a list of objects), every string a template.",
    )
    data: JSON | None = strawberry.field(
        default=None,
        description="Mobile push only: an object of string values, each a template.",
    )
    badge: int | None = strawberry.field(default=None, description="Mobile push only.")
    sound: str | None = strawberry.field(default=None, description="Mobile push only.")
    actions: list[NotificationActionInput] | None = strawberry.field(
        default=None, description="In-app only: up to two actions (primary, secondary)."
    )

    def to_data(self) -> service.ContentData:
        return service.ContentData(
            **_message_fields(self),
            actions=None if self.actions is None else [a.to_json() for a in self.actions],
        )


@strawberry.input
class CreateTemplateInput:
    slug: str = strawberry.field(description="Unique, lowercase: letters, digits, '-', '_'.")
    name: str
    description: str = ""
    content: list[TemplateContentInput]
    tenant_id: str | None = strawberry.field(
        default=None,
        description=(
            "Make it for this tenant: it overrides the shared template with its slug for the "
            "tenant's events. A caller bound to a tenant always makes its own tenant's."
        ),
    )


@strawberry.input(description="Fields left out stay as they are; `content` replaces all content.")
class UpdateTemplateInput:
    name: str | None = None
    description: str | None = None
    content: list[TemplateContentInput] | None = None


@strawberry.type(description="A rendered message, as a recipient would see it.")
class RenderedMessage:
    channel: Channel
    locale: str = strawberry.field(description="The locale actually used, after fallback.")
    subject: str | None
    title: str | None
    body: str | None
    html: str | None
    blocks: JSON | None = strawberry.field(default=None, description="Slack: the rendered blocks.")
    data: JSON | None = strawberry.field(default=None, description="Mobile push: the data.")
    badge: int | None = None
    sound: str | None = None
    actions: list[NotificationAction] | None = strawberry.field(
        default=None, description="In-app: the rendered actions."
    )

    @classmethod
    def from_rendered(cls, rendered: service.RenderedMessage) -> RenderedMessage:
        return cls(**_message_fields(rendered), actions=_actions(rendered.actions))


@strawberry.type
class DeletedTemplate:
    slug: str


TemplateResult = Annotated[
    Template | ValidationError | TemplateSyntaxError | NotFoundError | ConflictError | AccessErrors,
    strawberry.union("TemplateResult"),
]
DeleteTemplateResult = Annotated[
    DeletedTemplate | ValidationError | NotFoundError | ConflictError | AccessErrors,
    strawberry.union("DeleteTemplateResult"),
]
PreviewTemplateResult = Annotated[
    RenderedMessage
    | ValidationError
    | TemplateSyntaxError
    | TemplateRenderError
    | NotFoundError
    | AccessErrors,
    strawberry.union("PreviewTemplateResult"),
]
